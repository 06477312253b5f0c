"""Party organisations: who they are, which buildings they cover, and where the map marks them.

An organisation covers buildings by one rule, so that nothing is kept twice and a grid edit moves coverage with
the buildings:

- one of a compound (``compound_id``) covers the compound's buildings;
- a party group without a compound covers every building of its grid (and of the grids under it);
- any other without a compound (a grid's branch, a joint branch of offices and shops) covers the buildings of
  its grid, and of the grids under it, that no compound's organisation covers.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import shapely

from twin.store.queries import grid_tree
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


def _micro_ancestors(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """``micro_id``, ``ancestor``: each micro-grid in force with itself and every grid above it."""
    tree = grid_tree(con)
    micro = tree[tree["level"] == "micro"]
    return pd.concat([pd.DataFrame({"micro_id": micro["grid_id"].to_numpy(), "ancestor": micro[lvl].to_numpy()})
                      for lvl in GRID_LEVELS], ignore_index=True).dropna()


def covered_buildings(con: duckdb.DuckDBPyConnection, orgs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The buildings each organisation covers (see the module's rule).

    Parameters
    ----------
    orgs : DataFrame, optional
        Every organisation, with ``org_id``, ``kind``, ``grid_id`` and ``compound_id`` (default: the store's), as
        :func:`load_orgs` reads them: a compound covered by one is left out of the others' grids.

    Returns
    -------
    DataFrame
        ``org_id``, ``building_id``: one row per organisation and building it covers.
    """
    orgs = load_orgs(con) if orgs is None else orgs
    buildings = con.execute("SELECT building_id, grid_id AS micro_id, compound_id FROM buildings").df()
    in_compound = orgs["compound_id"].notna()
    by_compound = orgs.loc[in_compound, ["org_id", "compound_id"]].merge(buildings, on="compound_id")
    ancestors = _micro_ancestors(con)
    rest = buildings[~buildings["compound_id"].isin(set(orgs["compound_id"].dropna()))]
    parts = [by_compound[["org_id", "building_id"]]]
    for is_group, pool in ((True, buildings), (False, rest)):
        chosen = orgs[~in_compound & ((orgs["kind"] == "group") == is_group)][["org_id", "grid_id"]]
        within = chosen.merge(ancestors, left_on="grid_id", right_on="ancestor").merge(pool, on="micro_id")
        parts.append(within[["org_id", "building_id"]])
    return pd.concat(parts, ignore_index=True).drop_duplicates().sort_values(["org_id", "building_id"],
                                                                             ignore_index=True)


def org_places(con: duckdb.DuckDBPyConnection, *, orgs: pd.DataFrame | None = None,
               covered: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every organisation with what the map and the grid card show of it.

    Parameters
    ----------
    orgs, covered : DataFrame, optional
        :func:`load_orgs` and :func:`covered_buildings`, when already read.

    Returns
    -------
    DataFrame
        ``ORG_COLUMNS``, then ``buildings`` (how many it covers) and ``x``, ``y``, ``z``: where its mark stands, in
        the district CRS (m): above the middle of the buildings it covers, at the highest roof among them; an
        organisation that covers none stands on the ground at a point inside its grid (NaN without a grid in force).
        Sorted as :func:`sort_orgs`.
    """
    orgs = load_orgs(con) if orgs is None else orgs
    covered = covered_buildings(con, orgs) if covered is None else covered
    where = con.execute("SELECT building_id, label_x, label_y, base_z + height AS top FROM buildings").df()
    place = covered.merge(where, on="building_id").groupby("org_id").agg(
        buildings=("building_id", "size"), x=("label_x", "mean"), y=("label_y", "mean"), z=("top", "max"))
    out = orgs.join(place, on="org_id")
    out["buildings"] = out["buildings"].fillna(0).astype(int)
    bare = out["x"].isna() & out["grid_id"].notna()
    if bare.any():
        grids = con.execute("SELECT grid_id, ST_AsWKB(boundary) AS wkb FROM grids WHERE valid_to IS NULL AND grid_id IN "
                            "(SELECT unnest(?))", [sorted(set(out.loc[bare, "grid_id"]))]).df()
        inside = shapely.point_on_surface(shapely.from_wkb(grids["wkb"].map(bytes).to_numpy()))
        xy = pd.DataFrame(shapely.get_coordinates(inside), index=grids["grid_id"], columns=["x", "y"])
        out.loc[bare, "x"] = xy["x"].reindex(out.loc[bare, "grid_id"]).to_numpy()
        out.loc[bare, "y"] = xy["y"].reindex(out.loc[bare, "grid_id"]).to_numpy()
        out.loc[bare, "z"] = 0.0
    return out


def grid_orgs(con: duckdb.DuckDBPyConnection, grid_ids: list[str] | frozenset[str]) -> pd.DataFrame:
    """The organisations of some grids (a grid and every grid under it): those on them, and those covering their
    buildings (a micro-grid's compound organisation, say), as :func:`org_places` rows, sorted as :func:`sort_orgs`."""
    grid_ids = sorted(grid_ids)
    orgs = load_orgs(con)
    covers = covered_buildings(con, orgs)
    places = org_places(con, orgs=orgs, covered=covers)
    inside = con.execute("SELECT building_id FROM buildings WHERE grid_id IN (SELECT unnest(?))", [grid_ids]).df()
    near = set(covers.loc[covers["building_id"].isin(inside["building_id"]), "org_id"])
    return places[places["grid_id"].isin(grid_ids) | places["org_id"].isin(near)].reset_index(drop=True)
