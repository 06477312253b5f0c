"""The departments and the district's list of duties: who handles which kind of case, by when, and escalation.

The list maps a taxonomy kind (a category of ``taxonomy.json``, or a subcategory, which overrides its
category) to its department, the hours the department has from dispatch to handled, and the hours past
that deadline after which the case goes on the street leader's list (escalated). ``twin duties
import|export FILE`` moves the list as CSV or JSON, one row per kind (:data:`DUTY_FIELDS`); a file with a
bad row is refused whole, naming each bad row and its fix, and the store is left as it was.

Dispatching itself is a step of the case loop (:func:`twin.cases.cases.record_transition`); here are the list,
the escalated cases and the figures per department (:func:`department_figures`), pure reads of the store.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from pathlib import Path

import duckdb
import pandas as pd

from twin.access.access import audit
from twin.cases.cases import OPEN_STATUSES, load_taxonomy
from twin.cases.evaluations import satisfaction
from twin.errors import N_, InputError
from twin.store.clock import district_now

log = logging.getLogger(__name__)

#: One row of a duties file (CSV columns, JSON keys), in order; ``department_phone`` may be left out.
DUTY_FIELDS = ("kind", "department_id", "department", "deadline_hours", "escalation_hours", "department_phone")
REQUIRED_FIELDS = DUTY_FIELDS[:5]
DUTY_FORMATS = {".csv": "csv", ".json": "json"}
DEPARTMENT_ID = re.compile(r"^[a-z0-9_-]{1,32}$")
MAX_ROWS = 10_000
MAX_PROBLEMS = 20  # bad rows named in one refusal


def taxonomy_kinds() -> dict[str, str]:
    """Every kind a duty may name: category and subcategory codes, to their category."""
    taxonomy = load_taxonomy()
    return {**{c["code"]: c["code"] for c in taxonomy["categories"]},
            **{s["code"]: s["category"] for s in taxonomy["subcategories"]}}


def _format(path: Path) -> str:
    found = DUTY_FORMATS.get(path.suffix.lower())
    if found is None:
        raise InputError(N_("{path}: a duties file is .csv or .json (found {suffix!r}); rename it or export to "
                            "one of those."), path=str(path), suffix=path.suffix)
    return found


def read_duties_file(path: str | Path) -> list[dict]:
    """The rows of a duties file (CSV with a header row, or JSON: a list of objects), as text, unchecked.

    Raises
    ------
    InputError
        For a missing or unreadable file, one that is not UTF-8, JSON that is not a list of objects, or
        missing columns (named, with the expected ones).
    """
    path = Path(path)
    kind = _format(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(N_("{path}: no such file."), path=str(path)) from None
    except UnicodeDecodeError as exc:
        raise InputError(N_("{path}: not UTF-8 text ({error}); save it as UTF-8."), path=str(path),
                         error=str(exc)) from None
    except OSError as exc:
        raise InputError(N_("{path}: cannot be read ({error})."), path=str(path), error=str(exc)) from None
    if kind == "json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(N_("{path}: not JSON ({error}); a duties file in JSON is a list of objects with the "
                                "keys {fields}."), path=str(path), error=str(exc), fields=list(DUTY_FIELDS)) from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise InputError(N_("{path}: a duties file in JSON is a list of objects with the keys {fields}; "
                                "found {found}."), path=str(path), fields=list(DUTY_FIELDS), found=type(rows).__name__)
        header = sorted({k for r in rows for k in r})
    else:
        reader = csv.DictReader(io.StringIO(text))
        header = list(reader.fieldnames or [])
        rows = list(reader)
    if len(rows) > MAX_ROWS:
        raise InputError(N_("{path}: {rows} rows; a duties list has at most {max_rows} (one per kind)."),
                         path=str(path), rows=len(rows), max_rows=MAX_ROWS)
    missing = [f for f in REQUIRED_FIELDS if f not in header]
    if missing and rows:
        raise InputError(N_("{path}: no column {missing}; a duties file has the columns {fields} "
                            "(department_phone may be left out)."), path=str(path), missing=missing,
                         fields=list(DUTY_FIELDS))
    unknown = sorted(set(header) - set(DUTY_FIELDS))
    if unknown:
        raise InputError(N_("{path}: unknown column {unknown}; a duties file has the columns {fields}."),
                         path=str(path), unknown=unknown, fields=list(DUTY_FIELDS))
    return rows


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _hours(value: object, *, positive: bool) -> float | None:
    try:
        hours = float(_text(value)) if not isinstance(value, bool) else None
    except ValueError:
        return None
    if hours is None or hours != hours or hours in (float("inf"), float("-inf")):
        return None
    return hours if (hours > 0 if positive else hours >= 0) else None


def check_duties(rows: list[dict], *, where: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The duties and departments of a file's rows, or an error naming every bad row (up to ``MAX_PROBLEMS``).

    Row numbers are the file's: the first data row of a CSV is row 2 (after its header), of JSON row 1.

    Returns
    -------
    duties : DataFrame
        ``kind``, ``department_id``, ``deadline_hours``, ``escalation_hours``, one row per kind.
    departments : DataFrame
        ``department_id``, ``name``, ``phone``, one row per department.

    Raises
    ------
    InputError
        Naming each bad row with its fix: an unknown kind, one given twice, a bad department id, a department
        named two ways, a deadline that is not a positive number of hours, an escalation that is not zero or more.
    """
    kinds = taxonomy_kinds()
    first = 2 if where.lower().endswith(".csv") else 1
    problems: list[str] = []
    seen: dict[str, int] = {}
    names: dict[str, tuple[str, int]] = {}
    phones: dict[str, str | None] = {}
    duties = []
    for n, row in enumerate(rows, start=first):
        kind = _text(row.get("kind"))
        department_id = _text(row.get("department_id"))
        name = _text(row.get("department"))
        deadline = _hours(row.get("deadline_hours"), positive=True)
        escalation = _hours(row.get("escalation_hours"), positive=False)
        if kind not in kinds:
            sample = next(iter(kinds))
            problems.append(f"row {n}: kind {kind!r} is no category or subcategory of the case taxonomy "
                            f"(twin/cases/taxonomy.json); use a code such as {sample!r} or {sample}.<kind>.")
        elif kind in seen:
            problems.append(f"row {n}: kind {kind!r} is given again (first in row {seen[kind]}); keep one row per "
                            "kind.")
        else:
            seen[kind] = n
        if not DEPARTMENT_ID.match(department_id):
            problems.append(f"row {n}: department_id {department_id!r}: use 1-32 lower-case letters, digits, '_' "
                            "or '-' (such as cgj).")
        if not name:
            problems.append(f"row {n}: department is empty; give the department's name (such as 城市管理局).")
        elif department_id in names and names[department_id][0] != name:
            problems.append(f"row {n}: department {department_id!r} is named {name!r} here and "
                            f"{names[department_id][0]!r} in row {names[department_id][1]}; use one name.")
        else:
            names.setdefault(department_id, (name, n))
        if _text(row.get("department_phone")):
            phones[department_id] = _text(row.get("department_phone"))
        if deadline is None:
            problems.append(f"row {n}: deadline_hours {_text(row.get('deadline_hours'))!r}: give the hours the "
                            "department has, a number above 0 (such as 24).")
        if escalation is None:
            problems.append(f"row {n}: escalation_hours {_text(row.get('escalation_hours'))!r}: give the hours "
                            "past the deadline before the case goes to the street leader, 0 or more (such as 12).")
        duties.append((kind, department_id, deadline, escalation))
    if problems:
        more = f" (and {len(problems) - MAX_PROBLEMS} more)" if len(problems) > MAX_PROBLEMS else ""
        raise InputError(N_("{where}: {count} problem(s) in its rows, nothing was imported{more}:\n{problems}"),
                         where=where, count=len(problems), more=more, problems="\n".join(problems[:MAX_PROBLEMS]))
    return (pd.DataFrame(duties, columns=["kind", "department_id", "deadline_hours", "escalation_hours"]),
            pd.DataFrame([(d, name, phones.get(d)) for d, (name, _) in names.items()],
                         columns=["department_id", "name", "phone"]))


