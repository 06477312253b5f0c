"""Patrol: a grid worker's shifts and check-ins, each micro-grid's coverage of the day, and the positions' retention.

A check-in (position and time) is kept only while the worker's patrol is switched on: the phone page
says so on screen, and the store refuses a check-in outside every shift of theirs. Positions are personal
data: the audit trail records that a worker checked in and in which micro-grid, never where; the
positions themselves are deleted after :data:`PATROL_KEEP_DAYS` days, and the deletion is audited.

A micro-grid's coverage of a day is the share of its buildings that the day's tracks passed within
:data:`PASS_DISTANCE_M`; grid-management practice scores :data:`FULL_COVERAGE` and more as full. A track
joins one worker's consecutive check-ins of a shift less than :data:`MAX_GAP_S` apart (a longer gap is
not known to have been walked).
"""

from __future__ import annotations

import datetime

import duckdb
import numpy as np
import pandas as pd
import shapely

from twin.access.access import audit
from twin.access.policy import Gate
from twin.cases.cases import OPEN_STATUSES, match_location
from twin.errors import N_, InputError
from twin.field.actions import applied, check_key, remember
from twin.store.clock import store_now
from twin.store.queries import _now

PATROL_KEEP_DAYS = 30
CHECK_IN_EVERY_S = 30  # the phone page checks in this often on patrol
PASS_DISTANCE_M = 30.0
FULL_COVERAGE = 0.95
MAX_GAP_S = 300.0
REPLAY_WINDOW = pd.Timedelta(hours=6)  # a check-in sent again is looked for this close to its time
# Times come from the phone's "so long ago", each off by its own network delay: a check-in taken just as patrol
# was switched on may arrive timed a little before it.
CLOCK_SLACK = pd.Timedelta(seconds=5)
WORKLOAD_STATUSES = tuple(s for s in OPEN_STATUSES if s != "handed_up")  # a worker's open load


def _patrolling_at(con: duckdb.DuckDBPyConnection, worker: str, at: pd.Timestamp) -> bool:
    """Whether one of the worker's shifts covers ``at`` (within :data:`CLOCK_SLACK`)."""
    found, = con.execute("SELECT count(*) FROM patrol_shifts WHERE worker = ? AND started_at <= ? AND "
                         "(ended_at IS NULL OR ended_at >= ?)", [worker, at + CLOCK_SLACK, at - CLOCK_SLACK]
                         ).fetchone()
    return found > 0


def on_patrol(con: duckdb.DuckDBPyConnection, worker: str) -> pd.Timestamp | None:
    """When the worker's patrol now on began, or None when it is off."""
    row = con.execute("SELECT max(started_at) FROM patrol_shifts WHERE worker = ? AND ended_at IS NULL",
                      [worker]).fetchone()
    return None if row[0] is None else pd.Timestamp(row[0])


def set_patrol(gate: Gate, *, key: str, on: bool, at: pd.Timestamp | None = None) -> dict:
    """Switch the worker's patrol on or off (at ``at``, store time; now by default), once per ``key``.

    Switching on while on, or off while off, changes nothing. Audited as ``patrol.start`` or ``patrol.stop``.

    Returns
    -------
    dict
        ``on``, ``since`` (when the patrol now on began, ISO; None when off), ``at`` and ``replayed``.
    """
    con, principal = gate.con, gate.principal
    gate.check_field()
    key = check_key(key)
    request = {"on": bool(on)}
    done = applied(con, key, worker=principal.username, kind="patrol", request=request)
    if done is not None:
        return done
    now = store_now(con, unit="us")
    at = now if at is None else min(pd.Timestamp(at), now)
    since = on_patrol(con, principal.username)
    if on and since is None:
        con.execute("INSERT INTO patrol_shifts (worker, started_at, ended_at) VALUES (?, ?, NULL)",
                    [principal.username, at])
        since = at
        audit(con, actor=principal.username, action="patrol.start", target=principal.username,
              source=principal.source, detail={"key": key})
    elif not on and since is not None:
        con.execute("UPDATE patrol_shifts SET ended_at = ? WHERE worker = ? AND ended_at IS NULL",
                    [max(at, since), principal.username])
        since = None
        audit(con, actor=principal.username, action="patrol.stop", target=principal.username,
              source=principal.source, detail={"key": key})
    result = {"on": since is not None, "since": None if since is None else since.isoformat(), "at": at.isoformat()}
    return remember(con, key, worker=principal.username, kind="patrol", case_id=None, request=request,
                    result=result, at=at)


