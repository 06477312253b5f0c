"""The baseline for ``bench/field.py``'s first load: the grid worker's list of cases as a Panel document.

The same list the phone page draws (:func:`twin.field.worklist.worker_cases` through the worker's gate), as a
fair Panel user would build it: one column of plain panes, no extension beyond Panel's own, the store opened
once per server process. Its first load is Bokeh's and Panel's JavaScript and the document over a websocket.

Served by ``panel serve bench/worker_panel_baseline_app.py --args --db STORE``; ``?worker=NAME`` picks the worker.
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path

import panel as pn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from twin.access.access import find_user  # noqa: E402
from twin.access.policy import Gate  # noqa: E402
from twin.field.worklist import worker_cases  # noqa: E402
from twin.store.store import Store  # noqa: E402


def open_store(db: str):
    return Store(db, read_only=True)


pn.extension(sizing_mode="stretch_width")
parser = argparse.ArgumentParser()
parser.add_argument("--db", required=True)
db = parser.parse_known_args(sys.argv[1:])[0].db
store = pn.state.as_cached(f"worker-baseline:{db}", open_store, db=db)
args = pn.state.session_args
worker = args.get("worker", [b""])[0].decode()
con = store.con.cursor()
principal = find_user(con, worker)
cases = worker_cases(Gate(con, principal)) if principal is not None else []
items = "".join(f"<li class='twin-baseline-case'><b>{html.escape(c['subcategory'])}</b> · {html.escape(c['status'])}"
                f"<br>{html.escape(c['case_id'])} · {html.escape(c['address'] or '')}</li>" for c in cases)
pn.Column(pn.pane.Markdown(f"## {worker}"), pn.widgets.Toggle(name="Patrol"),
          pn.pane.HTML(f"<ul>{items}</ul>")).servable()