def import_duties(con: duckdb.DuckDBPyConnection, path: str | Path, *, actor: str, source: str | None = None,
                  audited: bool = True) -> dict:
    """Make the file's rows the duties list (inside the caller's transaction); audited as ``duties.import``
    unless not ``audited`` (a new store's set-up, as the demo's: no one's act).

    The list is replaced whole. Departments are added or renamed from the file; those it no longer names stay
    (users and cases may name them) and are listed as ``departments_unlisted``.

    Returns
    -------
    dict
        ``path``, ``duties`` (rows), ``departments`` (in the file), ``added`` and ``removed`` (kinds, against the
        list before), ``uncovered`` (taxonomy categories neither listed nor with every subcategory listed: their
        cases are dispatched by hand), ``departments_unlisted``.
    """
    path = Path(path)
    duties, departments = check_duties(read_duties_file(path), where=str(path))
    before = {r[0] for r in con.execute("SELECT kind FROM duties").fetchall()}
    con.register("incoming_departments", departments)
    con.register("incoming_duties", duties)
    try:
        con.execute("DELETE FROM departments WHERE department_id IN (SELECT department_id FROM incoming_departments)")
        con.execute("INSERT INTO departments (department_id, name, phone) SELECT department_id, name, phone "
                    "FROM incoming_departments")
        con.execute("DELETE FROM duties")
        con.execute("INSERT INTO duties (kind, department_id, deadline_hours, escalation_hours) "
                    "SELECT kind, department_id, deadline_hours, escalation_hours FROM incoming_duties")
    finally:
        con.unregister("incoming_departments")
        con.unregister("incoming_duties")
    listed = set(duties["kind"])
    unlisted = [r[0] for r in con.execute("SELECT department_id FROM departments WHERE department_id NOT IN "
                                          "(SELECT unnest(?)) ORDER BY department_id",
                                          [departments["department_id"].tolist()]).fetchall()]
    summary = {"path": str(path), "duties": len(duties), "departments": len(departments),
               "added": sorted(listed - before), "removed": sorted(before - listed),
               "uncovered": uncovered_categories(listed), "departments_unlisted": unlisted}
    if audited:
        audit(con, actor=actor, action="duties.import", target=str(path), source=source,
              detail={k: summary[k] for k in ("duties", "departments", "added", "removed")})
    return summary


