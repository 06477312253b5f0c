"""The baseline for ``bench/view.py``: the same LOD1 buildings in Panel's stock ``pn.pane.VTK``.

One merged actor, as measured in the design: the whole render window is
serialised as a vtk.js scene and sent to the browser.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import panel as pn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scenes.offscreen import batch_polydata  # noqa: E402
from twin.buildings import load_meshes  # noqa: E402
from twin.store.store import Store  # noqa: E402

pn.extension("vtk")

parser = argparse.ArgumentParser()
parser.add_argument("--db", required=True)
db = parser.parse_known_args(sys.argv[1:])[0].db

import pyvista as pv  # noqa: E402

with Store(db, read_only=True) as store:
    _, meshes = load_meshes(store.con)
plotter = pv.Plotter(off_screen=True)
plotter.set_background("#0f1724")
plotter.add_mesh(batch_polydata(meshes), color="#8fb3d9")
plotter.camera_position = "iso"
pn.pane.VTK(plotter.ren_win, sizing_mode="stretch_both", min_height=700).servable()
