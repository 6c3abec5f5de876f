"""The FastAPI app of ``omnikit serve``: the websocket endpoint, the web page, and a health check.

One :class:`DialogueModel`, one :class:`Scheduler` worker thread, and per connection one
:class:`~omnikit.inference.session.Session` with three tasks on the event loop: a receiver (validates frames and
queues work, slowing a client whose input queue is full), a sender (writes events and answer PCM in order) and a
watchdog (idle timeout, stalled clients). The protocol is in :mod:`omnikit.serving.protocol` and docs/serving.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
from fastapi import FastAPI, HTTPException, WebSocket
from fastapi.responses import FileResponse, JSONResponse
from starlette.websockets import WebSocketState

from omnikit.inference.dialogue_model import DialogueModel
from omnikit.interfaces import SAMPLE_RATE
from omnikit.serving.protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_TRY_LATER,
    PROTOCOL_VERSION,
    Limits,
    ProtocolError,
    dumps,
    error_event,
    parse_control,
    pcm16_to_float,
    ready_message,
)
from omnikit.serving.scheduler import Client, Outgoing, Scheduler

log = logging.getLogger("omnikit.serve")
WEB_DIR = Path(__file__).parent / "web"
STATIC = {"app.js": "text/javascript", "capture-worklet.js": "text/javascript"}
MAX_OUTBOX = 5_000
"""Messages waiting for one client's socket before it counts as not reading (answer audio is bounded anyway)."""


@dataclass
class ServeConfig:
    """What ``omnikit serve`` is started with."""

    max_sessions: int = 4
    """Concurrent sessions; one more is accepted and closed at once with code 1013 and the reason."""
    token: str | None = None
    """If set, a client must send it (``Authorization: Bearer`` header or ``?token=``); compared in constant time."""
    idle_timeout_s: float | None = 300.0
    """Close a connection that sent nothing for this long while nothing of it runs (None or 0: never)."""
    limits: Limits = field(default_factory=Limits)
    allowed_origins: tuple[str, ...] = ()
    """Browser origins allowed besides the page's own (a request without ``Origin`` is not from a browser page)."""
    watchdog_s: float = 0.5
    """How often idle and stalled connections are checked."""


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def token_ok(headers: Any, query: Any, expected: str) -> bool:
    """Bearer header or ``token`` query parameter, compared with :func:`hmac.compare_digest` (of SHA-256 digests,
    so the time taken says nothing about the token's length either)."""
    auth = headers.get("authorization") or ""
    given = auth[7:].strip() if auth[:7].lower() == "bearer " else (query.get("token") or "")
    return hmac.compare_digest(_digest(given), _digest(expected))


def origin_ok(headers: Any, allowed: tuple[str, ...]) -> bool:
    """A browser page from another site must not use the server (cross-site websocket hijacking)."""
    origin = headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == (headers.get("host") or "") or origin in allowed


