"""The ``twin`` command line as a user runs it: JSON on stdout, progress on stderr, exit 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import BUBENEC, ROOT, file_digest


def twin(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_ingest_prints_one_json_object_and_progress_on_stderr(tmp_path):
    db = tmp_path / "p.duckdb"
    done = twin("ingest", "footprints", str(BUBENEC), "--db", str(db), "--default-height", "9", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["ok"] and summary["buildings"] == 144 and summary["inserted"] == 144
    assert set(summary["timings_s"]) == {"transform", "clean", "mesh", "store"}
    assert "stage" in done.stderr  # the progress bar


def test_bad_input_exits_2_names_the_file_and_changes_nothing(tmp_path):
    db = tmp_path / "p.duckdb"
    assert twin("ingest", "footprints", str(BUBENEC), "--db", str(db), "--default-height", "9").returncode == 0
    digest = file_digest(db)
    done = twin("ingest", "footprints", str(BUBENEC), "--db", str(db), "--json")
    assert done.returncode == 2
    assert str(BUBENEC) in done.stderr and "--default-height" in done.stderr
    failure = json.loads(done.stdout)
    assert set(failure) == {"ok", "error", "error_type"}
    assert failure["ok"] is False and failure["error_type"] == "InputError"
    assert str(BUBENEC) in failure["error"] and "--default-height" in failure["error"], "the JSON names file and fix"
    missing = twin("ingest", "footprints", str(tmp_path / "nope.geojson"), "--db", str(db))
    assert missing.returncode == 2 and "nope.geojson: no such file" in missing.stderr
    assert file_digest(db) == digest


def test_unknown_layer_and_format_are_explained(tmp_path):
    db = tmp_path / "p.duckdb"
    wrong_layer = twin("ingest", "footprints", str(BUBENEC), "--db", str(db), "--layer", "roofs", "--default-height", "9")
    assert wrong_layer.returncode == 2 and "roofs" in wrong_layer.stderr
    text = tmp_path / "b.csv"
    text.write_text("a,b\n")
    wrong_format = twin("ingest", "footprints", str(text), "--db", str(db))
    assert wrong_format.returncode == 2 and ".geojson" in wrong_format.stderr
    assert not db.exists()


def test_demo_builds_a_store_and_will_not_overwrite_one_without_force(tmp_path):
    db = tmp_path / "demo.duckdb"
    done = twin("demo", "--db", str(db), "--scale", "small", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["buildings"] == 500 and summary["residents"] > 40_000
    assert set(summary["grid_levels"]) == {"street", "community", "grid", "micro"}
    digest = file_digest(db)
    again = twin("demo", "--db", str(db), "--scale", "small")
    assert again.returncode == 2 and "--force" in again.stderr
    assert file_digest(db) == digest
    assert twin("demo", "--db", str(db), "--scale", "tiny").returncode == 2  # argparse lists the choices


def test_grids_go_out_and_back_and_a_broken_file_changes_nothing(demo_copy, tmp_path):
    out = tmp_path / "micro.gpkg"
    done = twin("grids", "export", str(out), "--db", str(demo_copy), "--level", "micro", "--json")
    assert done.returncode == 0, done.stderr
    exported = json.loads(done.stdout)
    assert exported["grids"] == exported["levels"]["micro"] > 100
    same = twin("grids", "import", str(out), "--db", str(demo_copy), "--actor", "planner", "--reason", "check",
                "--json")
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["changed"] == [], "the same grids again change nothing"

    import geopandas as gpd
    import shapely

    grids = gpd.read_file(out)
    first = grids.index[0]
    grids.loc[first, "geometry"] = shapely.affinity.translate(grids.geometry[first], xoff=25.0)  # onto a neighbour
    broken = tmp_path / "broken.geojson"
    grids.to_file(broken, driver="GeoJSON")
    digest = file_digest(demo_copy)
    refused = twin("grids", "import", str(broken), "--db", str(demo_copy), "--actor", "planner", "--reason", "x")
    assert refused.returncode == 2
    assert str(broken) in refused.stderr and grids["grid_id"][first] in refused.stderr
    assert file_digest(demo_copy) == digest


def test_copies_belong_to_the_city(tmp_path):
    db = tmp_path / "demo.duckdb"
    done = twin("demo", "--db", str(db), "--scale", "small", "--copies", "4")
    assert done.returncode == 2 and "--scale city" in done.stderr
    assert not db.exists()
