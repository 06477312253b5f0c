"""The raw reads behind the inspector: one building, case or camera, a page of residents, search.

These answer whatever they are asked. The app, the API and exports call them only
through :class:`twin.access.policy.Gate`, which applies the access rules (who may see whose
personal data), masks and the audit trail in one place.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable
from functools import partial

import duckdb
import pandas as pd
import shapely

from twin.cases.cameras import CameraSight, cameras_seeing
from twin.cases.cases import OPEN_STATUSES, next_statuses
from twin.cases.duties import escalated_condition
from twin.cases.detections import recent_detections
from twin.errors import N_, InputError
from twin.grids.grids import grids_under
from twin.party.figures import grid_party_figures
from twin.party.orgs import grid_orgs
from twin.store.queries import _now, population, residents_counted
from twin.store.schema import GRID_LEVELS
from twin.store.store import building_rows

RESIDENT_COLUMNS = ("resident_id", "unit", "household_id", "room", "name", "gender", "age", "id_number", "phone",
                    "tags")
OPEN_CASE_COLUMNS = ("case_id", "category", "subcategory", "status", "age_h", "overdue")


def grid_path(con: duckdb.DuckDBPyConnection, grid_id: str | None) -> list[dict]:
    """The grids from the street down to ``grid_id``: ``[{grid_id, name, level}, ...]``."""
    if grid_id is None:
        return []
    # One join per level rather than a recursive query: DuckDB's scanner of PostgreSQL tables reuses the
    # first step's filter in every step of a recursion, and would find only the first two levels.
    depth = len(GRID_LEVELS)
    joins = "".join(f" LEFT JOIN grids g{i} ON g{i}.grid_id = g{i - 1}.parent_id AND g{i}.valid_to IS NULL"
                    for i in range(1, depth))
    columns = ", ".join(f"g{i}.grid_id, g{i}.name, g{i}.level" for i in range(depth))
    found = con.execute(f"SELECT {columns} FROM grids g0{joins} WHERE g0.grid_id = ? AND g0.valid_to IS NULL",
                        [grid_id]).fetchall()
    rows = [found[0][i:i + 3] for i in range(0, 3 * depth, 3) if found[0][i] is not None][::-1] if found else []
    return [{"grid_id": g, "name": n, "level": lv} for g, n, lv in rows]


def building_card(con: duckdb.DuckDBPyConnection, building_id: str, *,
                  paths: Callable[[str | None], list[dict]] | None = None, sight: CameraSight | None = None,
                  cameras_near: Callable[[float, float, float, float], list[str]] | None = None) -> dict:
    """The building's facts, grid path, head counts, its residents' tags (``tags``: tag to count, most first) and
    the cameras that see it (``cameras``: :func:`twin.cases.cameras.cameras_seeing`).

    ``paths`` gives a grid's path (:func:`grid_path`), ``sight`` the cameras that see a footprint
    (:class:`twin.cases.cameras.CameraSight`) and ``cameras_near`` the cameras standing in a box
    (:func:`twin.cases.cameras.cameras_seeing`'s ``near``) from what the caller holds already (a server's grid
    tree, cameras and camera layer); by default they are read from the store. Two reads in all with ``paths``
    and ``sight`` given: one per round trip to a PostgreSQL store counts (a click's card is read while others
    click).

    Raises
    ------
    InputError
        When there is no such building.
    """
    keys = ("building_id", "name", "address", "use", "height", "base_z", "floors", "height_source", "source",
            "source_id", "grid_id", "compound_id")
    row = con.execute(f"SELECT {', '.join(keys)}, ST_AsWKB(footprint), coalesce(residents, 0), "
                      "coalesce(households, 0) FROM buildings WHERE building_id = ?", [building_id]).fetchall()
    if not row:
        raise InputError(N_("no building {building_id!r} in the store"), building_id=building_id)
    card = dict(zip(keys, row[0]))
    footprint = shapely.from_wkb(bytes(row[0][len(keys)]))
    counted = residents_counted(con)
    # One read of the building's residents gives their head count, households and tags alike.
    people = con.execute(f"SELECT household_id, tags FROM residents WHERE {building_rows(con)}",
                         [building_id]).fetchall()
    tags = collections.Counter(t for _, listed in people for t in (listed or ()))
    card["tags"] = dict(sorted(tags.items(), key=lambda kv: (-kv[1], kv[0])))
    card["residents"], card["households"] = (row[0][-2:] if counted else
                                             (len(people), len({h for h, _ in people if h is not None})))
    card["residents_counted"] = counted
    card["grid_path"] = (paths or partial(grid_path, con))(card["grid_id"])
    card["cameras"] = (sight.seeing(building_id, footprint) if sight is not None
                       else cameras_seeing(con, building_id, footprint=footprint, near=cameras_near))
    return card


def residents_page(con: duckdb.DuckDBPyConnection, building_id: str, *, page: int = 0,
                   page_size: int = 50) -> pd.DataFrame:
    """One page of a building's residents, grouped by unit and household.

    Returns
    -------
    DataFrame
        Columns ``RESIDENT_COLUMNS``; ``age`` in whole years at the store's clock. ID numbers
        and phones are in clear: :meth:`twin.access.policy.Gate.residents_page` masks them.
    """
    if page < 0 or page_size <= 0:
        raise InputError(N_("page {page} of size {page_size}: give page >= 0 and a positive page size"),
                         page=page, page_size=page_size)
    now = _now(con)
    return con.execute(f"""
        SELECT resident_id, unit, household_id, room, name, gender,
               date_diff('year', birth_date, ?::DATE) - CASE WHEN strftime(birth_date, '%m%d') > strftime(?::DATE, '%m%d')
                                                          THEN 1 ELSE 0 END AS age,
               id_number, phone, array_to_string(tags, ', ') AS tags
        FROM residents WHERE {building_rows(con)}
        ORDER BY unit, household_id, room, resident_id
        LIMIT ? OFFSET ?""", [now, now, building_id, page_size, page * page_size]).df()


ACCESS_COLUMNS = ("grid_id", "department", "assigned_worker")  # what decides who sees a case (Gate.sees_case)


def open_cases(con: duckdb.DuckDBPyConnection, *, building_id: str | None = None,
               grid_id: str | None = None, where: tuple[str, list] = ("true", []),
               access_columns: bool = False) -> pd.DataFrame:
    """Open cases of a building (or a micro-grid): id, category, status, age in hours, overdue flag.

    ``where`` is a further SQL condition on ``cases`` and its parameters (the gate's, ``Gate.case_filter``).
    ``access_columns`` adds :data:`ACCESS_COLUMNS`, for a caller that decides per case who sees it.
    """
    placeholders = ", ".join("?" for _ in OPEN_STATUSES)
    column, value = ("building_id", building_id) if building_id is not None else ("grid_id", grid_id)
    now = _now(con)
    more = "".join(f", {c}" for c in ACCESS_COLUMNS) if access_columns else ""
    return con.execute(f"""
        SELECT case_id, category, subcategory, status,
               round(date_diff('minute', reported_at, ?::TIMESTAMP) / 60.0, 1) AS age_h,
               due_at < ?::TIMESTAMP AS overdue{more}
        FROM cases WHERE {column} = ? AND status IN ({placeholders}) AND ({where[0]})
        ORDER BY reported_at DESC""", [now, now, value, *OPEN_STATUSES, *where[1]]).df()


def case_card(con: duckdb.DuckDBPyConnection, case_id: str) -> dict:
    """A case with its history, the statuses it may move to next, and its detections' snapshots."""
    keys = ("case_id", "category", "subcategory", "source", "status", "description", "address", "building_id",
            "grid_id", "reported_grid_id", "camera_id", "reported_at", "due_at", "media_url", "assigned_worker",
            "department", "deadline")
    row = con.execute(f"SELECT {', '.join(keys)} FROM cases WHERE case_id = ?", [case_id]).fetchone()
    if row is None:
        raise InputError(N_("no case {case_id!r} in the store"), case_id=case_id)
    card = dict(zip(keys, row))
    named = con.execute("SELECT name FROM departments WHERE department_id = ?", [card["department"]]).fetchall()
    card["department_name"] = named[0][0] if named else None
    card["history"] = con.execute('SELECT "at", from_status, to_status, actor, note FROM case_events '
                                  'WHERE case_id = ? ORDER BY "at"', [case_id]).df()
    card["next_statuses"] = next_statuses(card["status"])
    detections = recent_detections(con, case_id=case_id, limit=20)
    card["detections"] = len(detections)
    # The grid worker's photos (twin.field), served to whoever may see the case (scenes.field).
    taken = [f"/api/field/photos/{p}" for p, in con.execute(
        'SELECT photo_id FROM case_photos WHERE case_id = ? ORDER BY "at", photo_id', [case_id]).fetchall()]
    card["photos"] = list(dict.fromkeys([u for u in [card["media_url"], *taken, *detections["snapshot_url"]] if u]))
    late = _now(con) - pd.Timestamp(card["due_at"]) if card["due_at"] is not None else None
    card["overdue_h"] = (late.total_seconds() / 3600 if card["status"] in OPEN_STATUSES and late is not None
                         and late > pd.Timedelta(0) else None)
    return card


CASE_LIST_COLUMNS = ("case_id", "category", "subcategory", "status", "grid_id", "reported_at", "due_at", "overdue_h",
                     "department", "deadline")


def case_list(con: duckdb.DuckDBPyConnection, *, statuses: tuple[str, ...] = OPEN_STATUSES,
              category: str | None = None, grid_ids: list[str] | None = None, overdue: bool = False,
              escalated: bool = False, where: tuple[str, list] = ("true", []), limit: int = 500) -> pd.DataFrame:
    """Cases for the leader's drill-downs: filtered by status, category and grids, or the overdue ones, or the
    departments' cases escalated to the street leader.

    Parameters
    ----------
    grid_ids : list of str, optional
        The grids (micro-grids included) a case's ``grid_id`` must be among.
    overdue : bool
        Only cases past their deadline, the longest overdue first; otherwise the newest first.
    escalated : bool
        Only the departments' cases past their department's deadline by more than their duty's escalation hours
        (:func:`twin.cases.duties.escalated_condition`), the longest past it first; ``overdue_h`` is then the hours
        past the department's deadline.
    where : (str, list)
        A further SQL condition on ``cases`` and its parameters (the gate's scope, ``Gate.case_filter``).

    Returns
    -------
    DataFrame
        ``CASE_LIST_COLUMNS``; ``overdue_h`` is the hours past the deadline (<= 0 when not overdue) at the
        store's clock. At most ``limit`` rows.
    """
    now = _now(con)
    conditions = [f"status IN ({', '.join('?' for _ in statuses)})", where[0]]
    params: list = [*statuses, *where[1]]
    if category is not None:
        conditions.append("category = ?")
        params.append(category)
    if grid_ids is not None:
        conditions.append("grid_id IN (SELECT unnest(?))")
        params.append(list(grid_ids))
    if overdue:
        conditions.append("due_at < ?")
        params.append(now)
    if escalated:
        conditions.append(escalated_condition())
        params.append(now)
    order = "deadline ASC" if escalated else "due_at ASC" if overdue else "reported_at DESC"
    late = "deadline" if escalated else "due_at"
    return con.execute(f"""
        SELECT case_id, category, subcategory, status, grid_id, reported_at, due_at,
               round(date_diff('minute', {late}, ?::TIMESTAMP) / 60.0, 1) AS overdue_h, department, deadline
        FROM cases WHERE {' AND '.join(f'({c})' for c in conditions)}
        ORDER BY {order}, case_id LIMIT ?""", [now, *params, limit]).df()


def offline_cameras(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Cameras not online: ``camera_id``, ``name``, ``status``, ``grid_id``, ``building_id``, by id."""
    return con.execute("SELECT camera_id, name, status, grid_id, building_id FROM cameras "
                       "WHERE status <> 'online' ORDER BY camera_id").df()


def grid_card(con: duckdb.DuckDBPyConnection, grid_id: str, *,
              paths: Callable[[str | None], list[dict]] | None = None) -> dict:
    """A grid in force: its facts, its worker, head counts, open and overdue cases by category, party organisations
    (``paths``: as :func:`building_card`'s).

    Figures cover the grid and every grid under it (its micro-grids hold the buildings and cases).

    Returns
    -------
    dict
        ``grid_id``, ``name``, ``level``, ``kind``, ``worker``, ``worker_phone``, ``grid_path``, ``buildings``, ``residents``,
        ``households``, ``cameras``; ``cases`` (DataFrame ``category``, ``open``, ``overdue``, most open
        first); ``party_orgs`` (DataFrame: the organisations on it or covering its buildings, largest kind first,
        as :func:`twin.party.orgs.grid_orgs`: ``org_id``, ``name``, ``kind``, ``secretary``, ``members``,
        ``buildings`` covered, ...) and ``party`` (its members reported, active and services this month:
        :func:`twin.party.figures.grid_party_figures`).

    Raises
    ------
    InputError
        When no grid of that id is in force.
    """
    facts = ("grid_id", "name", "level", "kind", "worker", "worker_phone")
    row = con.execute(f"SELECT {', '.join(facts)} FROM grids WHERE grid_id = ? AND valid_to IS NULL",
                      [grid_id]).fetchone()
    if row is None:
        raise InputError(N_("no grid {grid_id!r} in force in the store; pick one from the per-grid table"),
                         grid_id=grid_id)
    card = dict(zip(facts, row))
    card["grid_path"] = (paths or partial(grid_path, con))(grid_id)
    under = sorted(grids_under(con, [grid_id]))
    card["buildings"], = con.execute("SELECT count(*) FROM buildings WHERE grid_id IN (SELECT unnest(?))",
                                     [under]).fetchone()
    card["residents"], card["households"] = population(con, grids=under)
    card["cameras"], = con.execute("SELECT count(*) FROM cameras WHERE grid_id IN (SELECT unnest(?))",
                                   [under]).fetchone()
    placeholders = ", ".join("?" for _ in OPEN_STATUSES)
    card["cases"] = con.execute(
        f"""SELECT category, count(*) AS open, count(*) FILTER (WHERE due_at < ?) AS overdue FROM cases
            WHERE grid_id IN (SELECT unnest(?)) AND status IN ({placeholders})
            GROUP BY category ORDER BY open DESC, category""", [_now(con), under, *OPEN_STATUSES]).df()
    card["party_orgs"] = grid_orgs(con, under, above=[g["grid_id"] for g in card["grid_path"][:-1]])
    card["party"] = grid_party_figures(con, under)
    return card


def camera_card(con: duckdb.DuckDBPyConnection, camera_id: str) -> dict:
    row = con.execute("""SELECT camera_id, name, status, stream_url, z, heading_deg, fov_deg, range_m, grid_id,
                                building_id FROM cameras WHERE camera_id = ?""", [camera_id]).fetchone()
    if row is None:
        raise InputError(N_("no camera {camera_id!r} in the store"), camera_id=camera_id)
    keys = ("camera_id", "name", "status", "stream_url", "z", "heading_deg", "fov_deg", "range_m", "grid_id",
            "building_id")
    card = dict(zip(keys, row))
    card["detections"] = recent_detections(con, camera_id=camera_id, limit=10)
    return card


def search(con: duckdb.DuckDBPyConnection, text: str, *, limit: int = 10,
           case_grids: frozenset[str] | None = None, case_where: tuple[str, list] = ("true", []),
           buildings: bool = True) -> list[dict]:
    """Buildings by address or name, and cases by id, best matches first.

    ``case_grids`` keeps the cases in those grids only (before the limit: a user's cases are
    never crowded out by others'); None keeps every case. ``case_where`` is a further SQL condition on
    ``cases`` and its parameters (the gate's, for the roles that see cases by department or assignment).
    ``buildings`` False finds cases only (a city's names and addresses take a second to scan).

    Returns
    -------
    list of dict
        ``kind`` ('building' or 'case'), ``id`` and ``label``.
    """
    text = text.strip()
    if not text:
        return []
    if len(text) > 200:
        raise InputError(N_("search text is longer than 200 characters; shorten it"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(N_("the search text is not valid Unicode (it holds a lone surrogate); type it again")) from None
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    in_grids = "" if case_grids is None else "AND grid_id IN (SELECT unnest(?)) "
    cases = con.execute("SELECT case_id, category || ' · ' || status FROM cases WHERE case_id ILIKE ? ESCAPE '\\' "
                        f"{in_grids}AND ({case_where[0]}) ORDER BY case_id LIMIT ?",
                        [pattern, *([] if case_grids is None else [sorted(case_grids)]), *case_where[1],
                         limit]).fetchall()
    found = con.execute("""
        SELECT building_id, coalesce(name, '') || ' · ' || coalesce(address, '') FROM buildings
        WHERE name ILIKE ? ESCAPE '\\' OR address ILIKE ? ESCAPE '\\' OR building_id = ?
        ORDER BY (name = ?) DESC, length(coalesce(address, name)) LIMIT ?""",
                        [pattern, pattern, text, text, limit]).fetchall() if buildings else []
    return ([{"kind": "case", "id": c, "label": f"{c} · {lbl}"} for c, lbl in cases]
            + [{"kind": "building", "id": b, "label": lbl} for b, lbl in found])[:limit]


def element_card(con: duckdb.DuckDBPyConnection, building_id: str, element_index: int, *,
                 max_psets: int = 4, max_properties: int = 8) -> dict:
    """One element of a building's model: IFC class, name, storey and its main property sets.

    Parameters
    ----------
    element_index : int
        The element's index in the building's model (as stored per triangle in ``meshes.element_ids``).
    """
    row = con.execute("""SELECT e.global_id, e.ifc_class, e.name, e.storey, e.psets FROM elements e
                         JOIN meshes m ON m.mesh_id = e.mesh_id
                         WHERE m.building_id = ? AND e.element_index = ?
                         ORDER BY m.lod LIMIT 1""", [building_id, element_index]).fetchone()
    if row is None:
        raise InputError(N_("building {building_id!r} has no model element {element_index}"),
                         building_id=building_id, element_index=element_index)
    global_id, ifc_class, name, storey, psets = row
    sets = json.loads(psets or "{}")
    main = sorted(sets, key=lambda k: (not k.startswith("Pset_"), k))[:max_psets]
    return {"global_id": global_id, "ifc_class": ifc_class, "name": name, "storey": storey,
            "psets": {k: {p: v for p, v in list(sets[k].items())[:max_properties] if p != "id"} for k in main}}
