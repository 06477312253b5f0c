"""Serve the district twin: ``panel serve app.py --args --db PATH`` (or ``twin serve``).

Thin on purpose: open the store, build the app, serve it.
"""

from __future__ import annotations

import argparse
import os
import sys

import panel as pn

from scenes.screens import DistrictApp
from twin.store import Store

pn.extension("tabulator", theme="dark", raw_css=[], sizing_mode="stretch_width")


def _db_path() -> str:
    parser = argparse.ArgumentParser(prog="app.py")
    parser.add_argument("--db", default=os.environ.get("TWIN_DB", "data/demo.duckdb"))
    return parser.parse_known_args(sys.argv[1:])[0].db


@pn.cache
def _store(path: str) -> Store:
    return Store(path, read_only=True)


if pn.state.served or __name__.startswith("bokeh_app"):
    DistrictApp(_store(_db_path()).con.cursor()).servable(title="District twin")
