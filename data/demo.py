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

The module is pure: no file or database output and no printing (it reads only
its own ``taxonomy.json``); progress goes to ``logging``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import shapely
from pyproj import Transformer

from data import names as N
from twin.errors import check_choice

log = logging.getLogger(__name__)

CRS = "EPSG:4547"
CENTRE_LONLAT = (113.72, 34.76)
DEMO_NOW = pd.Timestamp("2026-11-26 09:00:00")
SCALES = ("full", "small")
BUILDING_USES = ("residential", "office", "school", "market", "hospital", "public", "commercial")
MICRO_KINDS = ("residential", "office", "street", "mixed", "public")
CASE_SOURCES = ("ai", "citizen", "patrol", "open311", "hotline")
CASE_STATUSES = ("reported", "dispatched", "in_progress", "resolved", "evaluated", "closed", "rejected", "reopened")
OPEN_STATUSES = ("reported", "dispatched", "in_progress", "reopened")
CASE_TRANSITIONS = frozenset({
    (None, "reported"), ("reported", "dispatched"), ("reported", "rejected"),
    ("dispatched", "in_progress"), ("dispatched", "rejected"), ("in_progress", "resolved"),
    ("resolved", "evaluated"), ("evaluated", "closed"), ("evaluated", "reopened"),
    ("reopened", "dispatched"),
})
MICRO_HOUSEHOLDS = (70, 80)  # households of a residential micro-grid of several buildings
_USE_KIND = {"residential": "residential", "office": "office", "commercial": "mixed", "market": "mixed",
             "school": "public", "hospital": "public", "public": "public"}


@dataclass(frozen=True)
class _Plan:
    cols: int
    rows: int
    buildings: int
    households: int
    residents: int
    cameras: int
    cases: int
    party_orgs: int


_PLANS = {
    "full": _Plan(20, 20, 12_813, 400_000, 1_127_000, 18_000, 2_400, 483),
    "small": _Plan(4, 4, 500, 15_600, 43_980, 700, 100, 19),
}
_BLOCK_MIX = (("tower", .18), ("slab", .15), ("mixed", .20), ("office", .17), ("public", .12),
              ("village", .10), ("park", .08))
_COMPOUND_SHARE = 0.80  # of households (and so, closely, of residents)


@dataclass(frozen=True, eq=False)
class DemoDistrict:
    """The generated district, one frame per store table (geometry in EPSG:4547).

    Attributes
    ----------
    buildings : geopandas.GeoDataFrame
        One row per building: ``source_id``, ``name``, ``address``, ``use``,
        ``height`` (m), ``floors``, ``compound_id``, ``households``, ``units``,
        ``grid_id`` (the micro-grid holding it) and the footprint ``geometry``.
    grids : geopandas.GeoDataFrame
        ``grid_id``, ``parent_id``, ``level``, ``name``, ``kind``, ``worker``
        and the boundary ``geometry``; four levels that nest and tile.
    compounds : geopandas.GeoDataFrame
        ``compound_id``, ``name``, ``grid_id`` (grid level), boundary ``geometry``.
    residents : pandas.DataFrame
        ``resident_id``, ``household_id``, ``building_source_id``, ``unit``,
        ``room``, ``name``, ``gender``, ``id_number``, ``phone``,
        ``birth_date``, ``tags`` (list of str).
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
        ``org_id``, ``name``, ``compound_id``, ``grid_id``, ``members``.
    """

    buildings: gpd.GeoDataFrame
    grids: gpd.GeoDataFrame
    compounds: gpd.GeoDataFrame
    residents: pd.DataFrame
    cameras: gpd.GeoDataFrame
    cases: gpd.GeoDataFrame
    case_events: pd.DataFrame
    party_orgs: pd.DataFrame


# --------------------------------------------------------------------------- public helpers

_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
_ID_CHECK = "10X98765432"


def id_check_digit(first17: str) -> str:
    """Return the ISO 7064 MOD 11-2 check character of a PRC resident ID.

    Parameters
    ----------
    first17 : str
        The first 17 digits of the 18-character ID number.

    Returns
    -------
    str
        One of ``"0"``-``"9"`` or ``"X"`` (for 10).

    Examples
    --------
    >>> id_check_digit("11010519491231002")
    'X'
    """
    if len(first17) != 17 or not first17.isdigit() or not first17.isascii():
        raise ValueError(f"first17={first17!r}: expected exactly 17 ASCII digits.")
    total = int(np.dot(np.frombuffer(first17.encode(), np.uint8) - 48, _ID_WEIGHTS))
    return _ID_CHECK[total % 11]


def level_counts(district: DemoDistrict) -> dict[str, int]:
    """Count the grids of each level: ``{"street": n, "community": n, "grid": n, "micro": n}``."""
    counts = district.grids["level"].value_counts()
    return {lvl: int(counts.get(lvl, 0)) for lvl in ("street", "community", "grid", "micro")}


@lru_cache(maxsize=1)
def load_taxonomy() -> dict:
    """Return the case taxonomy (``data/taxonomy.json``): categories and subcategories.

    Each subcategory has ``code``, ``category`` (a category code), ``name``,
    ``name_en``, ``deadline_hours``, ``ai`` (raised by video analytics),
    ``place``, ``uses``, ``weight`` and a description ``template``.
    """
    text = resources.files("data").joinpath("taxonomy.json").read_text(encoding="utf-8")
    return json.loads(text)


def generate_district(*, scale: Literal["full", "small"] = "full", seed: int = 0) -> DemoDistrict:
    """Generate the demo district, deterministically for a seed.

    Parameters
    ----------
    scale : {"full", "small"}
        ``"full"``: 12,813 buildings, about 1,127,000 residents, 18,000 cameras,
        about 2,400 cases and 483 party organisations on a 20 x 20 block
        lattice of about 7.6 km square. ``"small"``: the same generator on a
        4 x 4 lattice (500 buildings) for tests and quick looks.
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives the same
        district.

    Returns
    -------
    DemoDistrict

    Raises
    ------
    twin.errors.OptionError
        If ``scale`` is not one of the choices.
    """
    check_choice("scale", scale, SCALES)
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
    residents = _residents(rng, buildings, info, plan)
    log.info("residents: %d (%.1f s)", len(residents), time.perf_counter() - t0)
    cameras = _cameras(rng, lat, bld, buildings, info, plan)
    cases, events = _cases(rng, lat, bld, buildings, cameras, info, plan)
    party = _party_orgs(rng, compounds, buildings, residents, plan)
    log.info("district generated (%.1f s)", time.perf_counter() - t0)
    return DemoDistrict(buildings=buildings, grids=grids, compounds=compounds, residents=residents,
                        cameras=cameras, cases=cases, case_events=events, party_orgs=party)


# --------------------------------------------------------------------------- lattice and hierarchy

@dataclass
class _Lattice:
    X: np.ndarray            # x of the north-south centrelines
    Y: np.ndarray            # y of the east-west centrelines
    hx: np.ndarray           # half road width of each north-south line
    hy: np.ndarray
    cells: list              # (x0, y0, x1, y1) per block, block = j * cols + i
    inner: list
    ij: list                 # (i, j) per block
    types: list
    street_of: np.ndarray    # street index per block
    community_of: np.ndarray  # community index per block
    street_cells: list       # (c0, r0, c1, r1) lattice range per street
    community_blocks: list   # block indices per community, in order
    community_street: list


def _layout(rng, plan: _Plan) -> _Lattice:
    cx, cy = Transformer.from_crs(4326, 4547, always_xy=True).transform(*CENTRE_LONLAT)
    size = plan.cols * 380.0
    X = _lines(rng, plan.cols, size, round(cx, 2))
    Y = _lines(rng, plan.rows, size, round(cy, 2))
    hx, hy = _road_halves(rng, plan.cols + 1), _road_halves(rng, plan.rows + 1)
    cells, inner, ij = [], [], []
    for j in range(plan.rows):
        for i in range(plan.cols):
            cells.append((X[i], Y[j], X[i + 1], Y[j + 1]))
            sw = 4.0
            inner.append((round(X[i] + hx[i] + sw, 2), round(Y[j] + hy[j] + sw, 2),
                          round(X[i + 1] - hx[i + 1] - sw, 2), round(Y[j + 1] - hy[j + 1] - sw, 2)))
            ij.append((i, j))
    nb = len(cells)
    street_of = np.zeros(nb, int)
    community_of = np.zeros(nb, int)
    street_cells, community_blocks, community_street = [], [], []
    band = 4
    for c0 in range(0, plan.cols, band):
        c1 = min(plan.cols, c0 + band)
        split = int(rng.integers(int(plan.rows * .4), int(plan.rows * .6) + 1)) if plan.rows >= 4 else plan.rows
        for r0, r1 in ((0, split), (split, plan.rows)):
            if r1 <= r0:
                continue
            s = len(street_cells)
            street_cells.append((c0, r0, c1, r1))
            snake = []
            for j in range(r0, r1):
                row = [j * plan.cols + i for i in range(c0, c1)]
                snake.extend(row if (j - r0) % 2 == 0 else row[::-1])
            k = 0
            while k < len(snake):
                rest = len(snake) - k
                n = rest if rest <= 5 else int(rng.choice([3, 4, 4, 5]))
                if 0 < rest - n < 3:
                    n = rest - 3 if rest - 3 >= 3 else rest
                community_blocks.append(snake[k:k + n])
                community_street.append(s)
                k += n
            for blk in snake:
                street_of[blk] = s
    for c, blocks in enumerate(community_blocks):
        community_of[blocks] = c
    # Block types: offices towards the centre, urban villages at the edge.
    counts = _apportion(nb, [f for _, f in _BLOCK_MIX])
    centres = np.array([((a + c) / 2, (b + d) / 2) for a, b, c, d in cells])
    dist = np.hypot(*(centres - centres.mean(0)).T)
    dist = dist / max(dist.max(), 1.0)
    types = np.array([""] * nb, dtype=object)
    free = np.ones(nb, bool)
    for name, want in (("office", counts[3]), ("village", counts[5])):
        score = dist + rng.normal(0, .25, nb) if name == "office" else -dist + rng.normal(0, .2, nb)
        score[~free] = np.inf
        pick = np.argsort(score, kind="stable")[:want]
        types[pick] = name
        free[pick] = False
    rest = [name for (name, _), k in zip(_BLOCK_MIX, counts) if name not in ("office", "village") for _ in range(k)]
    types[np.flatnonzero(free)] = rng.permutation(np.array(rest, dtype=object))
    return _Lattice(X, Y, hx, hy, cells, inner, ij, list(types), street_of, community_of,
                    street_cells, community_blocks, community_street)


