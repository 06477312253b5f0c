"""小杜拍: a resident's photo report, taken in as a case through the Open311 intake, worth points once the grid
worker confirms it valid.

The phone page sends the photo, the kind of problem and where; the server builds an Open311 request form from it
(:func:`report_form`) and the store's writer takes it in as any Open311 request (matched to its building,
micro-grid and worker, with its deadline), and in the same job keeps the photo with the case (checked and
re-encoded as a worker's, ``twin.field.photos``) and the report's row (:func:`record_report`). The grid worker
then gives a verdict (:func:`review_report`): valid credits :data:`REPORT_POINTS`; a duplicate or not a problem
earns nothing, and the case is rejected with that reason while it is still only reported.
"""

from __future__ import annotations

import secrets

import duckdb
import pandas as pd

from twin.access.access import Principal, audit
from twin.access.policy import Gate
from twin.cases.cases import CASE_TRANSITIONS, record_transition
from twin.errors import N_, AccessError, InputError, check_choice
from twin.field.photos import CheckedPhoto
from twin.store.clock import store_now
from twin.store.schema import REPORT_VERDICTS
from twin.volunteers import ledger
from twin.volunteers.accounts import resident_of

REPORT_POINTS = 5  # a report confirmed valid
REPORT_SOURCE = "resident"  # the reporter named in the case's first event
MAX_DESCRIPTION = 500


def report_form(*, service_code: str, lon: float, lat: float, description: str | None) -> dict[str, str]:
    """The Open311 request form of a 小杜拍 report (what ``POST requests`` would carry)."""
    description = (description or "").strip()
    if len(description) > MAX_DESCRIPTION:
        raise InputError(N_("the description is {n} characters; at most {most}."), n=len(description),
                         most=MAX_DESCRIPTION)
    return {"service_code": str(service_code or ""), "lat": repr(float(lat)), "long": repr(float(lon)),
            "description": description}


def record_report(con: duckdb.DuckDBPyConnection, principal: Principal, case: dict, photo: CheckedPhoto) -> dict:
    """Keep a report's photo with its case (kind ``before``) and the report's row, inside the job that takes the
    case in; audited as ``volunteer.report``. ``case`` is the intake's case record (not yet written: the writer
    writes it with its batch)."""
    me = resident_of(con, principal)
    at = pd.Timestamp(case["reported_at"])
    photo_id = secrets.token_hex(12)
    con.execute('INSERT INTO case_photos (photo_id, case_id, kind, sha256, original_sha256, media_type, width, height, '
                'size, image, taken_by, "at") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                [photo_id, case["case_id"], "before", photo.sha256, photo.original_sha256, photo.media_type,
                 photo.width, photo.height, len(photo.data), photo.data, principal.username, at])
    con.execute('INSERT INTO volunteer_reports (case_id, resident_id, username, reported_at) VALUES (?, ?, ?, ?)',
                [case["case_id"], me["resident_id"], principal.username, at])
    audit(con, actor=principal.username, action="volunteer.report", target=case["case_id"], source=principal.source,
          detail={"photo_id": photo_id, "sha256": photo.sha256, "subcategory": case["subcategory"]})
    return {"case_id": case["case_id"], "photo_id": photo_id, "grid_id": case["grid_id"],
            "subcategory": case["subcategory"], "at": at}


