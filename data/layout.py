"""Street lattice and grid hierarchy of the demo district.

``_layout`` draws the lattice of blocks between streets and groups the blocks
into streets (subdistricts) and communities; ``_assemble`` turns the lattice
and the filled ``_Builder`` into the ``grids``, ``compounds`` and
``buildings`` tables, with names and addresses.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from pyproj import Transformer

from data import names as N
from data.blocks import _Builder
from data.common import _BLOCK_MIX, BLOCK_SIZE, CENTRE_LONLAT, CRS, _apportion, _nullable, _Plan
from data.people import _person_names

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
    size = plan.cols * BLOCK_SIZE
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


# --------------------------------------------------------------------------- assembly

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
    workers = _nullable(cols_[5])
    grids = gpd.GeoDataFrame({
        "grid_id": cols_[0], "parent_id": _nullable(cols_[1]), "level": cols_[2], "name": cols_[3],
        "kind": _nullable(cols_[4]), "worker": workers,
        "worker_phone": [None if w is None else _work_phone(w) for w in workers]}, geometry=list(cols_[6]), crs=CRS)
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


def _work_phone(worker: str) -> str:
    """A grid worker's work mobile, fixed by their name (so the random streams the demo draws from stay as they were)."""
    code = zlib.crc32(worker.encode())
    return N.PHONE_PREFIXES[code % len(N.PHONE_PREFIXES)] + f"{(code * 2654435761) % 10**8:08d}"
