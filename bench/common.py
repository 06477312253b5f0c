"""What every benchmark shares: medians over repeated runs, a copy of the store to work on, and
writing its JSON result with where and when it was measured."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out"  # pictures and scratch files (not committed)
RESULTS = Path(__file__).resolve().parent / "results"  # committed: the README's figures come from here


def median_run(results: list[dict], key: str, *, runs_key: str = "runs") -> dict:
    """The run with the median ``key``, with every run's ``key`` kept under ``runs_key``.

    This machine's timings wander by 10-20 %, so each figure is the median of a few runs.
    """
    ordered = sorted(results, key=lambda r: r[key])
    return {**ordered[len(ordered) // 2], runs_key: [round(r[key], 3) for r in results]}


def store_copy(db: str | Path, *, into: str | Path | None = None) -> Path:
    """Copy a DuckDB store (and its WAL, if any) to a scratch folder and return the copy's path.

    Benchmarks never touch the user's store: they write, take locks and checkpoint.
    """
    db = Path(db)
    folder = Path(into) if into is not None else Path(tempfile.mkdtemp(prefix="twin-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / db.name
    shutil.copyfile(db, copy)
    wal = db.with_name(db.name + ".wal")
    if wal.exists():
        shutil.copyfile(wal, copy.with_name(copy.name + ".wal"))
    return copy


def provenance(*, webgl_renderer: str | None = None) -> dict:
    """Where and when a result was measured: commit (with ``+dirty`` for uncommitted changes outside
    ``bench/results``, ``bench/out`` and README.md), date, cores."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""
    commit = git("rev-parse", "HEAD") or "unknown"
    # the results of the benches run before this one, their pictures, and the README's table are not code
    if git("status", "--porcelain", "--untracked-files=no", "--", ".", f":!{RESULTS.relative_to(ROOT)}",
           f":!{OUT.relative_to(ROOT)}", ":!README.md"):
        commit += "+dirty"
    return {"commit": commit, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "cores": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
            "webgl_renderer": webgl_renderer}


def write_result(name: str, result: dict, *, webgl_renderer: str | None = None, quick: bool | None = None) -> dict:
    """Save ``bench/results/<name>.json`` with its provenance under ``"measured"`` and return the result.

    ``quick``: whether the bench ran with ``--quick`` (smaller sizes, fewer runs), said under the README's table.
    """
    RESULTS.mkdir(exist_ok=True)
    result = {**result, "measured": {**provenance(webgl_renderer=webgl_renderer), "quick": quick}}
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return result


# Run in a page: the WebGL renderer the browser draws with (SwiftShader here), for a result's provenance.
WEBGL_RENDERER_JS = """() => {
  const canvas = document.createElement("canvas");
  const gl = canvas.getContext("webgl2") || canvas.getContext("webgl");
  if (!gl) return null;
  const info = gl.getExtension("WEBGL_debug_renderer_info");
  return gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER);
}"""


def webgl_renderer(page) -> str | None:
    """The WebGL renderer of a Playwright ``page`` (None without WebGL)."""
    return page.evaluate(WEBGL_RENDERER_JS)
