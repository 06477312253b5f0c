"""``twin ingest basemap``: roads, water and green space under the buildings, from GeoJSON, GeoPackage or OSM layers.

Reading is at the edge (:func:`read_basemap_layers`); classifying, buffering
and reprojecting are the pure :func:`twin.geo.basemap.basemap_rows`; writing
replaces the source's rows in one statement pair, so re-ingesting a file
updates it in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ingest.footprints import Step, _no_step, checked_path, district_for, layer_names, read_layer, source_crs_of
from twin.errors import InputError
from twin.geo.basemap import basemap_rows
from twin.geo.crs import check_near_origin
from twin.store.store import Store, insert_frame
from twin.timing import StageTimer

BASEMAP_STAGES = ("read", "classify", "store")


def read_basemap_layers(path: str | Path, *, layers: Sequence[str] | None = None) -> list[tuple[str, gpd.GeoDataFrame]]:
    """Read every layer of a GeoJSON, GeoPackage, Shapefile or GeoParquet file, or the chosen ones.

    Returns
    -------
    list of (str, GeoDataFrame)
        Each layer's name and features as read, in the file's CRS.
    """
    path = checked_path(path)
    found = layer_names(path)
    if layers:
        unknown = [name for name in layers if name not in found]
        if unknown:
            raise InputError(f"{path}: has no layer {', '.join(map(repr, unknown))}; its layers are "
                             f"{', '.join(found)}. Choose among them with --layer NAME.")
        found = list(dict.fromkeys(layers))
    return [(name, read_layer(path, layer=name if len(found) > 1 or layers else None)) for name in found]


def ingest_basemap(store: Store, layers: list[tuple[str, gpd.GeoDataFrame]], *, source: str, where: str,
                   source_crs: str | None = None, crs: str | None = None, kind: str | None = None,
                   step: Step = _no_step) -> dict:
    """Replace the basemap rows of ``source`` with the features of ``layers`` (inside the store's transaction).

    Parameters
    ----------
    store : Store
        Open, inside :meth:`Store.transaction` or :func:`twin.store.store.open_for_command`.
    layers : list of (str, GeoDataFrame)
        As :func:`read_basemap_layers` returns them.
    source : str
        The source's name: its rows are replaced, those of other sources kept.
    where : str
        The file, for messages.
    source_crs, crs : str, optional
        CRS of a file that has none; district CRS of a new store.
    kind : {"road", "water", "green"}, optional
        The kind of features with no ``kind`` column value and no OSM tag.

    Returns
    -------
    dict
        JSON-ready summary: rows per kind, per layer what was left out, rows replaced, timings in seconds.
    """
    timer = StageTimer(step)
    frames, reports = [], {}
    district = None
    for layer, features in layers:
        at = f"{where} (layer {layer})" if len(layers) > 1 else where
        src = source_crs_of(features, source_crs=source_crs, where=at)
        if district is None:
            district = district_for(store, features.total_bounds, source_crs=src, crs=crs, where=at)
        rows, report = basemap_rows(features, source=source, layer=layer, where=at, source_crs=src,
                                    crs=district.crs, kind=kind)
        bounds = shapely.bounds(rows.geometry.values)
        check_near_origin(np.vstack([bounds[:, :2], bounds[:, 2:]]), district, what=at)
        frames.append(rows)
        reports[layer] = report.as_dict()
    timer.lap("classify")
    rows = pd.concat(frames, ignore_index=True)
    con = store.con
    replaced = con.execute("SELECT count(*) FROM basemap WHERE source = ?", [source]).fetchone()[0]
    con.execute("DELETE FROM basemap WHERE source = ?", [source])
    insert_frame(con, "basemap", pd.DataFrame({c: rows[c] for c in ("feature_id", "kind", "name", "source",
                                                                      "source_id")} | {"geometry": rows.geometry.values}),
                 geometry=("geometry",))
    timer.lap("store")
    return {"file": where, "source": source, "crs": district.crs, "features": len(rows),
            "kinds": {k: int(n) for k, n in rows["kind"].value_counts().items()}, "replaced": int(replaced),
            "layers": reports, "timings_s": timer.timings}