def check_in(gate: Gate, *, key: str, x: float, y: float, at: pd.Timestamp | None = None,
             accuracy_m: float | None = None, where: dict | None = None) -> dict:
    """Record a worker's position on patrol (district CRS, metres) at ``at`` (store time), once per ``key``.

    Parameters
    ----------
    where : dict, optional
        The point's match (:func:`twin.cases.cases.match_location`), when the caller has it already.

    Returns
    -------
    dict
        ``key``, ``grid_id`` (the micro-grid the position is in), ``at`` (ISO) and ``replayed``.

    Raises
    ------
    InputError
        A position outside the district, a time older than the positions are kept, or a worker whose patrol
        was off at that time.
    """
    con, principal = gate.con, gate.principal
    gate.check_field()
    key = check_key(key)
    now = store_now(con, unit="us")
    at = now if at is None else min(pd.Timestamp(at), now)
    kept_since = now - pd.Timedelta(days=PATROL_KEEP_DAYS)
    if at < kept_since:
        raise InputError(N_("a check-in from {at} is older than the {days} days positions are kept; it is not "
                            "recorded."), at=str(at)[:16], days=PATROL_KEEP_DAYS)
    before = con.execute('SELECT grid_id, "at" FROM patrol_checkins WHERE worker = ? AND key = ? AND "at" BETWEEN ? '
                         "AND ?", [principal.username, key, at - REPLAY_WINDOW, at + REPLAY_WINDOW]).fetchone()
    if before is not None:
        return {"key": key, "grid_id": before[0], "at": pd.Timestamp(before[1]).isoformat(), "replayed": True}
    if not (np.isfinite(x) and np.isfinite(y)):
        raise InputError(N_("a check-in needs a position; the phone sent none that can be read."))
    where = where if where is not None else match_location(con, x, y)  # outside the district: refused there
    if not _patrolling_at(con, principal.username, at):
        raise InputError(N_("{user}'s patrol was off at {at}: positions are recorded only on patrol. Switch patrol "
                            "on first."), user=principal.username, at=str(at)[:19])
    con.execute('INSERT INTO patrol_checkins (key, worker, x, y, accuracy_m, grid_id, "at") '
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [key, principal.username, float(x), float(y), accuracy_m, where["grid_id"], at])
    # Who checked in, when and in which micro-grid; never where (the trail is kept for good, positions are not).
    audit(con, actor=principal.username, action="patrol.position", target=where["grid_id"], source=principal.source,
          detail={"at": at.isoformat(), "key": key})
    return {"key": key, "grid_id": where["grid_id"], "at": at.isoformat(), "replayed": False}


def purge_positions(con: duckdb.DuckDBPyConnection, *, now: pd.Timestamp | None = None,
                    keep_days: int = PATROL_KEEP_DAYS, actor: str = "retention") -> dict:
    """Delete the check-ins (and patrol shifts ended) more than ``keep_days`` days before ``now`` (by default the
    store's clock: a demo's stands still, so its day of patrols stays); audited as ``patrol.purge``.

    Returns
    -------
    dict
        ``before`` (the cut-off, ISO), ``positions`` and ``shifts`` deleted. Nothing deleted, nothing audited.
    """
    now = pd.Timestamp(now) if now is not None else _now(con)
    cutoff = now - pd.Timedelta(days=keep_days)
    positions, = con.execute('SELECT count(*) FROM patrol_checkins WHERE "at" < ?', [cutoff]).fetchone()
    shifts, = con.execute("SELECT count(*) FROM patrol_shifts WHERE ended_at < ?", [cutoff]).fetchone()
    if positions:
        con.execute('DELETE FROM patrol_checkins WHERE "at" < ?', [cutoff])
    if shifts:
        con.execute("DELETE FROM patrol_shifts WHERE ended_at < ?", [cutoff])
    summary = {"before": cutoff.isoformat(), "positions": int(positions), "shifts": int(shifts)}
    if positions or shifts:
        audit(con, actor=actor, action="patrol.purge", detail={**summary, "keep_days": keep_days})
    return summary


