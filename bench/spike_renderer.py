"""The renderer spike of issue 16: three.js + ``3d-tiles-renderer`` on an exported tileset, measured as the 3D view is.

Run: ``python bench/spike_renderer.py TILESET_DIR --json``. Bundles ``bench/spike_renderer/entry.js`` with esbuild
(npm packages pinned in that folder, installed by ``npm ci`` there: nothing is fetched at run time), serves the page,
the bundle and the tileset from one local tornado server, and times the first frame as ``bench/view.py`` does
(screenshots of the canvas every 0.1 s until it is drawn), with the bytes the page received by then. The vtk.js
side of the spike is the app's own tiled path, measured by ``twin bench city``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.browser import chromium, free_port  # noqa: E402
from bench.view import DRAWN_SHARE, POLL_S, VIEWPORT, drawn_share, screenshooter  # noqa: E402

SPIKE = Path(__file__).resolve().parent / "spike_renderer"
PAGE = b"<!doctype html><html><body style='margin:0;overflow:hidden'><script type=module src=bundle.js></script>"


def bundle(out: Path) -> Path:
    """Install the pinned packages (once) and bundle the page's script with esbuild; the bundle's path."""
    if not (SPIKE / "node_modules" / ".package-lock.json").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=SPIKE, check=True)
    target = out / "bundle.js"
    subprocess.run([str(SPIKE / "node_modules" / ".bin" / "esbuild"), str(SPIKE / "entry.js"), "--bundle", "--minify",
                    "--format=esm", f"--outfile={target}"], check=True, capture_output=True)
    return target


def serve(tileset: Path, script: Path) -> tuple[str, object]:
    """Serve the page, the bundle and the tileset folder on a free port in a thread; the URL and the loop."""
    import asyncio

    import tornado.web

    class Page(tornado.web.RequestHandler):
        def get(self) -> None:
            self.set_header("Content-Type", "text/html")
            self.write(PAGE)

    port, started = free_port(), threading.Event()
    state = {}

    def run() -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        app = tornado.web.Application([
            (r"/", Page),
            (r"/(bundle\.js)", tornado.web.StaticFileHandler, {"path": str(script.parent)}),
            # under a folder: the loader joins a tile's uri to the tileset's folder with a slash of its own
            (r"/tileset/(.*)", tornado.web.StaticFileHandler, {"path": str(tileset)})])
        app.listen(port, address="127.0.0.1")
        state["loop"] = asyncio.get_event_loop()
        started.set()
        state["loop"].run_forever()

    threading.Thread(target=run, daemon=True).start()
    started.wait(10)
    return f"http://127.0.0.1:{port}/", state["loop"]


def first_frame(browser, url: str, *, timeout_s: float = 180.0) -> dict:
    """Navigate; screenshot the page every 0.1 s until it is drawn; ms, bytes received by then, tiles loaded."""
    page = browser.new_page(viewport=VIEWPORT)
    received = []
    page.on("requestfinished", lambda request: received.append(request.sizes()["responseBodySize"]))
    take = screenshooter(page, {"x": 0, "y": 0, **VIEWPORT}, how="cdp")
    started = time.perf_counter()
    page.goto(url, wait_until="commit")
    while True:
        asked = time.perf_counter()
        shot = take()
        share = drawn_share(shot) if shot else 0.0
        if share >= DRAWN_SHARE:
            break
        if asked - started > timeout_s:
            raise RuntimeError(f"{url}: nothing drawn within {timeout_s:.0f} s")
        time.sleep(max(0.0, POLL_S - (time.perf_counter() - asked)))
    result = {"first_frame_ms": round((time.perf_counter() - started) * 1000), "bytes": sum(received),
              "requests": len(received), "drawn_share": round(share, 3),
              "tiles_loaded": page.evaluate("window.twinTilesLoaded || 0"),
              "marks_ms": {k: round(v) for k, v in (page.evaluate("window.twinMarks") or {}).items()}}
    page.close()
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tileset", type=Path, help="a folder written by `twin export tiles`")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    out = ROOT / "bench" / "out" / "spike_renderer"
    out.mkdir(parents=True, exist_ok=True)
    script = bundle(out)
    url, loop = serve(args.tileset, script)
    with chromium() as browser:
        runs = [first_frame(browser, url) for _ in range(args.runs)]
    loop.call_soon_threadsafe(loop.stop)
    runs.sort(key=lambda r: r["first_frame_ms"])
    result = {"renderer": "three.js + 3d-tiles-renderer", "bundle_bytes": script.stat().st_size,
              "median": runs[len(runs) // 2], "runs_ms": [r["first_frame_ms"] for r in runs]}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
