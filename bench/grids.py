"""Grid editor benchmark (``twin bench grids --db data/demo.duckdb --json``).

On a copy of the store (the full demo district: 12,813 buildings, 1.127
million residents), with the session's assets read once (timed apart):

- ours, one edit: a vertex shared by two residential micro-grids moved 3 m;
  the reassignment (what moves, before → after per affected grid) and the
  rule check of the edited grid's micro-grids, timed together and apart;
- ours, a merge of two of those micro-grids (reassignment only);
- ours, a full re-partition: the micro-grid proposal for one community
  (every residential micro-grid replaced), reassigned at once;
- baseline, in the same run: a plain geopandas ``sjoin`` of all buildings
  (label points), cameras and open cases with all micro-grids after the edit,
  and the residents joined to their buildings and counted per grid
  (:func:`twin.grids.reassign.figures_by_sjoin`); its figures are checked against ours;
- the proposal for every community of the district: the share of proposed
  micro-grids within 70-80 households and their Polsby-Popper compactness;
- the save of the one edit (new versions, moves, one transaction), for the record.

Medians of five runs (three for the baseline). Goals: at most 1 s after one
edit; at least 5x faster than the full sjoin.
"""

from __future__ import annotations

import gc
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import write_result  # noqa: E402
from twin.grids.gridedit import merge_grids, move_vertex  # noqa: E402
from twin.grids.gridversions import check_edit, current_grids, save_partition  # noqa: E402
from twin.errors import GridEditError  # noqa: E402
from twin.grids.partition import Proposal, propose_micro_grids  # noqa: E402
from twin.grids.reassign import FIGURES, figures_by_sjoin, load_assets, reassign  # noqa: E402
from twin.store.store import Store, open_for_command  # noqa: E402

GOAL_EDIT_S = 1.0
GOAL_SPEEDUP = 5.0
DEFAULT_DB = ROOT / "data" / "demo.duckdb"


def _timed(fn, runs: int) -> tuple[float, list[float], object]:
    times, out = [], None
    for _ in range(runs):
        gc.collect()
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times)), [round(t, 4) for t in times], out


def one_edit(con, micro: gpd.GeoDataFrame, assets) -> tuple[str, object, dict]:
    """A vertex shared by residential micro-grids (not on their parent's outline), moved 3 m so that
    every rule still holds."""
    res = micro[micro["kind"] == "residential"]
    for parent, sib in res.groupby("parent_id"):
        shapes = micro[micro["parent_id"] == parent].geometry
        outline = current_grids(con, grid_ids=[parent]).geometry.iloc[0].boundary
        for g in sib.index:
            for xy in shapely.get_coordinates(shapes[g])[:-1]:
                if outline.distance(shapely.Point(xy)) < 1.0:
                    continue
                for step in ([3.0, 0.0], [-3.0, 0.0], [0.0, 3.0], [0.0, -3.0]):
                    try:
                        after = move_vertex(shapes, at=xy, to=xy + step)
                    except Exception:
                        continue
                    changed = {k: after[k] for k in after.index if not after[k].equals(shapes[k])}
                    if len(changed) >= 2 and not any(v.severity == "error"
                                                     for v in check_edit(con, parent, after, assets=assets)):
                        return parent, after, changed
    raise RuntimeError("no shared vertex to move in the store")


def district_proposal(con, assets, *, limit: int | None = None) -> dict:
    """The micro-grid proposal for every community (the first ``limit`` with ``quick``), summed up."""
    communities = [r[0] for r in con.execute("SELECT grid_id FROM grids WHERE level = 'community' "
                                             "AND valid_to IS NULL ORDER BY grid_id").fetchall()][:limit]
    started = time.perf_counter()
    proposed, current = [], []
    for c in communities:
        try:
            p = propose_micro_grids(con, c, assets=assets)
        except GridEditError:  # no residential micro-grid there
            continue
        proposed.append(p.proposed)
        current.append(p.current)
    seconds = time.perf_counter() - started
    whole = Proposal("district", {}, pd.concat(proposed, ignore_index=True), pd.concat(current, ignore_index=True))
    return {"communities": len(proposed), "seconds": round(seconds, 1), **whole.summary()}


