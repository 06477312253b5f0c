"""The demo district's ground: its streets' carriageways, a river along its south edge and green space.

Everything is placed where no building stands: a carriageway is its
centreline plus and minus half the road (the inner plots begin a 4 m
sidewalk further on), the river and its riverside park lie south of the
southernmost street, and a park block's green is the block less its
buildings and a margin around them. Pure and deterministic (no random
numbers are drawn, so the rest of the district is as it was).
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely

from data.common import CRS
from data.layout import _Lattice

RIVER_NAME = "如意河"
RIVERSIDE_PARK = "如意河滨河公园"
RIVER_WIDTH_M = 45.0
RIVERSIDE_M = 35.0        # the park between the southern street and the river bank
MEANDER_M, MEANDER_WAVELENGTH_M = 25.0, 1400.0
PARK_MARGIN_M = 3.0       # park green keeps this far from its pavilions


def demo_basemap(lat: _Lattice, buildings: gpd.GeoDataFrame, *, ns_roads, ew_roads) -> gpd.GeoDataFrame:
    """The basemap rows of the demo district (``source`` is set by the store writer).

    Parameters
    ----------
    lat : _Lattice
        The street lattice: centrelines ``X``, ``Y`` and half road widths ``hx``, ``hy`` (m, EPSG:4547).
    buildings : GeoDataFrame
        The footprints, which the green space leaves out.
    ns_roads, ew_roads : sequence of str
        The names of the north-south and east-west streets.

    Returns
    -------
    GeoDataFrame
        ``source_id``, ``kind``, ``name`` and polygonal ``geometry`` in EPSG:4547.
    """
    X, Y, hx, hy = lat.X, lat.Y, lat.hx, lat.hy
    west, east, south, north = X[0] - hx[0], X[-1] + hx[-1], Y[0] - hy[0], Y[-1] + hy[-1]
    rows = []
    for i, x in enumerate(X):
        rows.append((f"road-ns-{i}", "road", ns_roads[i], shapely.box(x - hx[i], south, x + hx[i], north)))
    for j, y in enumerate(Y):
        rows.append((f"road-ew-{j}", "road", ew_roads[j], shapely.box(west, y - hy[j], east, y + hy[j])))

    # The river meanders south of the district; the riverside park fills the strip up to the street.
    xs = np.linspace(west - 200.0, east + 200.0, 241)
    bank = south - RIVERSIDE_M - MEANDER_M * (1 + np.sin(2 * np.pi * (xs - xs[0]) / MEANDER_WAVELENGTH_M))
    north_bank = np.column_stack([xs, bank])
    south_bank = np.column_stack([xs[::-1], bank[::-1] - RIVER_WIDTH_M])
    rows.append(("river", "water", RIVER_NAME, shapely.Polygon(np.vstack([north_bank, south_bank]))))
    rows.append(("riverside-park", "green", RIVERSIDE_PARK,
                 shapely.Polygon(np.vstack([[[east, south]], [[west, south]], north_bank[(xs >= west) & (xs <= east)]]))))

    # Park blocks: the inner plot less the pavilions standing in it.
    footprints = buildings.geometry.values
    tree = shapely.STRtree(footprints)
    for block, kind in enumerate(lat.types):
        if kind != "park":
            continue
        plot = shapely.box(*lat.inner[block])
        near = footprints[tree.query(plot)]
        green = shapely.difference(plot, shapely.union_all(shapely.buffer(near, PARK_MARGIN_M, join_style="mitre")))
        rows.append((f"park-{block}", "green", None, green))
    geoms = np.array([shapely.set_precision(g, 0.01) for _, _, _, g in rows], dtype=object)
    return gpd.GeoDataFrame({"source_id": [r[0] for r in rows], "kind": [r[1] for r in rows],
                             "name": [r[2] for r in rows]}, geometry=gpd.GeoSeries(geoms, crs=CRS), crs=CRS)