def _lines(rng, n, size, centre):
    w = rng.uniform(.85, 1.15, n)
    edges = np.concatenate([[0.0], np.cumsum(w / w.sum() * size)])
    return np.round(centre - size / 2 + edges, 2)


def _road_halves(rng, n):
    k = (np.arange(n) + int(rng.integers(0, 5))) % 5
    h = np.where(k == 0, 25.0, np.where(k == 2, 18.0, 12.0))
    h[0] = h[-1] = 25.0
    return h


def _apportion(total: int, weights) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder)."""
    w = np.asarray(weights, float)
    raw = total * w / w.sum()
    out = np.floor(raw).astype(int)
    for k in np.argsort(-(raw - out), kind="stable")[: total - out.sum()]:
        out[k] += 1
    return out.tolist()


# --------------------------------------------------------------------------- footprints

def _rect(b):
    x0, y0, x1, y1 = b
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], []


def _mirror(ext, b, mx, my):
    x0, y0, x1, y1 = b
    return [((x0 + x1 - x) if mx else x, (y0 + y1 - y) if my else y) for x, y in ext]


def _notched(b, rng):
    """A point tower with a light-well notch in the north and south faces."""
    x0, y0, x1, y1 = b
    w, d = x1 - x0, y1 - y0
    nw, nd = w * rng.uniform(.18, .3), d * rng.uniform(.15, .25)
    a = x0 + (w - nw) / 2
    c = a + nw
    return [(x0, y0), (a, y0), (a, y0 + nd), (c, y0 + nd), (c, y0), (x1, y0), (x1, y1), (c, y1),
            (c, y1 - nd), (a, y1 - nd), (a, y1), (x0, y1)], []


def _l_shape(b, rng):
    x0, y0, x1, y1 = b
    cw, cd = (x1 - x0) * rng.uniform(.35, .6), (y1 - y0) * rng.uniform(.35, .6)
    ext = [(x0, y0), (x1, y0), (x1, y1 - cd), (x1 - cw, y1 - cd), (x1 - cw, y1), (x0, y1)]
    return _mirror(ext, b, rng.random() < .5, rng.random() < .5), []


def _u_shape(b, rng):
    x0, y0, x1, y1 = b
    aw, bd = (x1 - x0) * rng.uniform(.2, .28), (y1 - y0) * rng.uniform(.3, .42)
    ext = [(x0, y0), (x1, y0), (x1, y1), (x1 - aw, y1), (x1 - aw, y0 + bd), (x0 + aw, y0 + bd),
           (x0 + aw, y1), (x0, y1)]
    return _mirror(ext, b, False, rng.random() < .4), []


def _h_shape(b, rng):
    x0, y0, x1, y1 = b
    ww, cd = (x1 - x0) * rng.uniform(.22, .3), (y1 - y0) * rng.uniform(.25, .4)
    c0 = y0 + ((y1 - y0) - cd) / 2
    return [(x0, y0), (x0 + ww, y0), (x0 + ww, c0), (x1 - ww, c0), (x1 - ww, y0), (x1, y0), (x1, y1),
            (x1 - ww, y1), (x1 - ww, c0 + cd), (x0 + ww, c0 + cd), (x0 + ww, y1), (x0, y1)], []


def _courtyard(b, depth):
    x0, y0, x1, y1 = b
    if min(x1 - x0, y1 - y0) < 2 * depth + 8:
        return _rect(b)
    hole = [(x0 + depth, y0 + depth), (x0 + depth, y1 - depth), (x1 - depth, y1 - depth), (x1 - depth, y0 + depth)]
    return _rect(b)[0], [hole]


def _place(rng, cell, w, d, margin):
    """A box of at most ``w`` x ``d`` inside ``cell``, at least ``margin`` from its edges."""
    x0, y0, x1, y1 = cell
    w = min(w, x1 - x0 - 2 * margin)
    d = min(d, y1 - y0 - 2 * margin)
    if w < 4 or d < 4:
        raise AssertionError(f"cell {cell} too small for a building")
    bx = x0 + margin + rng.uniform(0, x1 - x0 - 2 * margin - w)
    by = y0 + margin + rng.uniform(0, y1 - y0 - 2 * margin - d)
    return (bx, by, bx + w, by + d)


def _cells(rect, nx, ny):
    """Split ``rect`` into ``nx`` x ``ny`` cells sharing exact coordinates, north row first."""
    x0, y0, x1, y1 = rect
    xs = [x0] + [round(v, 2) for v in np.linspace(x0, x1, nx + 1)[1:-1]] + [x1]
    ys = [y0] + [round(v, 2) for v in np.linspace(y0, y1, ny + 1)[1:-1]] + [y1]
    return [(xs[i], ys[j], xs[i + 1], ys[j + 1]) for j in reversed(range(ny)) for i in range(nx)]


def _cut(rect, axis, f):
    x0, y0, x1, y1 = rect
    if axis == 0:
        c = round(x0 + (x1 - x0) * f, 2)
        return (x0, y0, c, y1), (c, y0, x1, y1)
    c = round(y0 + (y1 - y0) * f, 2)
    return (x0, y0, x1, c), (x0, c, x1, y1)


def _long_axis(rect):
    return 0 if rect[2] - rect[0] >= rect[3] - rect[1] else 1


def _split_n(rng, rect, n):
    """Guillotine ``rect`` into ``n`` (1-4) parcels, each touching the outside."""
    ax = _long_axis(rect)
    if n <= 1:
        return [rect]
    if n == 2:
        return list(_cut(rect, ax, rng.uniform(.42, .58)))
    if n == 3:
        a, b = _cut(rect, ax, rng.uniform(.3, .4))
        return [a, *_cut(b, 1 - ax, rng.uniform(.4, .6))]
    a, b = _cut(rect, ax, rng.uniform(.42, .58))
    return [*_cut(a, 1 - ax, rng.uniform(.4, .6)), *_cut(b, 1 - ax, rng.uniform(.4, .6))]


def _carve(rng, rect, depth):
    """Cut a strip of ``depth`` along a random side of ``rect``: (strip, rest)."""
    x0, y0, x1, y1 = rect
    side = int(rng.integers(4))
    if side == 0:
        return (x0, y0, x1, round(y0 + depth, 2)), (x0, round(y0 + depth, 2), x1, y1)
    if side == 1:
        return (x0, round(y1 - depth, 2), x1, y1), (x0, y0, x1, round(y1 - depth, 2))
    if side == 2:
        return (x0, y0, round(x0 + depth, 2), y1), (round(x0 + depth, 2), y0, x1, y1)
    return (round(x1 - depth, 2), y0, x1, y1), (x0, y0, round(x1 - depth, 2), y1)


def _split_households(total, caps):
    """Split ``total`` households over buildings in proportion to capacity, none over it."""
    caps = np.asarray(caps, float)
    raw = total * caps / caps.sum()
    out = np.floor(raw).astype(int)
    for k in np.argsort(-(raw - out), kind="stable")[: total - out.sum()]:
        out[k] += 1
    return out


# --------------------------------------------------------------------------- builder and block fillers

class _Namer:
    """Unique names drawn from prefix x suffix combinations in a seeded order."""

    def __init__(self, rng):
        self.rng = rng
        self.pools: dict[str, list] = {}

    def __call__(self, key, prefixes, suffixes):
        pool = self.pools.get(key)
        if pool is None:
            combos = [p + s for p in prefixes for s in suffixes]
            pool = self.pools[key] = [[combos[i] for i in self.rng.permutation(len(combos))], 0]
        items, k = pool
        pool[1] += 1
        name = items[k % len(items)]
        return name if k < len(items) else f"{name}{k // len(items) + 1}期"


class _Builder:
    def __init__(self, rng):
        self.rng = rng
        self.micro: list[dict] = []
        self.blds: list[dict] = []
        self.compounds: list[dict] = []
        self.villages: list[tuple] = []
        self.name = _Namer(rng)

    def add_micro(self, blk, rect, kind, side=None):
        self.micro.append({"rect": rect, "block": blk, "kind": kind, "side": side})
        return len(self.micro) - 1

    def add_compound(self, blk, rect):
        self.compounds.append({"rect": rect, "block": blk, "n": 0,
                               "name": self.name("compound", N.COMPOUND_PREFIXES, N.COMPOUND_SUFFIXES)})
        return len(self.compounds) - 1

    def add_bld(self, micro, shape, use, floors, height, *, name=None, compound=-1, units=0, per_floor=0,
                households=0, flex=False, cls=""):
        if compound >= 0:
            comp = self.compounds[compound]
            comp["n"] += 1
            name = f"{comp['name']} {comp['n']}号楼"
        self.blds.append({"ext": shape[0], "holes": shape[1], "use": use, "floors": int(floors),
                          "height": round(float(height), 1), "name": name, "compound": compound,
                          "units": int(units), "per_floor": int(per_floor), "households": int(households),
                          "flex": flex, "micro": micro, "block": self.micro[micro]["block"], "cls": cls})
        return len(self.blds) - 1


def _tower_compound(B, blk, rect):
    rng = B.rng
    ci = B.add_compound(blk, rect)
    w, d = rng.uniform(26, 36), rng.uniform(15, 20)
    nx = max(1, int((rect[2] - rect[0]) // (w + rng.uniform(22, 36))))
    ny = max(1, int((rect[3] - rect[1]) // (d + rng.uniform(45, 70))))
    base = int(rng.integers(18, 34))
    for cell in _cells(rect, nx, ny):
        m = B.add_micro(blk, cell, "residential")
        box = _place(rng, cell, w * rng.uniform(.93, 1.07), d * rng.uniform(.93, 1.07), 5)
        shape = _notched(box, rng) if rng.random() < .45 else _rect(box)
        floors = int(np.clip(base + rng.integers(-3, 4), 18, 33))
        bw = box[2] - box[0]
        units = 2 if bw < 31 else 3
        per_floor = max(2, round(bw * (box[3] - box[1]) / (units * rng.uniform(95, 125))))
        B.add_bld(m, shape, "residential", floors, floors * 2.95 + rng.uniform(2.5, 5), compound=ci,
                  units=units, per_floor=per_floor, flex=True, cls="tower")


def _slab_compound(B, blk, rect):
    rng = B.rng
    ci = B.add_compound(blk, rect)
    W, H = rect[2] - rect[0], rect[3] - rect[1]
    base = int(rng.choice([6, 6, 6, 7, 9, 11]))
    for strip in _cells(rect, max(1, round(W / rng.uniform(60, 78))), 1):
        if rng.random() < .15 and H >= 70:
            for cell in _cells(strip, 1, max(1, int(H // rng.uniform(56, 72)))):
                m = B.add_micro(blk, cell, "residential")
                box = _place(rng, cell, 80, 80, rng.uniform(4, 7))
                shape = _courtyard(box, rng.uniform(11, 13))
                floors = int(rng.integers(6, 8))
                perim = 2 * (box[2] - box[0] + box[3] - box[1])
                units = max(6, round(perim / 30))
                cap = floors * units * 2
                B.add_bld(m, shape, "residential", floors, floors * 2.9 + 1.5, compound=ci, units=units,
                          per_floor=2, households=int(rng.integers(70, min(80, cap) + 1)), cls="court")
            continue
        rows = _cells(strip, 1, max(1, int(H // rng.uniform(28, 36))))[::-1]  # south to north
        slabs = []
        for row in rows:
            rw, rh = row[2] - row[0], row[3] - row[1]
            depth = min(rng.uniform(10, 13), rh - 10)
            box = _place(rng, row, rw - 2 * rng.uniform(4, 8), depth, 4)
            wing = min(rng.uniform(6, 10), row[3] - box[3] - 8)
            if rng.random() < .2 and wing > 3:
                x0, y0, x1, y1 = box
                ww = (x1 - x0) * rng.uniform(.18, .28)
                ext = [(x0, y0), (x1, y0), (x1, y1), (x0 + ww, y1), (x0 + ww, y1 + wing), (x0, y1 + wing)]
                shape = (_mirror(ext, (x0, y0, x1, y1), rng.random() < .5, False), [])
            else:
                shape = _rect(box)
            floors = int(np.clip(base + rng.integers(-1, 2), 5, 11))
            units = max(2, round((box[2] - box[0]) / rng.uniform(14, 18)))
            slabs.append([row, shape, floors, units])
        groups, cur, cap = [], [], 0
        threshold = int(rng.integers(74, 90))
        for s in slabs:
            cur.append(s)
            cap += s[2] * s[3] * 2
            if cap >= threshold:
                groups.append(cur)
                cur, cap = [], 0
        if cur:
            if groups:
                groups[-1].extend(cur)
            else:
                groups.append(cur)
        for g in groups:
            while sum(s[2] * s[3] * 2 for s in g) < MICRO_HOUSEHOLDS[0]:
                s = min(g, key=lambda s: s[2])
                s[2] += 1
            caps = [s[2] * s[3] * 2 for s in g]
            m = B.add_micro(blk, (strip[0], g[0][0][1], strip[2], g[-1][0][3]), "residential")
            total = int(rng.integers(MICRO_HOUSEHOLDS[0], min(MICRO_HOUSEHOLDS[1], sum(caps)) + 1))
            for s, hh in zip(g, _split_households(total, caps)):
                B.add_bld(m, s[1], "residential", s[2], s[2] * 2.9 + rng.uniform(1, 2.5), compound=ci,
                          units=s[3], per_floor=2, households=hh, cls="slab")


def _single(B, blk, cell, use, variant="", name=None):
    """One micro-grid ``cell`` holding one building of ``use``."""
    rng = B.rng
    m = B.add_micro(blk, cell, _USE_KIND[use])
    aw, ah = cell[2] - cell[0] - 10, cell[3] - cell[1] - 10
    kw = {}
    if use == "office":
        r = rng.random()
        if r < .12 and aw >= 50 and ah >= 45:
            box = _place(rng, cell, rng.uniform(50, 80), rng.uniform(45, 70), 5)
            shape, floors = _courtyard(box, rng.uniform(12, 16)), int(rng.integers(5, 10))
        elif r < .3:
            box = _place(rng, cell, rng.uniform(40, 70), rng.uniform(30, 55), 5)
            shape, floors = _l_shape(box, rng), int(rng.integers(6, 15))
        else:
            box = _place(rng, cell, rng.uniform(30, 50), rng.uniform(26, 44), 5)
            shape = _notched(box, rng) if rng.random() < .25 else _rect(box)
            floors = int(np.clip(rng.normal(26, 8), 12, 48))
        height = floors * 4.0 + rng.uniform(3, 8)
        name = name or B.name("office", N.BUSINESS_PREFIXES, N.OFFICE_SUFFIXES)
    elif use == "commercial":
        r = rng.random()
        if r < .35 and aw >= 40 and ah >= 35:
            box = _place(rng, cell, rng.uniform(50, 110), rng.uniform(40, 80), 5)
            shape = _courtyard(box, 18) if rng.random() < .3 else _rect(box)
            floors = int(rng.integers(3, 7))
            height = floors * 5.2 + 2
        elif r < .7:
            box = _place(rng, cell, rng.uniform(36, 55), rng.uniform(16, 22), 5)
            shape, floors = _rect(box), int(rng.integers(10, 27))
            height = floors * 3.4 + 4
        else:
            long = rng.uniform(40, 90)
            box = _place(rng, cell, *((long, rng.uniform(14, 20)) if aw >= ah else (rng.uniform(14, 20), long)), 5)
            shape, floors = _rect(box), int(rng.integers(2, 4))
            height = floors * 4.5 + 1
        name = name or B.name("commercial", N.BUSINESS_PREFIXES, N.COMMERCIAL_SUFFIXES)
    elif use == "market":
        box = _place(rng, cell, rng.uniform(50, 100), rng.uniform(35, 70), 5)
        shape = _l_shape(box, rng) if rng.random() < .2 else _rect(box)
        floors = int(rng.integers(1, 3))
        height = floors * 5.5 + 1.5
        name = name or B.name("market", N.PLACE_WORDS, N.MARKET_SUFFIXES)
    elif use == "school":
        if variant == "gym":
            box = _place(rng, cell, rng.uniform(35, 50), rng.uniform(25, 35), 5)
            shape, floors, height = _rect(box), 2, rng.uniform(10, 14)
        elif variant == "kindergarten" or aw < 60 or ah < 45:
            box = _place(rng, cell, rng.uniform(30, 50), rng.uniform(20, 35), 5)
            shape = _l_shape(box, rng) if rng.random() < .5 else _rect(box)
            floors = int(rng.integers(2, 4))
            height = floors * 3.6 + 1
            name = name or B.name("kindergarten", N.PLACE_WORDS, (N.KINDERGARTEN_SUFFIX,))
        else:
            box = _place(rng, cell, rng.uniform(60, 110), rng.uniform(45, 80), 5)
            shape = _u_shape(box, rng) if rng.random() < .55 else _courtyard(box, rng.uniform(12, 15))
            floors = int(rng.integers(4, 6))
            height = floors * 3.9 + 1.5
        name = name or "郑东新区" + B.name("school", N.PLACE_WORDS, N.SCHOOL_SUFFIXES)
    elif use == "hospital":
        box = _place(rng, cell, rng.uniform(60, 110), rng.uniform(45, 80), 5)
        r = rng.random()
        shape = (_h_shape(box, rng) if r < .5 else _courtyard(box, rng.uniform(13, 16)) if r < .8 else _rect(box))
        floors = int(rng.integers(6, 19)) if variant != "outpatient" else int(rng.integers(3, 6))
        height = floors * 4.2 + 3
        name = name or "郑东新区" + B.name("hospital", N.PLACE_WORDS, N.HOSPITAL_SUFFIXES)
    elif use == "public":
        box = _place(rng, cell, rng.uniform(18, 40), rng.uniform(14, 30), 5)
        shape = _l_shape(box, rng) if rng.random() < .25 else _rect(box)
        floors = int(rng.integers(1, 3)) if variant == "park" else int(rng.integers(2, 7))
        height = floors * 3.8 + 1
        name = name or B.name("public", N.PLACE_WORDS, N.PUBLIC_SUFFIXES)
    else:  # residential: a stand-alone high-rise outside any compound (商住楼)
        box = _place(rng, cell, rng.uniform(28, 36), rng.uniform(16, 20), 5)
        shape = _notched(box, rng) if rng.random() < .4 else _rect(box)
        floors = int(rng.integers(18, 34))
        per_floor = int(rng.integers(2, 4))
        cap = floors * 2 * per_floor
        hh = int(np.clip(round(cap * rng.uniform(.8, .95)), 81 if cap > 80 else 70, cap))
        height = floors * 2.95 + 3
        name = name or B.name("apartment", N.BUSINESS_PREFIXES, ("公寓", "国际公寓", "商务公寓", "大厦"))
        kw = {"units": 2, "per_floor": per_floor, "households": hh, "cls": "standalone"}
    B.add_bld(m, shape, use, floors, height, name=name, **kw)
    return name


def _row(B, blk, strip, uses, weights):
    """Split ``strip`` along its long side into single-building micro-grids."""
    ax = _long_axis(strip)
    long = strip[2 + ax] - strip[ax]
    n = max(1, round(long / B.rng.uniform(55, 85)))
    p = np.asarray(weights, float) / sum(weights)
    for cell in (_cells(strip, n, 1) if ax == 0 else _cells(strip, 1, n)):
        _single(B, blk, cell, uses[int(B.rng.choice(len(uses), p=p))])


def _main_and_annex(B, blk, rect, use, *, annex, suffix, min_side, share):
    """One building of ``use``, with an annex beside it when the plot is large enough."""
    if max(rect[2] - rect[0], rect[3] - rect[1]) >= min_side:
        main, rest = _cut(rect, _long_axis(rect), share)
        name = _single(B, blk, main, use)
        _single(B, blk, rest, use, annex, name=f"{name} {suffix}")
    else:
        _single(B, blk, rect, use)


def _school(B, blk, rect):
    _main_and_annex(B, blk, rect, "school", annex="gym", suffix="体育馆", min_side=130, share=.68)


def _hospital(B, blk, rect):
    _main_and_annex(B, blk, rect, "hospital", annex="outpatient", suffix="门诊楼", min_side=140, share=.62)


_STRIP_USES = (("commercial", "school", "public", "market"), (5, 2, 2, 1))


def _block_tower(B, blk, rect):
    rng = B.rng
    if rng.random() < .6:
        strip, rect = _carve(rng, rect, rng.uniform(32, 45))
        _row(B, blk, strip, *_STRIP_USES)
    for p in _split_n(rng, rect, int(rng.choice([2, 2, 3, 3, 4, 4]))):
        (_tower_compound if rng.random() < .85 else _slab_compound)(B, blk, p)


def _block_slab(B, blk, rect):
    rng = B.rng
    if rng.random() < .4:
        strip, rect = _carve(rng, rect, rng.uniform(32, 45))
        _row(B, blk, strip, *_STRIP_USES)
    for p in _split_n(rng, rect, int(rng.choice([2, 3, 3, 4, 4]))):
        (_slab_compound if rng.random() < .8 else _tower_compound)(B, blk, p)


def _block_mixed(B, blk, rect):
    rng = B.rng
    ax = _long_axis(rect)
    a, b = _cut(rect, ax, rng.uniform(.55, .68))
    if rng.random() < .5:
        a, b = _cut(rect, ax, 1 - rng.uniform(.55, .68))[::-1]
    for p in _split_n(rng, a, int(rng.choice([1, 2]))):
        (_tower_compound if rng.random() < .65 else _slab_compound)(B, blk, p)
    parts = _split_n(rng, b, int(rng.choice([2, 3])))
    _school(B, blk, parts[0])
    for p in parts[1:]:
        _row(B, blk, p, ("market", "commercial", "residential", "public", "office"), (3, 4, 3, 1, 1))


def _block_office(B, blk, rect):
    rng = B.rng
    nx = max(2, round((rect[2] - rect[0]) / rng.uniform(80, 110)))
    ny = max(2, round((rect[3] - rect[1]) / rng.uniform(80, 110)))
    uses = ("office", "commercial", "residential", "public", "hospital")
    p = np.array([.58, .2, .13, .07, .02])
    for cell in _cells(rect, nx, ny):
        use = uses[int(rng.choice(5, p=p))]
        if use == "hospital":
            _hospital(B, blk, cell)
        else:
            _single(B, blk, cell, use)


def _block_public(B, blk, rect):
    rng = B.rng
    a, b, c = _split_n(rng, rect, 3)
    _school(B, blk, a)
    (_hospital if rng.random() < .5 else _school)(B, blk, b)
    _row(B, blk, c, ("public", "market", "commercial"), (6, 1, 1))


def _block_park(B, blk, rect):
    nx, ny = (3, 2) if rect[2] - rect[0] > rect[3] - rect[1] else (2, 3)
    for cell in _cells(rect, nx, ny):
        _single(B, blk, cell, "public", "park",
                name=B.name("park", N.PLACE_WORDS, ("公园管理处", "公园游客中心", "公园公共卫生间", "公园茶室")))


def _block_village(B, blk, rect):
    rng = B.rng
    strip, rest = _carve(rng, rect, rng.uniform(60, 85))
    ax = _long_axis(strip)
    m1, m2 = _cut(strip, ax, rng.uniform(.4, .6))
    _single(B, blk, m1, "market")
    _single(B, blk, m2, str(rng.choice(["public", "commercial"])))
    B.villages.append((blk, rest, B.name("village", N.PLACE_WORDS, (N.VILLAGE_SUFFIX,))))


_FILLERS = {"tower": _block_tower, "slab": _block_slab, "mixed": _block_mixed, "office": _block_office,
            "public": _block_public, "park": _block_park, "village": _block_village}


def _frame(B, blk, cell, inner):
    cx0, cy0, cx1, cy1 = cell
    ix0, iy0, ix1, iy1 = inner
    B.add_micro(blk, (cx0, iy1, cx1, cy1), "street", "N")
    B.add_micro(blk, (ix1, iy0, cx1, iy1), "street", "E")
    B.add_micro(blk, (cx0, cy0, cx1, iy0), "street", "S")
    B.add_micro(blk, (cx0, iy0, ix0, iy1), "street", "W")


def _fill_villages(B, plan: _Plan):
    """Fill the urban-village parcels so that the district has exactly ``plan.buildings``."""
    rng = B.rng
    left = plan.buildings - len(B.blds)
    fixed_nc = sum(b["households"] for b in B.blds if b["use"] == "residential" and b["compound"] < 0)
    h_uv = plan.households - round(plan.households * _COMPOUND_SHARE) - fixed_nc
    m = max(len(B.villages), round(h_uv / np.mean(MICRO_HOUSEHOLDS)))
    m = int(np.clip(m, math.ceil(left / 14), left // 3))
    if left < 3 * len(B.villages):
        raise AssertionError(f"{left} buildings left for {len(B.villages)} villages")
    areas = [(r[2] - r[0]) * (r[3] - r[1]) for _, r, _ in B.villages]
    for (blk, rect, vname), mp, rp in zip(B.villages, _apportion(m, areas), _apportion(left, areas)):
        mp = max(1, min(mp, rp // 3))
        ks = np.full(mp, rp // mp)
        ks[rng.permutation(mp)[: rp - ks.sum()]] += 1
        W, H = rect[2] - rect[0], rect[3] - rect[1]
        ns = max(1, min(mp, round(math.sqrt(mp * W / H))))
        k = 0
        for strip, cnt in zip(_cells(rect, ns, 1), _apportion(mp, [1] * ns)):
            for cell in _cells(strip, 1, cnt):
                _village_micro(B, blk, cell, int(ks[k]), vname)
                k += 1
    log.info("villages: %d buildings in %d micro-grids", left, m)


def _village_micro(B, blk, cell, k, vname):
    rng = B.rng
    m = B.add_micro(blk, cell, "residential")
    cw, ch = cell[2] - cell[0], cell[3] - cell[1]
    a = min(k, max(1, round(math.sqrt(k * cw / ch))))
    subs = _cells(cell, a, math.ceil(k / a))
    chosen = np.sort(rng.choice(len(subs), k, replace=False))
    total = int(rng.integers(MICRO_HOUSEHOLDS[0], MICRO_HOUSEHOLDS[1] + 1))
    items = []
    for s in chosen:
        box = _place(rng, subs[s], rng.uniform(9, 15), rng.uniform(10, 18), 2.5)
        shape = _l_shape(box, rng) if rng.random() < .2 else _rect(box)
        floors = int(rng.integers(3, 7))
        per_floor = int(np.clip(math.ceil(total / k * rng.uniform(1.05, 1.35) / floors), 1, 8))
        items.append([shape, floors, per_floor])
    while sum(f * p for _, f, p in items) < total:
        it = min(items, key=lambda it: it[1] * it[2])
        if it[2] < 8:
            it[2] += 1
        else:
            it[1] = min(6, it[1] + 1)
    for (shape, floors, per_floor), hh in zip(items, _split_households(total, [f * p for _, f, p in items])):
        b = B.add_bld(m, shape, "residential", floors, floors * 3.0 + rng.uniform(.3, 1.5), units=1,
                      per_floor=per_floor, households=hh, cls="village")
        B.blds[b]["village"] = vname


def _assign_compound_households(B, plan: _Plan):
    """Fill the compound towers so that compounds hold the planned share of households."""
    rng = B.rng
    target = round(plan.households * _COMPOUND_SHARE)
    fixed = sum(b["households"] for b in B.blds if b["compound"] >= 0 and not b["flex"])
    flex = [b for b in B.blds if b["flex"]]
    total = sum(t["floors"] * t["units"] * t["per_floor"] for t in flex)
    for b in rng.permutation(np.array(flex, dtype=object)):  # smaller flats where towers are too few
        if total * .93 >= target - fixed:
            break
        if b["per_floor"] < 4:
            b["per_floor"] += 1
            total += b["floors"] * b["units"]
    cap = np.array([b["floors"] * b["units"] * b["per_floor"] for b in flex], float)
    lo = np.where(cap > MICRO_HOUSEHOLDS[1], MICRO_HOUSEHOLDS[1] + 1, MICRO_HOUSEHOLDS[0])
    u = rng.uniform(.82, 1.0, len(flex))

    def fill(f):
        return np.clip(np.round(cap * u * f), lo, cap).astype(int)

    a, b = 0.0, 2.0
    for _ in range(60):
        mid = (a + b) / 2
        a, b = (mid, b) if fill(mid).sum() + fixed < target else (a, mid)
    hh = fill(b)
    for bl, h in zip(flex, hh):
        bl["households"] = int(h)
    got = int(hh.sum()) + fixed
    if abs(got - target) > .01 * target:
        log.warning("compound households %d, planned %d", got, target)
    log.info("compound towers filled at %.0f%% of capacity", 100 * hh.sum() / max(cap.sum(), 1))


# --------------------------------------------------------------------------- assembly

def _nullable(values) -> pd.Series:
    """Strings with ``None`` for missing values (object dtype, not pandas' NaN-holding str)."""
    values = values.tolist() if hasattr(values, "tolist") else list(values)
    return pd.Series([None if pd.isna(v) else v for v in values], dtype=object)


def _person_names(rng, n, male=None):
    """``n`` fake Chinese names (scalar helper for staff; residents are vectorised)."""
    sur = np.array([s for s, _ in N.SURNAMES])
    p = np.array([w for _, w in N.SURNAMES])
    s = sur[rng.choice(len(sur), n, p=p / p.sum())]
    male = rng.random(n) < .55 if male is None else np.full(n, male)
    out = []
    for k in range(n):
        pool = N.GIVEN_MALE_OLD + N.GIVEN_MALE_YOUNG if male[k] else N.GIVEN_FEMALE_OLD + N.GIVEN_FEMALE_YOUNG
        given = "".join(pool[i] for i in rng.integers(0, len(pool), 1 if rng.random() < .25 else 2))
        out.append(s[k] + given)
    return out


def _assemble(rng, lat: _Lattice, B: _Builder):
    cols = len(lat.X) - 1
    ns_roads, ew_roads = N.ROADS_NS[: cols + 1], N.ROADS_EW[: len(lat.Y)]
    street_ids = [f"S{s + 1:02d}" for s in range(len(lat.street_cells))]
    per_street: dict[int, int] = {}
    comm_ids, grid_id = [], [""] * len(lat.cells)
    for c, blocks in enumerate(lat.community_blocks):
        s = lat.community_street[c]
        per_street[s] = per_street.get(s, 0) + 1
        comm_ids.append(f"{street_ids[s]}-C{per_street[s]:02d}")
        for g, blk in enumerate(blocks):
            grid_id[blk] = f"{comm_ids[c]}-G{g + 1}"
    comm_names = [w + "社区" for w in rng.permutation(np.array(N.PLACE_WORDS))[: len(comm_ids)]]
    rows = []
    for s, (c0, r0, c1, r1) in enumerate(lat.street_cells):
        rows.append((street_ids[s], None, "street", N.SUBDISTRICTS[s], None, None,
                     shapely.box(lat.X[c0], lat.Y[r0], lat.X[c1], lat.Y[r1])))
    for c, blocks in enumerate(lat.community_blocks):
        geom = shapely.union_all([shapely.box(*lat.cells[b]) for b in blocks])
        rows.append((comm_ids[c], street_ids[lat.community_street[c]], "community", comm_names[c], None, None, geom))
    order = sorted(range(len(B.micro)), key=lambda m: (B.micro[m]["block"], B.micro[m]["kind"] == "street", m))
    micro_id = np.empty(len(B.micro), dtype=object)
    worker = np.empty(len(B.micro), dtype=object)
    by_block: dict[int, list[int]] = {}
    for m in order:
        by_block.setdefault(B.micro[m]["block"], []).append(m)
    for blk, cell in enumerate(lat.cells):
        ms = by_block[blk]
        leader, *pool = _person_names(rng, 1 + max(1, math.ceil(len(ms) / rng.integers(4, 8))))
        rows.append((grid_id[blk], comm_ids[lat.community_of[blk]], "grid", f"第{lat.community_blocks[lat.community_of[blk]].index(blk) + 1}网格",
                     None, leader, shapely.box(*cell)))
        for k, m in enumerate(ms):
            micro_id[m] = f"{grid_id[blk]}-M{k + 1:03d}"
            worker[m] = pool[k * len(pool) // len(ms)]
            rows.append((micro_id[m], grid_id[blk], "micro", f"第{k + 1}微网格", B.micro[m]["kind"], worker[m],
                         shapely.box(*B.micro[m]["rect"])))
    cols_ = list(zip(*rows))
    grids = gpd.GeoDataFrame({
        "grid_id": cols_[0], "parent_id": _nullable(cols_[1]), "level": cols_[2], "name": cols_[3],
        "kind": _nullable(cols_[4]), "worker": _nullable(cols_[5])}, geometry=list(cols_[6]), crs=CRS)
    grids["geometry"] = shapely.orient_polygons(grids.geometry.values, exterior_cw=False)

    # Compounds and their gate address (the side nearest a street).
    def address_of(blk, cx, cy):
        i, j = lat.ij[blk]
        x0, y0, x1, y1 = lat.inner[blk]
        side = int(np.argmin([cx - x0, x1 - cx, cy - y0, y1 - cy]))
        road = (ns_roads[i], ns_roads[i + 1], ew_roads[j], ew_roads[j + 1])[side]
        along = cy - lat.Y[0] if side < 2 else cx - lat.X[0]
        return f"{road} {2 * int(along / 15) + (1 if side in (0, 2) else 2)}号"

    comp_ids = [f"CMP{c + 1:04d}" for c in range(len(B.compounds))]
    comp_addr = []
    for c in B.compounds:
        r = c["rect"]
        comp_addr.append(f"{address_of(c['block'], (r[0] + r[2]) / 2, (r[1] + r[3]) / 2)} {c['name']}")
    compounds = gpd.GeoDataFrame(
        {"compound_id": comp_ids, "name": [c["name"] for c in B.compounds],
         "grid_id": [grid_id[c["block"]] for c in B.compounds]},
        geometry=shapely.box(*np.array([c["rect"] for c in B.compounds]).T), crs=CRS)

    polys = [shapely.Polygon(np.round(b["ext"], 2), [np.round(h, 2) for h in b["holes"]]) for b in B.blds]
    polys = shapely.orient_polygons(np.array(polys, dtype=object), exterior_cw=False)
    cent = shapely.get_coordinates(shapely.centroid(polys))
    names, addrs = [], []
    for k, b in enumerate(B.blds):
        names.append(b["name"])
        if b["compound"] >= 0:
            addrs.append(f"{comp_addr[b['compound']].rsplit(' ', 1)[0]} {b['name']}")
        else:
            a = address_of(b["block"], *cent[k])
            addrs.append(f"{a} {b['name']}" if b["name"] else f"{a} {b.get('village', '')}".rstrip())
    n = len(B.blds)
    buildings = gpd.GeoDataFrame({
        "source_id": [f"B{k + 1:06d}" for k in range(n)],
        "name": _nullable(names),
        "address": addrs,
        "use": [b["use"] for b in B.blds],
        "height": np.array([b["height"] for b in B.blds]),
        "floors": np.array([b["floors"] for b in B.blds], dtype=np.int64),
        "compound_id": _nullable([comp_ids[b["compound"]] if b["compound"] >= 0 else None for b in B.blds]),
        "households": np.array([b["households"] for b in B.blds], dtype=np.int64),
        "units": np.array([b["units"] for b in B.blds], dtype=np.int64),
        "grid_id": micro_id[[b["micro"] for b in B.blds]].tolist(),
    }, geometry=gpd.GeoSeries(polys, crs=CRS), crs=CRS)
    info = {
        "micro_id": micro_id, "worker": worker, "grid_id": grid_id, "comp_addr": comp_addr,
        "street_name": [N.SUBDISTRICTS[lat.street_of[b]] for b in range(len(lat.cells))],
        "per_floor": np.array([b["per_floor"] for b in B.blds]),
        "cls": np.array([b["cls"] for b in B.blds], dtype=object),
        "bld_micro": np.array([b["micro"] for b in B.blds]),
        "bld_compound": np.array([b["compound"] for b in B.blds]),
        "ns_roads": ns_roads, "ew_roads": ew_roads,
    }
    return buildings, grids, compounds, info


# --------------------------------------------------------------------------- residents

_HEAD, _SPOUSE, _CHILD, _ELDER, _GRANDCHILD, _MATE = range(6)
# household types and the age range of their head
_ALONE_OLD, _ALONE_YOUNG, _COUPLE_OLD, _COUPLE_YOUNG, _SINGLE_PARENT, _NUCLEAR, _SKIP, _SHARED = range(8)
_HEAD_AGE = np.array([(65, 96), (20, 50), (58, 88), (23, 40), (28, 55), (28, 58), (55, 78), (19, 38)], float)


def _digits(values, width):
    """ASCII digit matrix (n x width, uint8) of non-negative integers."""
    pw = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (np.asarray(values, np.int64)[:, None] // pw % 10 + 48).astype(np.uint8)


def _ascii(mat):
    """Rows of an ASCII uint8 matrix as a str array."""
    mat = np.ascontiguousarray(mat, dtype=np.uint8)
    return mat.view(f"S{mat.shape[1]}").ravel().astype(f"U{mat.shape[1]}")


def _ids(prefix, numbers, width):
    head = np.frombuffer(prefix.encode(), np.uint8)
    return _ascii(np.hstack([np.broadcast_to(head, (len(numbers), len(head))), _digits(numbers, width)]))


def _residents(rng, buildings, info, plan: _Plan) -> pd.DataFrame:
    hh = buildings["households"].to_numpy()
    units = buildings["units"].to_numpy()
    floors = buildings["floors"].to_numpy()
    pf = info["per_floor"]
    cap = np.where(hh > 0, units * floors * pf, 0)
    if (hh > cap).any():
        raise AssertionError("a building holds more households than rooms")
    # Rooms: pick hh of each building's unit x floor x door slots at random.
    bidx = np.repeat(np.arange(len(hh)), cap)
    start = np.repeat(np.cumsum(cap) - cap, cap)
    slot = np.arange(len(bidx)) - start
    order = np.lexsort((rng.random(len(bidx)), bidx))
    take = np.sort(order[(np.arange(len(bidx)) - start[order]) < hh[bidx[order]]])
    hb, hs = bidx[take], slot[take]
    per_unit = (floors * pf)[hb]
    h_unit, rem = hs // per_unit + 1, hs % per_unit
    h_floor, h_door = rem // pf[hb] + 1, rem % pf[hb] + 1
    nh = len(hb)
    # Household sizes 1-6, then nudged so that the district has plan.residents.
    size = rng.choice(np.arange(1, 7), nh, p=[.17, .28, .27, .16, .08, .04])
    diff = plan.residents - int(size.sum())
    cand = np.flatnonzero(size < 6) if diff > 0 else np.flatnonzero(size > 1)
    size[rng.choice(cand, min(abs(diff), len(cand)), replace=False)] += np.sign(diff)
    cls = info["cls"][hb]
    village = cls == "village"
    in_comp = info["bld_compound"][hb] >= 0
    u = rng.random(nh)
    typ = np.select(
        [size == 1, (size == 2) & (u < .3), (size == 2) & (u < .7), (size == 2) & (u < .85), size == 2,
         (size <= 4) & (u < .8), (size <= 4) & (u < .88), size <= 4, u < .95],
        [np.where(u < .32, _ALONE_OLD, _ALONE_YOUNG), _COUPLE_OLD, _COUPLE_YOUNG, _SINGLE_PARENT, _SHARED,
         _NUCLEAR, _SKIP, _SHARED, _NUCLEAR], _SHARED)
    typ = np.where(village & (size >= 2) & (rng.random(nh) < .25), _SHARED, typ)
    renter = (typ == _SHARED) | (rng.random(nh) < np.where(village, .5, np.where(in_comp, .12, .25)))
    low_income = rng.random(nh) < np.where(typ == _ALONE_OLD, .06, .015)
    lo, hi = _HEAD_AGE[typ].T
    head_age = lo + (hi - lo) * rng.beta(1.5, 1.8, nh)
    male_h = rng.random(nh) < np.where(typ == _ALONE_OLD, .4, .62)
    kids = np.maximum(size - 4, np.minimum(size - 2, rng.integers(1, 3, nh)))
    # Residents.
    n = int(size.sum())
    h = np.repeat(np.arange(nh), size)
    pos = np.arange(n) - np.repeat(np.cumsum(size) - size, size)
    t = typ[h]
    role = np.full(n, _CHILD)
    role[pos == 0] = _HEAD
    role[(pos == 1) & np.isin(t, [_COUPLE_OLD, _COUPLE_YOUNG, _NUCLEAR, _SKIP])] = _SPOUSE
    role[(t == _NUCLEAR) & (pos >= 2 + kids[h])] = _ELDER
    role[(t == _SKIP) & (pos >= 2)] = _GRANDCHILD
    role[(t == _SHARED) & (pos > 0)] = _MATE
    ha = head_age[h]
    age = np.select(
        [role == _HEAD, role == _SPOUSE, role == _CHILD, role == _ELDER, role == _GRANDCHILD],
        [ha, np.maximum(20, ha + rng.normal(0, 3, n)), rng.random(n) * np.clip(ha - 21, 1, 32),
         np.minimum(99, ha + rng.uniform(22, 32, n)), rng.uniform(2, 16, n)],
        rng.uniform(19, 38, n))
    now_day = np.datetime64(DEMO_NOW.date(), "D")
    birth = now_day - np.floor(age * 365.2425).astype(np.int64) - 1
    by = birth.astype("M8[Y]").astype(np.int64) + 1970
    bm = birth.astype("M8[M]").astype(np.int64) % 12 + 1
    bd = (birth - birth.astype("M8[M]").astype("M8[D]")).astype(np.int64) + 1
    years = DEMO_NOW.year - by - ((bm > DEMO_NOW.month) | ((bm == DEMO_NOW.month) & (bd > DEMO_NOW.day)))
    male = rng.random(n) < .51
    male[role == _HEAD] = male_h[h][role == _HEAD]
    male[role == _SPOUSE] = ~male_h[h][role == _SPOUSE]
    # Names: children take the father's surname, a head's father shares it.
    sur_w = np.array([w for _, w in N.SURNAMES])
    sur_w /= sur_w.sum()
    sh, ss = rng.choice(len(sur_w), nh, p=sur_w), rng.choice(len(sur_w), nh, p=sur_w)
    sur = rng.choice(len(sur_w), n, p=sur_w)
    fam = np.where(male_h | (size == 1), sh, ss)
    sur = np.select([role == _HEAD, role == _SPOUSE, np.isin(role, [_CHILD, _GRANDCHILD]), (role == _ELDER) & male],
                    [sh[h], ss[h], fam[h], sh[h]], sur)
    surname = np.array([s for s, _ in N.SURNAMES])[sur]
    c1 = np.empty(n, dtype="U1")
    c2 = np.empty(n, dtype="U1")
    old = by < 1985
    for mask, pool in ((male & old, N.GIVEN_MALE_OLD), (male & ~old, N.GIVEN_MALE_YOUNG),
                       (~male & old, N.GIVEN_FEMALE_OLD), (~male & ~old, N.GIVEN_FEMALE_YOUNG)):
        arr, k = np.array(pool), int(mask.sum())
        c1[mask] = arr[rng.integers(0, len(arr), k)]
        c2[mask] = arr[rng.integers(0, len(arr), k)]
    c2[rng.random(n) < .28] = ""
    name = np.strings.add(np.strings.add(surname, c1), c2)
    # ID numbers: region + birth date + sequence (odd for men) + check digit; unique.
    codes = np.array([c for c, _ in N.REGION_CODES])
    reg_w = np.array([w for _, w in N.REGION_CODES])
    region = rng.choice(len(codes), n, p=reg_w / reg_w.sum())
    key = (region.astype(np.int64) * 1_000_000 + (birth - np.datetime64("1900-01-01")).astype(np.int64)) * 2 + male
    o = np.argsort(key, kind="stable")
    ks = key[o]
    first = np.r_[True, ks[1:] != ks[:-1]]
    grp_start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    rank = np.empty(n, np.int64)
    rank[o] = np.arange(n) - grp_start
    seq = (2 * ((key * 2654435761) % 440) + 2 * rank + np.where(male, 1, 2)) % 1000
    body = np.hstack([_digits(codes[region].astype(np.int64), 6), _digits(by * 10000 + bm * 100 + bd, 8), _digits(seq, 3)])
    check = np.frombuffer(_ID_CHECK.encode(), np.uint8)[((body.astype(np.int64) - 48) @ _ID_WEIGHTS) % 11]
    id_number = _ascii(np.hstack([body, check[:, None]]))
    # Phones; children under 12 are reached on the head's phone.
    prefixes = np.array([int(p) for p in N.PHONE_PREFIXES], np.int64)
    phone_no = prefixes[rng.integers(0, len(prefixes), n)] * 10**8 + rng.integers(0, 10**8, n)
    head_of = np.repeat(np.cumsum(size) - size, size)
    phone_no = np.where(years < 12, phone_no[head_of], phone_no)
    phone = _ascii(_digits(phone_no, 11))
    # Tags.
    sz = size[h]
    mask = np.column_stack([
        (years >= 70) & (sz == 1),
        rng.random(n) < np.where(years >= 65, .04, .012),
        (years >= 18) & (rng.random(n) < np.where(years >= 60, .12, .065)),
        renter[h],
        low_income[h],
        male & (years >= 35) & (rng.random(n) < .04),
        (role == _GRANDCHILD) & (years < 16),
    ])
    _, cols_ = np.nonzero(mask)
    offsets = np.r_[0, np.cumsum(mask.sum(1))].astype(np.int32)
    tags = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.array(N.TAGS, dtype=object)[cols_], type=pa.string()))
    room_lut = np.array([f"{f}{d:02d}" for f in range(100) for d in range(10)])
    unit_lut = np.array([f"{k}单元" for k in range(100)])
    src = buildings["source_id"].to_numpy()
    return pd.DataFrame({
        "resident_id": _ids("R", np.arange(1, n + 1), 8),
        "household_id": _ids("H", h + 1, 7),
        "building_source_id": src[hb][h],
        "unit": unit_lut[h_unit][h],
        "room": room_lut[h_floor * 10 + h_door][h],
        "name": name,
        "gender": np.where(male, "男", "女"),
        "id_number": id_number,
        "phone": phone,
        "birth_date": birth.astype("M8[s]"),
        "tags": pd.Series(tags, dtype=pd.ArrowDtype(tags.type)),
    })


# --------------------------------------------------------------------------- cameras

def _bearing(dx, dy):
    """Compass bearing in degrees, clockwise from north."""
    return np.degrees(np.arctan2(dx, dy)) % 360


def _cameras(rng, lat, B, buildings, info, plan: _Plan) -> gpd.GeoDataFrame:
    X, Y, hx, hy = lat.X, lat.Y, lat.hx, lat.hy
    ns, ew = info["ns_roads"], info["ew_roads"]
    cams = {"inter": [], "gate": [], "bld": []}  # (x, y, name, z, heading, building_source_id)
    for i in range(len(X)):
        for j in range(len(Y)):
            corners = [(sx, sy) for sx in (-1, 1) for sy in (-1, 1)
                       if X[0] < X[i] + sx * hx[i] < X[-1] and Y[0] < Y[j] + sy * hy[j] < Y[-1]]
            for k in rng.permutation(len(corners))[: int(rng.integers(2, 5))]:
                sx, sy = corners[k]
                x, y = X[i] + sx * (hx[i] + 2), Y[j] + sy * (hy[j] + 2)
                cams["inter"].append((x, y, f"{ns[i]}与{ew[j]}交叉口{N.CORNERS[(sx, sy)]}角", rng.uniform(6, 10),
                                      _bearing(-sx, -sy) + rng.normal(0, 15), None))
    for c, comp in enumerate(B.compounds):
        x0, y0, x1, y1 = comp["rect"]
        ix0, iy0, ix1, iy1 = lat.inner[comp["block"]]
        sides = [s for s, hit in (("N", y1 == iy1), ("S", y0 == iy0), ("E", x1 == ix1), ("W", x0 == ix0)) if hit]
        for s in rng.permutation(sides)[: int(rng.integers(1, 4))]:
            f = rng.uniform(.25, .75)
            gx, gy = {"N": (x0 + f * (x1 - x0), y1 - 3), "S": (x0 + f * (x1 - x0), y0 + 3),
                      "E": (x1 - 3, y0 + f * (y1 - y0)), "W": (x0 + 3, y0 + f * (y1 - y0))}[s]
            out = {"N": 0.0, "E": 90.0, "S": 180.0, "W": 270.0}[s]
            along = (4, 0) if s in "NS" else (0, 4)
            for k, (word, head) in enumerate((("入口", out), ("出口", out + 180))):
                sign = 1 if k == 0 else -1
                cams["gate"].append((gx + sign * along[0], gy + sign * along[1], f"{comp['name']}{N.SIDES[s]}门{word}",
                                     rng.uniform(3, 5), head + rng.normal(0, 10), None))
    prob = {"tower": .5, "slab": .25, "court": .5, "village": .08, "standalone": .8}
    per_use = {"office": (1, 3), "commercial": (1, 3), "market": (2, 3), "school": (2, 4), "hospital": (2, 4), "public": (0, 2)}
    bounds = shapely.bounds(buildings.geometry.values)
    for k, b in enumerate(B.blds):
        if b["use"] == "residential":
            n = int(rng.random() < prob[b["cls"]])
        else:
            n = int(rng.integers(*per_use[b["use"]]))
        if not n:
            continue
        x0, y0, x1, y1 = bounds[k]
        label = b["name"] or buildings["address"].iat[k]
        for sx, sy in [list(N.CORNERS)[q] for q in rng.permutation(4)[:n]]:
            x = (x1 if sx > 0 else x0) + .5 * sx
            y = (y1 if sy > 0 else y0) + .5 * sy
            cams["bld"].append((x, y, f"{label}{N.CORNERS[(sx, sy)]}角", rng.uniform(3, min(12, b["height"])),
                                _bearing(sx, sy) + rng.normal(0, 20), buildings["source_id"].iat[k]))
    n_street = max(int(plan.cameras * .4), plan.cameras - sum(len(v) for v in cams.values()))
    room = plan.cameras - n_street - len(cams["inter"]) - len(cams["gate"])
    if room < len(cams["bld"]):
        keep = np.sort(rng.choice(len(cams["bld"]), max(room, 0), replace=False))
        cams["bld"] = [cams["bld"][k] for k in keep]
    n_street = plan.cameras - sum(len(v) for v in cams.values())
    frames = [m for m in B.micro if m["kind"] == "street"]
    lengths = []
    for m in frames:
        x0, y0, x1, y1 = m["rect"]
        lengths.append(x1 - x0 if m["side"] in "NS" else y1 - y0)
    street = []
    for m, cnt in zip(frames, _apportion(n_street, lengths)):
        i, j = lat.ij[m["block"]]
        s = m["side"]
        if s in "NS":
            road, a, b = (ew[j + 1] if s == "N" else ew[j]), ns[i], ns[i + 1]
            lo_, hi_ = X[i] + hx[i] + 8, X[i + 1] - hx[i + 1] - 8
            off = Y[j + 1] - hy[j + 1] - rng.uniform(1, 3.5, cnt) if s == "N" else Y[j] + hy[j] + rng.uniform(1, 3.5, cnt)
        else:
            road, a, b = (ns[i + 1] if s == "E" else ns[i]), ew[j], ew[j + 1]
            lo_, hi_ = Y[j] + hy[j] + 8, Y[j + 1] - hy[j + 1] - 8
            off = X[i + 1] - hx[i + 1] - rng.uniform(1, 3.5, cnt) if s == "E" else X[i] + hx[i] + rng.uniform(1, 3.5, cnt)
        along = lo_ + (hi_ - lo_) * (np.arange(cnt) + rng.uniform(.3, .7, cnt)) / max(cnt, 1)
        side_word = {"N": "南", "S": "北", "E": "西", "W": "东"}[s]  # side of the road the camera stands on
        base = {"N": 90.0, "S": 90.0, "E": 0.0, "W": 0.0}[s]
        across = {"N": 0.0, "S": 180.0, "E": 90.0, "W": 270.0}[s]  # towards the road
        for q in range(cnt):
            x, y = (along[q], off[q]) if s in "NS" else (off[q], along[q])
            head = across if rng.random() < .3 else base + 180 * int(rng.integers(2))
            street.append((x, y, f"{road}({a}至{b}段){side_word}侧{q + 1:02d}", rng.uniform(4, 8),
                           head + rng.normal(0, 10), None))
    allc = cams["inter"] + street + cams["gate"] + cams["bld"]
    n = len(allc)
    fov = rng.uniform(30, 100, n)
    out = gpd.GeoDataFrame({
        "camera_id": _ids("CAM", np.arange(1, n + 1), 5),
        "name": [c[2] for c in allc],
        "z": np.round([c[3] for c in allc], 1),
        "heading_deg": np.round(np.array([c[4] for c in allc]) % 360, 1),
        "pitch_deg": np.round(-rng.uniform(10, 45, n), 1),
        "fov_deg": np.round(fov, 1),
        "range_m": np.round(np.clip(160 - 1.2 * fov + rng.normal(0, 15, n), 20, 150), 1),
        "status": rng.choice(["online", "offline", "fault"], n, p=[.94, .04, .02]),
        "building_source_id": _nullable([c[5] for c in allc]),
    }, geometry=shapely.points([(round(c[0], 2), round(c[1], 2)) for c in allc]), crs=CRS)
    out.insert(7, "stream_url", "rtsp://video.zd.local/live/" + out["camera_id"])
    out["grid_id"] = _micro_of(B, info, out.geometry.values)
    return out


def _micro_of(B, info, points):
    """The micro-grid id holding each point (the first one for a point on a shared edge)."""
    boxes = shapely.box(*np.array([m["rect"] for m in B.micro]).T)
    pi, mi = shapely.STRtree(boxes).query(points, predicate="intersects")
    first = np.unique(pi, return_index=True)
    out = np.full(len(points), None, dtype=object)
    out[first[0]] = info["micro_id"][mi[first[1]]]
    return out


# --------------------------------------------------------------------------- cases

_NOTES = {"reported": "上报", "in_progress": "已受理，正在处置", "resolved": "处置完毕，已上传处置照片",
          "evaluated": "回访核查通过", "closed": "结案归档", "reopened": "回访不满意，重新派遣"}
_REJECT = ("非本辖区事项", "重复上报", "信息不全，无法核实", "经核查情况不属实")
_SOURCE_NOTE = {"ai": "（AI视频分析识别）", "citizen": "（市民随手拍上报）", "patrol": "（网格员巡查发现）",
                "open311": "（Open311接口接入）", "hotline": "（12345热线转办）"}


def _cases(rng, lat, B, buildings, cameras, info, plan: _Plan):
    tax = load_taxonomy()
    cats = {c["code"]: c for c in tax["categories"]}
    subs = tax["subcategories"]
    w = np.array([s["weight"] for s in subs], float)
    n = plan.cases
    pick = rng.choice(len(subs), n, p=w / w.sum())
    use = buildings["use"].to_numpy()
    floors = buildings["floors"].to_numpy()
    inside = shapely.get_coordinates(shapely.point_on_surface(buildings.geometry.values))
    frames = np.array([k for k, m in enumerate(B.micro) if m["kind"] == "street"])
    comp_blds = {}
    for k, c in enumerate(info["bld_compound"]):
        if c >= 0:
            comp_blds.setdefault(int(c), []).append(k)
    comp_keys = np.array(sorted(comp_blds))
    eligible = {}
    ns, ew = info["ns_roads"], info["ew_roads"]
    rows, locs, micro = [], [], []
    for q in range(n):
        sub = subs[pick[q]]
        place = sub["place"]
        bsrc, addr = None, None
        if place == "street":
            m = int(rng.choice(frames))
            x0, y0, x1, y1 = B.micro[m]["rect"]
            x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
            i, j = lat.ij[B.micro[m]["block"]]
            s = B.micro[m]["side"]
            road, a, b = ((ew[j + 1] if s == "N" else ew[j]), ns[i], ns[i + 1]) if s in "NS" else \
                ((ns[i + 1] if s == "E" else ns[i]), ew[j], ew[j + 1])
            addr = short = f"{road}({a}至{b}段)"
        else:
            if place == "compound":
                k = int(rng.choice(comp_blds[int(rng.choice(comp_keys))]))
            else:
                key = (tuple(sub["uses"] or ()), sub["code"] == "building_safety.thrown_objects")
                if key not in eligible:
                    ok = np.isin(use, sub["uses"]) if sub["uses"] else np.ones(len(use), bool)
                    eligible[key] = np.flatnonzero(ok & (floors >= 7) if key[1] else ok)
                k = int(rng.choice(eligible[key]))
            m = int(info["bld_micro"][k])
            if place == "indoor":
                x, y = inside[k]
            else:  # just outside the footprint, 1.5 m from its wall
                ring = buildings.geometry.iat[k].buffer(1.5, quad_segs=4).exterior
                x, y = ring.interpolate(rng.random(), normalized=True).coords[0]
            if place == "compound":
                c = int(info["bld_compound"][k])
                addr = short = info["comp_addr"][c]
            else:
                bsrc = buildings["source_id"].iat[k]
                addr = buildings["address"].iat[k]
                short = buildings["name"].iat[k] or addr
        source = ("ai" if rng.random() < .85 else str(rng.choice(["patrol", "citizen"]))) if sub["ai"] else \
            str(rng.choice(["citizen", "patrol", "hotline", "open311"], p=[.35, .3, .2, .15]))
        locs.append((round(x, 2), round(y, 2)))
        micro.append(m)
        rows.append({"category": sub["category"], "subcategory": sub["code"], "source": source,
                     "description": sub["template"].format(loc=short) + _SOURCE_NOTE[source], "address": addr,
                     "building_source_id": bsrc, "_hours": sub["deadline_hours"],
                     "_dept": cats[sub["category"]]["department"]})
    points = shapely.points(locs)
    cam_pts = cameras.geometry.values
    near = shapely.STRtree(cam_pts).query_nearest(points, return_distance=False, all_matches=False)[1]
    # Reported over the last months, most recent first in density.
    age_s = np.clip(rng.exponential(20 * 86400, n), 600, 150 * 86400).astype(np.int64)
    reported = (DEMO_NOW - pd.to_timedelta(age_s, unit="s")).floor("s")
    order = np.argsort(reported.values, kind="stable")
    cases, events = [], []
    day_seq: dict[str, int] = {}
    now = DEMO_NOW
    for q in order:
        r = rows[q]
        t = reported[q]
        day = t.strftime("%Y%m%d")
        day_seq[day] = day_seq.get(day, 0) + 1
        cid = f"ZD{day}-{day_seq[day]:04d}"
        blk = B.micro[micro[q]]["block"]
        centre = info["street_name"][blk].replace("街道", "") + "街道指挥中心"
        worker = info["worker"][micro[q]]
        reporter = {"ai": "AI视频分析平台", "citizen": f"市民{_person_names(rng, 1)[0][0]}**",
                    "patrol": worker, "hotline": "12345热线", "open311": "Open311"}[r["source"]]
        hist = [(t, None, "reported", reporter, _NOTES["reported"])]
        state, reopened = "reported", False
        slow = rng.random() < .3
        hours = r["_hours"]
        while state not in ("closed", "rejected"):
            if state == "reported":
                nxt, dt = ("rejected", rng.uniform(.2, 6)) if rng.random() < .04 else ("dispatched", rng.uniform(.05, 3))
            elif state == "dispatched":
                nxt, dt = ("rejected", rng.uniform(.5, 12)) if rng.random() < .03 else ("in_progress", rng.uniform(.1, 6))
            elif state == "in_progress":
                nxt, dt = "resolved", hours * (rng.uniform(1.1, 3.5) if slow else rng.uniform(.15, .9))
            elif state == "resolved":
                nxt, dt = "evaluated", rng.uniform(2, 48)
            elif state == "evaluated":
                nxt, dt = ("reopened", rng.uniform(.5, 24)) if (rng.random() < .06 and not reopened) else ("closed", rng.uniform(1, 24))
            else:  # reopened
                nxt, dt = "dispatched", rng.uniform(.2, 4)
                reopened = True
            at = (hist[-1][0] + pd.Timedelta(seconds=int(dt * 3600) + 1)).floor("s")
            if at > now:
                break
            actor = {"dispatched": centre, "in_progress": r["_dept"], "resolved": r["_dept"],
                     "evaluated": "街道考评组", "closed": centre, "rejected": centre if nxt == "rejected" else "",
                     "reopened": "回访专员"}[nxt]
            note = str(rng.choice(_REJECT)) if nxt == "rejected" else (
                f"派遣至{r['_dept']}" if nxt == "dispatched" else _NOTES[nxt])
            hist.append((at, state, nxt, actor, note))
            state = nxt
        for at, fr, to, actor, note in hist:
            events.append((cid, at, fr, to, actor, note))
        cases.append({"case_id": cid, "category": r["category"], "subcategory": r["subcategory"],
                      "source": r["source"], "status": state, "description": r["description"],
                      "address": r["address"], "building_source_id": r["building_source_id"],
                      "camera_id": cameras["camera_id"].iat[near[q]] if r["source"] == "ai" else None,
                      "reported_at": t, "updated_at": hist[-1][0], "due_at": t + pd.Timedelta(hours=hours),
                      "grid_id": info["micro_id"][micro[q]], "geometry": points[q]})
    cases = gpd.GeoDataFrame(pd.DataFrame(cases), geometry="geometry", crs=CRS)
    for col in ("building_source_id", "camera_id"):
        cases[col] = _nullable(cases[col])
    for col in ("reported_at", "updated_at", "due_at"):
        cases[col] = cases[col].astype("datetime64[s]")
    events = pd.DataFrame(events, columns=["case_id", "at", "from_status", "to_status", "actor", "note"])
    events["at"] = events["at"].astype("datetime64[s]")
    events["from_status"] = _nullable(events["from_status"])
    return cases, events


# --------------------------------------------------------------------------- party organisations

def _party_orgs(rng, compounds, buildings, residents, plan: _Plan) -> pd.DataFrame:
    flat = residents["tags"].list.flatten()
    rows_ = np.unique(flat.index[(flat == "党员").to_numpy(dtype=bool, na_value=False)])
    comp_of = buildings.set_index("source_id")["compound_id"]
    per_comp = comp_of.reindex(residents["building_source_id"].to_numpy()[rows_]).value_counts()
    nc = len(compounds)
    if nc >= plan.party_orgs:
        picks = np.sort(rng.choice(nc, plan.party_orgs, replace=False))
    else:
        picks = np.sort(np.r_[np.arange(nc), rng.choice(nc, plan.party_orgs - nc, replace=True)])
    rows, seen = [], {}
    for k, c in enumerate(picks):
        cid = compounds["compound_id"].iat[c]
        seen[cid] = seen.get(cid, 0) + 1
        mem = max(3, int(per_comp.get(cid, 0)) // seen[cid])
        kind = "党委" if mem > 100 else "党总支" if mem >= 50 else "党支部"
        part = "" if seen[cid] == 1 else f"第{seen[cid]}"
        rows.append((f"DZ{k + 1:04d}", f"{compounds['name'].iat[c]}{part}{kind}", cid, compounds["grid_id"].iat[c], mem))
    return pd.DataFrame(rows, columns=["org_id", "name", "compound_id", "grid_id", "members"])
