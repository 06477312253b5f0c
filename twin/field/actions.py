"""What a grid worker does on a case from the phone, each action applied exactly once.

The phone sends every action with an idempotency key it made when the worker acted, and sends it again
until it has an answer (a poor network loses answers too). The store keeps each applied action's key and
answer (``field_actions``): the same key again gets the same answer and changes nothing. An action the case
has moved on from meanwhile (another worker accepted it, the operator gave it away) is refused as a
:class:`FieldConflict` naming what happened, for the worker to see; nothing is forced.

Each function runs inside the caller's transaction (the server's writer). It checks everything before it
writes, so a refusal leaves nothing behind but the refusal's own audit row (an access refused).
"""

from __future__ import annotations

import json
import re
import secrets

import duckdb
import pandas as pd

from twin.access.access import audit
from twin.access.policy import MIN_REASON, Gate
from twin.cases.cases import CASE_TRANSITIONS, record_transition
from twin.errors import N_, InputError
from twin.field.photos import PHOTO_KINDS, CheckedPhoto
from twin.store.clock import store_now

#: The worker's steps and the status each leads to.
FIELD_STEPS = {"accept": "accepted", "on_site": "on_site", "handled": "resolved", "hand_up": "handed_up"}
#: The statuses a photo of each kind may be added in: before the work once accepted, after it on site.
PHOTO_STATUSES = {"before": ("accepted", "on_site"), "after": ("on_site",)}
ACTION_KINDS = ("step", "photo", "patrol")
KEY = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


class FieldConflict(InputError):
    """The case moved on since the phone saw it: the action is not applied, and the worker is told.

    Attributes
    ----------
    current : dict
        The case as it is now: ``case_id``, ``status``, ``assigned_worker``, and its last event (``at``, ``actor``).
    """

    def __init__(self, message: str, current: dict, /, **params: object) -> None:
        super().__init__(message, **params)
        self.current = current


def steps_for(status: str) -> list[str]:
    """The steps a worker may take on a case in ``status``, in the loop's order."""
    return [step for step, to in FIELD_STEPS.items() if (status, to) in CASE_TRANSITIONS]


def check_key(key: object) -> str:
    """The idempotency key when it is one (8-64 letters, digits, '-' or '_'); else an :class:`InputError`."""
    if not isinstance(key, str) or not KEY.match(key):
        raise InputError(N_("the action's key {key!r} is not an idempotency key (8-64 letters, digits, '-' or '_'); "
                            "the phone page makes one for each action."), key=str(key)[:80])
    return key


def applied(con: duckdb.DuckDBPyConnection, key: str, *, worker: str, kind: str, request: dict) -> dict | None:
    """The answer given to ``key`` before (a replay: nothing is done again), or None for a new key.

    Raises
    ------
    InputError
        When the key was used by another worker or for another request: keys are made anew per action.
    """
    row = con.execute("SELECT worker, kind, request, result FROM field_actions WHERE key = ?", [key]).fetchone()
    if row is None:
        return None
    if (row[0], row[1], row[2]) != (worker, kind, _canonical(request)):
        raise InputError(N_("the key {key} was used for another action; an action sent again must be sent "
                            "exactly as first sent, and a new action needs a new key."), key=key)
    return {**json.loads(row[3]), "replayed": True}


def remember(con: duckdb.DuckDBPyConnection, key: str, *, worker: str, kind: str, case_id: str | None,
             request: dict, result: dict, at: pd.Timestamp) -> dict:
    """Keep ``result`` as the answer to ``key`` (see :func:`applied`); returns it, marked as not a replay."""
    con.execute('INSERT INTO field_actions (key, worker, kind, case_id, "at", request, result) '
                "VALUES (?, ?, ?, ?, ?, ?, ?)", [key, worker, kind, case_id, at, _canonical(request),
                                                 json.dumps(result, ensure_ascii=False, default=str)])
    return {**result, "replayed": False}


def _canonical(request: dict) -> str:
    return json.dumps(request, ensure_ascii=False, sort_keys=True, default=str)


def _current(con: duckdb.DuckDBPyConnection, case_id: str) -> dict:
    """The case now, for a conflict's message: status, who has it, its last event."""
    status, assigned = con.execute("SELECT status, assigned_worker FROM cases WHERE case_id = ?",
                                   [case_id]).fetchone()
    last = con.execute('SELECT "at", actor FROM case_events WHERE case_id = ? ORDER BY "at" DESC LIMIT 1',
                       [case_id]).fetchone()
    return {"case_id": case_id, "status": status, "assigned_worker": assigned,
            "last_at": None if last is None else pd.Timestamp(last[0]).isoformat(),
            "last_actor": None if last is None else last[1]}


