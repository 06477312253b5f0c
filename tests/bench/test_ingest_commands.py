"""The ingest bench's whole-command comparison: both processes do the whole job on the same file."""

from __future__ import annotations

import numpy as np

from bench.ingest import time_baseline, time_commands
from data.demo import generate_district
from twin.store.store import Store


def test_both_whole_commands_mesh_every_footprint(tmp_path):
    footprints = generate_district(scale="small").buildings[["source_id", "height", "floors", "geometry"]]
    path = tmp_path / "footprints.parquet"
    footprints.to_parquet(path)

    timed = time_commands(path, tmp_path, 1)

    assert timed["ours_twin_ingest_s"] > 0 and timed["baseline_process_s"] > 0
    with Store(tmp_path / "command0.duckdb", read_only=True) as store:
        assert store.con.execute("SELECT count(*) FROM buildings").fetchone()[0] == len(footprints)
    meshes = np.load(tmp_path / "baseline0.npz")
    assert len(meshes["faces"]) == time_baseline(footprints)["triangles"]
    assert meshes["faces"].max() == len(meshes["vertices"]) - 1
