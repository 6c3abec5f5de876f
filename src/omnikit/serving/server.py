"""Run the app under uvicorn on a socket bound here first (a busy port fails before the model loads, and port 0
reports the port it got)."""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
from collections.abc import Callable

from fastapi import FastAPI

WS_MAX_BYTES = 1 << 20
"""Websocket messages above this are refused by the server itself (close 1009); the protocol's own, smaller
limits answer an error event instead."""


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port``; raises ``RuntimeError`` in one line."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, IndexError) as exc:
        raise RuntimeError(f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise RuntimeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_host(sock: socket.socket) -> tuple[str, int]:
    host, port = sock.getsockname()[:2]
    return (f"[{host}]" if ":" in host else host), int(port)


def run(app: FastAPI, sock: socket.socket, log_level: str = "warning",
        on_start: Callable[[], None] | None = None) -> None:
    """Serve until Ctrl-C (uvicorn shuts down gracefully: open sessions are closed, the scheduler stopped)."""
    import uvicorn

    log = logging.getLogger("omnikit.serve")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[omnikit] %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    # access_log off: a websocket URL may carry ?token=..., which must not land in logs
    config = uvicorn.Config(app, log_level=log_level, access_log=False, ws_max_size=WS_MAX_BYTES,
                            ws_ping_interval=20.0, ws_ping_timeout=20.0, timeout_graceful_shutdown=5,
                            lifespan="on")
    server = uvicorn.Server(config)
    if on_start is not None:
        on_start()
    server.run(sockets=[sock])
