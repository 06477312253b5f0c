"""Party organisations: who they are, which buildings they cover, and where the map marks them.

An organisation covers buildings by one rule, so that nothing is kept twice and a grid edit moves coverage with
the buildings:

- one of a compound (``compound_id``) covers the compound's buildings;
- a party group without a compound covers every building of its grid (and of the grids under it);
- any other without a compound (a grid's branch, a joint branch of offices and shops) covers the buildings of
  its grid, and of the grids under it, that no compound's organisation covers.
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb
import numpy as np
import pandas as pd
import shapely

from twin.errors import check_choice
from twin.store.schema import GRID_LEVELS, PARTY_ORG_KINDS

PARTY_MEMBER_TAG = "党员"  # the resident tag that makes a resident a party member
ORG_COLUMNS = ("org_id", "name", "kind", "grid_id", "compound_id", "parent_id", "secretary", "members")


def load_orgs(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every organisation (``ORG_COLUMNS``), the largest kind first, then by members (most first) and id."""
    orgs = con.execute(f"SELECT {', '.join(ORG_COLUMNS)} FROM party_orgs").df()
    return sort_orgs(orgs)


def sort_orgs(orgs: pd.DataFrame) -> pd.DataFrame:
    """Organisations by kind (``PARTY_ORG_KINDS`` order; no kind last), members (most first) and id."""
    rank = orgs["kind"].map({k: i for i, k in enumerate(PARTY_ORG_KINDS)}).fillna(len(PARTY_ORG_KINDS))
    order = np.lexsort((orgs["org_id"].to_numpy(dtype=str), -orgs["members"].fillna(0).to_numpy(dtype=float),
                        rank.to_numpy(dtype=float)))
    return orgs.iloc[order].reset_index(drop=True)


def _ancestors_sql() -> str:
    """SQL of ``(grid_id, ancestor, level)``: every grid in force with itself and each grid above it (``level`` is the
    ancestor's). One join per level, as :func:`twin.inspector.grid_path` reads (a recursive query reads wrong from
    PostgreSQL), in SQL rather than :func:`twin.store.queries.grid_tree`'s walk in Python."""
    depth = len(GRID_LEVELS)
    joins = "".join(f" LEFT JOIN grids g{i} ON g{i}.grid_id = g{i - 1}.parent_id AND g{i}.valid_to IS NULL"
                    for i in range(1, depth))
    pairs = ", ".join(f"{{'ancestor': g{i}.grid_id, 'level': g{i}.level}}" for i in range(depth))
    return (f"SELECT grid_id, a.ancestor, a.level FROM (SELECT g0.grid_id, unnest([{pairs}]) AS a "
            f"FROM grids g0{joins} WHERE g0.valid_to IS NULL) WHERE a.ancestor IS NOT NULL")


