"""Serve the district twin: ``panel serve app.py --args --db PATH`` (or ``twin serve``).

Thin on purpose: open the store, build the app, serve it.
"""

from __future__ import annotations

import argparse
import os
import sys

import panel as pn

from scenes.screens import DistrictApp
from scenes.shared import SharedDistrict
from twin.store import Store

# 'vtk' puts the vtk.js that Panel ships (served by this server, no CDN) on the page.
pn.extension("vtk", theme="dark", sizing_mode="stretch_width")


def _db_path() -> str:
    parser = argparse.ArgumentParser(prog="app.py")
    parser.add_argument("--db", default=os.environ.get("TWIN_DB", "data/demo.duckdb"))
    return parser.parse_known_args(sys.argv[1:])[0].db


@pn.cache
def _store(path: str) -> Store:
    return Store(path, read_only=True)


@pn.cache
def _shared(path: str) -> SharedDistrict:
    return SharedDistrict(_store(path).con.cursor())


if pn.state.served or __name__.startswith("bokeh_app"):
    db = _db_path()
    DistrictApp(_store(db).con.cursor(), _shared(db)).servable(title="District twin")