def day_tracks(con: duckdb.DuckDBPyConnection, day: datetime.date) -> np.ndarray:
    """The day's patrol tracks as shapely geometries (district CRS): each worker's consecutive check-ins less than
    :data:`MAX_GAP_S` apart joined by lines, a check-in with no such neighbour as a point."""
    start = pd.Timestamp(day)
    rows = con.execute('SELECT worker, x, y, epoch("at") AS t FROM patrol_checkins WHERE "at" >= ? AND "at" < ? '
                       'ORDER BY worker, "at"', [start, start + pd.Timedelta(days=1)]).df()
    if rows.empty:
        return np.array([], dtype=object)
    xy = rows[["x", "y"]].to_numpy(dtype=np.float64)
    worker = rows["worker"].to_numpy(dtype=object)
    t = rows["t"].to_numpy(dtype=np.float64)
    joined = (worker[1:] == worker[:-1]) & (np.diff(t) <= MAX_GAP_S)
    segments = shapely.linestrings(np.stack([xy[:-1][joined], xy[1:][joined]], axis=1)) if joined.any() else []
    alone = np.ones(len(xy), dtype=bool)
    alone[1:][joined] = alone[:-1][joined] = False
    return np.concatenate([np.asarray(segments, dtype=object), shapely.points(xy[alone])])


def patrol_coverage(con: duckdb.DuckDBPyConnection, *, day: datetime.date | None = None) -> pd.DataFrame:
    """Each micro-grid's patrol coverage on ``day`` (by default the store's today: a demo's fixed day).

    Returns
    -------
    DataFrame
        One row per micro-grid in force holding buildings: ``grid_id``, ``buildings``, ``passed`` (buildings the
        day's tracks came within :data:`PASS_DISTANCE_M` of), ``share`` (0-1) and ``full`` (share >= 0.95).
    """
    day = day if day is not None else _now(con).date()
    buildings = con.execute("SELECT b.grid_id, ST_AsWKB(b.footprint) AS wkb FROM buildings b JOIN grids g ON "
                            "g.grid_id = b.grid_id AND g.valid_to IS NULL AND g.level = 'micro' ORDER BY b.building_id"
                            ).df()
    passed = np.zeros(len(buildings), dtype=bool)
    tracks = day_tracks(con, day)
    if len(tracks) and len(buildings):
        footprints = shapely.from_wkb(buildings["wkb"].map(bytes).to_numpy())
        _, hit = shapely.STRtree(footprints).query(tracks, predicate="dwithin", distance=PASS_DISTANCE_M)
        passed[hit] = True
    table = pd.DataFrame({"grid_id": buildings["grid_id"], "passed": passed}).groupby("grid_id", sort=True).agg(
        buildings=("passed", "size"), passed=("passed", "sum")).reset_index()
    table["share"] = table["passed"] / table["buildings"]
    table["full"] = table["share"] >= FULL_COVERAGE
    return table


def grid_coverage(coverage: pd.DataFrame, micro_grids: frozenset[str] | list[str]) -> dict:
    """The coverage of a grid at any level from its micro-grids' (:func:`patrol_coverage`): buildings passed
    over buildings, ``share`` None when it holds none."""
    rows = coverage[coverage["grid_id"].isin(list(micro_grids))]
    buildings, passed = int(rows["buildings"].sum()), int(rows["passed"].sum())
    share = passed / buildings if buildings else None
    return {"buildings": buildings, "passed": passed, "share": share,
            "full": share is not None and share >= FULL_COVERAGE}


