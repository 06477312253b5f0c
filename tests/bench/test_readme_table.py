"""The README's benchmark table is what bench/readme_table.py makes from the committed bench/results/*.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import readme_table
from bench.readme_table import NOT_MEASURED, END, START, MissingFigure, load_results, render, replace_section


def test_the_readme_table_agrees_with_the_committed_results():
    text = readme_table.README.read_text(encoding="utf-8")
    assert text == replace_section(text, render(load_results())), "run `make bench-table`"


def test_the_check_command_fails_when_the_readme_disagrees(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    text = readme_table.README.read_text(encoding="utf-8")
    readme.write_text(text.replace("| benchmark | ours |", "| benchmark | ours (edited by hand) |"), encoding="utf-8")
    monkeypatch.setattr(readme_table, "README", readme)
    assert readme_table.main(["--check"]) == 1
    assert readme_table.main([]) == 0  # rewritten from the results
    assert readme_table.main(["--check"]) == 0
    assert readme.read_text(encoding="utf-8") == text


def _results_without(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "results"
    shutil.copytree(readme_table.RESULTS, folder)
    for name in names:
        (folder / f"{name}.json").unlink(missing_ok=True)
    return folder


def test_a_missing_results_file_shows_as_not_measured(tmp_path):
    results = load_results(_results_without(tmp_path, "feed"))
    table = render(results)
    feed_rows = [line for line in table.splitlines() if line.endswith("`feed.json` |")]
    assert feed_rows and all(f"| {NOT_MEASURED} | {NOT_MEASURED} |" in line for line in feed_rows)
    assert f"- `feed.json`: {NOT_MEASURED}" in table
    assert f"- `grids.json`: {NOT_MEASURED}" not in table


def test_every_row_shows_a_figure_of_its_file(tmp_path):
    results = load_results()
    assert results, "no results committed in bench/results"
    for name, result in results.items():
        changed = json.loads(json.dumps(result))
        changed["measured"]["commit"] = "feedfacecafe0000"
        table = render({**results, name: changed})
        assert f"- `{name}.json`: commit feedfacecafe" in table
    ingest = json.loads(json.dumps(results["ingest"]))
    ingest["whole_command"]["ours_twin_ingest_s"] = 98.7
    row = next(line for line in render({**results, "ingest": ingest}).splitlines() if "whole command" in line)
    assert "98.7 s" in row


def test_a_file_without_a_field_of_its_row_is_named_with_the_field():
    results = load_results()
    grids = json.loads(json.dumps(results["grids"]))
    del grids["cold"]
    with pytest.raises(MissingFigure, match=r"bench/results/grids\.json has no field 'cold\.ours\.process_s'"):
        render({**results, "grids": grids})


def test_the_markers_must_be_there_once():
    with pytest.raises(ValueError, match="bench:start"):
        replace_section(f"# x\n{START}\n{START}\n{END}\n", "table")
