"""Headless Chromium driven over the Chrome DevTools Protocol (the `websockets` client, no other driver), and a
uvicorn server in a thread: what the browser test needs."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


class Chromium:
    """One headless browser with a fresh profile, showing ``url``; ``evaluate`` runs JavaScript in the page."""

    def __init__(self, url: str, profile: Path, extra: list[str], timeout: float = 30.0):
        from websockets.sync.client import connect

        exe = find_chromium()
        assert exe, "no chromium"
        self.proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                                      *extra, url], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port_file, deadline = profile / "DevToolsActivePort", time.time() + timeout
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None or time.time() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError("chromium did not start: " + self.stderr())
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        while True:
            pages = [t for t in json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=10))
                     if t["type"] == "page"]
            if pages or time.time() > deadline:
                break
            time.sleep(0.1)
        assert pages, "chromium opened no page"
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(pages[0]["webSocketDebuggerUrl"], max_size=None,
                                                    open_timeout=timeout))
        self._id = 0

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read().decode(errors="replace")[-2000:]

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def evaluate(self, expression: str) -> Any:
        """The expression's JSON value; None while it throws (e.g. the page has not loaded yet)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return None if "exceptionDetails" in result else result["result"].get("value")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def serving(app: Any) -> Iterator[int]:
    """The app under uvicorn on a free loopback port, in a thread; yields the port."""
    import uvicorn

    from omnikit.serving.server import bind

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and thread.is_alive() and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
