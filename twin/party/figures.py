"""Party figures per grid: organisations, members, members reported (报到), active this month, services done.

A month is a calendar month in the store's zone; "this month" is the month of the store's clock
(``meta.now`` in the demo).
"""

from __future__ import annotations

import duckdb
import pandas as pd

from twin.errors import check_choice
from twin.party.orgs import PARTY_MEMBER_TAG, grid_ancestors
from twin.store.queries import _now, residents_counted

PARTY_LEVELS = ("street", "community", "grid")  # members report to grids: the table stops at the grid level
PARTY_FIGURES = ("orgs", "members", "living", "reported", "active", "services", "hours")


def month_of(con: duckdb.DuckDBPyConnection, month: str | pd.Period | None = None) -> pd.Period:
    """The month asked for (``"2026-11"``, a Period), or the month of the store's clock."""
    return pd.Period(month, freq="M") if month is not None else pd.Period(_now(con), freq="M")


def _per_grid(con: duckdb.DuckDBPyConnection, month: pd.Period) -> pd.DataFrame:
    """Each figure summed per grid id as the store keeps it (an organisation's, a report's, a service's grid; a
    member's home micro-grid), before the grids are rolled up to a level; index ``grid_id``."""
    first, last = month.start_time.date(), month.end_time.date()
    orgs = con.execute("SELECT grid_id, count(*) AS orgs, sum(members) FILTER (WHERE kind IS DISTINCT FROM 'group') "
                       "AS members FROM party_orgs GROUP BY grid_id").df()
    reported = con.execute("SELECT grid_id, count(*) AS reported FROM party_reports GROUP BY grid_id").df()
    services = con.execute("SELECT grid_id, count(DISTINCT resident_id) AS active, count(*) AS services, "
                           "sum(hours) AS hours FROM party_services WHERE day BETWEEN ? AND ? GROUP BY grid_id",
                           [first, last]).df()
    parts = [orgs, reported, services]
    if not residents_counted(con):
        parts.append(con.execute("SELECT b.grid_id, count(*) AS living FROM residents r JOIN buildings b "
                                 "USING (building_id) WHERE list_contains(r.tags, ?) GROUP BY b.grid_id",
                                 [PARTY_MEMBER_TAG]).df())
    frames = [p.dropna(subset=["grid_id"]).set_index("grid_id") for p in parts]
    return pd.concat(frames, axis=1).groupby(level=0).sum(min_count=1)


def party_table(con: duckdb.DuckDBPyConnection, *, level: str = "grid",
                month: str | pd.Period | None = None) -> pd.DataFrame:
    """Party figures of every grid at a level, for the street leader's table that compares them.

    Parameters
    ----------
    level : {'street', 'community', 'grid'}
    month : str or Period, optional
        The month whose services count (default: the store clock's).

    Returns
    -------
    DataFrame
        One row per grid in force at ``level``, by id: ``grid_id``, ``name``; ``orgs`` (organisations on it and the
        grids under it), ``members`` (their members, party groups' left out, as they are their branch's),
        ``living`` (residents tagged 党员 living there; -1 where residents are counted, not listed), ``reported``
        (members who report to it, 报到), ``active`` (members who served there in the month), ``services`` (service
        records of the month) and ``hours`` (their hours).
    """
    check_choice("level", level, PARTY_LEVELS)
    per_grid = _per_grid(con, month_of(con, month))
    up = grid_ancestors(con, level=level, grid_ids=per_grid.index.dropna()).set_index("grid_id")["ancestor"]
    figures = per_grid.groupby(up.reindex(per_grid.index).to_numpy(), dropna=True).sum(min_count=1)
    rows = con.execute("SELECT grid_id, name FROM grids WHERE level = ? AND valid_to IS NULL ORDER BY grid_id",
                       [level]).df()
    out = rows.join(figures, on="grid_id").reset_index(drop=True)
    for column in PARTY_FIGURES:
        if column not in out:
            out[column] = pd.NA
    counted = residents_counted(con)
    out = out.fillna({c: 0 for c in PARTY_FIGURES if not (counted and c == "living")})
    if counted:
        out["living"] = -1
    for column in PARTY_FIGURES:
        out[column] = out[column].astype(float if column == "hours" else int)
    return out[["grid_id", "name", *PARTY_FIGURES]]


def grid_party_figures(con: duckdb.DuckDBPyConnection, grid_ids: list[str] | frozenset[str], *,
                       month: str | pd.Period | None = None) -> dict:
    """The party figures of some grids together (a grid and every grid under it), for its card.

    Returns
    -------
    dict
        ``reported``, ``active``, ``services``, ``hours`` (of the month, as :func:`party_table`), ``living`` (None
        where residents are counted) and ``month`` (``"2026-11"``).
    """
    month = month_of(con, month)
    grid_ids = sorted(grid_ids)
    reported, = con.execute("SELECT count(*) FROM party_reports WHERE grid_id IN (SELECT unnest(?))",
                            [grid_ids]).fetchall()[0]
    active, services, hours = con.execute(
        "SELECT count(DISTINCT resident_id), count(*), coalesce(sum(hours), 0) FROM party_services "
        "WHERE grid_id IN (SELECT unnest(?)) AND day BETWEEN ? AND ?",
        [grid_ids, month.start_time.date(), month.end_time.date()]).fetchall()[0]
    living = None
    if not residents_counted(con):
        living, = con.execute("SELECT count(*) FROM residents r JOIN buildings b USING (building_id) "
                              "WHERE b.grid_id IN (SELECT unnest(?)) AND list_contains(r.tags, ?)",
                              [grid_ids, PARTY_MEMBER_TAG]).fetchall()[0]
    return {"reported": int(reported), "active": int(active), "services": int(services), "hours": float(hours),
            "living": None if living is None else int(living), "month": str(month)}
