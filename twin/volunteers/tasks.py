"""Volunteer tasks: published by a community's operator or a grid worker, grabbed by residents (抢任务), checked
in and out on site, and confirmed by the grid worker, which credits the points.

Places are counted inside the writing transaction, and each grab takes a numbered place (``place_no``, part of the
key): two residents never both take the last place. In one process the store's one writer runs grabs one after
another; across processes on a PostgreSQL store, two transactions that both saw the last place free both write
the same key, and the second fails and runs again, now seeing the task full.
"""

from __future__ import annotations

import math
import secrets

import duckdb
import pandas as pd

from twin.access.access import Principal, audit
from twin.access.policy import Gate
from twin.cases.cases import match_location
from twin.errors import N_, AccessError, InputError, check_choice
from twin.party.orgs import PARTY_MEMBER_TAG
from twin.store.clock import store_now
from twin.store.schema import TASK_ELIGIBILITY
from twin.volunteers import ledger
from twin.volunteers.accounts import resident_of

CHECK_IN_RADIUS_M = 200.0  # a check-in or -out farther than this from the task's place is refused
EARLY_CHECK_IN = pd.Timedelta(hours=1)  # a resident may check in this long before the task starts
MAX_PLACES = 1000
MAX_POINTS = 1000
MAX_TITLE = 80
PUBLISHERS = ("operator", "worker")  # a community's operator, a grid worker


def _text(value: object, what: str, most: int) -> str:
    text = (value or "").strip() if isinstance(value, str) else ""
    if not text or len(text) > most:
        raise InputError(N_("{what}: expected 1 to {most} characters, found {found}."), what=what, most=most,
                         found=len(text))
    return text


