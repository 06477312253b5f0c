"""Households and residents of the demo district, and their ID numbers.

``_residents`` fills the buildings' rooms with households and people (names,
genders, birth dates, PRC resident ID numbers, phones, tags); the ID and
digit helpers and ``_person_names`` are shared with the other modules.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from data import names as N
from data.common import DEMO_NOW, _Plan

# --------------------------------------------------------------------------- ID numbers

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


# --------------------------------------------------------------------------- names

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


RESIDENT_COLUMNS = ("resident_id", "household_id", "building_source_id", "unit", "room", "name", "gender",
                    "id_number", "phone", "birth_date", "tags")


def _household_sizes(rng, households: int, plan: _Plan) -> np.ndarray:
    """Sizes (1-6 people) of ``households`` households, nudged so that they sum to ``plan.residents``."""
    size = rng.choice(np.arange(1, 7), households, p=[.17, .28, .27, .16, .08, .04])
    diff = plan.residents - int(size.sum())
    cand = np.flatnonzero(size < 6) if diff > 0 else np.flatnonzero(size > 1)
    size[rng.choice(cand, min(abs(diff), len(cand)), replace=False)] += np.sign(diff)
    return size


def _resident_counts(rng, buildings, plan: _Plan) -> np.ndarray:
    """Residents per building (int64, one per row of ``buildings``): its households' sizes summed.

    The counted alternative to :func:`_residents`, for the city demo: the same household sizes, no people.
    """
    hh = buildings["households"].to_numpy()
    size = _household_sizes(rng, int(hh.sum()), plan)
    return np.bincount(np.repeat(np.arange(len(hh)), hh), weights=size, minlength=len(hh)).astype(np.int64)


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
    size = _household_sizes(rng, nh, plan)
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
