"""Constants, scale plans and small helpers shared by the demo district modules.

:mod:`data.demo`, the entry point, re-exports the public constants; the
underscored names are private to the ``data`` package. This module imports no
other module of the package, so every module can import it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from twin.cases.cases import CASE_STATUSES, CASE_TRANSITIONS, OPEN_STATUSES  # noqa: F401  (re-exported)

CRS = "EPSG:4547"
CENTRE_LONLAT = (113.72, 34.76)
DEMO_NOW = pd.Timestamp("2026-11-26 09:00:00")
SCALES = ("full", "small")
RESIDENT_MODES = ("listed", "counted")
BUILDING_USES = ("residential", "office", "school", "market", "hospital", "public", "commercial")
MICRO_KINDS = ("residential", "office", "street", "mixed", "public")
CASE_SOURCES = ("ai", "citizen", "patrol", "open311", "hotline")
BLOCK_SIZE = 380.0  # mean lattice cell side (m): a district is plan.cols * BLOCK_SIZE wide
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
    party_reported: int  # party members who report to a grid (报到)


_PLANS = {
    "full": _Plan(20, 20, 12_813, 400_000, 1_127_000, 18_000, 2_400, 483, 5_246),
    "small": _Plan(4, 4, 500, 15_600, 43_980, 700, 100, 19, 205),  # 205: the full plan's share of residents
}
_BLOCK_MIX = (("tower", .18), ("slab", .15), ("mixed", .20), ("office", .17), ("public", .12),
              ("village", .10), ("park", .08))
_COMPOUND_SHARE = 0.80  # of households (and so, closely, of residents)


# --------------------------------------------------------------------------- helpers

def _apportion(total: int, weights) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder)."""
    w = np.asarray(weights, float)
    raw = total * w / w.sum()
    out = np.floor(raw).astype(int)
    for k in np.argsort(-(raw - out), kind="stable")[: total - out.sum()]:
        out[k] += 1
    return out.tolist()


def _nullable(values) -> pd.Series:
    """Strings with ``None`` for missing values (object dtype, not pandas' NaN-holding str)."""
    values = values.tolist() if hasattr(values, "tolist") else list(values)
    return pd.Series([None if pd.isna(v) else v for v in values], dtype=object)
