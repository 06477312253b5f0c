"""Driving Debian's Chromium against a served app, for browser tests and benchmarks.

A test tool's own browser download cannot work offline, so Playwright drives
``/usr/bin/chromium`` with flags that let WebGL2 run on SwiftShader.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
ROOT = Path(__file__).resolve().parent.parent


# Run in a page of the app: post an Open311 form, then wait until the view has drawn that case's marker.
# Both times are the page's clock: ``ms`` runs from the reply to the frame with the marker.
POST_AND_WAIT_FOR_MARKER = """async ([form, timeoutMs]) => {
  const res = await fetch("/open311/v2/requests.json", {method: "POST", body: new URLSearchParams(form),
    headers: {"Content-Type": "application/x-www-form-urlencoded"}});
  const replied = performance.now();
  const body = await res.json();
  if (res.status !== 201) return {status: res.status, body};
  const id = body[0].service_request_id;
  while (!(window.twinCaseDrawn && id in window.twinCaseDrawn)) {
    if (performance.now() - replied > timeoutMs) return {status: 201, id, ms: null};
    await new Promise((r) => setTimeout(r, 5));
  }
  return {status: 201, id, ms: window.twinCaseDrawn[id] - replied};
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(db: str | os.PathLike, *, app: str | None = None, timeout: float = 120.0) -> Iterator[str]:
    """Serve the app on a store with ``twin serve`` (or ``panel serve`` on ``app``); yield its URL."""
    port = free_port()
    if app is None:
        cmd = [sys.executable, str(ROOT / "cli.py"), "serve", "--db", str(db), "--port", str(port)]
        path = "app"
    else:
        cmd = [sys.executable, "-m", "panel", "serve", app, "--port", str(port), "--address", "127.0.0.1",
               f"--allow-websocket-origin=127.0.0.1:{port}", "--args", "--db", str(db)]
        path = Path(app).stem
    log = open(Path(tempfile.gettempdir()) / f"twin-serve-{port}.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/{path}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start: see {log.name}") from None
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """A Playwright Chromium browser (Debian's)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


class WebSocketMeter:
    """Counts the bytes a page receives over its websockets."""

    def __init__(self, page) -> None:
        self.received = 0
        self.frames = 0
        page.on("websocket", self._attach)

    def _attach(self, ws) -> None:
        ws.on("framereceived", self._frame)

    def _frame(self, payload) -> None:
        self.frames += 1
        self.received += len(payload) if payload is not None else 0