def field_workers(con: duckdb.DuckDBPyConnection, *, grids: frozenset[str] | None = None) -> pd.DataFrame:
    """The grid workers on patrol now, at their last position of the shift, with their open load.

    Parameters
    ----------
    grids : frozenset of str, optional
        Only workers bound to one of these micro-grids (an operator's scope); None: every worker.

    Returns
    -------
    DataFrame
        ``worker``, ``x``, ``y`` (district CRS), ``at`` (the last check-in), ``grid_id`` (where it was), ``grids``
        (the worker's micro-grids, comma-separated) and ``open_load`` (open cases given to them, or open in their
        micro-grids and given to no one; handed-up ones are a department's), by worker.
    """
    statuses = list(WORKLOAD_STATUSES)
    frame = con.execute(f"""
        WITH workers AS (SELECT username AS worker, grids FROM users WHERE role = 'worker' AND NOT disabled),
        shifts AS (SELECT worker, max(started_at) AS since FROM patrol_shifts WHERE ended_at IS NULL GROUP BY worker),
        last AS (SELECT p.worker, arg_max(p.x, p."at") AS x, arg_max(p.y, p."at") AS y, max(p."at") AS "at",
                        arg_max(p.grid_id, p."at") AS grid_id
                 FROM patrol_checkins p JOIN shifts s ON s.worker = p.worker AND p."at" >= s.since GROUP BY p.worker)
        SELECT w.worker, l.x, l.y, l."at", l.grid_id, array_to_string(w.grids, ',') AS grids,
               (SELECT count(*) FROM cases c WHERE c.status IN (SELECT unnest(?)) AND (c.assigned_worker = w.worker
                 OR (c.assigned_worker IS NULL AND c.grid_id IN (SELECT unnest(w.grids))))) AS open_load
        FROM workers w JOIN last l ON l.worker = w.worker ORDER BY w.worker""", [statuses]).df()
    return frame if grids is None else of_grids(frame, grids)


def of_grids(workers: pd.DataFrame, grids: frozenset[str]) -> pd.DataFrame:
    """The rows of :func:`field_workers` whose worker is bound to one of ``grids``."""
    # a boolean array, not a list: an empty list would select no columns of an empty frame
    keep = np.array([bool(set(g.split(",")) & grids) for g in workers["grids"]], dtype=bool)
    return workers[keep].reset_index(drop=True)


def workers(con: duckdb.DuckDBPyConnection, *, grids: frozenset[str] | None = None) -> pd.DataFrame:
    """The enabled grid workers (``worker``, ``grids`` as a list), those bound to one of ``grids`` (None: all)."""
    frame = con.execute("SELECT username AS worker, grids FROM users WHERE role = 'worker' AND NOT disabled "
                        "ORDER BY username").df()
    frame["grids"] = [list(g) for g in frame["grids"]]
    if grids is not None:
        frame = frame[[bool(set(g) & grids) for g in frame["grids"]]].reset_index(drop=True)
    return frame


def worker_card(gate: Gate, worker: str) -> dict:
    """A grid worker as their operator sees them: micro-grids, last position on patrol, open cases.

    Returns
    -------
    dict
        ``worker``, ``grids`` (ids), ``grid_names``, ``on_patrol_since`` (Timestamp or None), ``last_at`` and
        ``last_grid_id`` (their last check-in of this patrol, or None), ``open_load`` (their open cases) and
        ``cases`` (DataFrame ``case_id``, ``subcategory``, ``status``, ``deadline``: those of their open cases the
        principal may see, soonest deadline first).

    Raises
    ------
    AccessError
        For a principal who may not see workers' positions, or a worker of other grids.
    """
    grids = gate.check_worker(worker)
    con = gate.con
    since = on_patrol(con, worker)
    last = con.execute('SELECT "at", grid_id FROM patrol_checkins WHERE worker = ? AND "at" >= ? ORDER BY "at" DESC '
                       "LIMIT 1", [worker, since]).fetchone() if since is not None else None
    names = dict(con.execute("SELECT grid_id, name FROM grids WHERE valid_to IS NULL AND grid_id IN "
                             "(SELECT unnest(?))", [list(grids)]).fetchall())
    cases = con.execute("""
        SELECT case_id, subcategory, status, coalesce(deadline, due_at) AS deadline, grid_id FROM cases
        WHERE status IN (SELECT unnest(?)) AND (assigned_worker = ? OR (assigned_worker IS NULL AND
              grid_id IN (SELECT unnest(?))))
        ORDER BY deadline NULLS LAST, case_id""", [list(WORKLOAD_STATUSES), worker, list(grids)]).df()
    seen = cases[[gate.in_scope(g) for g in cases["grid_id"]]].drop(columns="grid_id").reset_index(drop=True)
    return {"worker": worker, "grids": list(grids), "grid_names": [names.get(g, g) for g in grids],
            "on_patrol_since": since, "last_at": None if last is None else pd.Timestamp(last[0]),
            "last_grid_id": None if last is None else last[1], "open_load": len(cases), "cases": seen}
