"""Read-side queries behind the screens: key figures, per-grid tables, map layers.

These are raw reads for every role alike, mostly aggregates. What is personal
(residents, cases) reaches a user only through :class:`twin.access.policy.Gate`,
which applies the access rules over :mod:`twin.inspector`'s reads.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from twin.cases.cameras import camera_sight_kept, cameras_per_building
from twin.cases.cases import OPEN_STATUSES
from twin.errors import check_choice
from twin.store.clock import district_now
from twin.store.schema import GRID_LEVELS
from twin.store.store import building_rows, meta_value, read_frame, whole_table_reads


def _now(con: duckdb.DuckDBPyConnection) -> pd.Timestamp:
    """The store's clock: ``meta.now`` when set (the demo's fixed day), else the wall clock in the store's zone."""
    return district_now(con)


def key_figures(con: duckdb.DuckDBPyConnection, *, totals: dict | None = None,
                grids: frozenset[str] | None = None) -> dict:
    """The district at a glance, or the part of it in ``grids``.

    ``totals`` (from :func:`district_totals`) may be passed in when they are known
    unchanged, since only the case figures move while the district is live.
    ``grids`` (grid ids, with every grid under them, as ``Gate.scope``) keeps the
    buildings, residents, cameras and cases whose micro-grid is among them; None is the whole district.

    Returns
    -------
    dict
        ``buildings``, ``residents``, ``households``, ``open_cases`` (by
        status), ``overdue_cases``, ``cameras`` and ``cameras_online``.
    """
    return {**(totals if totals is not None else district_totals(con, grids=grids)), **case_figures(con, grids=grids)}


def _in_grids(grids: frozenset[str] | None, column: str = "grid_id") -> tuple[str, list]:
    """A WHERE clause keeping rows whose ``column`` is among ``grids`` (all rows for None), and its parameters."""
    return ("TRUE", []) if grids is None else (f"{column} IN (SELECT unnest(?))", [sorted(grids)])


# ---------------------------------------------------------------- residents: listed, or counted per building
# A store lists its residents (one row each in `residents`) unless meta.residents says they are counted: then
# buildings.residents and buildings.households hold the head counts (the city demo, data.city, where 90 million
# rows would not fit). Every head count of residents or households is read through the functions below.

RESIDENTS_COUNTED = "counted"  # the value of meta.residents in a store that counts its residents per building