def _whole(value: object, what: str, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or not 1 <= value <= most:
        raise InputError(N_("{what} {value!r}: expected a whole number from 1 to {most}."), what=what, value=value,
                         most=most)
    return int(value)


def publish_task(gate: Gate, *, title: str, place: str, x: float, y: float, starts_at: pd.Timestamp,
                 ends_at: pd.Timestamp, places: int, points: int, eligibility: str = "anyone") -> dict:
    """Publish a task at a place (district CRS, metres) in the publisher's grids; audited as ``volunteer.publish``.

    Parameters
    ----------
    gate : Gate
        The publisher's (an operator's or a grid worker's) on the writing connection; the place's micro-grid must be
        in their grids.
    starts_at, ends_at : Timestamp
        The window, store time (naive, the store's zone); it must end after it starts, and in the future.
    places, points : int
        How many residents may take it (1-1000) and the points each earns (1-1000).
    eligibility : {'anyone', 'party'}
        Who may take it: any resident with an account, or party members (residents tagged 党员) only.

    Returns
    -------
    dict
        The task's row: ``task_id``, ``title``, ``place``, ``grid_id``, the window, ``places``, ``points``,
        ``eligibility``.
    """
    con, principal = gate.con, gate.principal
    if principal.role not in PUBLISHERS:
        raise AccessError(N_("{user} ({role}) may not publish volunteer tasks; a community's operator or a grid "
                             "worker does."), user=principal.username, role=principal.role)
    title = _text(title, N_("the task's title"), MAX_TITLE)
    place = _text(place, N_("the task's place"), 120)
    check_choice("eligibility", eligibility, TASK_ELIGIBILITY)
    places, points = _whole(places, N_("places"), MAX_PLACES), _whole(points, N_("points"), MAX_POINTS)
    try:
        starts_at, ends_at = pd.Timestamp(starts_at), pd.Timestamp(ends_at)
    except (TypeError, ValueError) as exc:
        raise InputError(N_("the task's time window cannot be read ({error}); give ISO dates and times."),
                         error=str(exc)) from None
    now = store_now(con)
    if pd.isna(starts_at) or pd.isna(ends_at) or not starts_at < ends_at or ends_at <= now:
        raise InputError(N_("the task's window {starts} to {ends} must end after it starts, and after now ({now})."),
                         starts=str(starts_at)[:16], ends=str(ends_at)[:16], now=str(now)[:16])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise InputError(N_("the task's place needs coordinates."))
    grid_id = match_location(con, float(x), float(y))["grid_id"]
    if not gate.in_scope(grid_id):
        raise AccessError(N_("the place is in micro-grid {grid_id}, outside {user}'s grids; a task is published "
                             "where the publisher works."), grid_id=grid_id, user=principal.username)
    task_id = f"T{now:%Y%m%d}-{secrets.token_hex(3)}"
    row = {"task_id": task_id, "title": title, "place": place, "x": float(x), "y": float(y), "grid_id": grid_id,
           "starts_at": starts_at, "ends_at": ends_at, "places": places, "points": points,
           "eligibility": eligibility, "published_by": principal.username, "published_at": now}
    con.execute(f"INSERT INTO volunteer_tasks ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()))
    audit(con, actor=principal.username, action="volunteer.publish", target=task_id, source=principal.source,
          detail={"title": title, "grid_id": grid_id, "places": places, "points": points,
                  "eligibility": eligibility})
    return row


def _task(con: duckdb.DuckDBPyConnection, task_id: str) -> dict:
    rows = con.execute("SELECT task_id, title, place, x, y, grid_id, starts_at, ends_at, places, points, eligibility "
                       "FROM volunteer_tasks WHERE task_id = ?", [task_id]).fetchall()
    if not rows:
        raise InputError(N_("no volunteer task {task_id!r}."), task_id=task_id)
    return dict(zip(("task_id", "title", "place", "x", "y", "grid_id", "starts_at", "ends_at", "places", "points",
                     "eligibility"), rows[0]))


def grab_task(con: duckdb.DuckDBPyConnection, principal: Principal, task_id: str) -> dict:
    """A resident grabs a place on a task (抢任务); audited as ``volunteer.grab``.

    Returns
    -------
    dict
        ``task_id``, ``place_no`` (1..places), ``places_left``.

    Raises
    ------
    InputError
        The task is full or over, the resident has a place on it already, or may not take it (party members only).
    """
    me = resident_of(con, principal)
    task = _task(con, task_id)
    if pd.Timestamp(task["ends_at"]) <= store_now(con):
        raise InputError(N_("task {task_id} is over; pick another."), task_id=task_id)
    if task["eligibility"] == "party" and PARTY_MEMBER_TAG not in me["tags"]:
        raise InputError(N_("task {task_id} is for party members only."), task_id=task_id)
    taken = [r[0] for r in con.execute("SELECT place_no FROM volunteer_grabs WHERE task_id = ? ORDER BY place_no",
                                       [task_id]).fetchall()]
    if con.execute("SELECT count(*) FROM volunteer_grabs WHERE task_id = ? AND resident_id = ?",
                   [task_id, me["resident_id"]]).fetchall()[0][0]:
        raise InputError(N_("you have a place on task {task_id} already."), task_id=task_id)
    free = sorted(set(range(1, task["places"] + 1)) - set(taken))
    if not free:
        raise InputError(N_("task {task_id} is full: all {places} places are taken."), task_id=task_id,
                         places=task["places"])
    now = store_now(con, unit="us")
    con.execute("INSERT INTO volunteer_grabs (task_id, place_no, resident_id, username, grabbed_at) "
                "VALUES (?, ?, ?, ?, ?)", [task_id, free[0], me["resident_id"], principal.username, now])
    audit(con, actor=principal.username, action="volunteer.grab", target=task_id, source=principal.source,
          detail={"place_no": free[0]})
    return {"task_id": task_id, "place_no": free[0], "places_left": len(free) - 1}


def _my_grab(con: duckdb.DuckDBPyConnection, resident_id: str, task_id: str) -> dict:
    rows = con.execute("SELECT place_no, checked_in_at, checked_out_at, confirmed_at FROM volunteer_grabs "
                       "WHERE task_id = ? AND resident_id = ?", [task_id, resident_id]).fetchall()
    if not rows:
        raise InputError(N_("you have no place on task {task_id}; grab it first."), task_id=task_id)
    return dict(zip(("place_no", "checked_in_at", "checked_out_at", "confirmed_at"), rows[0]))


def check_on_site(con: duckdb.DuckDBPyConnection, principal: Principal, task_id: str, *, x: float, y: float,
                  out: bool = False) -> dict:
    """A resident checks in (or, ``out``, out) on site, from where the phone is (district CRS, metres).

    Refused farther than :data:`CHECK_IN_RADIUS_M` from the task's place, before the task's window (less
    ``EARLY_CHECK_IN``) or after it, twice, or out before in. Audited (``volunteer.checkin``/``checkout``) with the
    distance, never the position.

    Returns
    -------
    dict
        ``task_id``, ``at``, ``distance_m``, ``out``.
    """
    me = resident_of(con, principal)
    task = _task(con, task_id)
    grab = _my_grab(con, me["resident_id"], task_id)
    if not (math.isfinite(x) and math.isfinite(y)):
        raise InputError(N_("checking in needs the phone's position."))
    distance = math.hypot(x - task["x"], y - task["y"])
    if distance > CHECK_IN_RADIUS_M:
        raise InputError(N_("you are {distance} m from the task's place ({place}); check in within {radius} m of "
                            "it."), distance=round(distance), place=task["place"], radius=round(CHECK_IN_RADIUS_M))
    now = store_now(con, unit="us")
    if out:
        if grab["checked_in_at"] is None:
            raise InputError(N_("check in on task {task_id} before checking out."), task_id=task_id)
        if grab["checked_out_at"] is not None:
            raise InputError(N_("you checked out of task {task_id} already."), task_id=task_id)
    else:
        if grab["checked_in_at"] is not None:
            raise InputError(N_("you checked in on task {task_id} already."), task_id=task_id)
        if not pd.Timestamp(task["starts_at"]) - EARLY_CHECK_IN <= now <= pd.Timestamp(task["ends_at"]):
            raise InputError(N_("task {task_id} runs from {starts} to {ends}; check in then."), task_id=task_id,
                             starts=str(task["starts_at"])[:16], ends=str(task["ends_at"])[:16])
    column = "checked_out_at" if out else "checked_in_at"
    con.execute(f"UPDATE volunteer_grabs SET {column} = ? WHERE task_id = ? AND resident_id = ?",
                [now, task_id, me["resident_id"]])
    audit(con, actor=principal.username, action="volunteer.checkout" if out else "volunteer.checkin",
          target=task_id, source=principal.source, detail={"distance_m": round(distance)})
    return {"task_id": task_id, "at": now, "distance_m": round(distance, 1), "out": out}


def confirm_task(gate: Gate, task_id: str, place_no: int) -> dict:
    """The grid worker (or an operator) of the task's micro-grid confirms a resident's work on it: the task's
    points are credited to them. Audited as ``volunteer.confirm`` and ``points.credit``.

    Returns
    -------
    dict
        ``task_id``, ``place_no``, ``resident_id``, ``points``, ``hours``, ``seq`` (the ledger row), ``balance``.

    Raises
    ------
    InputError
        No such place taken, not yet checked out, or confirmed already.
    AccessError
        Not a worker or operator of the task's micro-grid.
    """
    con, principal = gate.con, gate.principal
    task = _task(con, task_id)
    if principal.role not in PUBLISHERS or not gate.in_scope(task["grid_id"]):
        raise AccessError(N_("{user} ({role}) may not confirm task {task_id}: its grid worker or an operator of "
                             "its grid does."), user=principal.username, role=principal.role, task_id=task_id)
    rows = con.execute("SELECT resident_id, username, checked_in_at, checked_out_at, confirmed_at "
                       "FROM volunteer_grabs WHERE task_id = ? AND place_no = ?", [task_id, place_no]).fetchall()
    if not rows:
        raise InputError(N_("no place {place_no} is taken on task {task_id}."), place_no=place_no, task_id=task_id)
    resident_id, username, checked_in, checked_out, confirmed = rows[0]
    if confirmed is not None:
        raise InputError(N_("place {place_no} of task {task_id} is confirmed already."), place_no=place_no,
                         task_id=task_id)
    if checked_out is None:
        raise InputError(N_("{resident} has not checked out of task {task_id} yet: confirm once the work is done."),
                         resident=username, task_id=task_id)
    hours = round((pd.Timestamp(checked_out) - pd.Timestamp(checked_in)).total_seconds() / 3600, 2)
    now = store_now(con, unit="us")
    row = ledger.append(con, resident_id=resident_id, amount=int(task["points"]), reason="task", ref=task_id,
                        actor=principal.username, at=now)
    con.execute("UPDATE volunteer_grabs SET confirmed_at = ?, confirmed_by = ?, hours = ? "
                "WHERE task_id = ? AND place_no = ?", [now, principal.username, hours, task_id, place_no])
    audit(con, actor=principal.username, action="volunteer.confirm", target=task_id, source=principal.source,
          detail={"place_no": place_no, "resident": username, "hours": hours})
    audit(con, actor=principal.username, action="points.credit", target=username, source=principal.source,
          detail={"points": int(task["points"]), "reason": "task", "ref": task_id, "seq": row["seq"]})
    return {"task_id": task_id, "place_no": place_no, "resident_id": resident_id, "points": int(task["points"]),
            "hours": hours, "seq": row["seq"], "balance": row["balance"]}


TASK_COLUMNS = ("task_id", "title", "place", "x", "y", "grid_id", "starts_at", "ends_at", "places", "points",
                "eligibility")


def open_tasks(con: duckdb.DuckDBPyConnection, principal: Principal, *, near: tuple[float, float] | None = None,
               limit: int = 50) -> list[dict]:
    """The public task list for a resident: tasks not yet over, nearest their home (or ``near``) first.

    Each has the task's fields, ``taken``, ``places_left``, ``distance_m``, ``mine`` (the resident has a place) and
    ``may_take`` (eligible). Nothing about who took the places.
    """
    me = resident_of(con, principal)
    rows = con.execute(f"SELECT {', '.join('t.' + c for c in TASK_COLUMNS)}, count(g.place_no) AS taken, "
                       "bool_or(g.resident_id = ?) AS mine FROM volunteer_tasks t LEFT JOIN volunteer_grabs g "
                       "USING (task_id) WHERE t.ends_at > ? GROUP BY ALL", [me["resident_id"], store_now(con)]
                       ).fetchall()
    origin = near if near is not None else (me["x"], me["y"])
    party = PARTY_MEMBER_TAG in me["tags"]
    out = []
    for row in rows:
        task = dict(zip((*TASK_COLUMNS, "taken", "mine"), row))
        task["mine"] = bool(task["mine"])
        task["places_left"] = task["places"] - task["taken"]
        task["may_take"] = task["eligibility"] == "anyone" or party
        task["distance_m"] = None if origin[0] is None else round(math.hypot(task["x"] - origin[0],
                                                                             task["y"] - origin[1]))
        out.append(task)
    out.sort(key=lambda t: (t["distance_m"] if t["distance_m"] is not None else math.inf, t["starts_at"],
                            t["task_id"]))
    return out[:limit]


def my_tasks(con: duckdb.DuckDBPyConnection, principal: Principal) -> list[dict]:
    """The resident's own places on tasks, newest grab first, with where each stands (grabbed, checked in, checked
    out, confirmed)."""
    me = resident_of(con, principal)
    rows = con.execute(f"SELECT {', '.join('t.' + c for c in TASK_COLUMNS)}, g.place_no, g.grabbed_at, "
                       "g.checked_in_at, g.checked_out_at, g.confirmed_at, g.hours FROM volunteer_grabs g "
                       "JOIN volunteer_tasks t USING (task_id) WHERE g.resident_id = ? ORDER BY g.grabbed_at DESC",
                       [me["resident_id"]]).fetchall()
    return [dict(zip((*TASK_COLUMNS, "place_no", "grabbed_at", "checked_in_at", "checked_out_at", "confirmed_at",
                      "hours"), r)) for r in rows]


def worker_tasks(gate: Gate, *, limit: int = 50) -> list[dict]:
    """The tasks in a worker's (or operator's) grids, newest window first, each with its places taken: who (the
    resident's name), checked in and out, confirmed."""
    con, principal = gate.con, gate.principal
    if principal.role not in PUBLISHERS:
        raise AccessError(N_("{user} ({role}) has no volunteer tasks to manage."), user=principal.username,
                          role=principal.role)
    scope = gate.scope
    where, params = ("", []) if scope is None else ("WHERE grid_id IN (SELECT unnest(?))", [sorted(scope)])
    tasks = con.execute(f"SELECT {', '.join(TASK_COLUMNS)} FROM volunteer_tasks {where} ORDER BY starts_at DESC, "
                        "task_id LIMIT ?", [*params, int(limit)]).fetchall()
    out = [dict(zip(TASK_COLUMNS, t)) for t in tasks]
    ids = [t["task_id"] for t in out]
    grabs = con.execute("SELECT task_id, place_no, username, resident_id, grabbed_at, checked_in_at, checked_out_at, "
                        "confirmed_at, hours FROM volunteer_grabs WHERE task_id IN (SELECT unnest(?)) "
                        "ORDER BY task_id, place_no", [ids]).fetchall() if ids else []
    # The residents' names by their keys (a list of values, which a PostgreSQL store looks up in its index; a join
    # would read every resident through DuckDB's scanner).
    people = sorted({g[3] for g in grabs})
    names = dict(con.execute(f"SELECT resident_id, name FROM residents WHERE resident_id IN "
                             f"({', '.join('?' * len(people))})", people).fetchall()) if people else {}
    by_task: dict[str, list[dict]] = {}
    for g in grabs:
        by_task.setdefault(g[0], []).append(dict(zip(("task_id", "place_no", "username", "name", "grabbed_at",
                                                      "checked_in_at", "checked_out_at", "confirmed_at", "hours"),
                                                     (*g[:3], names.get(g[3]), *g[4:]))))
    for task in out:
        task["grabs"] = by_task.get(task["task_id"], [])
        task["places_left"] = task["places"] - len(task["grabs"])
    return out
