"""Footprint ingest benchmark (``twin bench ingest --json``).

In one run, on the full demo district's footprints written to a GeoParquet file:

- ours: the footprint ingest (read the file, transform, clean, mesh, write
  the store) into a new store, with the store's opening (DuckDB loading its
  spatial extension, a fixed 0.2-0.3 s) reported apart, and the mesh step alone;
- baseline: a plain loop of ``trimesh.creation.extrude_polygon`` over the
  same cleaned footprints (meshing only, no store);
- whole commands, process start to exit: ``twin ingest footprints`` into a new
  store, against a Python process (:data:`BASELINE_PROCESS`) that imports
  geopandas and trimesh, reads the same file, runs the same trimesh loop and
  writes the meshes (vertices and faces) to one ``.npz`` file;
- scale: 1,000,000 footprints (the demo tiled) through the same command in a
  child process, with its wall time and peak resident memory.

Every timed run starts with a full garbage collection (outside its timing),
so no run pays for the garbage of the one before.

Goals: at least 20x faster than the baseline (in-process); 1,000,000 footprints
in at most 60 s with a peak of at most 4 GB.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
import trimesh

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from data.demo import generate_district  # noqa: E402
from ingest.footprints import ingest_footprints, read_footprints  # noqa: E402
from twin.geo.footprints import prepare_footprints  # noqa: E402
from twin.geo.mesh import extrude_footprints  # noqa: E402
from twin.store.store import open_for_command  # noqa: E402
from bench.common import median_run, write_result  # noqa: E402

GOAL_SPEEDUP = 20.0
GOAL_MILLION_S = 60.0
GOAL_MILLION_PEAK_GB = 4.0
# The whole-process baseline: ``python -c BASELINE_PROCESS FOOTPRINTS OUT.npz``.
BASELINE_PROCESS = """
import sys
import geopandas as gpd
import numpy as np
import trimesh

footprints = gpd.read_parquet(sys.argv[1])
meshes = [trimesh.creation.extrude_polygon(p, h) for p, h in zip(footprints.geometry, footprints["height"])]
offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
np.savez(sys.argv[2], vertices=np.concatenate([m.vertices for m in meshes]),
         faces=np.concatenate([m.faces + o for m, o in zip(meshes, offsets)]))
"""


def demo_footprints(path: Path) -> gpd.GeoDataFrame:
    """The full demo district's footprints, as a file a user would ingest."""
    buildings = generate_district(scale="full").buildings[["source_id", "height", "floors", "geometry"]]
    buildings.to_parquet(path)
    return buildings


