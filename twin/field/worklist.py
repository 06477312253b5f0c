"""What the phone page shows a grid worker: their list of cases and one case with its small map.

"My cases" are the open cases given to the worker and those open in their micro-grids, sorted by
deadline (the duty's deadline, else the case kind's), so the overdue ones come first. The phone puts the
nearest first among equal deadlines: it knows where it is, and its position is sent to the store only on
patrol. Every read goes through the worker's :class:`~twin.access.policy.Gate`.
"""

from __future__ import annotations

import pandas as pd
import shapely

from twin.access.policy import Gate, mask_text
from twin.field.actions import steps_for
from twin.field.patrol import WORKLOAD_STATUSES
from twin.store.queries import _now

MAX_LISTED = 200
MAP_TOLERANCE_M = 0.3  # footprints on the phone's map are simplified this much (the map is a few cm wide)


def worker_cases(gate: Gate, *, limit: int = MAX_LISTED) -> list[dict]:
    """The worker's open cases (given to them, or in their micro-grids), the soonest deadline first; not those a
    department holds (handed up, dispatched to it or in its hands: back on the list when reopened).

    Parameters
    ----------
    gate : Gate
        The worker's; any other role is refused (and audited).

    Returns
    -------
    list of dict
        ``case_id``, ``category``, ``subcategory``, ``status``, ``description`` (numbers masked), ``address``,
        ``grid_id``, ``grid_name``, ``deadline`` (Timestamp or None), ``overdue`` (bool), ``assigned_worker``,
        ``mine`` (given to this worker), ``steps`` (the steps the worker may take now), ``x``, ``y`` (district
        CRS, metres).
    """
    where, params = gate.field_cases_filter()
    con, me = gate.con, gate.principal.username
    now = _now(con)
    rows = con.execute(f"""
        SELECT c.case_id, c.category, c.subcategory, c.status, c.description, c.address, c.grid_id,
               g.name AS grid_name, coalesce(c.deadline, c.due_at) AS deadline, c.assigned_worker,
               ST_X(c.location) AS x, ST_Y(c.location) AS y
        FROM (SELECT * FROM cases WHERE {where} AND status IN (SELECT unnest(?))
              AND NOT (department IS NOT NULL AND status IN ('dispatched', 'in_progress'))) c
        LEFT JOIN grids g ON g.grid_id = c.grid_id AND g.valid_to IS NULL
        ORDER BY deadline NULLS LAST, c.case_id LIMIT ?""", [*params, list(WORKLOAD_STATUSES), limit]).df()
    out = []
    for r in rows.to_dict("records"):
        deadline = None if pd.isna(r["deadline"]) else pd.Timestamp(r["deadline"])
        assigned = None if pd.isna(r["assigned_worker"]) else r["assigned_worker"]
        may_act = assigned in (None, me)
        out.append({**{k: r[k] for k in ("case_id", "category", "subcategory", "status", "address", "grid_id")},
                    "grid_name": None if pd.isna(r["grid_name"]) else r["grid_name"],
                    "description": mask_text(None if pd.isna(r["description"]) else r["description"]),
                    "deadline": deadline, "overdue": deadline is not None and deadline < now,
                    "assigned_worker": assigned, "mine": assigned == me,
                    "steps": steps_for(r["status"]) if may_act else [], "x": r["x"], "y": r["y"]})
    return out


def worker_case(gate: Gate, case_id: str) -> dict:
    """One of the worker's cases, for the phone: the case card, the steps they may take, its photos and a map.

    Returns
    -------
    dict
        The case card's facts (:meth:`Gate.field_case_card`: ``status``, ``category``, ``subcategory``,
        ``description``, ``address``, ``grid_id``, ``reported_at``, ``due_at``...) and ``deadline``,
        ``assigned_worker``, ``history`` (list of ``at``, ``from_status``, ``to_status``, ``actor``, ``note``),
        ``steps``, ``photos`` (``photo_id``, ``kind``, ``at``, ``taken_by``, ``width``, ``height``, ``sha256``) and
        ``map`` (:func:`case_map`).
    """
    card = gate.field_case_card(case_id)
    con = gate.con
    assigned, deadline = con.execute("SELECT assigned_worker, coalesce(deadline, due_at) FROM cases WHERE case_id = ?",
                                     [case_id]).fetchone()
    may_act = assigned in (None, gate.principal.username)
    photos = con.execute('SELECT photo_id, kind, "at", taken_by, width, height, sha256 FROM case_photos '
                         'WHERE case_id = ? ORDER BY "at", photo_id', [case_id]).df()
    facts = {k: v for k, v in card.items() if k not in ("history", "photos", "next_statuses", "detections")}
    return {**facts, "assigned_worker": assigned, "deadline": deadline,
            "overdue_h": card["overdue_h"], "history": card["history"].to_dict("records"),
            "steps": steps_for(card["status"]) if may_act else [],
            "photos": photos.to_dict("records"), "map": case_map(gate, case_id)}


def case_map(gate: Gate, case_id: str) -> dict:
    """The case's micro-grid drawn small: its outline, its buildings and the case, in metres from the grid's
    south-west corner (x east, y north), to 0.1 m.

    Returns
    -------
    dict
        ``origin`` (that corner, district CRS), ``width``, ``height`` (m), ``grid`` (rings: lists of ``[x, y]``),
        ``buildings`` (rings) and ``case`` (``[x, y]``).
    """
    con = gate.con
    grid_id, cx, cy = con.execute("SELECT grid_id, ST_X(location), ST_Y(location) FROM cases WHERE case_id = ?",
                                  [case_id]).fetchone()
    row = con.execute("SELECT ST_AsWKB(boundary) FROM grids WHERE grid_id = ? AND valid_to IS NULL",
                      [grid_id]).fetchone()
    grid = shapely.from_wkb(bytes(row[0])) if row else shapely.Point(cx, cy).buffer(50.0)
    footprints = shapely.from_wkb([bytes(w) for w, in con.execute(
        "SELECT ST_AsWKB(footprint) FROM buildings WHERE grid_id = ? ORDER BY building_id", [grid_id]).fetchall()])
    xmin, ymin, xmax, ymax = shapely.bounds(shapely.union_all([grid, shapely.Point(cx, cy)]))

    def rings(geometry: shapely.Geometry) -> list[list[list[float]]]:
        simple = shapely.simplify(geometry, MAP_TOLERANCE_M)
        return [[[round(px - xmin, 1), round(py - ymin, 1)] for px, py in shapely.get_coordinates(ring)]
                for ring in shapely.get_rings(simple) if not ring.is_empty]

    return {"origin": [float(xmin), float(ymin)], "width": round(xmax - xmin, 1), "height": round(ymax - ymin, 1),
            "grid": rings(grid), "buildings": [r for f in footprints for r in rings(f)[:1]],
            "case": [round(cx - xmin, 1), round(cy - ymin, 1)]}