def review_report(gate: Gate, case_id: str, verdict: str, *, note: str | None = None) -> dict:
    """The grid worker's verdict on a 小杜拍 report; audited as ``volunteer.review`` (and ``points.credit``).

    Parameters
    ----------
    gate : Gate
        The worker's (or an operator's) on the writing connection; the case must be theirs to act on.
    verdict : {'valid', 'duplicate', 'not_a_problem'}
        Valid credits :data:`REPORT_POINTS` to the reporter; the others none, and a case still reported is rejected
        with the verdict as its reason.

    Returns
    -------
    dict
        ``case_id``, ``verdict``, ``points`` (credited, 0 when none), ``status`` (the case's, after).
    """
    con, principal = gate.con, gate.principal
    check_choice("verdict", verdict, REPORT_VERDICTS)
    rows = con.execute("SELECT resident_id, username, verdict FROM volunteer_reports WHERE case_id = ?",
                       [case_id]).fetchall()
    if not rows:
        raise InputError(N_("case {case_id} is no resident's photo report (小杜拍)."), case_id=case_id)
    resident_id, username, before = rows[0]
    if before is not None:
        raise InputError(N_("report {case_id} was reviewed already ({verdict})."), case_id=case_id, verdict=before)
    if principal.role not in ("worker", "operator"):
        raise AccessError(N_("{user} ({role}) may not review residents' reports; the grid worker does."),
                          user=principal.username, role=principal.role)
    case = gate.field_case(case_id) if principal.role == "worker" else gate.case_card(case_id)
    status = case["status"]
    now = store_now(con, unit="us")
    points = REPORT_POINTS if verdict == "valid" else 0
    if verdict != "valid" and (status, "rejected") in CASE_TRANSITIONS:
        reason = {"duplicate": "duplicate report", "not_a_problem": "not a problem"}[verdict]
        record_transition(con, case_id, "rejected", actor=principal.username, note=(note or reason), at=now)
        audit(con, actor=principal.username, action="case.transition", target=case_id, source=principal.source,
              detail={"from": status, "to": "rejected", "note": note or reason})
        status = "rejected"
    seq = None
    if points:
        seq = ledger.append(con, resident_id=resident_id, amount=points, reason="report", ref=case_id,
                            actor=principal.username, at=now)["seq"]
        audit(con, actor=principal.username, action="points.credit", target=username, source=principal.source,
              detail={"points": points, "reason": "report", "ref": case_id, "seq": seq})
    con.execute("UPDATE volunteer_reports SET verdict = ?, reviewed_by = ?, reviewed_at = ?, points = ? "
                "WHERE case_id = ?", [verdict, principal.username, now, points, case_id])
    audit(con, actor=principal.username, action="volunteer.review", target=case_id, source=principal.source,
          detail={"verdict": verdict, "points": points, "resident": username})
    return {"case_id": case_id, "verdict": verdict, "points": points, "status": status, "seq": seq}


def pending_reports(gate: Gate, *, limit: int = 50) -> list[dict]:
    """The reports in a worker's (or operator's) grids not yet reviewed, oldest first: ``case_id``,
    ``subcategory``, ``description``, ``address``, ``reported_at``, ``status``, ``photo_id``."""
    con = gate.con
    scope = gate.scope
    where, params = ("", []) if scope is None else ("AND c.grid_id IN (SELECT unnest(?))", [sorted(scope)])
    rows = con.execute("SELECT v.case_id, c.subcategory, c.description, c.address, v.reported_at, c.status, "
                       "(SELECT min(photo_id) FROM case_photos p WHERE p.case_id = v.case_id) FROM volunteer_reports v "
                       f"JOIN cases c USING (case_id) WHERE v.verdict IS NULL {where} ORDER BY v.reported_at "
                       "LIMIT ?", [*params, int(limit)]).fetchall()
    return [dict(zip(("case_id", "subcategory", "description", "address", "reported_at", "status", "photo_id"), r))
            for r in rows]


def my_reports(con: duckdb.DuckDBPyConnection, principal: Principal) -> list[dict]:
    """The resident's reports, newest first: case, kind, status, verdict and points."""
    me = resident_of(con, principal)
    rows = con.execute("SELECT v.case_id, c.subcategory, c.status, v.reported_at, v.verdict, v.points FROM "
                       "volunteer_reports v JOIN cases c USING (case_id) WHERE v.resident_id = ? "
                       "ORDER BY v.reported_at DESC", [me["resident_id"]]).fetchall()
    return [dict(zip(("case_id", "subcategory", "status", "reported_at", "verdict", "points"), r)) for r in rows]
