"""The demo's grid workers on the phone page: users for a handful of micro-grids, and a day of their patrols.

Every micro-grid of the demo has its worker's name (``grids.worker``); a handful of them get an account of
role ``worker`` here (``worker1`` ...), bound to the micro-grids of the operator's community, so that the
phone page and the operator's map have someone to show. Each patrols past a different share of their micro-grid's
buildings, so the leader's coverage colouring shows full, partial and missed micro-grids: a day of rounds the day
before the demo's (its fixed clock, ``meta.now``), and an early round on the demo's day, over before its clock.
A round walks the worker's route there and back for ``ROUND_MIN`` minutes; check-ins every 30 s at a walking
pace, audited as the phone's are.
"""

from __future__ import annotations

import secrets

import duckdb
import numpy as np
import pandas as pd

from twin.access.access import add_user, audit, set_password
from twin.field.patrol import CHECK_IN_EVERY_S
from twin.store.queries import _now

DEMO_WORKERS = 6
WALK_M_PER_S = 1.2
SHARES_WALKED = (1.0, 1.0, 0.9, 0.75, 0.5, 0.25)  # of each worker's buildings, in order
ROUND_MIN = 40  # a round of patrol
# When each worker's rounds start: (days before the demo's day, hours after its midnight); the k-th worker starts
# 15 minutes after the one before. The demo's day's round is over before its clock (09:00).
ROUNDS = ((1, 8.5), (1, 10.5), (1, 14.0), (1, 16.0), (0, 7.0))


def demo_worker_grids(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The micro-grids of the demo's worker accounts: the operator's community's first, with buildings."""
    return [g for g, in con.execute("""
        SELECT m.grid_id FROM grids m JOIN grids g ON g.grid_id = m.parent_id AND g.valid_to IS NULL
        WHERE m.level = 'micro' AND m.valid_to IS NULL AND g.parent_id = (SELECT min(grid_id) FROM grids
              WHERE level = 'community' AND valid_to IS NULL)
          AND m.grid_id IN (SELECT grid_id FROM buildings) ORDER BY m.grid_id LIMIT ?""", [DEMO_WORKERS]).fetchall()]


def demo_workers(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """(Re)make the demo's worker accounts with fresh random passwords: name, password, role, grids."""
    made = []
    for k, grid_id in enumerate(demo_worker_grids(con), start=1):
        name, password = f"worker{k}", secrets.token_urlsafe(12)
        if con.execute("SELECT 1 FROM users WHERE username = ?", [name]).fetchone():
            set_password(con, name, password, actor="demo")
        else:
            add_user(con, name, password, role="worker", grids=[grid_id], actor="demo")
        made.append({"username": name, "password": password, "role": "worker", "grids": [grid_id]})
    return made


def demo_patrols(con: duckdb.DuckDBPyConnection, *, seed: int) -> int:
    """The demo workers' rounds of patrol (:data:`ROUNDS`); returns the check-ins written (each audited)."""
    rng = np.random.default_rng(seed)
    day = pd.Timestamp(_now(con).date())
    per_round = int(ROUND_MIN * 60 // CHECK_IN_EVERY_S)
    written = 0
    for k, grid_id in enumerate(demo_worker_grids(con)):
        worker = f"worker{k + 1}"
        spots = con.execute("SELECT label_x, label_y FROM buildings WHERE grid_id = ? ORDER BY building_id",
                            [grid_id]).df().to_numpy()
        route = _nearest_first(spots)[:int(round(len(spots) * SHARES_WALKED[k % len(SHARES_WALKED)]))]
        for r, (days_before, hours) in enumerate(ROUNDS):
            start = day - pd.Timedelta(days=days_before) + pd.Timedelta(hours=hours, minutes=15 * k)
            points = _round(route, per_round, rng)
            times = [start + pd.Timedelta(seconds=CHECK_IN_EVERY_S * (i + 1)) for i in range(len(points))]
            end = (times[-1] if times else start) + pd.Timedelta(minutes=1)
            con.execute("INSERT INTO patrol_shifts VALUES (?, ?, ?)", [worker, start, end])
            audit(con, actor=worker, action="patrol.start", target=worker, source="demo",
                  detail={"at": start.isoformat()})
            for i, ((x, y), at) in enumerate(zip(points, times)):
                key = f"demo-{worker}-{r}-{i:04d}"
                con.execute('INSERT INTO patrol_checkins (key, worker, x, y, accuracy_m, grid_id, "at") '
                            "VALUES (?, ?, ?, ?, ?, ?, ?)", [key, worker, float(x), float(y), 8.0, grid_id, at])
                audit(con, actor=worker, action="patrol.position", target=grid_id, source="demo",
                      detail={"at": at.isoformat(), "key": key})
            audit(con, actor=worker, action="patrol.stop", target=worker, source="demo",
                  detail={"at": end.isoformat()})
            written += len(points)
    return written


def _round(route: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` check-ins of a round along ``route``, there and back again and again (standing by a lone
    building); none without a route."""
    if len(route) == 0:
        return route
    if len(route) == 1:
        return route[[0] * count] + rng.normal(0.0, 3.0, (count, 2))
    there_and_back = _walk(np.concatenate([route, route[-2::-1]]), rng)
    if len(there_and_back) > 1:
        there_and_back = there_and_back[:-1]  # it ends where the next one starts
    return np.concatenate([there_and_back] * (count // len(there_and_back) + 1))[:count]


def _nearest_first(spots: np.ndarray) -> np.ndarray:
    """The points in the order a walker goes from the first to the nearest one not yet passed."""
    if len(spots) == 0:
        return spots
    left, order = list(range(1, len(spots))), [0]
    while left:
        here = spots[order[-1]]
        nearest = min(left, key=lambda j: float(np.hypot(*(spots[j] - here))))
        order.append(nearest)
        left.remove(nearest)
    return spots[order]


def _walk(route: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Where a walker along ``route`` is every 30 s at a walking pace (a few metres of phone noise)."""
    if len(route) < 2:
        return route
    legs = np.hypot(*np.diff(route, axis=0).T)
    along = np.concatenate([[0.0], np.cumsum(legs)])
    stops = np.arange(0.0, along[-1] + 1e-9, WALK_M_PER_S * CHECK_IN_EVERY_S)
    xy = np.column_stack([np.interp(stops, along, route[:, 0]), np.interp(stops, along, route[:, 1])])
    return xy + rng.normal(0.0, 3.0, xy.shape)
