"""Residents evaluate: the reporter of a case says whether it was solved once it is handled.

- **The token.** A case reported through Open311 gets a one-use token with its receipt (the reply's
  ``evaluation_url``, ``/r/{token}``); only its SHA-256 is stored. It answers once, from the time the case is
  resolved (the question is asked) until ``ASK_DAYS`` (7) after that.
- **The answer** (:func:`answer_evaluation`): satisfied, or not satisfied with a note. Satisfied closes the case
  (resolved -> evaluated -> closed); not satisfied reopens it with the note (resolved -> reopened), and the
  reporter gets a new token for the next time it is handled.
- **No answer** in ``DEFAULT_AFTER_DAYS`` (3) closes it as evaluated by default (:func:`sweep_evaluations`, which
  ``twin serve`` runs every few minutes); so does a resolved case nobody can be asked about (no reporter).
- **Satisfaction** (满意率, :func:`satisfaction`): the share of reporters' answers that were satisfied, per grid (at
  any level), per worker and per department. Each evaluation keeps the case's micro-grid, worker and department
  as they stood then.

Every evaluation is audited (``case.evaluate``). The 3 and 7 days are measured on the district's clock
(:func:`twin.store.clock.district_now`), as deadlines are; answers are stamped with the store's clock, as
every step of the loop is.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Literal

import duckdb
import pandas as pd

from twin.access.access import audit
from twin.cases.cases import ASK_DAYS, not_before_last_event, record_transition
from twin.errors import N_, InputError, check_choice
from twin.store.clock import district_now, store_now, with_offset
from twin.store.queries import grid_tree
from twin.store.schema import EVALUATION_RESULTS, GRID_LEVELS

DEFAULT_AFTER_DAYS = 3  # no answer this long after the case is resolved: evaluated by default
MAX_NOTE = 1000  # characters of a reporter's note
TOKEN_PATH = "/r/"  # the resident's page: TOKEN_PATH + token
REPORTER = "reporter"  # the actor of a reporter's answer in the case's history
BY_DEFAULT = "evaluation"  # the actor of an evaluation by default
QUESTION = {"zh": "您反映的问题解决了吗？", "en": "Has the problem you reported been solved?"}
ANSWERS = ("satisfied", "not_satisfied")


class EvaluationError(InputError):
    """A token that cannot answer (now): ``reason`` is ``unknown``, ``used``, ``expired``, ``not_yet`` or
    ``closed``, for the page to say so (and the HTTP status: 404 unknown, 410 used or expired, 409 otherwise)."""

    def __init__(self, message: str, reason: str, /, **params: object) -> None:
        super().__init__(message, **params)
        self.reason = reason


def token_hash(token: str) -> str:
    """What the store keeps of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def new_token() -> str:
    """A fresh token (128 random bits, URL-safe)."""
    return secrets.token_urlsafe(16)


def issue_token(con: duckdb.DuckDBPyConnection, case_id: str, *, at: pd.Timestamp | None = None) -> str:
    """A new one-use token for the reporter of ``case_id`` (inside the caller's transaction); shown once.

    Asked already (the case resolved), it answers for ``ASK_DAYS`` from ``at``; else from when it is resolved.
    """
    token = new_token()
    at = store_now(con) if at is None else pd.Timestamp(at)
    status = con.execute("SELECT status FROM cases WHERE case_id = ?", [case_id]).fetchall()
    if not status:
        raise InputError(N_("no case {case_id!r} in the store"), case_id=case_id)
    expires = at + pd.Timedelta(days=ASK_DAYS) if status[0][0] == "resolved" else None
    con.execute("INSERT INTO evaluation_tokens (token_hash, case_id, issued_at, expires_at) VALUES (?, ?, ?, ?)",
                [token_hash(token), case_id, at, expires])
    return token


def token_case(con: duckdb.DuckDBPyConnection, token: str, *, now: pd.Timestamp | None = None) -> dict:
    """What the resident's page shows for a token: the case (no personal data) and whether it may answer now.

    Returns
    -------
    dict
        ``case_id``, ``category``, ``subcategory``, ``status``, ``reported_at``, ``resolved_at`` (None unless
        resolved), ``answer_by`` (when it is evaluated by default), ``can_answer``, and ``reason`` (why not:
        ``used``, ``expired``, ``not_yet``, ``closed``; None when it can).

    Raises
    ------
    EvaluationError
        ``unknown`` for a token that is none of the store's.
    """
    found = con.execute("""SELECT t.case_id, t.expires_at, t.used_at, c.category, c.subcategory, c.status,
                                  c.reported_at, c.updated_at
                           FROM evaluation_tokens t JOIN cases c USING (case_id) WHERE t.token_hash = ?""",
                        [token_hash(token)]).fetchall()
    if not found:
        raise EvaluationError(N_("this link is not known; check that it was copied whole from the receipt."),
                              "unknown")
    case_id, expires, used, category, sub, status, reported, updated = found[0]
    now = district_now(con) if now is None else pd.Timestamp(now)
    resolved = pd.Timestamp(updated) if status == "resolved" else None
    reason = ("used" if used is not None else "expired" if expires is not None and pd.Timestamp(expires) <= now
              else None if status == "resolved" else "closed" if status in ("evaluated", "closed", "rejected")
              else "not_yet")
    return {"case_id": case_id, "category": category, "subcategory": sub, "status": status,
            "reported_at": pd.Timestamp(reported), "resolved_at": resolved,
            "answer_by": None if resolved is None else resolved + pd.Timedelta(days=DEFAULT_AFTER_DAYS),
            "can_answer": reason is None, "reason": reason}


