"""What every benchmark shares: medians over repeated runs, and writing its JSON result."""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def median_run(results: list[dict], key: str, *, runs_key: str = "runs") -> dict:
    """The run with the median ``key``, with every run's ``key`` kept under ``runs_key``.

    This machine's timings wander by 10-20 %, so each figure is the median of a few runs.
    """
    ordered = sorted(results, key=lambda r: r[key])
    return {**ordered[len(ordered) // 2], runs_key: [round(r[key], 3) for r in results]}


def write_result(name: str, result: dict) -> dict:
    """Save ``bench/out/<name>.json`` and return the result."""
    OUT.mkdir(exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return result