def residents_counted(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the store counts residents per building (``buildings.residents``) instead of listing them."""
    return meta_value(con, "residents") == RESIDENTS_COUNTED


def per_building_population(con: duckdb.DuckDBPyConnection, *, among: str | None = None) -> str:
    """SQL of a relation ``(building_id, residents, households)``, one row per building with residents.

    ``among``, a SQL query of ``building_id`` values, keeps those buildings only (cheaper than a join later
    when the residents are listed).
    """
    within = "TRUE" if among is None else f"building_id IN ({among})"
    if residents_counted(con):
        return (f"SELECT building_id, residents, coalesce(households, 0) AS households FROM buildings "
                f"WHERE residents > 0 AND {within}")
    return (f"SELECT building_id, count(*) AS residents, count(DISTINCT household_id) AS households "
            f"FROM residents WHERE {within} GROUP BY building_id")


def population(con: duckdb.DuckDBPyConnection, *, grids: frozenset[str] | list[str] | None = None) -> tuple[int, int]:
    """``(residents, households)`` of the buildings whose grid is among ``grids`` (grid ids; None: all)."""
    grids = None if grids is None else frozenset(grids)
    where, params = _in_grids(grids, "b.grid_id")
    if residents_counted(con):
        sql = ("SELECT coalesce(sum(residents), 0)::BIGINT, coalesce(sum(households), 0)::BIGINT "
               f"FROM buildings b WHERE residents > 0 AND {where}")
    elif grids is None:
        sql = "SELECT count(*), count(DISTINCT household_id) FROM residents"
    else:
        sql = (f"SELECT count(*), count(DISTINCT household_id) FROM residents JOIN buildings b USING (building_id) "
               f"WHERE {where}")
    return tuple(con.execute(sql, params).fetchall()[0])


def district_totals(con: duckdb.DuckDBPyConnection, *, grids: frozenset[str] | None = None) -> dict:
    """``buildings``, ``residents``, ``households``, ``cameras`` and ``cameras_online`` (in ``grids``, if given)."""
    where, params = _in_grids(grids)
    with whole_table_reads(con):
        buildings, = con.execute(f"SELECT count(*) FROM buildings WHERE {where}", params).fetchone()
        residents, households = population(con, grids=grids)
        cameras, online = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE status = 'online') FROM cameras WHERE {where}", params).fetchone()
    return {"buildings": buildings, "residents": residents, "households": households, "cameras": cameras,
            "cameras_online": online}


def case_figures(con: duckdb.DuckDBPyConnection, *, grids: frozenset[str] | None = None) -> dict:
    """``open_cases`` by status and ``overdue_cases`` (open past their deadline, by the store's clock),
    of the cases in ``grids`` if given."""
    placeholders = ", ".join("?" for _ in OPEN_STATUSES)
    where, params = _in_grids(grids)
    by_status = dict(con.execute(
        f"SELECT status, count(*) FROM cases WHERE status IN ({placeholders}) AND {where} GROUP BY status",
        [*OPEN_STATUSES, *params]).fetchall())
    overdue, = con.execute(
        f"SELECT count(*) FROM cases WHERE status IN ({placeholders}) AND due_at < ? AND {where}",
        [*OPEN_STATUSES, _now(con), *params]).fetchone()
    return {"open_cases": {s: by_status.get(s, 0) for s in OPEN_STATUSES}, "overdue_cases": overdue}


def grid_tree(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Grids in force with the ancestor at each level.

    Each grid's chain of parents (among the grids in force) is walked up as many steps as there are levels, on
    integer positions: a city's 700,000 grids take a fraction of a second and little memory.

    Returns
    -------
    DataFrame
        One row per grid, by ``grid_id``: ``grid_id``, ``name``, ``level``, ``parent_id`` and
        one column per level (``street``, ``community``, ``grid``, ``micro``) holding the id of the grid
        itself or of its ancestor at that level (the farthest up, should a chain hold a level twice).
    """
    grids = con.execute("SELECT grid_id, name, level, parent_id FROM grids WHERE valid_to IS NULL "
                        "ORDER BY grid_id").arrow().read_all()
    ids = grids.column("grid_id")
    parent = pc.index_in(grids.column("parent_id"), value_set=ids).fill_null(-1).to_numpy()
    level = pc.index_in(grids.column("level"), value_set=pa.array(GRID_LEVELS)).fill_null(-1).to_numpy()
    none = len(grids)  # position of "no grid": parent and level lookups past the end give nothing
    parent, level = np.append(np.where(parent < 0, none, parent), none), np.append(level, -1)
    ancestor = np.arange(len(grids))
    at_level = np.full((len(GRID_LEVELS), len(grids)), none)
    for _ in GRID_LEVELS:  # walk up at most the number of levels; farther ancestors overwrite nearer ones
        lv = level[ancestor]
        for k in range(len(GRID_LEVELS)):
            at_level[k, lv == k] = ancestor[lv == k]
        ancestor = parent[ancestor]
    ids_or_none = pa.concat_arrays([ids.combine_chunks().cast(pa.string()), pa.nulls(1, pa.string())])
    for k, name in enumerate(GRID_LEVELS):
        grids = grids.append_column(name, ids_or_none.take(pa.array(at_level[k])))
    return grids.to_pandas()


GRID_FIGURES = ("buildings", "residents", "households", "cameras", "camera_coverage", "open_cases", "overdue_cases",
                "cases_per_1000")


def micro_figures(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """What changes slowly, per micro-grid in force: ``buildings``, ``residents``, ``households``,
    ``cameras``, and ``seen`` (buildings that at least one camera sees; see :mod:`twin.cases.cameras`).

    The coverage is read from the store's ``camera_sight`` when it is kept for the cameras and footprints as they
    are (:func:`twin.cases.cameras.keep_camera_sight`), and computed afresh otherwise.
    """
    kept = camera_sight_kept(con)
    if not kept:
        counts = cameras_per_building(con)
        con.register("fresh_sight", pd.DataFrame({"building_id": counts.index[counts.to_numpy() > 0]}))
    sight = "camera_sight" if kept else "fresh_sight"
    try:
        with whole_table_reads(con):
            return read_frame(con, f"""
                WITH b AS (SELECT grid_id, count(*) AS buildings, count(s.building_id) AS seen
                           FROM buildings LEFT JOIN {sight} s USING (building_id) GROUP BY grid_id),
                     r AS (SELECT bl.grid_id, sum(p.residents)::BIGINT AS residents, sum(p.households)::BIGINT AS households
                           FROM ({per_building_population(con)}) p JOIN buildings bl USING (building_id)
                           GROUP BY bl.grid_id),
                     k AS (SELECT grid_id, count(*) AS cameras FROM cameras GROUP BY grid_id)
                SELECT g.grid_id AS micro_id, coalesce(b.buildings, 0) AS buildings, coalesce(b.seen, 0) AS seen,
                       coalesce(r.residents, 0) AS residents, coalesce(r.households, 0) AS households,
                       coalesce(k.cameras, 0) AS cameras
                FROM grids g LEFT JOIN b USING (grid_id) LEFT JOIN r USING (grid_id) LEFT JOIN k USING (grid_id)
                WHERE g.level = 'micro' AND g.valid_to IS NULL""")
    finally:
        if not kept:
            con.unregister("fresh_sight")


def grid_table(con: duckdb.DuckDBPyConnection, *, level: str = "grid", micro: pd.DataFrame | None = None,
               tree: pd.DataFrame | None = None) -> pd.DataFrame:
    """Figures per grid at one level, for the leader's table.

    Parameters
    ----------
    level : {'street', 'community', 'grid', 'micro'}
    micro, tree : DataFrame, optional
        :func:`micro_figures` and :func:`grid_tree`, when already known; open cases are
        always counted afresh.

    Returns
    -------
    DataFrame
        ``grid_id``, ``name``, ``buildings``, ``residents``, ``households``, ``cameras``,
        ``camera_coverage`` (% of buildings seen by a camera), ``open_cases``, ``overdue_cases`` (open past
        their deadline by the store's clock) and ``cases_per_1000`` (open cases per 1,000 residents, 0 without
        residents), one row per grid.
    """
    check_choice("level", level, GRID_LEVELS)
    tree = grid_tree(con) if tree is None else tree
    micro = micro_figures(con) if micro is None else micro
    placeholders = ", ".join("?" for _ in OPEN_STATUSES)
    cases = con.execute(f"SELECT grid_id AS micro_id, count(*) AS open_cases, "
                        f"count(*) FILTER (WHERE due_at < ?) AS overdue_cases FROM cases "
                        f"WHERE status IN ({placeholders}) GROUP BY grid_id", [_now(con), *OPEN_STATUSES]).df()
    micro_to = pd.DataFrame({"micro_id": tree.loc[tree["level"] == "micro", "grid_id"],
                             level: tree.loc[tree["level"] == "micro", level]})
    per_micro = micro.merge(cases, on="micro_id", how="left").fillna({"open_cases": 0, "overdue_cases": 0})
    figures = per_micro.merge(micro_to, on="micro_id").groupby(level)[
        ["buildings", "seen", "residents", "households", "cameras", "open_cases", "overdue_cases"]].sum()
    names = tree[tree["level"] == level][["grid_id", "name"]].set_index("grid_id")
    out = names.join(figures).fillna(0).reset_index()
    out["camera_coverage"] = (100.0 * out["seen"] / out["buildings"].where(out["buildings"] > 0)).round(0).fillna(0)
    per_resident = out["open_cases"] / out["residents"].where(out["residents"] > 0)
    out["cases_per_1000"] = (1000.0 * per_resident).round(1).fillna(0)
    for c in ("buildings", "residents", "households", "cameras", "open_cases", "overdue_cases"):
        out[c] = out[c].astype(int)
    columns = ["grid_id", "name", *GRID_FIGURES]
    return out[columns].sort_values("grid_id").reset_index(drop=True)


def grid_boundaries(con: duckdb.DuckDBPyConnection, *, level: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Grids in force at one level and their boundaries (shapely, district CRS)."""
    check_choice("level", level, GRID_LEVELS)
    frame = read_frame(con, "SELECT grid_id, name, parent_id, ST_AsWKB(boundary) AS wkb FROM grids "
                            "WHERE level = ? AND valid_to IS NULL ORDER BY grid_id", [level])
    shapes = shapely.from_wkb(frame.pop("wkb").map(bytes).to_numpy()) if len(frame) else np.array([])
    return frame, shapes