_REFUSALS = {"used": N_("this link was used already: each answers once."),
             "expired": N_("this link has expired: it answers for {days} days after the case is handled."),
             "not_yet": N_("case {case_id} is not handled yet; you will be asked once it is."),
             "closed": N_("case {case_id} is closed already.")}


def answer_evaluation(con: duckdb.DuckDBPyConnection, token: str, *, satisfied: bool, note: str | None = None,
                      source: str | None = None, now: pd.Timestamp | None = None) -> dict:
    """The reporter's answer through their token (inside the caller's transaction); audited as ``case.evaluate``.

    Satisfied: the case goes resolved -> evaluated -> closed. Not satisfied (a note is needed): resolved ->
    reopened with the note, and a new token is issued for when it is handled again.

    Returns
    -------
    dict
        ``case_id``, ``result`` (satisfied, not_satisfied), ``status`` (closed, reopened), ``next_token`` (the new
        token when reopened, else None).

    Raises
    ------
    EvaluationError
        When the token cannot answer (unknown, used, expired, the case not handled yet or closed already).
    InputError
        Not satisfied without a note, or a note over ``MAX_NOTE`` characters.
    """
    case = token_case(con, token, now=now)
    if not case["can_answer"]:
        raise EvaluationError(_REFUSALS[case["reason"]], case["reason"], case_id=case["case_id"], days=ASK_DAYS)
    note = (note or "").strip() or None
    if note is not None and len(note) > MAX_NOTE:
        raise InputError(N_("the note is {length} characters; at most {n}."), length=len(note), n=MAX_NOTE)
    if not satisfied and note is None:
        raise InputError(N_("say what is still wrong in the note: the case is reopened with it."))
    case_id = case["case_id"]
    # the answer's moment, as transitions are stamped (never before the case's last step: its history in order)
    at = pd.Timestamp(now) if now is not None else not_before_last_event(con, case_id, store_now(con))
    con.execute("UPDATE evaluation_tokens SET used_at = ? WHERE token_hash = ?", [at, token_hash(token)])
    result = "satisfied" if satisfied else "not_satisfied"
    _record(con, case_id, result, note=note, via="token", at=at)
    next_token = None
    if satisfied:
        record_transition(con, case_id, "evaluated", actor=REPORTER, note=_note("satisfied", note), at=at)
        record_transition(con, case_id, "closed", actor=BY_DEFAULT, note="closed on the reporter's evaluation", at=at)
    else:
        record_transition(con, case_id, "reopened", actor=REPORTER, note=_note("not satisfied", note), at=at)
        next_token = issue_token(con, case_id, at=at)
    status = "closed" if satisfied else "reopened"
    audit(con, actor=REPORTER, action="case.evaluate", target=case_id, source=source,
          detail={"result": result, "via": "token", "note": note})
    return {"case_id": case_id, "result": result, "status": status, "next_token": next_token}


def _note(result: str, note: str | None) -> str:
    return f"{result}: {note}" if note else result


def _record(con: duckdb.DuckDBPyConnection, case_id: str, result: str, *, note: str | None, via: str,
            at: pd.Timestamp | None = None) -> None:
    """One ``evaluations`` row at ``at`` (the store's clock when None), with the case's micro-grid, worker (its
    assigned one, else its micro-grid's) and department as they stand."""
    check_choice("result", result, EVALUATION_RESULTS)
    con.execute("""INSERT INTO evaluations (case_id, "at", result, note, via, grid_id, worker, department)
                   SELECT c.case_id, ?, ?, ?, ?, c.grid_id, coalesce(c.assigned_worker, g.worker), c.department
                   FROM cases c LEFT JOIN grids g ON g.grid_id = c.grid_id AND g.valid_to IS NULL
                   WHERE c.case_id = ?""",
                [store_now(con) if at is None else pd.Timestamp(at), result, note, via, case_id])


