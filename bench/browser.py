"""Driving Debian's Chromium against a served app, for browser tests and benchmarks (test tooling, not product).

A test tool's own browser download cannot work offline, so Playwright drives
``/usr/bin/chromium`` with flags that let WebGL2 run on SwiftShader.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scenes.view3d import PROBES_ENV

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


def free_ports(length: int) -> int:
    """A port P with P .. P+length-1 all free on 127.0.0.1 (for nginx and its workers: ``twin serve --workers``)."""
    for _ in range(50):
        first = free_port()
        if first + length > 65535:
            continue
        try:
            for p in range(first, first + length):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return first
        except OSError:
            continue
    raise RuntimeError(f"no run of {length} free ports on 127.0.0.1")


class ServedURL(str):
    """The app's URL, with the user made for signing in to it (``user``, ``password``) and the server's process id
    (``pid``, when :func:`served` started it)."""

    user: str | None = None
    password: str | None = None
    pid: int | None = None


def browser_user(db: str | os.PathLike, *, role: str, lang: str | None = "en",
                 grids: list[str] | None = None) -> tuple[str, str]:
    """Make (or reset) the user ``browser.<role>`` on a store that is not being served; its name and password.

    Operators are bound to every street, so the whole district is theirs, unless ``grids`` are given:
    then the user is ``browser.<role>.<first grid>``, bound to those. ``lang`` is the user's UI language
    (English by default: the browser tests read English labels; None leaves the product's default, Chinese).
    """
    from twin.access.access import add_user, set_lang, set_password
    from twin.store.store import Store

    username, password = f"browser.{role}" + (f".{grids[0]}" if grids else ""), secrets.token_urlsafe(16)
    with Store(db) as store:
        con = store.con
        if con.execute("SELECT 1 FROM users WHERE username = ?", [username]).fetchone():
            set_password(con, username, password, actor="browser")
        else:
            if grids is None:
                grids = [r[0] for r in con.execute("SELECT grid_id FROM grids WHERE level = 'street' "
                                                   "AND valid_to IS NULL").fetchall()] if role == "operator" else []
            add_user(con, username, password, role=role, grids=grids, actor="browser")
        con.execute("UPDATE users SET lang = NULL WHERE username = ?", [username])
        if lang is not None:
            set_lang(con, username, lang)
    return username, password


def sign_in(page, url: ServedURL, *, open_app: bool = True) -> None:
    """Sign the page's browser context in as the user :func:`served` made (the login form's POST), then open ``url``.

    The form itself, as a person fills it, has its own browser test.
    """
    base = url.rsplit("/", 1)[0]
    answer = page.request.post(f"{base}/login", form={"username": url.user, "password": url.password},
                               max_redirects=0)
    if answer.status != 302 or "error=" in answer.headers.get("location", ""):
        raise RuntimeError(f"signing in as {url.user} failed: HTTP {answer.status} {answer.headers.get('location')}")
    if open_app:
        page.goto(url)


def as_user(url: ServedURL, username: str, password: str) -> ServedURL:
    """The same app's URL, signing in as another user (one made with :func:`browser_user` before serving)."""
    other = ServedURL(url)
    other.user, other.password = username, password
    return other