class Connection:
    """One websocket client: receiver, sender and watchdog tasks around a scheduler :class:`Client`."""

    def __init__(self, ws: WebSocket, scheduler: Scheduler, config: ServeConfig, cid: int):
        self.ws, self.scheduler, self.config, self.limits = ws, scheduler, config, config.limits
        self.loop = asyncio.get_running_loop()
        self.outbox: asyncio.Queue[Outgoing] = asyncio.Queue()
        self.client = Client(cid, post=self._post_threadsafe)
        self.started = self.ended = self.closing = False
        self.errors = 0
        self.last_rx = time.monotonic()
        self.input_full_since: float | None = None
        self.send_since: float | None = None
        self.first_sent_ms: dict[int, float] = {}
        self.close_reason = "client disconnected"
        self._send_scope: anyio.CancelScope | None = None

    def _post_threadsafe(self, out: Outgoing) -> None:
        self.loop.call_soon_threadsafe(self.outbox.put_nowait, out)

    async def run(self) -> None:
        self.scheduler.add(self.client)
        try:
            try:
                await self.ws.send_text(dumps(ready_message(
                    self.client.id, self.scheduler.out_rate, self.limits, self.config.idle_timeout_s or None,
                    self.scheduler.model.settings.chunk_ms)))
            except Exception:  # gone before the first message
                return
            async with anyio.create_task_group() as tg:  # the first of the three to finish ends the others

                async def first_ends_all(loop: Callable[[], Awaitable[None]]) -> None:
                    try:
                        await loop()
                    finally:
                        tg.cancel_scope.cancel()

                for loop in (self._send_loop, self._receive_loop, self._watch):
                    tg.start_soon(first_ends_all, loop)
        finally:  # nothing awaited here: a cancelled handler must stay cancelled
            self.scheduler.remove(self.client)
        if self.ws.application_state == WebSocketState.CONNECTED and self.ws.client_state == WebSocketState.CONNECTED:
            await self._close(CLOSE_GOING_AWAY, "server closing the session")

    # ------------------------------------------------------------------ in
    async def _receive_loop(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            self.last_rx = time.monotonic()
            if self.closing:
                continue
            try:
                if msg.get("bytes") is not None:
                    await self._audio(msg["bytes"])
                elif msg.get("text") is not None:
                    self._control(msg["text"])
                else:
                    raise ProtocolError("bad_frame", "empty websocket message")
            except ProtocolError as exc:
                self._error(exc.code, str(exc))

    async def _audio(self, data: bytes) -> None:
        if not self.started:
            raise ProtocolError("not_started", 'send {"type": "start"} before audio')
        if self.ended:
            raise ProtocolError("ended", "the session is ending: no more audio")
        pcm = pcm16_to_float(data, self.limits)
        c, most = self.client, self.limits.max_queued_input_s * SAMPLE_RATE
        if c.inbox_samples >= most:  # stop reading this socket until the scheduler catches up (slows the client)
            self.input_full_since = time.monotonic()
            while c.inbox_samples >= most and not c.done:
                await asyncio.sleep(0.01)
            self.input_full_since = None
        self.scheduler.submit(c, "audio", pcm)

    def _control(self, text: str) -> None:
        msg = parse_control(text, self.limits)
        kind = msg["type"]
        if kind == "start":
            if self.started:
                raise ProtocolError("already_started", "start was already sent; open a new connection for a new "
                                    "conversation")
            self.started = True
        elif self.ended:
            raise ProtocolError("ended", "the session is ending: no more messages")
        elif kind == "end":
            self.ended = True
        elif not self.started:
            raise ProtocolError("not_started", f'send {{"type": "start"}} before {kind}')
        self.scheduler.submit(self.client, kind, msg.get("text"))

    def _error(self, code: str, message: str) -> None:
        self.errors += 1
        self.outbox.put_nowait(Outgoing("json", error_event(code, message)))
        if self.errors >= self.limits.max_errors:
            self._request_close(CLOSE_POLICY, f"too many malformed messages ({self.errors})")

    # ------------------------------------------------------------------ out
    async def _send_loop(self) -> None:
        with anyio.CancelScope() as self._send_scope:
            try:
                await self._send_all(self.ws)
            except Exception:  # the client is gone (or the socket broke): the connection ends
                return

    async def _send_all(self, ws: WebSocket) -> None:
        while True:
            out = await self.outbox.get()
            if out.kind == "close":
                self.close_reason = out.reason
                await self._close(out.code, out.reason)
                return
            self.send_since = time.monotonic()
            if out.kind == "pcm":
                if out.answer not in self.first_sent_ms and out.t_decision is not None:
                    self.first_sent_ms[out.answer] = (time.perf_counter() - out.t_decision) * 1000
                await ws.send_bytes(out.payload)
                self.scheduler.sent(self.client, out.samples)
            elif out.kind == "latency":
                first = self.first_sent_ms.pop(out.answer, None)
                await ws.send_text(dumps({**out.payload, "decision_to_first_audio_sent_ms":
                                          None if first is None else round(first, 1)}))
            else:
                await ws.send_text(dumps(out.payload))
            self.send_since = None

    def _request_close(self, code: int, reason: str) -> None:
        """Close after what is already queued for the client (the sender writes the close frame)."""
        if self.closing:
            return
        self.closing = True
        self.scheduler.remove(self.client)
        self.outbox.put_nowait(Outgoing("close", code=code, reason=reason))

    async def _force_close(self, code: int, reason: str) -> None:
        """Close now, dropping what is queued: for a client whose socket takes nothing."""
        self.closing = True
        self.close_reason = reason
        self.scheduler.remove(self.client)
        if self._send_scope is not None:
            self._send_scope.cancel()
        await self._close(code, reason)

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception), anyio.move_on_after(2.0):
            await self.ws.close(code, reason[:120])

    async def _watch(self) -> None:
        stall, idle = self.limits.stall_timeout_s, self.config.idle_timeout_s
        while True:
            await asyncio.sleep(self.config.watchdog_s)
            now = time.monotonic()
            if self.input_full_since is not None and now - self.input_full_since > stall:
                return await self._force_close(CLOSE_POLICY, f"audio arrives faster than it is processed (input "
                                               f"queue full for {stall:g} s)")
            if (self.send_since is not None and now - self.send_since > stall) or self.outbox.qsize() > MAX_OUTBOX:
                return await self._force_close(CLOSE_POLICY, f"not reading: nothing could be sent for {stall:g} s")
            if idle and not self.closing and now - self.last_rx > idle and not self.client.busy:
                self._request_close(CLOSE_GOING_AWAY, f"idle for {idle:g} s (--idle-timeout)")