def sweep_evaluations(con: duckdb.DuckDBPyConnection, *, now: pd.Timestamp | None = None,
                      source: str | None = None) -> list[str]:
    """Close as evaluated by default every case resolved ``DEFAULT_AFTER_DAYS`` or more before ``now`` without an
    answer (inside the caller's transaction); one ``case.evaluate`` audit row lists them.

    ``twin serve`` runs it every few minutes through its writer; it may be called at any time (a second call
    finds nothing more to do).

    Returns
    -------
    list of str
        The cases closed, by id.
    """
    now = district_now(con) if now is None else pd.Timestamp(now)
    due = [r[0] for r in con.execute("SELECT case_id FROM cases WHERE status = 'resolved' AND updated_at <= ? "
                                     "ORDER BY case_id", [now - pd.Timedelta(days=DEFAULT_AFTER_DAYS)]).fetchall()]
    for case_id in due:
        _record(con, case_id, "default", note=None, via="sweep", at=now)
        record_transition(con, case_id, "evaluated", actor=BY_DEFAULT, at=now,
                          note=f"evaluated by default: no answer in {DEFAULT_AFTER_DAYS} days")
        record_transition(con, case_id, "closed", actor=BY_DEFAULT, at=now, note="closed as evaluated by default")
    if due:
        audit(con, actor=BY_DEFAULT, action="case.evaluate", target=due[0] if len(due) == 1 else None, source=source,
              detail={"result": "default", "via": "sweep", "cases": due})
    return due


def open311_question(status: str, updated_at: object, evaluation: str | None, *, zone) -> dict | None:
    """What ``GET requests/{id}`` says of the evaluation: the question while the case is resolved (with when it
    is evaluated by default), the result once evaluated; None before it is handled."""
    if status == "resolved":
        answer_by = pd.Timestamp(updated_at) + pd.Timedelta(days=DEFAULT_AFTER_DAYS)
        return {"asked": True, "question": QUESTION["zh"], "question_en": QUESTION["en"], "choices": list(ANSWERS),
                "answer_with": "the evaluation_url of the receipt (/r/{token})",
                "answer_by": with_offset(answer_by, zone)}
    if isinstance(evaluation, str):
        return {"asked": False, "result": evaluation}
    return None


# ---------------------------------------------------------------- 满意率

SATISFACTION_BY = ("grid", "worker", "department")


def satisfaction(con: duckdb.DuckDBPyConnection, *, by: Literal["grid", "worker", "department"],
                 level: str = "micro", tree: pd.DataFrame | None = None) -> pd.DataFrame:
    """Satisfaction (满意率) per grid (at ``level``), worker or department, from every evaluation so far.

    ``tree`` is :func:`twin.store.queries.grid_tree`, when known (the micro-grids are rolled up through it).

    Returns
    -------
    DataFrame
        ``key`` (grid id, worker or department id), ``name``, ``answered`` (satisfied + not satisfied),
        ``satisfied``, ``not_satisfied``, ``by_default``, ``satisfaction`` (% satisfied of the answered; NaN
        without answers); the most answered first.
    """
    check_choice("by", by, SATISFACTION_BY)
    check_choice("level", level, GRID_LEVELS)
    column = {"grid": "grid_id", "worker": "worker", "department": "department"}[by]
    counts = con.execute(f"""SELECT {column} AS key, count(*) FILTER (WHERE result = 'satisfied') AS satisfied,
                                    count(*) FILTER (WHERE result = 'not_satisfied') AS not_satisfied,
                                    count(*) FILTER (WHERE result = 'default') AS by_default
                             FROM evaluations WHERE {column} IS NOT NULL GROUP BY {column}""").df()
    # A city has 700,000 grids: only those evaluated are looked up (all of them as Python strings were 280 MB).
    if by == "grid" and level != "micro":
        tree = grid_tree(con) if tree is None else tree
        evaluated = tree[tree["grid_id"].isin(counts["key"])]
        up = dict(zip(evaluated["grid_id"], evaluated[level]))
        counts["key"] = counts["key"].map(up)
        counts = counts.dropna(subset=["key"]).groupby("key", as_index=False)[
            ["satisfied", "not_satisfied", "by_default"]].sum()
    if by == "grid":
        names = dict(con.execute("SELECT grid_id, name FROM grids WHERE valid_to IS NULL AND grid_id IN "
                                 "(SELECT unnest(?))", [sorted(map(str, counts["key"]))]).fetchall())
    elif by == "department":
        names = dict(con.execute("SELECT department_id, name FROM departments").fetchall())
    else:
        names = {}
    counts["name"] = [names.get(k, k) for k in counts["key"]]
    for c in ("satisfied", "not_satisfied", "by_default"):
        counts[c] = counts[c].astype(int)
    counts["answered"] = counts["satisfied"] + counts["not_satisfied"]
    counts["satisfaction"] = (100.0 * counts["satisfied"] / counts["answered"].where(counts["answered"] > 0)).round(1)
    columns = ["key", "name", "answered", "satisfied", "not_satisfied", "by_default", "satisfaction"]
    return counts[columns].sort_values(["answered", "key"], ascending=[False, True]).reset_index(drop=True)