def _moved_on(con: duckdb.DuckDBPyConnection, case_id: str, seen_status: str, what: str) -> FieldConflict:
    now = _current(con, case_id)
    return FieldConflict(N_("case {case_id} moved on while the phone waited: it is {status} now ({actor} at "
                            "{at}), not {seen_status} as the phone saw it; {what} was not applied. Look at the "
                            "case again."), now, case_id=case_id, status=now["status"], seen_status=seen_status,
                         actor=now["last_actor"] or "?", at=(now["last_at"] or "?")[:16].replace("T", " "),
                         what=what)


def _given_away(con: duckdb.DuckDBPyConnection, case_id: str, worker: str, what: str) -> FieldConflict:
    now = _current(con, case_id)
    return FieldConflict(N_("case {case_id} was given to {other} while the phone waited; {what} was not applied."),
                         now, case_id=case_id, other=now["assigned_worker"], what=what, worker=worker)


def _workers_case(gate: Gate, case_id: str, what: str, *, seen_status: str | None = None) -> dict:
    """:meth:`Gate.field_case` to act. A case the worker had (in their micro-grids, or with a step of theirs in its
    history) that another worker has now is a conflict to show them, not an access refused: the case moved on
    (another worker accepted it) when it left ``seen_status``, else it was given away."""
    con, principal = gate.con, gate.principal
    row = con.execute("SELECT assigned_worker, grid_id, status FROM cases WHERE case_id = ?", [case_id]).fetchone()
    me = principal.username
    if row is not None and row[0] not in (None, me) and gate.may("field") and (gate.in_scope(row[1]) or con.execute(
            "SELECT count(*) FROM case_events WHERE case_id = ? AND actor = ?", [case_id, me]).fetchone()[0]):
        if seen_status is not None and row[2] != seen_status:
            raise _moved_on(con, case_id, seen_status, what)
        raise _given_away(con, case_id, me, what)
    return gate.field_case(case_id, act=True)


def _when(con: duckdb.DuckDBPyConnection, at: pd.Timestamp | None, case_id: str | None = None) -> pd.Timestamp:
    """When the worker acted (the phone's time of the action, which may be a while ago when it was queued), but
    never before the case's last event nor after now: the case's history stays in order."""
    now = store_now(con, unit="us")
    at = now if at is None else min(pd.Timestamp(at), now)
    if case_id is not None:
        last, = con.execute('SELECT max("at") FROM case_events WHERE case_id = ?', [case_id]).fetchone()
        if last is not None and pd.Timestamp(last) > at:
            at = pd.Timestamp(last)
    return at


def take_step(gate: Gate, *, key: str, case_id: str, step: str, seen_status: str, note: str | None = None,
              at: pd.Timestamp | None = None) -> dict:
    """A worker's step on a case, applied once per ``key``: accept, on site, handled, or hand up (with a reason).

    Parameters
    ----------
    gate : Gate
        The worker's (role ``worker``, with the address they came from) on the writing connection: the steps,
        the audit rows and any refusal's row are written on it.
    step : {'accept', 'on_site', 'handled', 'hand_up'}
        See :data:`FIELD_STEPS`.
    seen_status : str
        The case's status as the phone showed it when the worker acted: another status now is a conflict.
    note : str, optional
        Goes into the case's history; handing up needs one of at least ``MIN_REASON`` characters (the reason).
    at : Timestamp, optional
        When the worker acted (store time); now by default.

    Returns
    -------
    dict
        ``case_id``, ``step``, ``from_status``, ``status``, ``at`` (ISO) and ``replayed`` (True: the key's first
        answer, given again, and nothing was done).

    Raises
    ------
    FieldConflict
        The case is no longer in ``seen_status``, or was given to another worker.
    AccessError
        Not a worker, or not their case.
    InputError
        An unknown step, one on a case a department holds, a hand-up without a reason, "handled" without a photo
        after the work.
    """
    con, principal = gate.con, gate.principal
    key = check_key(key)
    if step not in FIELD_STEPS:
        raise InputError(N_("{step!r} is no step of the field loop; the steps are {steps}."), step=step,
                         steps=", ".join(FIELD_STEPS))
    note = (note or "").strip() or None
    request = {"case_id": case_id, "step": step, "seen_status": seen_status, "note": note}
    done = applied(con, key, worker=principal.username, kind="step", request=request)
    if done is not None:
        return done
    what = f"the step {step!r}"
    case = _workers_case(gate, case_id, what, seen_status=seen_status)
    if case["status"] != seen_status:
        raise _moved_on(con, case_id, seen_status, what)
    to_status = FIELD_STEPS[step]
    if (seen_status, to_status) not in CASE_TRANSITIONS:
        raise InputError(N_("case {case_id} is {status}: the step {step!r} is not one to take now; the steps now "
                            "are {steps}."), case_id=case_id, status=seen_status, step=step,
                         steps=", ".join(steps_for(seen_status)) or "—")
    department, = con.execute("SELECT department FROM cases WHERE case_id = ?", [case_id]).fetchone()
    if to_status not in gate.steps(seen_status, department=department):  # a department holds it (Gate.steps)
        raise InputError(N_("case {case_id} is with the department {department} now: it is theirs to handle, not "
                            "the grid's to accept."), case_id=case_id, department=department)
    if step == "hand_up" and len(note or "") < MIN_REASON:
        raise InputError(N_("handing case {case_id} up needs a reason (at least {n} characters): why the grid "
                            "cannot handle it."), case_id=case_id, n=MIN_REASON)
    at = _when(con, at, case_id)
    if step == "handled" and not _photo_after_arrival(con, case_id):
        raise InputError(N_("case {case_id} is handled only with a photo taken after the work; add one first."),
                         case_id=case_id)
    event = record_transition(con, case_id, to_status, actor=principal.username, note=note, at=at)
    if step == "accept":
        con.execute("UPDATE cases SET assigned_worker = ? WHERE case_id = ?", [principal.username, case_id])
    audit(con, actor=principal.username, action="case.transition", target=case_id, source=principal.source,
          detail={"from": event["from_status"], "to": to_status, "note": note, "key": key})
    result = {"case_id": case_id, "step": step, "from_status": event["from_status"], "status": to_status,
              "at": at.isoformat()}
    return remember(con, key, worker=principal.username, kind="step", case_id=case_id, request=request,
                    result=result, at=at)


