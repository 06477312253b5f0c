"""Party organisations of the demo district, and the party members who report to its grids (报到).

Every grid has a party organisation: each grid with compounds has one in at least one of them (a committee, a
general branch or a branch by its members, as the party's rules size them: over 100, 50 to 100, fewer), and
each grid without a compound has a joint branch of its offices and shops (联合党支部); ``plan.party_orgs`` in
all (483 in Zhengdong). ``plan.party_reported`` of the residents tagged 党员 report to a grid (5,246 serve in
Zhengdong's grids): most to their home grid, a quarter to another grid of their community (where they work).
Each reported member serves some months and not others; the service records of the last two months
(``DEMO_NOW``'s and the one before) follow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data.common import DEMO_NOW, _Plan
from data.people import _person_names
from twin.party.orgs import PARTY_MEMBER_TAG
_PARTY_SHARE = 0.061  # party members per resident in the listed residents' tags (small, seeds 0-2: 6.06-6.18 %)
_ELSEWHERE = 0.25  # of reported members, those who report to another grid of their community than their home's
SERVICES = ("楼栋巡查", "环境整治", "政策宣讲", "关爱独居老人", "文明劝导", "矛盾调解", "垃圾分类引导", "防汛值守",
            "反诈宣传", "助老助餐", "交通文明引导", "消防安全检查")
SERVICE_HOURS = (1.0, 1.5, 2.0, 3.0, 4.0)


def _party_members(buildings, residents) -> pd.Series:
    """Party members (residents tagged 党员) per ``compound_id``, from the listed residents."""
    rows_ = _member_rows(residents)
    comp_of = buildings.set_index("source_id")["compound_id"]
    return comp_of.reindex(residents["building_source_id"].to_numpy()[rows_]).value_counts()


def _member_rows(residents) -> np.ndarray:
    """Row positions of the residents tagged 党员."""
    flat = residents["tags"].list.flatten()
    return np.unique(flat.index[(flat == PARTY_MEMBER_TAG).to_numpy(dtype=bool, na_value=False)])


def _party_members_counted(buildings) -> pd.Series:
    """Party members per ``compound_id`` when residents are counted: ``_PARTY_SHARE`` of its residents."""
    per_comp = buildings.groupby("compound_id")["residents"].sum()
    return (per_comp * _PARTY_SHARE).round().astype(np.int64)


def _kind_of(members: int) -> tuple[str, str]:
    """The kind of a compound's organisation by its members, and the end of its name."""
    if members > 100:
        return "committee", "党委"
    return ("general_branch", "党总支") if members >= 50 else ("branch", "党支部")


def _party_orgs(rng, compounds, grids, per_comp: pd.Series, plan: _Plan, *, secretaries=None) -> pd.DataFrame:
    """``plan.party_orgs`` organisations: a joint branch on each grid without a compound, the rest in compounds
    (at least one in each grid that has compounds, then others drawn).

    Parameters
    ----------
    per_comp : Series
        Party members per ``compound_id``.
    secretaries : callable, optional
        ``secretaries(compound_id or None, grid_id) -> name or None``: a party member to be the secretary
        (from the listed residents); else, or when it gives None, a name is made up.

    Returns
    -------
    DataFrame
        ``org_id``, ``name``, ``kind`` (``twin.store.schema.PARTY_ORG_KINDS``), ``compound_id`` (None for a joint
        branch), ``grid_id`` (grid level), ``members``, ``parent_id`` (None) and ``secretary``.
    """
    level = grids[grids["level"] == "grid"]
    with_compounds = set(compounds["grid_id"])
    bare = level[~level["grid_id"].isin(with_compounds)]
    nc, n_compound = len(compounds), plan.party_orgs - len(bare)
    first = compounds.reset_index(drop=True).groupby("grid_id", sort=True).head(1).index.to_numpy()
    rest = np.setdiff1d(np.arange(nc), first)
    extra = max(0, n_compound - len(first))
    picks = np.sort(np.r_[first, rng.choice(rest, min(extra, len(rest)), replace=False)]).astype(int)
    grid_name = grids.set_index("grid_id")["name"].to_dict()
    parent = grids.set_index("grid_id")["parent_id"].to_dict()
    rows = []
    for c in picks:
        cid, grid_id = compounds["compound_id"].iat[c], compounds["grid_id"].iat[c]
        mem = max(3, int(per_comp.get(cid, 0)))
        kind, word = _kind_of(mem)
        rows.append((f"{compounds['name'].iat[c]}{word}", kind, cid, grid_id, mem))
    for grid_id, name in zip(bare["grid_id"], bare["name"]):
        rows.append((f"{grid_name[parent[grid_id]]}{name}联合党支部", "joint_branch", None, grid_id,
                     int(rng.integers(5, 36))))
    rows.sort(key=lambda r: (r[3], r[2] is None, r[2] or ""))
    made = iter(_person_names(rng, len(rows)))
    names = [next(made) for _ in rows]
    out = pd.DataFrame(rows, columns=["name", "kind", "compound_id", "grid_id", "members"])
    out.insert(0, "org_id", [f"DZ{k + 1:04d}" for k in range(len(out))])
    out["compound_id"] = out["compound_id"].astype(object).where(out["compound_id"].notna(), None)
    out["parent_id"] = None
    found = [secretaries(c, g) if secretaries else None for c, g in zip(out["compound_id"], out["grid_id"])]
    out["secretary"] = [f if f else n for f, n in zip(found, names)]
    return out


