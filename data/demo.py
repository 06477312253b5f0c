"""The demo district: a synthetic Zhengdong-like district for the twin.

``generate_district`` builds, from a seed alone, a district of the scale the
design names (12,813 buildings, 1,127,000 residents, 18,000 cameras, 483
compound party organisations) laid out as a lattice of blocks between streets,
with four levels of governance grids that nest and tile exactly.

Layout, from coarse to fine:

* a lattice of blocks separated by streets; the centrelines are the block
  (grid-level) boundaries, so a grid is one block cell, centreline to
  centreline;
* a street (subdistrict) is a band of lattice cells, a community a contiguous
  run of 3-5 cells inside it;
* inside each cell an inner plot (the cell less half the road and a 4 m
  sidewalk) is cut by guillotine cuts into parcels (compounds, schools,
  office plots, an urban village), and each parcel into rectangles, the
  micro-grids, that hold whole buildings with a margin of at least 2.5 m;
* the frame between the inner plot and the centrelines is cut into four
  street-segment micro-grids that hold no building.

Every coordinate is shared between neighbouring rectangles, so siblings tile
their parent exactly. Geometry is in EPSG:4547 (metres, x = easting).
Timestamps are naive local time (Asia/Shanghai) and are relative to the fixed
``DEMO_NOW``, never the wall clock.

This module is the entry point; the generator is split by topic into
:mod:`data.common` (constants, scale plans), :mod:`data.layout` (lattice and
grid tables), :mod:`data.shapes` (footprints and cuts), :mod:`data.blocks`
(block fillers), :mod:`data.people` (households, residents, ID numbers) and
:mod:`data.events` (cameras, cases) and :mod:`data.party` (party organisations, the
members who report to grids and their services). :mod:`data.city` tiles
the district into the city demo (about a million buildings, residents counted
per building rather than listed).

The modules are pure: no file or database output and no printing (they read
only the package's own ``taxonomy.json``); progress goes to ``logging``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

import geopandas as gpd
import numpy as np
import pandas as pd

from data.blocks import _FILLERS, _assign_compound_households, _Builder, _fill_villages, _frame
from data.common import (
    _PLANS,
    BUILDING_USES,
    CASE_SOURCES,
    CASE_STATUSES,
    CASE_TRANSITIONS,
    CENTRE_LONLAT,
    CRS,
    DEMO_NOW,
    MICRO_HOUSEHOLDS,
    MICRO_KINDS,
    OPEN_STATUSES,
    RESIDENT_MODES,
    SCALES,
)
from data.events import _cameras, _cases, load_taxonomy
from data.ground import demo_basemap
from data.layout import _assemble, _layout
from data.party import (_party_members, _party_members_counted, _party_orgs, _party_reports, _party_services,
                        _secretary_picker)
from data.people import RESIDENT_COLUMNS, _resident_counts, _residents, id_check_digit
from twin.errors import check_choice

__all__ = [
    "BUILDING_USES",
    "CASE_SOURCES",
    "CASE_STATUSES",
    "CASE_TRANSITIONS",
    "CENTRE_LONLAT",
    "CRS",
    "DEMO_NOW",
    "MICRO_HOUSEHOLDS",
    "MICRO_KINDS",
    "OPEN_STATUSES",
    "RESIDENT_MODES",
    "SCALES",
    "DemoDistrict",
    "generate_district",
    "id_check_digit",
    "level_counts",
    "load_taxonomy",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class DemoDistrict:
    """The generated district, one frame per store table (geometry in EPSG:4547).

    Attributes
    ----------
    buildings : geopandas.GeoDataFrame
        One row per building: ``source_id``, ``name``, ``address``, ``use``,
        ``height`` (m), ``floors``, ``compound_id``, ``households``, ``units``,
        ``grid_id`` (the micro-grid holding it) and the footprint ``geometry``;
        with counted residents also ``residents`` (people living there).
    grids : geopandas.GeoDataFrame
        ``grid_id``, ``parent_id``, ``level``, ``name``, ``kind``, ``worker``
        and the boundary ``geometry``; four levels that nest and tile.
    compounds : geopandas.GeoDataFrame
        ``compound_id``, ``name``, ``grid_id`` (grid level), boundary ``geometry``.
    residents : pandas.DataFrame
        ``resident_id``, ``household_id``, ``building_source_id``, ``unit``,
        ``room``, ``name``, ``gender``, ``id_number``, ``phone``,
        ``birth_date``, ``tags`` (list of str); no rows when residents are counted.
    cameras : geopandas.GeoDataFrame
        Points with ``camera_id``, ``name``, ``z``, ``heading_deg``,
        ``pitch_deg``, ``fov_deg``, ``range_m``, ``stream_url``, ``status``,
        ``building_source_id``, ``grid_id`` (micro-grid).
    cases : geopandas.GeoDataFrame
        Points with ``case_id``, ``category``, ``subcategory`` (taxonomy
        codes), ``source``, ``status``, ``description``, ``address``,
        ``building_source_id``, ``camera_id``, ``reported_at``, ``updated_at``,
        ``due_at``, ``grid_id`` (micro-grid).
    case_events : pandas.DataFrame
        ``case_id``, ``at``, ``from_status``, ``to_status``, ``actor``, ``note``.
    party_orgs : pandas.DataFrame
        ``org_id``, ``name``, ``kind``, ``compound_id``, ``grid_id``, ``members``, ``parent_id``, ``secretary``:
        one on every grid (:func:`data.party._party_orgs`).
    party_reports : pandas.DataFrame
        ``resident_id``, ``grid_id``, ``reported_on``: party members and the grid each reports to (报到);
        no rows when residents are counted.
    party_services : pandas.DataFrame
        ``service_id``, ``resident_id``, ``grid_id``, ``day``, ``hours``, ``service``: what the reported
        members did, in the last two months.
    basemap : geopandas.GeoDataFrame
        The ground under the buildings (:func:`data.ground.demo_basemap`): ``source_id``, ``kind``
        (road, water, green), ``name`` and polygonal ``geometry``.
    """

    buildings: gpd.GeoDataFrame
    grids: gpd.GeoDataFrame
    compounds: gpd.GeoDataFrame
    residents: pd.DataFrame
    cameras: gpd.GeoDataFrame
    cases: gpd.GeoDataFrame
    case_events: pd.DataFrame
    party_orgs: pd.DataFrame
    basemap: gpd.GeoDataFrame
    party_reports: pd.DataFrame
    party_services: pd.DataFrame


# --------------------------------------------------------------------------- public helpers

def level_counts(district: DemoDistrict) -> dict[str, int]:
    """Count the grids of each level: ``{"street": n, "community": n, "grid": n, "micro": n}``."""
    counts = district.grids["level"].value_counts()
    return {lvl: int(counts.get(lvl, 0)) for lvl in ("street", "community", "grid", "micro")}


def generate_district(*, scale: Literal["full", "small"] = "full", seed: int = 0,
                      residents: Literal["listed", "counted"] = "listed") -> DemoDistrict:
    """Generate the demo district, deterministically for a seed.

    Parameters
    ----------
    scale : {"full", "small"}
        ``"full"``: 12,813 buildings, about 1,127,000 residents, 18,000 cameras,
        about 2,400 cases, 483 party organisations and 5,246 party members
        reporting to its grids, on a 20 x 20 block
        lattice of about 7.6 km square. ``"small"``: the same generator on a
        4 x 4 lattice (500 buildings) for tests and quick looks.
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives the same
        district.
    residents : {"listed", "counted"}
        ``"listed"``: one row per resident in ``residents``. ``"counted"``: no
        rows, and a ``residents`` column on ``buildings`` (the city demo,
        :mod:`data.city`); household sizes are drawn alike, the people are not.

    Returns
    -------
    DemoDistrict

    Raises
    ------
    twin.errors.OptionError
        If ``scale`` is not one of the choices.
    """
    check_choice("scale", scale, SCALES)
    check_choice("residents", residents, RESIDENT_MODES)
    plan = _PLANS[scale]
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    lat = _layout(rng, plan)
    bld = _Builder(rng)
    for blk in range(len(lat.cells)):
        _FILLERS[lat.types[blk]](bld, blk, lat.inner[blk])
        _frame(bld, blk, lat.cells[blk], lat.inner[blk])
    _fill_villages(bld, plan)
    _assign_compound_households(bld, plan)
    log.info("layout: %d buildings, %d micro-grids, %d compounds (%.1f s)",
             len(bld.blds), len(bld.micro), len(bld.compounds), time.perf_counter() - t0)
    buildings, grids, compounds, info = _assemble(rng, lat, bld)
    log.info("tables assembled (%.1f s)", time.perf_counter() - t0)
    if residents == "listed":
        residents = _residents(rng, buildings, info, plan)
        members = _party_members(buildings, residents)
    else:
        buildings["residents"] = _resident_counts(rng, buildings, plan)
        residents = pd.DataFrame(columns=RESIDENT_COLUMNS)
        members = _party_members_counted(buildings)
    log.info("residents: %d listed (%.1f s)", len(residents), time.perf_counter() - t0)
    cameras = _cameras(rng, lat, bld, buildings, info, plan)
    cases, events = _cases(rng, lat, bld, buildings, cameras, info, plan)
    listed = len(residents) > 0
    party = _party_orgs(rng, compounds, grids, members, plan,
                        secretaries=_secretary_picker(rng, buildings, residents, grids) if listed else None)
    reports = (_party_reports(rng, buildings, residents, grids, plan) if listed
               else pd.DataFrame(columns=["resident_id", "grid_id", "reported_on"]))
    services = _party_services(rng, reports)
    ground = demo_basemap(lat, buildings, ns_roads=info["ns_roads"], ew_roads=info["ew_roads"])
    log.info("district generated (%.1f s)", time.perf_counter() - t0)
    return DemoDistrict(buildings=buildings, grids=grids, compounds=compounds, residents=residents,
                        cameras=cameras, cases=cases, case_events=events, party_orgs=party, basemap=ground,
                        party_reports=reports, party_services=services)