def tiled(buildings: gpd.GeoDataFrame, count: int) -> gpd.GeoDataFrame:
    """``count`` footprints: copies of the district shifted on a square lattice."""
    xmin, ymin, xmax, ymax = buildings.total_bounds
    pitch = max(xmax - xmin, ymax - ymin) + 200.0
    copies = int(np.ceil(count / len(buildings)))
    side = int(np.ceil(np.sqrt(copies)))
    parts = []
    for k in range(copies):
        dx, dy = (k % side - (side - 1) / 2) * pitch, (k // side - (side - 1) / 2) * pitch
        moved = buildings.copy()
        moved["geometry"] = shapely.transform(buildings.geometry.values, lambda xy, dx=dx, dy=dy: xy + [dx, dy])
        moved["source_id"] = buildings["source_id"] + f"-t{k}"
        parts.append(moved)
    return gpd.GeoDataFrame(gpd.pd.concat(parts, ignore_index=True).head(count), crs=buildings.crs)


def time_ours(path: Path, work: Path) -> dict:
    """Ingest into a new store; the store's opening (which loads the spatial extension) is timed apart."""
    work.mkdir(parents=True, exist_ok=True)
    gc.collect()  # each timed run starts without garbage left by the one before
    started = time.perf_counter()
    with open_for_command(work / "ours.duckdb") as store:
        opened = time.perf_counter()
        features = read_footprints(path)
        summary = ingest_footprints(store, features, source="bench", where=str(path), id_attr="source_id",
                                    crs="EPSG:4547")
        ingested = time.perf_counter()
    return {"seconds": time.perf_counter() - started, "open_s": opened - started, "ingest_s": ingested - opened,
            "buildings": summary["buildings"], "triangles": summary["triangles"], "stages_s": summary["timings_s"]}


def time_baseline(footprints: gpd.GeoDataFrame) -> dict:
    polygons, heights = footprints.geometry.values, footprints["height"].to_numpy()
    gc.collect()
    started = time.perf_counter()
    triangles = sum(len(trimesh.creation.extrude_polygon(p, h).faces) for p, h in zip(polygons, heights))
    return {"seconds": time.perf_counter() - started, "buildings": len(polygons), "triangles": triangles}


def time_mesh_only(footprints: gpd.GeoDataFrame) -> float:
    gc.collect()
    started = time.perf_counter()
    extrude_footprints(footprints.geometry.values, base_z=footprints["base_z"].to_numpy(),
                       height=footprints["height"].to_numpy(), origin=(0.0, 0.0, 0.0))
    return time.perf_counter() - started


def time_process(command: list[str], what: str) -> tuple[float, float, str]:
    """Run ``command`` in a fresh process; its wall time from start to exit (s), its own peak memory (GB), stdout."""
    gc.collect()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=err, text=True, cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not the maximum over all children
        seconds = time.perf_counter() - started
        out.seek(0), err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{what} failed: {err.read()[-2000:]}")
        return seconds, usage.ru_maxrss / 1024**2, out.read()


def ingest_command(path: Path, db: Path) -> list[str]:
    """``twin ingest footprints`` of ``path`` into a new store ``db``."""
    return [sys.executable, str(ROOT / "cli.py"), "ingest", "footprints", str(path), "--db", str(db),
            "--id-attr", "source_id", "--crs", "EPSG:4547", "--json"]


def time_commands(path: Path, work: Path, runs: int) -> dict:
    """Whole commands, interleaved: ``twin ingest footprints`` and the baseline process, start to exit."""
    ours, baseline = [], []
    for k in range(runs):
        ours.append({"seconds": time_process(ingest_command(path, work / f"command{k}.duckdb"), "twin ingest")[0]})
        baseline.append({"seconds": time_process([sys.executable, "-c", BASELINE_PROCESS, str(path),
                                                  str(work / f"baseline{k}.npz")], "the baseline process")[0]})
    ours, baseline = median_run(ours, "seconds"), median_run(baseline, "seconds")
    return {"ours_twin_ingest_s": round(ours["seconds"], 3), "ours_runs_s": ours["runs"],
            "baseline_process_s": round(baseline["seconds"], 3), "baseline_runs_s": baseline["runs"],
            "speedup": round(baseline["seconds"] / ours["seconds"], 1)}


def time_million(buildings: gpd.GeoDataFrame, count: int, work: Path) -> dict:
    path = work / "million.parquet"
    tiled(buildings, count).to_parquet(path)
    db = work / "million.duckdb"
    seconds, peak_gb, stdout = time_process(ingest_command(path, db), f"the {count:,}-footprint ingest")
    summary = json.loads(stdout)
    return {"footprints": count, "buildings": summary["buildings"], "seconds": seconds, "peak_rss_gb": peak_gb,
            "stages_s": summary["timings_s"], "store_mb": db.stat().st_size / 1024**2}


def run(*, db: str | None = None, quick: bool = False) -> dict:
    """Run the benchmark; ``quick`` shrinks the scale test to 100,000 footprints."""
    with tempfile.TemporaryDirectory(prefix="twin-bench-") as tmp:
        work = Path(tmp)
        path = work / "demo_footprints.parquet"
        raw = demo_footprints(path)
        cleaned, _ = prepare_footprints(raw, where="demo", id_attr="source_id", levels_attr="floors")
        runs = 1 if quick else 3  # medians: this machine's timings wander by 10-20 %
        ours = median_run([time_ours(path, work / f"run{k}") for k in range(runs)], "ingest_s")
        mesh_s = float(np.median([time_mesh_only(cleaned) for _ in range(runs)]))
        baseline = median_run([time_baseline(cleaned) for _ in range(runs)], "seconds")
        commands = time_commands(path, work, runs)
        million = time_million(raw, 100_000 if quick else 1_000_000, work)
    speedup = baseline["seconds"] / ours["ingest_s"]
    result = {
        "benchmark": "ingest",
        "buildings": ours["buildings"],
        "ours_command_s": round(ours["seconds"], 3),
        "ours_store_open_s": round(ours["open_s"], 3),
        "ours_ingest_s": round(ours["ingest_s"], 3),
        "ours_ingest_runs_s": ours["runs"],
        "ours_stages_s": ours["stages_s"],
        "ours_mesh_only_s": round(mesh_s, 3),
        "baseline_trimesh_extrude_loop_s": round(baseline["seconds"], 3),
        "baseline_runs_s": baseline["runs"],
        "speedup_ingest": round(speedup, 1),
        "speedup_with_store_open": round(baseline["seconds"] / ours["seconds"], 1),
        "speedup_mesh_only": round(baseline["seconds"] / mesh_s, 1),
        "whole_command": {"what": "process start to exit: `twin ingest footprints` into a new store against a "
                                  "Python process reading the file, running the trimesh loop and saving the meshes",
                          **commands},
        "scale": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in million.items()},
        "goals": {
            "speedup_at_least": GOAL_SPEEDUP, "speedup_met": speedup >= GOAL_SPEEDUP,
            "million_s_at_most": GOAL_MILLION_S, "million_peak_gb_at_most": GOAL_MILLION_PEAK_GB,
            "million_met": (not quick and million["seconds"] <= GOAL_MILLION_S
                            and million["peak_rss_gb"] <= GOAL_MILLION_PEAK_GB),
        },
    }
    return write_result("ingest", result, quick=quick)


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