@contextlib.contextmanager
def served(db: str | os.PathLike, *, app: str | None = None, role: str = "operator", args: tuple[str, ...] = (),
           probes: bool = True, timeout: float = 120.0, lang: str | None = "en") -> Iterator[ServedURL]:
    """Serve the app on a store with ``twin serve`` (or ``panel serve`` on ``app``); yield its URL.

    For ``twin serve``, a user with ``role`` and UI language ``lang`` is made first (see :func:`browser_user`);
    the URL carries its name and password for :func:`sign_in`. ``args`` go to ``twin serve``. With ``probes``, the 3D
    view leaves its marks in the page for tests and benches (``window.twinFirstFrame`` and the others,
    see ``scenes/view3d.py``); a person's server leaves them out.
    """
    port = free_port()
    user = password = None
    if app is None:
        user, password = browser_user(db, role=role, lang=lang)
        cmd = [sys.executable, str(ROOT / "cli.py"), "serve", "--db", str(db), "--port", str(port), *args]
        path = "app"
    else:
        cmd = [sys.executable, "-m", "panel", "serve", app, "--port", str(port), "--address", "127.0.0.1",
               f"--allow-websocket-origin=127.0.0.1:{port}", "--args", "--db", str(db)]
        path = Path(app).stem
    log = open(Path(tempfile.gettempdir()) / f"twin-serve-{port}.log", "w")
    env = {**os.environ, PROBES_ENV: "1"} if probes else {k: v for k, v in os.environ.items() if k != PROBES_ENV}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = ServedURL(f"http://127.0.0.1:{port}/{path}")
    url.user, url.password, url.pid = user, password, proc.pid
    try:
        _wait_answering(f"http://127.0.0.1:{port}/", proc, time.monotonic() + timeout,
                        f"the server did not start: see {log.name}", poll_s=0.3, timeout_s=2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()



def _wait_answering(url: str, proc: subprocess.Popen, deadline: float, failure: str, *, poll_s: float,
                    timeout_s: float) -> None:
    """Wait until ``url`` answers; raise ``RuntimeError(failure)`` if ``proc`` ends or ``deadline`` (monotonic) passes."""
    while True:
        try:
            urllib.request.urlopen(url, timeout=timeout_s)
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(failure) from None
            time.sleep(poll_s)

@dataclass
class ServedWorkers:
    """``twin serve --workers N`` running: the proxy's URL, and each app process's port and process id (in order),
    and nginx's processes."""

    base: str
    ports: list[int]
    pids: list[int]
    proxy_pids: list[int]
    log: Path


@contextlib.contextmanager
def served_workers(db: str, *, workers: int = 2, args: tuple[str, ...] = (), timeout: float = 300.0,
                   log_dir: str | os.PathLike | None = None) -> Iterator[ServedWorkers]:
    """Serve a PostgreSQL store with ``twin serve --workers N`` (app processes behind Debian's nginx) until the
    block ends; ``args`` go to ``twin serve``. Yields once nginx and every app process answer."""
    import psutil

    port = free_ports(workers + 1)
    log_path = Path(log_dir or tempfile.gettempdir()) / f"twin-serve-workers-{port}.log"
    log = open(log_path, "w")
    group = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "serve", "--db", db, "--port", str(port),
                              "--workers", str(workers), *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    ports = [port + k for k in range(1, workers + 1)]
    try:
        deadline = time.monotonic() + timeout
        for p in [port, *ports]:
            _wait_answering(f"http://127.0.0.1:{p}/open311/v2/services.json", group, deadline,
                            f"twin serve --workers {workers} did not start: see {log_path}", poll_s=0.5, timeout_s=5)
        children = psutil.Process(group.pid).children()
        by_port = {int(c.cmdline()[c.cmdline().index("--port") + 1]): c.pid for c in children
                   if "--port" in c.cmdline()}
        proxy = [c for c in children if c.name() == "nginx"]
        yield ServedWorkers(base=f"http://127.0.0.1:{port}", ports=ports, pids=[by_port[p] for p in ports],
                            proxy_pids=[p.pid for c in proxy for p in (c, *c.children())], log=log_path)
    finally:
        group.send_signal(signal.SIGTERM)
        try:
            group.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(group.pid, signal.SIGKILL)  # the group it was started in: its app processes and nginx
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
    """Counts the bytes a page receives over its websockets (text frames as UTF-8)."""

    def __init__(self, page) -> None:
        self.received = 0
        self.frames = 0
        page.on("websocket", self._attach)

    def _attach(self, ws) -> None:
        ws.on("framereceived", self._frame)

    def _frame(self, payload) -> None:
        self.frames += 1
        if payload is not None:
            self.received += len(payload.encode()) if isinstance(payload, str) else len(payload)
