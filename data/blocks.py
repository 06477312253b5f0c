"""Block fillers of the demo district: compounds, micro-grids and buildings.

``_Builder`` collects micro-grids, buildings and compounds while the fillers
in ``_FILLERS`` cut each block's inner plot into parcels and place buildings;
``_frame`` adds the four street-segment micro-grids around the inner plot,
``_fill_villages`` fills the urban villages up to the planned building count
and ``_assign_compound_households`` the compound towers up to the planned
share of households.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from data import names as N
from data.common import _COMPOUND_SHARE, _USE_KIND, MICRO_HOUSEHOLDS, _apportion, _Plan
from data.shapes import (
    _carve,
    _cells,
    _courtyard,
    _cut,
    _h_shape,
    _l_shape,
    _long_axis,
    _mirror,
    _notched,
    _place,
    _rect,
    _split_n,
    _u_shape,
)

log = logging.getLogger(__name__)


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
            for s, hh in zip(g, _apportion(total, caps)):
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
    for (shape, floors, per_floor), hh in zip(items, _apportion(total, [f * p for _, f, p in items])):
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