def _photo_after_arrival(con: duckdb.DuckDBPyConnection, case_id: str) -> bool:
    """Whether an "after" photo was added since the case last went on site."""
    arrived, = con.execute("SELECT max(\"at\") FROM case_events WHERE case_id = ? AND to_status = 'on_site'",
                           [case_id]).fetchone()
    if arrived is None:
        return False
    found, = con.execute("SELECT count(*) FROM case_photos WHERE case_id = ? AND kind = 'after' AND \"at\" >= ?",
                         [case_id, arrived]).fetchone()
    return found > 0


def add_photo(gate: Gate, *, key: str, case_id: str, kind: str, photo: CheckedPhoto,
              at: pd.Timestamp | None = None) -> dict:
    """Add a checked photo (:func:`twin.field.photos.check_photo`) to a worker's case, once per ``key``.

    ``gate`` is the worker's on the writing connection, as for :func:`take_step`.
    A photo "before" the work is added once the case is accepted, one "after" it while on site; audited as
    ``case.photo`` with its SHA-256.

    Returns
    -------
    dict
        ``photo_id``, ``case_id``, ``kind``, ``sha256``, ``size``, ``at`` and ``replayed``.

    Raises
    ------
    FieldConflict
        The case is in no status for a photo of that kind any more (or never was).
    AccessError
        Not a worker, or not their case.
    """
    con, principal = gate.con, gate.principal
    key = check_key(key)
    if kind not in PHOTO_KINDS:
        raise InputError(N_("a photo is taken {kind!r} the work? Say one of {kinds}."), kind=kind,
                         kinds=", ".join(PHOTO_KINDS))
    request = {"case_id": case_id, "kind": kind, "original_sha256": photo.original_sha256}
    done = applied(con, key, worker=principal.username, kind="photo", request=request)
    if done is not None:
        return done
    case = _workers_case(gate, case_id, f"the photo {kind!r} the work")
    if case["status"] not in PHOTO_STATUSES[kind]:
        raise _moved_on(con, case_id, " / ".join(PHOTO_STATUSES[kind]), f"the photo {kind!r} the work")
    at = _when(con, at, case_id)
    photo_id = secrets.token_hex(12)
    con.execute('INSERT INTO case_photos (photo_id, case_id, kind, sha256, original_sha256, media_type, width, height, '
                'size, image, taken_by, "at") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                [photo_id, case_id, kind, photo.sha256, photo.original_sha256, photo.media_type, photo.width,
                 photo.height, len(photo.data), photo.data, principal.username, at])
    audit(con, actor=principal.username, action="case.photo", target=case_id, source=principal.source,
          detail={"photo_id": photo_id, "kind": kind, "sha256": photo.sha256, "size": len(photo.data), "key": key})
    result = {"photo_id": photo_id, "case_id": case_id, "kind": kind, "sha256": photo.sha256,
              "size": len(photo.data), "at": at.isoformat()}
    return remember(con, key, worker=principal.username, kind="photo", case_id=case_id, request=request,
                    result=result, at=at)


def case_photo(con: duckdb.DuckDBPyConnection, photo_id: str) -> tuple[str, str, bytes] | None:
    """A stored photo's ``(case_id, media_type, bytes)``, or None; the caller checks who may see its case."""
    row = con.execute("SELECT case_id, media_type, image FROM case_photos WHERE photo_id = ?", [photo_id]).fetchone()
    return None if row is None else (row[0], row[1], bytes(row[2]))
