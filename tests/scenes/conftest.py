"""The screen tests read English labels: in this process the UI speaks English unless a test says otherwise
(served apps follow their users' language, English for bench.browser's users)."""

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.browser import served
from scenes.i18n import DEFAULT_LANG, use

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


@pytest.fixture(autouse=True)
def english_ui():
    use("en")
    yield
    use(DEFAULT_LANG)


@contextlib.contextmanager
def served_copy(small_demo: Path, tmp_path_factory, name: str, prepare: Callable[[Path], dict]) -> Iterator[dict]:
    """A copy of the small demo in its own folder ``name``, ``prepare``d, then served: what ``prepare`` found, with
    the served app's ``url``, its ``root`` and ``port``."""
    db = tmp_path_factory.mktemp(name) / "demo.duckdb"
    shutil.copy(small_demo, db)
    found = prepare(db)
    with served(db) as url:
        yield {**found, "url": url, "root": url.rsplit("/", 1)[0], "port": int(url.split(":")[2].split("/")[0])}


@contextlib.contextmanager
def tornado_serving(routes: list[tuple], *, cookie_secret: str = "test") -> Iterator[str]:
    """``routes`` served by a Tornado application of their own on a thread, as the app serves them: yields the
    base URL (``http://127.0.0.1:PORT``)."""
    import asyncio
    import threading

    import tornado.web

    from bench.browser import free_port

    port, started, loop = free_port(), threading.Event(), {}

    def serve() -> None:
        loop["loop"] = asyncio.new_event_loop()
        asyncio.set_event_loop(loop["loop"])
        tornado.web.Application(routes, cookie_secret=cookie_secret).listen(port, address="127.0.0.1")
        started.set()
        loop["loop"].run_forever()

    threading.Thread(target=serve, daemon=True).start()
    assert started.wait(10), "the Tornado application did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop["loop"].call_soon_threadsafe(loop["loop"].stop)