def uncovered_categories(kinds: set[str]) -> list[str]:
    """The taxonomy's categories that ``kinds`` leaves without a duty (neither listed nor every subcategory)."""
    taxonomy = load_taxonomy()
    return [c["code"] for c in taxonomy["categories"] if c["code"] not in kinds and not all(
        s["code"] in kinds for s in taxonomy["subcategories"] if s["category"] == c["code"])]


def duties_frame(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The duties list with its departments' names and phones, by kind: :data:`DUTY_FIELDS` as columns."""
    return con.execute("""SELECT d.kind, d.department_id, p.name AS department, d.deadline_hours, d.escalation_hours,
                                 p.phone AS department_phone
                          FROM duties d LEFT JOIN departments p USING (department_id) ORDER BY d.kind""").df()


def export_duties(con: duckdb.DuckDBPyConnection, path: str | Path) -> dict:
    """Write the duties list to a ``.csv`` or ``.json`` file, one row per kind, as :func:`import_duties` reads it.

    Returns
    -------
    dict
        ``path``, ``duties`` (rows written), ``format``.
    """
    path = Path(path)
    kind = _format(path)
    frame = duties_frame(con)
    rows = [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in frame.to_dict("records")]
    for r in rows:  # whole hours read as such (24, not 24.0)
        for k in ("deadline_hours", "escalation_hours"):
            r[k] = int(r[k]) if float(r[k]).is_integer() else r[k]
    if kind == "json":
        text = json.dumps(rows, ensure_ascii=False, indent=1) + "\n"
    else:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(DUTY_FIELDS), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
        text = out.getvalue()
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(N_("{path}: cannot be written ({error})."), path=str(path), error=str(exc)) from None
    return {"path": str(path), "duties": len(rows), "format": kind}


def departments(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every department: ``department_id``, ``name``, ``phone``, by id."""
    return con.execute("SELECT department_id, name, phone FROM departments ORDER BY department_id").df()


# ---------------------------------------------------------------- overdue and escalated: the street leader's list

def _open() -> str:
    return f"status IN ({', '.join(repr(s) for s in OPEN_STATUSES)})"


# Hours past its deadline after which a department's case is escalated: its subcategory's duty, else its category's.
_ESCALATION_HOURS = ("coalesce((SELECT escalation_hours FROM duties WHERE kind = cases.subcategory), "
                     "(SELECT escalation_hours FROM duties WHERE kind = cases.category), 0)")


def escalated_condition() -> str:
    """An SQL condition on ``cases`` (one parameter: now) keeping the departments' cases escalated to the street
    leader: open, and past their deadline by more than their duty's escalation hours."""
    return (f"department IS NOT NULL AND deadline IS NOT NULL AND {_open()} AND "
            f"(epoch(?::TIMESTAMP) - epoch(deadline)) / 3600.0 > {_ESCALATION_HOURS}")


def escalated_cases(con: duckdb.DuckDBPyConnection, *, now: pd.Timestamp | None = None) -> pd.DataFrame:
    """The departments' cases on the street leader's list, longest past the deadline first.

    Returns
    -------
    DataFrame
        ``case_id``, ``category``, ``subcategory``, ``status``, ``grid_id``, ``department``, ``deadline``,
        ``overdue_h`` (hours past the deadline at ``now``, the district's clock by default).
    """
    now = district_now(con) if now is None else pd.Timestamp(now)
    return con.execute(f"""SELECT case_id, category, subcategory, status, grid_id, department, deadline,
                                  round((epoch(?::TIMESTAMP) - epoch(deadline)) / 3600.0, 1) AS overdue_h
                           FROM cases WHERE {escalated_condition()} ORDER BY deadline, case_id""", [now, now]).df()


# ---------------------------------------------------------------- figures per department

DEPARTMENT_FIGURES = ("department_id", "name", "open", "overdue", "escalated", "handled", "median_handle_h",
                      "reopened_share", "evaluated", "satisfaction")


def department_figures(con: duckdb.DuckDBPyConnection, *, now: pd.Timestamp | None = None) -> pd.DataFrame:
    """Per department: its open, overdue and escalated cases, how fast it handles them, how often they come back,
    and how satisfied their reporters were.

    A pure read of the store (at ``now``, the district's clock by default).

    Returns
    -------
    DataFrame
        One row per department, by id, with :data:`DEPARTMENT_FIGURES`:

        - ``open``: its cases still open; ``overdue``: of those, past their deadline; ``escalated``: past it by
          more than the duty's escalation hours (:func:`escalated_cases`).
        - ``handled``: times one of its cases went from dispatched to resolved; ``median_handle_h``: the median
          hours of those (NaN without any).
        - ``reopened_share``: % of its cases resolved at least once that were reopened at least once (NaN without).
        - ``evaluated``: reporters' answers (satisfied or not) on its cases; ``satisfaction``: % satisfied of
          those (满意率; NaN without answers). Evaluations by default count in neither.
    """
    now = district_now(con) if now is None else pd.Timestamp(now)
    figures = con.execute(f"""
        WITH mine AS (SELECT case_id, department FROM cases WHERE department IS NOT NULL),
        counts AS (
            SELECT department, count(*) FILTER (WHERE {_open()}) AS open,
                   count(*) FILTER (WHERE {_open()} AND deadline < ?) AS overdue,
                   count(*) FILTER (WHERE {escalated_condition()}) AS escalated
            FROM cases WHERE department IS NOT NULL GROUP BY department),
        steps AS (
            SELECT e.case_id, m.department, e.to_status, e."at",
                   max(CASE WHEN e.to_status = 'dispatched' THEN e."at" END) OVER (
                       PARTITION BY e.case_id ORDER BY e."at", e.to_status = 'resolved'
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS dispatched_at
            FROM case_events e JOIN mine m USING (case_id)
            WHERE e.to_status IN ('dispatched', 'resolved', 'reopened') AND e.from_status IS DISTINCT FROM e.to_status),
        handling AS (
            SELECT department, count(*) AS handled,
                   median((epoch("at") - epoch(dispatched_at)) / 3600.0) AS median_handle_h
            FROM steps WHERE to_status = 'resolved' AND dispatched_at IS NOT NULL GROUP BY department),
        returns AS (
            SELECT department, 100.0 * count(*) FILTER (WHERE reopened) / count(*) AS reopened_share
            FROM (SELECT case_id, department, bool_or(to_status = 'reopened') AS reopened,
                         bool_or(to_status = 'resolved') AS resolved FROM steps GROUP BY case_id, department)
            WHERE resolved GROUP BY department)
        SELECT p.department_id, p.name, coalesce(c.open, 0) AS open, coalesce(c.overdue, 0) AS overdue,
               coalesce(c.escalated, 0) AS escalated, coalesce(h.handled, 0) AS handled, h.median_handle_h,
               r.reopened_share
        FROM departments p LEFT JOIN counts c ON c.department = p.department_id
             LEFT JOIN handling h ON h.department = p.department_id
             LEFT JOIN returns r ON r.department = p.department_id
        ORDER BY p.department_id""", [now, now]).df()
    rates = satisfaction(con, by="department").set_index("key")
    figures["evaluated"] = figures["department_id"].map(rates["answered"]).fillna(0).astype(int)
    figures["satisfaction"] = figures["department_id"].map(rates["satisfaction"]).astype(float)
    for c in ("open", "overdue", "escalated", "handled"):
        figures[c] = figures[c].astype(int)
    for c in ("median_handle_h", "reopened_share", "satisfaction"):
        figures[c] = figures[c].astype(float).round(1)
    return figures[list(DEPARTMENT_FIGURES)]
