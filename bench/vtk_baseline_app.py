"""The first baseline for ``bench/view.py``: the same LOD1 buildings in Panel's stock ``pn.pane.VTK``.

One merged actor, as measured in the design: the whole render window is serialised as a vtk.js scene and
sent to the browser. The scene is built once per server process (``pn.state.as_cached``), as a fair user
would build it; each session gets its own pane of that one render window.

Served by ``panel serve bench/vtk_baseline_app.py --args --db STORE``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import panel as pn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scenes.theme import BACKGROUND  # noqa: E402

BUILDING_COLOUR = "#8fb3d9"


def build_render_window(db: str):
    """A pyvista plotter's render window holding every LOD1 building as one actor, seen obliquely."""
    import pyvista as pv

    from scenes.offscreen import batch_polydata
    from twin.buildings import load_meshes
    from twin.store.store import Store

    with Store(db, read_only=True) as store:
        _, meshes = load_meshes(store.con)
    plotter = pv.Plotter(off_screen=True)
    plotter.set_background(BACKGROUND)
    plotter.add_mesh(batch_polydata(meshes), color=BUILDING_COLOUR)
    plotter.camera_position = "iso"
    return plotter.ren_win


pn.extension("vtk")
parser = argparse.ArgumentParser()
parser.add_argument("--db", required=True)
db = parser.parse_known_args(sys.argv[1:])[0].db
render_window = pn.state.as_cached(f"vtk-baseline:{db}", build_render_window, db=db)
pn.pane.VTK(render_window, sizing_mode="stretch_both", min_height=700).servable()
