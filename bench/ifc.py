"""IFC geometry benchmark (``twin bench ifc --json``).

In one run, for the KIT FZK-Haus (IFC4) and the georeferenced Duplex (IFC2X3):

- ours: ``ingest.ifc.model_elements`` (ifcopenshell's geometry iterator on all
  cores, plus each element's storey and property sets), and the same on one
  thread, to show what the cores add;
- baseline: a single-process loop of ``ifcopenshell.geom.create_shape`` over
  ``products_with_geometry`` with the same settings (world coordinates),
  catching each product's failure;
- the whole ``ingest_ifc`` into a new temporary store, with the store's
  opening (DuckDB loading its spatial extension) reported apart.

Every figure is the median of 3 runs (1 with ``--quick``). The file is parsed
once per file, outside the timings: both sides start from the open model.
The load average before and after is recorded: on a shared machine the
timings wander with it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ingest.ifc import ingest_ifc, model_elements, open_ifc, products_with_geometry  # noqa: E402
from twin.store.store import open_for_command  # noqa: E402
from bench.common import median_run, write_result  # noqa: E402

IFC = ROOT / "tests" / "data" / "ifc"
FILES = {
    "fzk_haus": IFC / "fzk-haus-ifc4" / "AC20-FZK-Haus.ifc",
    "duplex": IFC / "duplex-georef-luxembourg-ifc2x3" / "Duplex_A_20110907_georeferenced.ifc",
}


def time_ours(model, threads: int | None = None) -> dict:
    started = time.perf_counter()
    elements, _, triangles, _, failed = model_elements(model, threads=threads)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "elements": len(elements), "triangles": int(len(triangles)), "failed": len(failed)}


def time_baseline(model) -> dict:
    import ifcopenshell.geom

    settings = ifcopenshell.geom.settings()
    settings.set("use-world-coords", True)
    started = time.perf_counter()
    products = products_with_geometry(model)
    elements = triangles = failed = 0
    for product in products:
        try:
            shape = ifcopenshell.geom.create_shape(settings, product)
        except Exception:  # ifcopenshell raises RuntimeError, sometimes others, per bad product
            failed += 1
            continue
        n = len(shape.geometry.faces) // 3
        if n:
            elements += 1
            triangles += n
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "elements": elements, "triangles": triangles, "failed": failed}


def time_ingest(path: Path, work: Path) -> dict:
    """``ingest_ifc`` (opening and parsing the file included) into a new store."""
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open_for_command(work / "ifc.duckdb") as store:
        opened = time.perf_counter()
        summary = ingest_ifc(store, path)
        ingested = time.perf_counter()
    return {"seconds": time.perf_counter() - started, "open_s": opened - started, "ingest_s": ingested - opened,
            "stages_s": summary["timings_s"], "elements": summary["elements"], "triangles": summary["triangles"]}


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else float("inf")


def bench_file(path: Path, *, runs: int, work: Path) -> dict:
    started = time.perf_counter()
    model = open_ifc(path)
    parse_s = time.perf_counter() - started
    # Interleave ours and the baseline so that drift in the machine's speed hits both alike.
    ours_runs, one_runs, base_runs = [], [], []
    for _ in range(runs):
        ours_runs.append(time_ours(model))
        one_runs.append(time_ours(model, threads=1))
        base_runs.append(time_baseline(model))
    ours, one, base = (median_run(r, "seconds", runs_key="runs_s") for r in (ours_runs, one_runs, base_runs))
    ingest = median_run([time_ingest(path, work / f"run{k}") for k in range(runs)], "ingest_s",
                        runs_key="runs_s")
    return {
        "file": str(path.relative_to(ROOT)),
        "schema": model.schema,
        "products_with_geometry": len(products_with_geometry(model)),
        "parse_s": round(parse_s, 3),
        "ours_model_elements": {
            "elements": ours["elements"], "triangles": ours["triangles"], "failed": ours["failed"],
            "seconds": round(ours["seconds"], 3), "elements_per_s": _rate(ours["elements"], ours["seconds"]),
            "runs_s": ours["runs_s"]},
        "ours_model_elements_1_thread": {
            "seconds": round(one["seconds"], 3), "elements_per_s": _rate(one["elements"], one["seconds"]),
            "runs_s": one["runs_s"]},
        "baseline_create_shape_loop": {
            "elements": base["elements"], "triangles": base["triangles"], "failed": base["failed"],
            "seconds": round(base["seconds"], 3), "elements_per_s": _rate(base["elements"], base["seconds"]),
            "runs_s": base["runs_s"]},
        "speedup": round(base["seconds"] / ours["seconds"], 2),
        "speedup_1_thread": round(base["seconds"] / one["seconds"], 2),
        "ingest_ifc": {
            "seconds": round(ingest["ingest_s"], 3), "store_open_s": round(ingest["open_s"], 3),
            "command_s": round(ingest["seconds"], 3), "runs_s": ingest["runs_s"],
            "stages_s": ingest["stages_s"]},
    }


def run(*, db: str | None = None, quick: bool = False) -> dict:
    """Run the benchmark (``db`` is unused: every store is temporary); ``quick`` takes 1 run instead of 3."""
    runs = 1 if quick else 3
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="twin-bench-ifc-") as tmp:
        files = {name: bench_file(path, runs=runs, work=Path(tmp) / name) for name, path in FILES.items()}
    result = {
        "benchmark": "ifc",
        "cores": multiprocessing.cpu_count(),
        "runs": runs,
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "files": files,
        "speedup_median": round(float(np.median([f["speedup"] for f in files.values()])), 2),
    }
    return write_result("ifc", result, quick=quick)


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