def grid_ancestors(con: duckdb.DuckDBPyConnection, *, level: str | None = None,
                   grid_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """Every grid in force with itself and each grid above it: ``grid_id``, ``ancestor``, ``level`` (the ancestor's).

    Parameters
    ----------
    level : {'street', 'community', 'grid', 'micro'}, optional
        Only the ancestors at this level.
    grid_ids : iterable of str, optional
        Only these grids (those not in force give no row). A city has 700,000 grids: all of them with their
        ancestors are 2.8 million rows, 700 MB of Python strings for a moment, where a month's figures need the
        few grids that have any.
    """
    where, params = [], []
    if level is not None:
        check_choice("level", level, GRID_LEVELS)
        where.append("level = ?")
        params.append(level)
    if grid_ids is not None:
        where.append("grid_id IN (SELECT unnest(?))")
        params.append(sorted({str(g) for g in grid_ids}))
    sql = _ancestors_sql() if not where else f"SELECT * FROM ({_ancestors_sql()}) WHERE {' AND '.join(where)}"
    return con.execute(sql, params).df()


def _coverage_sql(org_ids: list[str] | None) -> tuple[str, list]:
    """SQL of ``(org_id, building_id)``, what organisations cover (all, or ``org_ids``), and its parameters."""
    chosen = "TRUE" if org_ids is None else "org_id IN (SELECT unnest(?))"
    return (f"""
        WITH o AS (SELECT org_id, kind, grid_id, compound_id FROM party_orgs WHERE {chosen}),
             taken AS (SELECT DISTINCT compound_id FROM party_orgs WHERE compound_id IS NOT NULL),
             up AS MATERIALIZED ({_ancestors_sql()})
        SELECT org_id, building_id FROM o JOIN buildings b USING (compound_id)
        UNION ALL
        SELECT o.org_id, b.building_id FROM o JOIN up ON up.ancestor = o.grid_id
        JOIN buildings b ON b.grid_id = up.grid_id LEFT JOIN taken t ON t.compound_id = b.compound_id
        WHERE o.compound_id IS NULL AND (o.kind = 'group' OR t.compound_id IS NULL)""",
            [] if org_ids is None else [sorted(org_ids)])


def covered_buildings(con: duckdb.DuckDBPyConnection, org_ids: list[str] | None = None) -> pd.DataFrame:
    """The buildings each organisation covers (see the module's rule).

    Parameters
    ----------
    org_ids : list of str, optional
        Only these organisations (default: every one).

    Returns
    -------
    DataFrame
        ``org_id``, ``building_id``: one row per organisation and building it covers, by both.
    """
    sql, params = _coverage_sql(org_ids)
    return con.execute(f"SELECT * FROM ({sql}) ORDER BY org_id, building_id", params).df()


def org_places(con: duckdb.DuckDBPyConnection, org_ids: list[str] | None = None, *,
               within: list[str] | None = None) -> pd.DataFrame:
    """Organisations (all, or ``org_ids``) with what the map and the grid card show of them.

    Parameters
    ----------
    within : list of str, optional
        Grid ids: count, in ``here``, the buildings each organisation covers in them.

    Returns
    -------
    DataFrame
        ``ORG_COLUMNS``, then ``buildings`` (how many it covers) and ``x``, ``y``, ``z``: where its mark stands, in
        the district CRS (m): above the middle of the buildings it covers, at the highest roof among them; an
        organisation that covers none stands on the ground at a point inside its grid (NaN without a grid in force).
        Sorted as :func:`sort_orgs`.
    """
    orgs = load_orgs(con)
    if org_ids is not None:
        orgs = orgs[orgs["org_id"].isin(org_ids)].reset_index(drop=True)
    sql, params = _coverage_sql(org_ids)
    here = "count(*) FILTER (WHERE b.grid_id IN (SELECT unnest(?)))" if within is not None else "0"
    place = con.execute(f"""
        SELECT c.org_id, count(*) AS buildings, avg(b.label_x) AS x, avg(b.label_y) AS y, max(b.base_z + b.height) AS z,
               {here} AS here
        FROM ({sql}) c JOIN buildings b USING (building_id) GROUP BY c.org_id""",
                        [*([] if within is None else [sorted(within)]), *params]).df().set_index("org_id")
    out = orgs.join(place, on="org_id")
    out["buildings"] = out["buildings"].fillna(0).astype(int)
    out["here"] = out["here"].fillna(0).astype(int)
    bare = out["x"].isna() & out["grid_id"].notna()
    if bare.any():
        grids = con.execute("SELECT grid_id, ST_AsWKB(boundary) AS wkb FROM grids WHERE valid_to IS NULL "
                            "AND grid_id IN (SELECT unnest(?))", [sorted(set(out.loc[bare, "grid_id"]))]).df()
        inside = shapely.point_on_surface(shapely.from_wkb(grids["wkb"].map(bytes).to_numpy()))
        xy = pd.DataFrame(shapely.get_coordinates(inside), index=grids["grid_id"], columns=["x", "y"])
        out.loc[bare, "x"] = xy["x"].reindex(out.loc[bare, "grid_id"]).to_numpy()
        out.loc[bare, "y"] = xy["y"].reindex(out.loc[bare, "grid_id"]).to_numpy()
        out.loc[bare, "z"] = 0.0
    return out


def grid_orgs(con: duckdb.DuckDBPyConnection, grid_ids: list[str] | frozenset[str], *,
              above: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """The organisations of some grids (a grid and every grid under it): those on them, and those covering their
    buildings (a micro-grid's compound organisation, a branch of the grid above), as :func:`org_places` rows,
    sorted as :func:`sort_orgs`.

    Parameters
    ----------
    above : list of str
        The grids above them (:func:`twin.inspector.grid_path`): their organisations without a compound may cover
        buildings here.
    """
    grid_ids = sorted(grid_ids)
    orgs = load_orgs(con)
    compounds = {c for c, in con.execute("SELECT DISTINCT compound_id FROM buildings WHERE grid_id IN "
                                         "(SELECT unnest(?)) AND compound_id IS NOT NULL", [grid_ids]).fetchall()}
    maybe = orgs[orgs["grid_id"].isin(grid_ids) | orgs["compound_id"].isin(compounds)
                 | (orgs["grid_id"].isin(list(above)) & orgs["compound_id"].isna())]
    places = org_places(con, list(maybe["org_id"]), within=grid_ids)
    mine = places["grid_id"].isin(grid_ids) | (places["here"] > 0)
    return places[mine].drop(columns="here").reset_index(drop=True)
