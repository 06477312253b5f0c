"""3D Tiles export benchmark (``twin bench tiles --json``) on a copy of the demo district.

- ``full``: ``twin export tiles`` into an empty folder, the whole command from process start to exit, and the
  export itself as the command's summary reports it (``seconds``: reading the store, the geodetic chain,
  the quadtree, every GLB built and written);
- ``unchanged``: the same command again on the folder it wrote: every tile is built and hashed, none written;
- ``one_building``: after one building's height changes in the store (as an ingest would change it), the
  command rewrites the tiles that hold it.

Every figure is the median of 3 runs (1 with ``--quick``). The goal (issue 16): the 12,813-building
district exports in at most 10 s on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import median_run, store_copy, write_result  # noqa: E402
from twin.store.store import open_for_command  # noqa: E402

DEFAULT_DB = ROOT / "data" / "demo.duckdb"


def _command(db: Path, out: Path) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "export", "tiles", str(out), "--db", str(db),
                           "--json"], capture_output=True, text=True, cwd=ROOT, check=True)
    summary = json.loads(done.stdout)
    return {"command_s": time.perf_counter() - started, "export_s": summary["seconds"], "tiles": summary["tiles"],
            "features": summary["features"], "bytes": summary["bytes"], "written": len(summary["written"])}


def _rounded(run: dict) -> dict:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in run.items()}


def run(*, db: str | None = None, quick: bool = False) -> dict:
    """Run the benchmark on a copy of ``db`` (default the full demo store); ``quick`` takes 1 run instead of 3."""
    runs = 1 if quick else 3
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="twin-bench-tiles-") as tmp:
        tmp = Path(tmp)
        copy = store_copy(db or DEFAULT_DB, into=tmp / "store")
        full, unchanged, one = [], [], []
        for i in range(runs):
            out = tmp / f"tiles{i}"
            full.append(_command(copy, out))
            unchanged.append(_command(copy, out))
            with open_for_command(copy, create=False) as store:
                store.con.execute("UPDATE buildings SET height = height + 1 WHERE building_id = "
                                  "(SELECT min(building_id) FROM buildings)")
            one.append(_command(copy, out))
    result = {
        "benchmark": "tiles",
        "cores": os.cpu_count(),
        "runs": runs,
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "full": _rounded(median_run(full, "command_s", runs_key="runs_s")),
        "unchanged": _rounded(median_run(unchanged, "command_s", runs_key="runs_s")),
        "one_building": _rounded(median_run(one, "command_s", runs_key="runs_s")),
        "goal_s": 10.0,
    }
    return write_result("tiles", result, quick=quick)


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
