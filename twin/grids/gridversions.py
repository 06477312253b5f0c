"""Saving grid edits as new versions, with who, when and why; history and restore.

A grid row is in force while ``valid_to`` is NULL. Saving a partition (the
siblings under one parent, after edits) in the caller's transaction:

1. checks the rules (:mod:`twin.grids.gridrules`); any error refuses the whole save
   with :class:`~twin.errors.GridRuleError`, and nothing is written;
2. closes the versions in force of the changed and deleted grids
   (``valid_to = at``) and writes a new version (``version + 1``,
   ``valid_from = at``) of each changed or added grid;
3. moves buildings, cameras and open cases to the micro-grid now holding them
   (residents follow their building; cases keep ``reported_grid_id``);
   children of a changed higher-level grid go to the new parent that holds them;
4. writes one ``grid_changes`` row per grid with the actor, reason and what moved.

Restoring an earlier version writes the parent's partition as it was then as
a new version of each grid that differs.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from twin.access.access import audit
from twin.errors import GridEditError, GridRuleError, check_choice
from twin.grids.gridedit import GRID_SIZE_M, _noded, _polygonal, as_partition, changed_grids, share_area
from twin.grids.gridrules import TOLERANCE_M2, Violation, check_partition, errors, raise_on_errors
from twin.grids.reassign import Assets, Reassignment, load_assets, nearby_buildings, reassign
from twin.store.clock import store_now
from twin.store.schema import GRID_LEVELS
from twin.store.store import insert_frame

log = logging.getLogger(__name__)

ACTIONS = ("edit", "restore", "import")
AUDIT_ACTIONS = {"edit": "grid.save", "restore": "grid.restore", "import": "grid.import"}
ATTRS = ("name", "kind", "worker", "worker_phone")
_COLUMNS = f"grid_id, parent_id, level, {', '.join(ATTRS)}, version, valid_from, valid_to, ST_AsWKB(boundary) AS wkb"


def _frame(con: duckdb.DuckDBPyConnection, where: str, params: list) -> gpd.GeoDataFrame:
    df = con.execute(f"SELECT {_COLUMNS} FROM grids WHERE {where} ORDER BY grid_id, version", params).df()
    geoms = shapely.from_wkb(df.pop("wkb").map(bytes).to_numpy()) if len(df) else np.array([], dtype=object)
    out = gpd.GeoDataFrame(df, geometry=list(geoms) if len(df) else gpd.GeoSeries([]))
    for c in ("parent_id", *ATTRS):
        out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out


def current_grids(con: duckdb.DuckDBPyConnection, *, parent_id: str | None = None, level: str | None = None,
                  grid_ids: list[str] | None = None) -> gpd.GeoDataFrame:
    """Grids in force, indexed by grid_id: the children of ``parent_id``, or those of ``level``, or ``grid_ids``.

    Returns
    -------
    GeoDataFrame
        ``parent_id``, ``level``, ``name``, ``kind``, ``worker``, ``worker_phone``, ``version``,
        ``valid_from``, ``valid_to``, ``geometry`` (district CRS).
    """
    where, params = ["valid_to IS NULL"], []
    if grid_ids is not None:
        where.append("grid_id IN (SELECT unnest(?))")
        params.append(list(grid_ids))
    elif level is not None:
        check_choice("level", level, GRID_LEVELS)
        where.append("level = ?")
        params.append(level)
    else:
        where.append("parent_id IS NULL" if parent_id is None else "parent_id = ?")
        params += [] if parent_id is None else [parent_id]
    return _frame(con, " AND ".join(where), params).set_index("grid_id")


def partition_at(con: duckdb.DuckDBPyConnection, parent_id: str | None, at: pd.Timestamp) -> gpd.GeoDataFrame:
    """The children of ``parent_id`` as they were at time ``at`` (same columns as :func:`current_grids`)."""
    cond = "parent_id IS NULL" if parent_id is None else "parent_id = ?"
    params = ([] if parent_id is None else [parent_id]) + [at, at]
    return _frame(con, f"{cond} AND valid_from <= ? AND (valid_to IS NULL OR valid_to > ?)",
                  params).set_index("grid_id")


def grid_history(con: duckdb.DuckDBPyConnection, grid_id: str) -> gpd.GeoDataFrame:
    """Every version of one grid, oldest first, with who wrote it, when and why.

    Returns
    -------
    GeoDataFrame
        ``grid_id``, ``version``, ``parent_id``, ``level``, ``name``, ``kind``,
        ``worker``, ``valid_from``, ``valid_to`` (NULL: in force), ``change_id``,
        ``actor``, ``reason``, ``action``, ``change``, ``moved`` (JSON), ``geometry``.
    """
    hist = _frame(con, "grid_id = ?", [grid_id])
    if not len(hist):
        raise GridEditError(f"no grid {grid_id!r} in the store, in force or past; check the id in the grid table.")
    changes = con.execute("SELECT grid_id, version, change_id, actor, reason, action, change, moved "
                          "FROM grid_changes WHERE grid_id = ? AND version IS NOT NULL", [grid_id]).df()
    out = hist.merge(changes, on=["grid_id", "version"], how="left")
    return gpd.GeoDataFrame(out, geometry="geometry")


@dataclass
class SavedEdit:
    """The result of :func:`save_partition`.

    Attributes
    ----------
    change_id : str or None
        None when nothing differed, so nothing was written.
    reassignment : Reassignment or None
        What moved (micro-grids); pass to :meth:`twin.grids.reassign.Assets.apply` to keep a session's assets current.
    warnings : list of Violation
    redrawn : list of str
        Children (any level below) whose outline the save redrew to fit their changed parents.
    audit_seq : int or None
        The number of the audit-trail row written for the change.
    """

    change_id: str | None
    at: pd.Timestamp | None
    parent_id: str | None
    level: str | None
    changed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    reparented: list[str] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)
    reassignment: Reassignment | None = None
    warnings: list[Violation] = field(default_factory=list)
    redrawn: list[str] = field(default_factory=list)
    audit_seq: int | None = None

    def summary(self) -> dict:
        """JSON-ready: ids, versions, counts moved, per-grid figures before and after, warnings."""
        r = self.reassignment
        return {"change_id": self.change_id, "at": None if self.at is None else self.at.isoformat(),
                "parent_id": self.parent_id, "level": self.level, "changed": self.changed, "added": self.added,
                "deleted": self.deleted, "reparented": self.reparented, "redrawn": self.redrawn,
                "versions": self.versions,
                "moved": r.summary() if r is not None else {},
                "figures": r.figures.to_dict("records") if r is not None else [],
                "warnings": [w.as_dict() for w in self.warnings]}


def _clock(con: duckdb.DuckDBPyConnection, ids: list[str], at: pd.Timestamp | None) -> pd.Timestamp:
    """Now (or ``at``), but always after the newest version of these grids, so versions stay ordered."""
    at = store_now(con, unit="us") if at is None else pd.Timestamp(at)
    newest = con.execute("SELECT max(greatest(valid_from, coalesce(valid_to, valid_from))) FROM grids "
                         "WHERE grid_id IN (SELECT unnest(?))", [ids]).fetchone()[0]
    if newest is not None and at <= pd.Timestamp(newest):
        at = pd.Timestamp(newest) + pd.Timedelta(milliseconds=1)
    return at


def _buildings_frame(assets: Assets, rows: np.ndarray) -> gpd.GeoDataFrame:
    b = assets.buildings.iloc[rows]
    return gpd.GeoDataFrame({"building_id": b["building_id"].to_numpy(), "households": b["households"].to_numpy(),
                             "label_x": b["x"].to_numpy(), "label_y": b["y"].to_numpy()},
                            geometry=list(assets.footprints[rows]))


def check_edit(con: duckdb.DuckDBPyConnection, parent_id: str | None, shapes: gpd.GeoSeries | Mapping, *,
               level: str | None = None, assets: Assets | None = None, kinds: Mapping[str, str] | None = None,
               ) -> list[Violation]:
    """The rules a proposed partition of ``parent_id``'s children breaks (errors first, then warnings).

    The building rules are checked on the changed and added grids only.
    """
    shapes = as_partition(shapes)
    current = current_grids(con, parent_id=parent_id)
    level = _level(current, level, parent_id)
    return edit_check(con, parent_id, current, shapes, level=level, assets=assets, kinds=kinds).all


@dataclass
class EditCheck:
    """What :func:`edit_check` found: the rules the edited partition breaks, and those its redrawn children would.

    Attributes
    ----------
    violations : list of Violation
        The edited partition's own broken rules (errors first).
    redrawn : list of Violation
        The errors of the children (any level below) that saving would redraw to fit their changed parents,
        each with ``under`` naming that parent; checked only when ``violations`` holds no error.
    fits : list of dict
        The children's new parents and outlines, per level below (see ``_refit``); used by the save.
    """

    violations: list[Violation]
    redrawn: list[Violation] = field(default_factory=list)
    fits: list[dict[str, dict]] = field(default_factory=list)

    @property
    def all(self) -> list[Violation]:
        """Every broken rule, errors first."""
        return sorted(self.violations + self.redrawn, key=lambda v: v.severity != "error")


def edit_check(con: duckdb.DuckDBPyConnection, parent_id: str | None, current: gpd.GeoDataFrame,
               shapes: gpd.GeoSeries, *, level: str, assets: Assets | None = None,
               kinds: Mapping[str, str] | None = None) -> EditCheck:
    """The one rule check of an edit: run live after each edit in the planner, and by every save before it writes.

    Parameters
    ----------
    current : GeoDataFrame
        ``parent_id``'s children in force (:func:`current_grids`).
    shapes : GeoSeries of Polygon indexed by grid_id
        The children after the edit (district CRS, m).
    level : str
        The children's level.
    assets : Assets, optional
        Buildings around the edit (read from the store when not given).
    """
    violations = _check(con, parent_id, current, shapes, level, assets, kinds)
    if errors(violations):
        return EditCheck(violations)
    changed, added, removed = changed_grids(current.geometry, shapes)
    fits, bad = _refit(con, level, shapes, touched=changed + removed, grown=changed + added, assets=assets)
    return EditCheck(violations, bad, fits)


def _level(current: gpd.GeoDataFrame, level: str | None, parent_id: str | None) -> str:
    if level is None:
        if not len(current):
            raise GridEditError(f"grid {parent_id!r} has no children in force, so their level is unknown; "
                                "give level=.")
        level = str(current["level"].iloc[0])
    check_choice("level", level, GRID_LEVELS)
    return level


def _check(con, parent_id, current, shapes, level, assets, kinds) -> list[Violation]:
    parent = None
    if parent_id is not None:
        p = current_grids(con, grid_ids=[parent_id])
        if not len(p):
            raise GridEditError(f"no grid {parent_id!r} in force to hold these grids; give an existing parent id.")
        parent = p.geometry.iloc[0]
    changed, added, _ = changed_grids(current.geometry, shapes)
    buildings = None
    if level == "micro" and (changed or added):
        todo = [shapes[g] for g in changed + added]
        if assets is None:
            assets = load_assets(con, bbox=_bbox(todo))
        buildings = _buildings_frame(assets, nearby_buildings(assets, todo))
    if kinds is None:
        kinds = {**{g: k for g, k in current["kind"].items()},
                 **{g: _inherit(current, shapes[g], "kind") for g in added}}
    return check_partition(shapes, parent=parent, parent_id=parent_id, level=level, buildings=buildings,
                           kinds=kinds, only=changed + added)


def _bbox(geoms: list[BaseGeometry], pad: float = 1.0) -> tuple[float, float, float, float]:
    xmin, ymin, xmax, ymax = shapely.total_bounds(np.asarray(geoms, dtype=object))
    return xmin - pad, ymin - pad, xmax + pad, ymax + pad


def _inherit(current: gpd.GeoDataFrame, geom: BaseGeometry, column: str) -> object:
    """The value of ``column`` of the current sibling that overlaps ``geom`` most (for a new grid)."""
    if not len(current):
        return None
    shared = shapely.area(shapely.intersection(current.geometry.values, geom, grid_size=GRID_SIZE_M))
    return current[column].iloc[int(np.argmax(shared))] if shared.max() > 0 else None


def save_partition(con: duckdb.DuckDBPyConnection, parent_id: str | None, shapes: gpd.GeoSeries | Mapping, *,
                   actor: str, reason: str, level: str | None = None, attrs: pd.DataFrame | None = None,
                   action: str = "edit", assets: Assets | None = None, at: pd.Timestamp | None = None,
                   source: str | None = None) -> SavedEdit:
    """Save the edited children of one parent as new grid versions, and move what they hold.

    Runs inside the caller's transaction (``twin.store.store.open_for_command`` or
    ``Store.transaction``): on an error raised here nothing has been written.

    Parameters
    ----------
    con : DuckDB connection
    parent_id : str or None
        The parent (None: the top level, streets).
    shapes : GeoSeries of Polygon indexed by grid_id
        All the children after the edit (district CRS, m); a child in force
        that is missing here is deleted.
    actor, reason : str
        Who saves, and why (both required).
    level : str, optional
        The children's level, when the parent has none yet.
    attrs : DataFrame indexed by grid_id, optional
        ``name``, ``kind``, ``worker`` for added grids (or to change them);
        an added grid otherwise takes the kind and worker of the sibling it
        took most area from, and a name in the district's scheme (:func:`new_names`).
    action : {'edit', 'restore', 'import'}
    assets : Assets, optional
        The session's :func:`~twin.grids.reassign.load_assets`; read from the store
        around the changed grids when not given.
    at : Timestamp, optional
        The time of the new versions (default now).
    source : str, optional
        Where the request came from (an IP address, ``cli``), kept in the audit trail.

    Returns
    -------
    SavedEdit

    Raises
    ------
    GridRuleError
        The partition breaks a rule (named, with the grid and the area), or
        above the micro level its children cannot be redrawn to fit (named,
        with the child and the rule); nothing is written.
    GridEditError
        No actor or reason, or an unknown parent.
    """
    return _save(con, parent_id, shapes, actor=actor, reason=reason, level=level, attrs=attrs, action=action,
                 assets=assets, at=at, source=source, target=parent_id)


def _save(con, parent_id, shapes, *, actor, reason, level, attrs, action, assets, at, source, target) -> SavedEdit:
    """:func:`save_partition`, with the grid the audit row names (the restored grid for a restore)."""
    check_choice("action", action, ACTIONS)
    if not actor or not str(actor).strip() or not reason or not str(reason).strip():
        raise GridEditError(f"saving grids needs who saves and why; got actor={actor!r}, reason={reason!r}.")
    shapes = as_partition(shapes)
    current = current_grids(con, parent_id=parent_id)
    level = _level(current, level, parent_id)
    changed, added, removed = changed_grids(current.geometry, shapes)
    attrs = pd.DataFrame(columns=list(ATTRS)) if attrs is None else attrs
    attr_changed = [g for g in attrs.index if g in current.index and g not in changed
                    and any(c in attrs.columns and not _same(attrs.at[g, c], current.at[g, c]) for c in ATTRS)]
    changed = sorted(set(changed) | set(attr_changed))
    if not (changed or added or removed):
        return SavedEdit(None, None, parent_id, level)
    where = f"the edit of the children of {parent_id or 'the district'}"
    todo = [shapes[g] for g in changed + added] + [current.geometry[g] for g in changed + removed]
    if assets is None and level == "micro":
        assets = load_assets(con, bbox=_bbox(todo))
    check = edit_check(con, parent_id, current, shapes, level=level, assets=assets)
    violations = check.violations
    raise_on_errors(violations, where=where)
    if check.redrawn:
        edited = sorted({v.under for v in check.redrawn})
        # the errors are those of the children, or (when the children are redrawn too) of the grandchildren
        below = GRID_LEVELS.index(level) + (1 if set(edited) <= set(shapes.index) else 2)
        listed = "\n".join(f"  - {v.message}" for v in check.redrawn[:10])
        raise GridRuleError(f"{where} redraws the {GRID_LEVELS[below]} children of {', '.join(edited)}, and they "
                            f"would break {len(check.redrawn)} rule(s); nothing was saved:\n{listed}\nMove the "
                            "edited boundary along the children's edges (or off the buildings), or edit the "
                            "children first.", check.redrawn)
    fits = check.fits
    kids = {g: row for fit in fits for g, row in fit.items()}
    reparent = {g: r["parent_id"] for g, r in kids.items() if r["parent_id"] != r["old_parent"]}
    redrawn = sorted(g for g, r in kids.items() if r["redrawn"])
    at = _clock(con, changed + added + removed + list(kids), at)
    change_id = f"gc-{at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"

    result = None
    micro_moves = ({g: shapes[g] for g in changed + added} | {g: None for g in removed} if level == "micro" else
                   {g: r["geometry"] for g, r in kids.items() if r["level"] == "micro" and r["redrawn"]})
    if micro_moves:
        if assets is None:
            assets = load_assets(con, bbox=_bbox([g for g in micro_moves.values() if g is not None]
                                                 + list(current.geometry[removed])))
        result = reassign(assets, micro_moves)
        lost = [m for m in result.moves.values() if len(m) and m["to_grid"].isna().any()]
        if lost:
            raise GridRuleError(f"{where} leaves some buildings, cameras or cases in no micro-grid; nothing was "
                                "saved. Cover the whole parent.", [])
    versions = _write_versions(con, current, shapes, attrs, changed, added, removed, parent_id=parent_id,
                               level=level, at=at)
    versions.update(_write_children(con, kids, at))
    if result is not None:
        _write_moves(con, result)
    moved = json.dumps(result.summary()) if result is not None else None
    rows = ([(g, versions[g], "changed") for g in changed] + [(g, versions[g], "added") for g in added]
            + [(g, None, "deleted") for g in removed]
            + [(g, versions[g], "redrawn" if kids[g]["redrawn"] else "reparented") for g in sorted(kids)])
    con.executemany('INSERT INTO grid_changes (change_id, "at", actor, reason, action, grid_id, version, change, '
                    'moved) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
                    [(change_id, at, actor, reason, action, g, v, c, moved) for g, v, c in rows])
    seq = audit(con, actor=actor, action=AUDIT_ACTIONS[action], target=target or parent_id or "district",
                source=source, detail={"change_id": change_id, "parent_id": parent_id, "level": level,
                                       "changed": changed, "added": added, "deleted": removed,
                                       "reparented": sorted(reparent), "redrawn": redrawn, "reason": reason})
    log.info("%s: saved %s (%d changed, %d added, %d deleted, %d children redrawn) by %s", change_id, where,
             len(changed), len(added), len(removed), len(redrawn), actor)
    return SavedEdit(change_id, at, parent_id, level, changed, added, removed, sorted(reparent), versions, result,
                     [v for v in violations if v.severity == "warning"], redrawn, seq)


def _same(a: object, b: object) -> bool:
    """Equal attribute values, a missing value (None or NaN) equal to another missing one."""
    return (pd.isna(a) and pd.isna(b)) or a == b


def _refit(con, level: str, shapes: gpd.GeoSeries, *, touched: list[str], grown: list[str],
           assets: Assets | None) -> tuple[list[dict[str, dict]], list[Violation]]:
    """The children (and theirs, down to micro) of grids changed above the micro level, fitted to them.

    Parameters
    ----------
    shapes : GeoSeries
        The grids at ``level`` after the edit (the candidate new parents).
    touched : list of str
        Grids whose children may no longer fit (changed or deleted).
    grown : list of str
        Grids whose outline changed or that are new (they may have gained area).

    Returns
    -------
    fits : list of dict, one per level below
        child id -> ``parent_id``, ``old_parent``, ``geometry``, ``level``, ``redrawn``
        (its outline changed), ``row`` (its version in force), for every child
        whose parent or outline changes.
    errors : list of Violation
        Where a child cannot be fitted (its new parent holds area no child borders), or the redrawn children
        break a rule (a micro-grid boundary cutting a building, say), each with ``under`` = its new parent;
        ``fits`` is empty then.
    """
    if level == "micro" or not touched:
        return [], []
    kids = _frame(con, "valid_to IS NULL AND parent_id IN (SELECT unnest(?))", [touched]).set_index("grid_id")
    if not len(kids):
        return [], []
    child_level = str(kids["level"].iloc[0])
    ids, geoms = shapes.index.to_numpy(dtype=object), shapes.to_numpy(dtype=object)
    members: dict[str, dict[str, BaseGeometry]] = {g: {} for g in ids}
    for child, geom in zip(kids.index, kids.geometry):
        inside = shapely.area(shapely.intersection(geoms, geom, grid_size=GRID_SIZE_M))
        k = int(np.argmax(inside))
        # a child lying (nearly) whole in one grid stays as it is; a cut one keeps its largest piece
        piece = geom if geom.area - inside[k] <= TOLERANCE_M2 else _polygonal(
            shapely.intersection(geom, geoms[k], grid_size=GRID_SIZE_M))
        members[ids[k]][child] = piece
    footprints = np.array([], dtype=object)
    if child_level == "micro":
        if assets is None:
            assets = load_assets(con, bbox=_bbox([shapes[g] for g in grown if g in shapes.index]))
        footprints = assets.footprints[nearby_buildings(assets, [shapes[g] for g in grown if g in shapes.index])]
    bad: list[Violation] = []
    fitted: dict[str, gpd.GeoSeries] = {}
    for p in [g for g in ids if members[g] or g in grown]:
        # children of an unchanged grid that are not moving stay; those of a grown one were all placed above
        stay = current_grids(con, parent_id=p).geometry.drop(list(kids.index), errors="ignore")
        kin = as_partition({**dict(stay.items()), **members[p]})
        gained = _polygonal(shapely.difference(shapes[p], shapely.union_all(kin.values, grid_size=GRID_SIZE_M),
                                               grid_size=GRID_SIZE_M)) if p in grown else shapely.Polygon()
        for part in shapely.get_parts(gained):
            if part.area <= GRID_SIZE_M:
                continue
            shares = share_area(part, kin, footprints=footprints) if len(kin) else {}
            if not shares and part.area > TOLERANCE_M2:
                c = part.representative_point()
                bad.append(Violation("gap", p, part, float(part.area), "error",
                                     f"gap: grid {p}: {part.area:.2f} m² at ({c.x:.2f}, {c.y:.2f}) of its new area "
                                     f"borders none of its {child_level} children "
                                     f"({', '.join(kin.index) or 'it has none'}); draw a child there first, or "
                                     "move the edited boundary so a child borders that area.", under=p))
            for g, extra in shares.items():
                kin[g] = _polygonal(shapely.union(kin[g], extra, grid_size=GRID_SIZE_M))
        kin = _noded(kin, [g for g in kin.index if g in kids.index])
        fitted[p] = kin
        moved_here = [g for g in kin.index if g in kids.index]
        buildings = None
        if child_level == "micro" and len(footprints):
            buildings = _buildings_frame(assets, nearby_buildings(assets, list(kin[moved_here].values)))
        found = check_partition(kin, parent=shapes[p], parent_id=p, level=child_level, buildings=buildings,
                                only=moved_here)
        bad += [replace(v, under=p) for v in errors(found) if v.rule != "households"]
    if bad:
        return [], bad
    out: dict[str, dict] = {}
    for p, kin in fitted.items():
        for g in kin.index:
            if g not in kids.index:
                continue
            old = kids.loc[g]
            sym = shapely.area(shapely.symmetric_difference(old.geometry, kin[g], grid_size=GRID_SIZE_M))
            redrawn = bool(sym > GRID_SIZE_M ** 2)
            if redrawn or old["parent_id"] != p:
                out[g] = {"parent_id": p, "old_parent": old["parent_id"], "level": child_level,
                          "geometry": kin[g] if redrawn else old.geometry, "redrawn": redrawn, "row": old}
    deeper = [g for g, r in out.items() if r["redrawn"]]
    if not deeper:
        return [out], []
    below = gpd.GeoSeries({g: out[g]["geometry"] for g in deeper})
    fits, bad = _refit(con, child_level, below, touched=deeper, grown=deeper, assets=assets)
    return ([], bad) if bad else ([out, *fits], [])


def _write_versions(con, current, shapes, attrs, changed, added, removed, *, parent_id, level, at) -> dict[str, int]:
    """Close the changed and removed grids' versions in force and write the changed and added ones.

    New grids take ``parent_id`` and ``level`` (known even when the parent has no children yet).
    """
    top = dict(con.execute("SELECT grid_id, max(version) FROM grids WHERE grid_id IN (SELECT unnest(?)) "
                           "GROUP BY grid_id", [changed + added]).fetchall())
    if changed + removed:
        con.execute("UPDATE grids SET valid_to = ? WHERE valid_to IS NULL AND grid_id IN (SELECT unnest(?))",
                    [at, changed + removed])
    names = new_names(level, current["name"], added)
    rows = []
    for g in changed + added:
        base = current.loc[g] if g in current.index else None
        row = {"grid_id": g, "parent_id": base["parent_id"] if base is not None else parent_id,
               "level": base["level"] if base is not None else level, "boundary": shapes[g],
               "version": int(top.get(g) or 0) + 1, "valid_from": at}
        for c in ATTRS:
            if c in attrs.columns and g in attrs.index and attrs.at[g, c] is not None and not pd.isna(attrs.at[g, c]):
                row[c] = attrs.at[g, c]
            elif base is not None:
                row[c] = base[c]
            else:
                row[c] = names[g] if c == "name" else _inherit(current, shapes[g], c)
        rows.append(row)
    if rows:
        insert_frame(con, "grids", pd.DataFrame(rows), geometry=("boundary",))
    return {r["grid_id"]: r["version"] for r in rows}


def _write_children(con, kids: dict[str, dict], at: pd.Timestamp) -> dict[str, int]:
    """Close the versions in force of redrawn or reparented children and write their new ones."""
    if not kids:
        return {}
    ids = list(kids)
    top = dict(con.execute("SELECT grid_id, max(version) FROM grids WHERE grid_id IN (SELECT unnest(?)) "
                           "GROUP BY grid_id", [ids]).fetchall())
    con.execute("UPDATE grids SET valid_to = ? WHERE valid_to IS NULL AND grid_id IN (SELECT unnest(?))", [at, ids])
    rows = [{"grid_id": g, "parent_id": r["parent_id"], "level": r["level"], "boundary": r["geometry"],
             "version": int(top.get(g) or 0) + 1, "valid_from": at, **{c: r["row"][c] for c in ATTRS}}
            for g, r in kids.items()]
    insert_frame(con, "grids", pd.DataFrame(rows), geometry=("boundary",))
    return {r["grid_id"]: r["version"] for r in rows}


NAME_SCHEMES = {"grid": "第{n}网格", "micro": "第{n}微网格"}  # the district's naming (data/layout.py)


def new_names(level: str | None, siblings: Iterable[object], new_ids: Sequence[str]) -> dict[str, str]:
    """Names for new grids in the district's scheme: 第N网格 / 第N微网格, numbered after the highest sibling.

    Parameters
    ----------
    level : str
        The new grids' level; a level without a numbered scheme (street, community) names a grid by its id.
    siblings : iterable of str or None
        The names of the siblings they join (the numbers are read from those in the scheme).
    new_ids : sequence of str
        The new grids, in the order they get numbers.

    Returns
    -------
    dict
        grid id -> name.
    """
    scheme = NAME_SCHEMES.get(str(level))
    if scheme is None:
        return {g: g for g in new_ids}
    pattern = re.compile(re.escape(scheme).replace(re.escape("{n}"), r"(\d+)") + "$")
    numbers = [int(m.group(1)) for n in siblings if isinstance(n, str) and (m := pattern.match(n))]
    top = max(numbers, default=0)
    return {g: scheme.format(n=top + k) for k, g in enumerate(new_ids, start=1)}


def _write_moves(con: duckdb.DuckDBPyConnection, result: Reassignment) -> None:
    for kind, table, key in (("buildings", "buildings", "building_id"), ("cameras", "cameras", "camera_id"),
                             ("cases", "cases", "case_id")):
        moves = result.moves[kind]
        if not len(moves):
            continue
        con.register("grid_moves", moves[[key, "to_grid"]])
        try:
            con.execute(f"UPDATE {table} SET grid_id = m.to_grid FROM grid_moves m WHERE {table}.{key} = m.{key}")
        finally:
            con.unregister("grid_moves")


def restore_version(con: duckdb.DuckDBPyConnection, grid_id: str, version: int, *, actor: str, reason: str,
                    assets: Assets | None = None, source: str | None = None) -> SavedEdit:
    """Restore the partition that ``grid_id``'s ``version`` belonged to, as new versions.

    The children of that version's parent are written back as they were when
    that version came into force: grids that differ now get a new version,
    grids deleted since come back, grids added since go. The same rules apply
    as to any save, and the audit trail gets a ``grid.restore`` row naming
    ``grid_id`` (with ``source``, where the request came from).

    Raises
    ------
    GridEditError
        No such version.
    GridRuleError
        The old partition no longer fits (the parent itself changed since).
    """
    row = con.execute("SELECT parent_id, valid_from FROM grids WHERE grid_id = ? AND version = ?",
                      [grid_id, int(version)]).fetchone()
    if row is None:
        have = [r[0] for r in con.execute("SELECT version FROM grids WHERE grid_id = ? ORDER BY version",
                                          [grid_id]).fetchall()]
        raise GridEditError(f"grid {grid_id} has no version {version}; its versions are {have or 'none'}.")
    parent_id, valid_from = row
    then = partition_at(con, parent_id, pd.Timestamp(valid_from))  # holds the version itself, so never empty
    return _save(con, parent_id, then.geometry, actor=actor, reason=f"restore {grid_id} version {version}: {reason}",
                 level=str(then["level"].iloc[0]), attrs=then[list(ATTRS)], action="restore", assets=assets,
                 at=None, source=source, target=grid_id)


def check_store_partition(con: duckdb.DuckDBPyConnection, parent_id: str) -> list[Violation]:
    """The rules the children in force of ``parent_id`` break now (a health check of the store)."""
    current = current_grids(con, parent_id=parent_id)
    level = _level(current, None, parent_id)
    return _check_all(con, parent_id, current, level)


def _check_all(con, parent_id, current, level) -> list[Violation]:
    p = current_grids(con, grid_ids=[parent_id])
    parent = p.geometry.iloc[0] if len(p) else None
    buildings = None
    if level == "micro":
        assets = load_assets(con, bbox=_bbox(list(current.geometry)))
        buildings = _buildings_frame(assets, nearby_buildings(assets, list(current.geometry)))
    return check_partition(current.geometry, parent=parent, parent_id=parent_id, level=level, buildings=buildings,
                           kinds=dict(current["kind"].items()))


__all__ = ["EditCheck", "SavedEdit", "check_edit", "check_store_partition", "current_grids", "edit_check",
           "grid_history", "new_names", "partition_at", "restore_version", "save_partition"]
