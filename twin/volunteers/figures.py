"""The volunteer scheme's figures for the leader's screen: hours and points per grid in a month, communities
ranked, and the newest tasks completed.

A task's hours and points count in the grid of its place, in the month its worker confirmed it; a valid report's
points in its case's grid, in the month it was reviewed. A month is a calendar month of the store's clock
(``meta.now`` in the demo), as the party figures' (:func:`twin.party.figures.month_of`).
"""

from __future__ import annotations

import duckdb
import pandas as pd

from twin.errors import check_choice
from twin.party.figures import month_of
from twin.party.orgs import grid_ancestors

VOLUNTEER_FIGURES = ("hours", "points", "volunteers", "tasks")
VOLUNTEER_LEVELS = ("street", "community", "grid", "micro")


def _done(con: duckdb.DuckDBPyConnection, month: pd.Period) -> pd.DataFrame:
    """Each credited piece of work of the month: ``grid_id``, ``resident_id``, ``hours``, ``points``, ``task``."""
    first, last = month.start_time, month.end_time
    tasks = con.execute("SELECT t.grid_id, g.resident_id, coalesce(g.hours, 0) AS hours, t.points, 1 AS task "
                        "FROM volunteer_grabs g JOIN volunteer_tasks t USING (task_id) "
                        "WHERE g.confirmed_at BETWEEN ? AND ?", [first, last]).df()
    reports = con.execute("SELECT c.grid_id, v.resident_id, 0.0 AS hours, v.points, 0 AS task FROM "
                          "volunteer_reports v JOIN cases c USING (case_id) WHERE v.points > 0 AND "
                          "v.reviewed_at BETWEEN ? AND ?", [first, last]).df()
    return pd.concat([tasks, reports], ignore_index=True)


def volunteer_table(con: duckdb.DuckDBPyConnection, *, level: str = "grid",
                    month: str | pd.Period | None = None) -> pd.DataFrame:
    """Volunteer figures of every grid in force at ``level`` for a month.

    Returns
    -------
    DataFrame
        ``grid_id``, ``name``, ``hours`` (checked in to out, of tasks confirmed in the month), ``points`` (credited for
        them and for valid reports), ``volunteers`` (residents credited), ``tasks`` (places confirmed); zeros where
        none.
    """
    check_choice("level", level, VOLUNTEER_LEVELS)
    done = _done(con, month_of(con, month))
    up = grid_ancestors(con, level=level, grid_ids=done["grid_id"].dropna()).set_index("grid_id")["ancestor"]
    done["at_level"] = up.reindex(done["grid_id"]).to_numpy() if len(done) else []
    figures = done.groupby("at_level").agg(hours=("hours", "sum"), points=("points", "sum"),
                                           volunteers=("resident_id", "nunique"), tasks=("task", "sum"))
    rows = con.execute("SELECT grid_id, name FROM grids WHERE level = ? AND valid_to IS NULL ORDER BY grid_id",
                       [level]).df()
    out = rows.join(figures, on="grid_id").fillna({c: 0 for c in VOLUNTEER_FIGURES})
    for column in VOLUNTEER_FIGURES:
        out[column] = out[column].astype(float if column == "hours" else int)
    return out[["grid_id", "name", *VOLUNTEER_FIGURES]].reset_index(drop=True)


def community_ranking(con: duckdb.DuckDBPyConnection, *, month: str | pd.Period | None = None) -> pd.DataFrame:
    """Communities ranked by points of the month, then hours: :func:`volunteer_table` at the community level with
    ``rank`` (1 = first; ties share a rank)."""
    table = volunteer_table(con, level="community", month=month)
    table = table.sort_values(["points", "hours", "grid_id"], ascending=[False, False, True]).reset_index(drop=True)
    table.insert(0, "rank", table[["points", "hours"]].apply(tuple, axis=1).rank(method="min",
                                                                                ascending=False).astype(int))
    return table


def newest_completed(con: duckdb.DuckDBPyConnection, *, limit: int = 10) -> list[dict]:
    """The tasks most lately confirmed done, newest first, one row a task: ``task_id``, ``title``, ``place``,
    ``grid_id``, ``x``, ``y``, ``confirmed_at`` (the last confirmation), ``points`` (each), ``done`` (places confirmed),
    ``hours`` (theirs in all). No resident is named."""
    rows = con.execute("SELECT t.task_id, t.title, t.place, t.grid_id, t.x, t.y, max(g.confirmed_at) AS last_at, "
                       "t.points, count(*), sum(g.hours) FROM volunteer_grabs g JOIN volunteer_tasks t USING (task_id) "
                       "WHERE g.confirmed_at IS NOT NULL GROUP BY ALL ORDER BY last_at DESC, t.task_id LIMIT ?",
                       [int(limit)]).fetchall()
    return [dict(zip(("task_id", "title", "place", "grid_id", "x", "y", "confirmed_at", "points", "done", "hours"), r))
            for r in rows]
