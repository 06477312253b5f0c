"""Serve the district twin: ``panel serve app.py --args --db PATH`` (``twin serve`` is the full server).

Thin on purpose: open the store, build the app, serve it. Every page needs a
signed-in user of the store. ``twin serve`` brings the sign-in page, the intake
and the audit trail's writer; under plain ``panel serve`` (read-only store, no
sign-in configured) the app explains that and shows nothing of the district.
"""

from __future__ import annotations

import argparse
import os
import sys

import panel as pn

from scenes.screens import DistrictApp, SignedOut
from scenes.shared import SharedDistrict
from twin.access.access import find_user
from twin.store.store import Store

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
    principal = find_user(_store(db).con.cursor(), pn.state.user) if pn.state.user else None
    if principal is None:
        SignedOut(reason="Nobody is signed in: serve the district with `twin serve --db PATH`, which has the "
                         "sign-in page.").servable(title="District twin")
    else:
        DistrictApp(_store(db).con.cursor(), _shared(db), principal=principal).servable(title="District twin")
