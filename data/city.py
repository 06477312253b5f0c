"""The city demo: a dozen-district city of about a million buildings, by tiling the district's generator.

``twin demo --scale city`` (:func:`data.build_city.build_city_store`) writes ``CITY_COPIES`` copies of the
demo district (:func:`data.demo.generate_district`), each generated from its own seed, so no two look
alike, on a square lattice of offsets in the same CRS (EPSG:4547). A district is ``plan.cols *
BLOCK_SIZE`` metres square with its outer roads on its edge, so neighbouring copies abut road to road and
the city is one seamless ``cols x rows`` patchwork centred on the demo's centre (9 x 9 copies of the full
district: 68.4 km square, 1,037,853 buildings).

Each copy is a district of its own: every id it makes (grids, buildings' source ids, compounds,
cameras, cases, party organisations) starts with ``D<k>-`` (``D07-S03-C02-G1-M004``), so ids stay unique
and a street's parent chain stays inside its district; its streets are named ``<k>区<street>``.

Residents are **counted**, not listed: ``buildings.residents`` and ``buildings.households`` hold the head
counts, and the store says so in ``meta.residents = 'counted'`` (see :mod:`twin.store.queries`). Listing
them was measured first: one full district lists 1,127,000 residents in 18 s of generation and 20 s of
writing (2 shared cores), 184 MB in memory and 100 MB on disk, so 81 copies would add about 51 minutes and
8 GB, and every per-grid figure would count 91 million rows.

This module is pure, like the rest of the generator: it returns frames; :mod:`data.build_city` writes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import geopandas as gpd
import pandas as pd
from pyproj import Transformer

from data.common import _PLANS, BLOCK_SIZE, CENTRE_LONLAT, CRS, SCALES
from data.demo import DemoDistrict, generate_district
from twin.errors import InputError, check_choice

CITY_COPIES = 81  # 9 x 9 full districts: 1,037,853 buildings


@dataclass(frozen=True)
class CityPlan:
    """Which districts make the city, and where each goes.

    Attributes
    ----------
    copies : int
        Districts in the city (1-999), laid out row by row, west to east then south to north, on a
        ``cols x rows`` lattice with ``cols = ceil(sqrt(copies))``.
    base : {"full", "small"}
        The scale each district is generated at.
    seed : int
        District ``k`` (0-based) is generated from ``seed + k``.
    """

    copies: int = CITY_COPIES
    base: str = "full"
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("base", self.base, SCALES)
        if not 1 <= self.copies <= 999:
            raise InputError(f"copies={self.copies}: a city holds 1 to 999 districts. Give --copies in that range.")

    @property
    def cols(self) -> int:
        return math.ceil(math.sqrt(self.copies))

    @property
    def rows(self) -> int:
        return math.ceil(self.copies / self.cols)

    @property
    def pitch(self) -> float:
        """Side of one district (m), the distance between neighbouring copies."""
        return _PLANS[self.base].cols * BLOCK_SIZE

    @property
    def key(self) -> str:
        """The plan in one word, kept in the store's meta to resume only the same plan."""
        return f"{self.base}x{self.copies}@{self.seed}"

    def offset(self, k: int) -> tuple[float, float]:
        """Offset (dx, dy) in m of district ``k`` from the demo district's place; the lattice is centred."""
        i, j = k % self.cols, k // self.cols
        return (i - (self.cols - 1) / 2) * self.pitch, (j - (self.rows - 1) / 2) * self.pitch

    def prefix(self, k: int) -> str:
        """``D<k>-``, numbered from 1 with at least two digits: the start of every id of district ``k``."""
        return f"D{k + 1:0{max(2, len(str(self.copies)))}d}-"

    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the whole city in EPSG:4547 (m)."""
        cx, cy = Transformer.from_crs(4326, CRS, always_xy=True).transform(*CENTRE_LONLAT)
        half_w, half_h = self.cols * self.pitch / 2, self.rows * self.pitch / 2
        return cx - half_w, cy - half_h, cx + half_w, cy + half_h


def city_district(plan: CityPlan, k: int) -> DemoDistrict:
    """District ``k`` of the city: generated with counted residents, moved to its place, its ids prefixed."""
    demo = generate_district(scale=plan.base, seed=plan.seed + k, residents="counted")
    return relabel(demo, prefix=plan.prefix(k), name=f"{k + 1}区", offset=plan.offset(k))


def relabel(demo: DemoDistrict, *, prefix: str, name: str, offset: tuple[float, float]) -> DemoDistrict:
    """A district moved by ``offset`` (dx, dy; m), every id starting with ``prefix``, its streets' names
    with ``name``. Residents must be counted (no rows), as the city has them."""
    if len(demo.residents):
        raise InputError("relabel: the district lists its residents; the city counts them. "
                         "Generate it with residents='counted'.")

    def ids(series: pd.Series) -> pd.Series:
        return series.map(lambda v: None if v is None or v != v else prefix + v).astype(object)

    def moved(frame, *columns):
        out = frame.assign(**{c: ids(frame[c]) for c in columns})
        return out.set_geometry(out.geometry.translate(*offset)) if isinstance(out, gpd.GeoDataFrame) else out

    grids = moved(demo.grids, "grid_id", "parent_id")
    street = grids["level"] == "street"
    grids.loc[street, "name"] = name + grids.loc[street, "name"]
    cameras = moved(demo.cameras, "camera_id", "building_source_id", "grid_id")
    cameras["stream_url"] = demo.cameras["stream_url"].str.replace("/live/", f"/live/{prefix}", regex=False)
    return DemoDistrict(
        buildings=moved(demo.buildings, "source_id", "compound_id", "grid_id"),
        grids=grids,
        compounds=moved(demo.compounds, "compound_id", "grid_id"),
        residents=demo.residents,
        cameras=cameras,
        cases=moved(demo.cases, "case_id", "building_source_id", "camera_id", "grid_id"),
        case_events=moved(demo.case_events, "case_id"),
        party_orgs=moved(demo.party_orgs, "org_id", "compound_id", "grid_id", "parent_id"),
        basemap=moved(demo.basemap, "source_id"),
        party_reports=demo.party_reports, party_services=demo.party_services)  # none: residents are counted
