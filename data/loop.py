"""The demo district's field loop: its duties list, its departments' cases, and evaluations on past cases.

The list is ``data/duties.csv`` (one row per taxonomy category, 15 departments: 城市管理局, 生态环境局, 住建局,
消防救援, 公安, 市场监管, …), imported as ``twin duties import`` does. The demo's case histories
(:mod:`data.events`) dispatch every case they carry that far; each such case goes to its category's department,
with the deadline the list gives from its last dispatch. Each past evaluation of a case becomes its reporter's
answer: not satisfied when the case was reopened after it, else satisfied, or for one in eight (fixed by the
case id) no answer, evaluated by default.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from twin.cases.duties import import_duties

DEMO_DUTIES = Path(__file__).resolve().parent / "duties.csv"
BY_DEFAULT_PER_8 = 1  # of each 8 past evaluations (by the case id's hash), this many had no answer
NOT_SATISFIED_NOTE = "问题还没有解决，请再处理"


def write_loop(con: duckdb.DuckDBPyConnection) -> dict:
    """Write the demo's duties list and give its past cases their departments and evaluations (in the caller's
    transaction, after the cases and their events).

    Returns
    -------
    dict
        ``duties``, ``departments``, ``department_cases``, ``evaluations``.
    """
    summary = import_duties(con, DEMO_DUTIES, actor="demo", audited=False)  # set-up, no one's act
    con.execute("""
        UPDATE cases SET department = d.department_id,
                         deadline = x.dispatched_at + to_seconds(CAST(d.deadline_hours * 3600 AS BIGINT))
        FROM (SELECT case_id, max("at") AS dispatched_at FROM case_events WHERE to_status = 'dispatched'
              GROUP BY case_id) x, duties d
        WHERE x.case_id = cases.case_id AND d.kind = cases.category""")
    # The histories' dispatches name the taxonomy's units; the list's departments take them now.
    con.execute("""
        UPDATE case_events SET note = '派遣至' || p.name
        FROM cases c, departments p WHERE c.case_id = case_events.case_id AND p.department_id = c.department
             AND case_events.to_status = 'dispatched'""")
    con.execute(f"""
        INSERT INTO evaluations (case_id, "at", result, note, via, grid_id, worker, department)
        SELECT e.case_id, e."at",
               CASE WHEN e.next_status = 'reopened' THEN 'not_satisfied'
                    WHEN hash(e.case_id) % 8 < {BY_DEFAULT_PER_8} THEN 'default' ELSE 'satisfied' END,
               CASE WHEN e.next_status = 'reopened' THEN ? END, 'demo', c.grid_id, g.worker, c.department
        FROM (SELECT case_id, "at", to_status,
                     lead(to_status) OVER (PARTITION BY case_id ORDER BY "at") AS next_status
              FROM case_events) e
        JOIN cases c USING (case_id)
        LEFT JOIN grids g ON g.grid_id = c.grid_id AND g.valid_to IS NULL
        WHERE e.to_status = 'evaluated'""", [NOT_SATISFIED_NOTE])
    department_cases, = con.execute("SELECT count(*) FROM cases WHERE department IS NOT NULL").fetchall()[0]
    evaluations, = con.execute("SELECT count(*) FROM evaluations").fetchall()[0]
    return {"duties": summary["duties"], "departments": summary["departments"], "department_cases": department_cases,
            "evaluations": evaluations}