def run(*, db: str | None = None, quick: bool = False) -> dict:
    """Run the benchmark on a copy of ``db`` (default ``data/demo.duckdb``); ``quick`` runs each timing once."""
    source = Path(db) if db else DEFAULT_DB
    runs = 1 if quick else 5
    with tempfile.TemporaryDirectory(prefix="twin-bench-grids-") as tmp:
        path = Path(tmp) / "grids.duckdb"
        shutil.copy(source, path)
        Store(path).close()  # upgrade an older store in place (the copy only)
        with Store(path, read_only=True) as store:
            con = store.con
            load_s, _, assets = _timed(lambda: load_assets(con), 1)
            micro = current_grids(con, level="micro")
            residents = con.execute("SELECT building_id, household_id FROM residents").df()
            parent, after, changed = one_edit(con, micro, assets)
            edit_s, edit_runs, result = _timed(lambda: reassign(assets, changed), runs)
            rules_s, rules_runs, violations = _timed(lambda: check_edit(con, parent, after, assets=assets), runs)
            siblings = micro[micro["parent_id"] == parent].geometry
            pair = next((a, b) for a in changed for b in changed if a < b and siblings[a].touches(siblings[b]))
            merged = merge_grids(siblings, list(pair))
            merge_change = {pair[0]: merged[pair[0]], pair[1]: None}
            merge_s, merge_runs, merge_result = _timed(lambda: reassign(assets, merge_change), runs)
            community = current_grids(con, grid_ids=[parent])["parent_id"].iloc[0]
            proposal_s, _, proposal = _timed(lambda: propose_micro_grids(con, community, assets=assets), 1)
            repart = {}
            for p, shapes in proposal.partitions.items():
                old = micro[micro["parent_id"] == p]
                repart.update({g: shapes[g] for g in shapes.index if g not in old.index})
                repart.update({g: None for g in old.index if g not in shapes.index})
            repart_s, repart_runs, repart_result = _timed(lambda: reassign(assets, repart), runs)
            district = district_proposal(con, assets, limit=5 if quick else None)

            grids = micro.geometry.copy()
            for g, geom in changed.items():
                grids[g] = geom
            grid_frame = gpd.GeoDataFrame({"grid_id": grids.index}, geometry=list(grids.values))

            def points(kind, key):
                f = assets.frame(kind)
                return gpd.GeoDataFrame({key: f[key]}, geometry=shapely.points(f[["x", "y"]].to_numpy()))
            b, k, c = points("buildings", "building_id"), points("cameras", "camera_id"), points("cases", "case_id")
            base_s, base_runs, (_, base_fig) = _timed(lambda: figures_by_sjoin(grid_frame, b, residents, k, c),
                                                      1 if quick else 3)
        table = result.figures.set_index("grid_id")
        agree = all((table[f"{f}_after"] == base_fig[f].reindex(table.index).fillna(0)).all() for f in FIGURES)
        started = time.perf_counter()
        with open_for_command(path, create=False) as store:
            saved = save_partition(store.con, parent, after, actor="bench", reason="bench: one vertex moved 3 m")
        save_s = time.perf_counter() - started
    speedup = base_s / edit_s
    result_json = {
        "benchmark": "grids",
        "db": str(source),
        "buildings": len(assets.buildings), "residents": int(len(residents)),
        "micro_grids": len(micro), "cameras": len(assets.cameras), "open_cases": len(assets.cases),
        "session_load_assets_s": round(load_s, 3),
        "one_edit": {"parent": parent, "grids_changed": len(changed), "moved": result.summary(),
                     "reassign_s": round(edit_s, 4), "reassign_runs_s": edit_runs,
                     "rules_s": round(rules_s, 4), "rules_runs_s": rules_runs,
                     "errors": sum(v.severity == "error" for v in violations),
                     "figures_follow_s": round(edit_s + rules_s, 4), "save_s": round(save_s, 3),
                     "saved_versions": saved.versions},
        "merge_edit": {"grids": list(pair), "moved": merge_result.summary(), "reassign_s": round(merge_s, 4),
                       "reassign_runs_s": merge_runs},
        "repartition": {"community": community, "proposal_s": round(proposal_s, 3),
                        "grids_changed": len(repart), "moved": repart_result.summary(),
                        "reassign_s": round(repart_s, 4), "reassign_runs_s": repart_runs,
                        "proposal": proposal.summary()},
        "proposal_district": district,
        "baseline_sjoin_s": round(base_s, 3), "baseline_runs_s": base_runs,
        "baseline_agrees": bool(agree),
        "speedup_one_edit": round(speedup, 1),
        "speedup_one_edit_with_rules": round(base_s / (edit_s + rules_s), 1),
        "speedup_repartition": round(base_s / repart_s, 1),
        "goals": {"edit_s_at_most": GOAL_EDIT_S, "edit_met": edit_s + rules_s <= GOAL_EDIT_S,
                  "speedup_at_least": GOAL_SPEEDUP, "speedup_met": speedup >= GOAL_SPEEDUP},
    }
    return write_result("grids", result_json)


if __name__ == "__main__":
    args = sys.argv[1:]
    db = args[args.index("--db") + 1] if "--db" in args else None
    print(json.dumps(run(db=db, quick="--quick" in args), indent=2, ensure_ascii=False))