def create_app(model: DialogueModel, config: ServeConfig | None = None) -> FastAPI:
    """The server app over one model; its scheduler thread runs while the app's lifespan does."""
    config = config or ServeConfig()
    scheduler = Scheduler(model, config.limits)
    live: dict[int, Connection] = {}
    ids = iter(range(1, 1 << 62))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        scheduler.start()
        try:
            yield
        finally:
            scheduler.stop()

    app = FastAPI(title="omnikit serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.scheduler = scheduler
    app.state.config = config
    app.state.connections = live

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> FileResponse:
        if name not in STATIC:
            raise HTTPException(404)
        return FileResponse(WEB_DIR / name, media_type=STATIC[name])

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"ok": scheduler.running, "protocol": PROTOCOL_VERSION, "sessions": len(live),
                             "max_sessions": config.max_sessions, "auth": config.token is not None,
                             **{k: v for k, v in scheduler.stats().items() if k != "sessions"}})

    @app.websocket("/ws")
    async def ws_endpoint(ws: WebSocket) -> None:
        # accept first, then close with a code and reason: a browser cannot read why a handshake was refused
        try:
            await ws.accept()
        except Exception:  # the client left during the handshake
            return
        if config.token is not None and not token_ok(ws.headers, ws.query_params, config.token):
            log.info("refused a connection: bad or missing token")
            with contextlib.suppress(Exception):
                await ws.close(CLOSE_POLICY, "unauthorized: bad or missing token")
            return
        if not origin_ok(ws.headers, config.allowed_origins):
            log.info("refused a connection from origin %s", ws.headers.get("origin"))
            with contextlib.suppress(Exception):
                await ws.close(CLOSE_POLICY, "origin not allowed")
            return
        if len(live) >= config.max_sessions:
            with contextlib.suppress(Exception):
                await ws.close(CLOSE_TRY_LATER, f"server full: {config.max_sessions} sessions "
                                                f"(--max-sessions); try again later")
            return
        scheduler.start()  # no-op under the lifespan; an app driven without it still works
        conn = Connection(ws, scheduler, config, next(ids))
        live[conn.client.id] = conn
        log.info("session %d: open (%d of %d)", conn.client.id, len(live), config.max_sessions)
        try:
            await conn.run()
        finally:
            live.pop(conn.client.id, None)
            log.info("session %d: closed (%s)", conn.client.id, conn.close_reason)

    return app