def _secretary_picker(rng, buildings, residents, grids):
    """``pick(compound_id, grid_id)``: a party member living in the compound (or, for a joint branch, in the grid)."""
    members = residents.iloc[_member_rows(residents)]
    where = buildings.set_index("source_id")[["compound_id", "grid_id"]].reindex(members["building_source_id"])
    grid_of_micro = grids.set_index("grid_id")["parent_id"]
    by_compound = dict(list(members["name"].groupby(where["compound_id"].to_numpy())))
    by_grid = dict(list(members["name"].groupby(grid_of_micro.reindex(where["grid_id"]).to_numpy())))

    def pick(compound_id, grid_id):
        pool = by_compound.get(compound_id) if compound_id is not None else by_grid.get(grid_id)
        return None if pool is None or not len(pool) else str(pool.iat[int(rng.integers(len(pool)))])
    return pick


def _party_reports(rng, buildings, residents, grids, plan: _Plan) -> pd.DataFrame:
    """``plan.party_reported`` party members (listed residents tagged 党员) and the grid each reports to.

    Returns
    -------
    DataFrame
        ``resident_id``, ``grid_id`` (grid level), ``reported_on`` (a date before ``DEMO_NOW``).
    """
    members = residents.iloc[_member_rows(residents)]
    n = min(plan.party_reported, len(members))
    chosen = members.iloc[np.sort(rng.choice(len(members), n, replace=False))]
    micro = buildings.set_index("source_id")["grid_id"].reindex(chosen["building_source_id"]).to_numpy()
    parent = grids.set_index("grid_id")["parent_id"]
    home = parent.reindex(micro).to_numpy(dtype=object)
    level = grids[grids["level"] == "grid"]
    siblings = {c: g.to_numpy(dtype=object) for c, g in level.groupby("parent_id")["grid_id"]}
    community = parent.reindex(home).to_numpy(dtype=object)
    away = rng.random(n) < _ELSEWHERE
    grid = home.copy()
    for k in np.flatnonzero(away):
        others = siblings[community[k]][siblings[community[k]] != home[k]]
        if len(others):
            grid[k] = others[int(rng.integers(len(others)))]
    start = pd.Timestamp("2024-01-01")
    days = rng.integers(0, (DEMO_NOW.normalize() - start).days, n)
    return pd.DataFrame({"resident_id": chosen["resident_id"].to_numpy(), "grid_id": grid,
                         "reported_on": (start + pd.to_timedelta(days, unit="D")).to_numpy()})


def _party_services(rng, reports: pd.DataFrame) -> pd.DataFrame:
    """Service records of the reported members in ``DEMO_NOW``'s month (up to its day) and the month before.

    Grids differ in how many of their members serve in a month (from about a third to nine in ten); an active
    member serves one to five times.

    Returns
    -------
    DataFrame
        ``service_id``, ``resident_id``, ``grid_id`` (the grid reported to), ``day``, ``hours``, ``service``.
    """
    columns = ["service_id", "resident_id", "grid_id", "day", "hours", "service"]
    if reports.empty:
        return pd.DataFrame(columns=columns)
    grids = np.unique(reports["grid_id"].to_numpy(dtype=str))
    zeal = dict(zip(grids, rng.beta(5, 3, len(grids)) * 0.6 + 0.3))
    rate = reports["grid_id"].map(zeal).to_numpy(dtype=float)
    this_month = DEMO_NOW.normalize().replace(day=1)
    months = [(this_month - pd.offsets.MonthBegin(1), this_month - pd.Timedelta(days=1)),
              (this_month, DEMO_NOW.normalize())]
    rows = []
    for first, last in months:
        active = np.flatnonzero(rng.random(len(reports)) < rate)
        times = 1 + np.minimum(rng.poisson(1.2, len(active)), 4)
        who = np.repeat(active, times)
        span = (last - first).days + 1
        days = first + pd.to_timedelta(rng.integers(0, span, len(who)), unit="D")
        rows.append(pd.DataFrame({"resident_id": reports["resident_id"].to_numpy()[who],
                                  "grid_id": reports["grid_id"].to_numpy()[who], "day": days.to_numpy(),
                                  "hours": np.array(SERVICE_HOURS)[rng.integers(0, len(SERVICE_HOURS), len(who))],
                                  "service": np.array(SERVICES, dtype=object)[
                                      rng.integers(0, len(SERVICES), len(who))]}))
    out = pd.concat(rows, ignore_index=True).sort_values(["day", "resident_id"], kind="stable", ignore_index=True)
    out.insert(0, "service_id", [f"PS{k + 1:06d}" for k in range(len(out))])
    return out[columns]
