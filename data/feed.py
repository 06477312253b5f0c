"""A day of intake for the demo district: AI detections from its cameras and residents' Open311 reports.

Written as JSON lines next to the demo store (``demo.feed.jsonl``) for
``twin feed replay``. Detections come in incidents: one camera sees the same
scene several times over a few minutes (a parked car, an overflowing bin), as
real analytics boxes report it, so de-duplication has work to do. Reports
follow the day's rhythm: few at night, most in the morning and evening.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from data.demo import DEMO_NOW
from twin.cases.cases import load_taxonomy
from twin.geo.crs import transform_xy
from twin.cases.detections import ai_categories

HOURLY = np.array([1, 1, 1, 1, 1, 2, 4, 7, 9, 9, 8, 7, 6, 6, 7, 7, 8, 9, 9, 8, 6, 4, 2, 1], dtype=float)


def _times(rng: np.random.Generator, n: int, day: pd.Timestamp) -> pd.DatetimeIndex:
    hours = rng.choice(24, size=n, p=HOURLY / HOURLY.sum())
    seconds = hours * 3600 + rng.integers(0, 3600, size=n)
    return pd.DatetimeIndex(day + pd.to_timedelta(np.sort(seconds), unit="s"))


def demo_feed(con: duckdb.DuckDBPyConnection, *, crs: str, incidents: int = 400, reports: int = 300,
              seed: int = 0) -> list[dict]:
    """Feed lines for one day of the demo district, in time order.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        The demo store (cameras and buildings are read from it).
    crs : str
        The store's district CRS, to give reports WGS84 coordinates as Open311 clients send them.
    incidents, reports : int
        AI incidents (each 1-12 detections) and residents' reports.
    """
    rng = np.random.default_rng(seed + 311)
    day = pd.Timestamp(DEMO_NOW).normalize()
    cams = con.execute("SELECT camera_id FROM cameras WHERE status = 'online' ORDER BY camera_id").df()["camera_id"]
    lines: list[tuple[pd.Timestamp, dict]] = []
    scenes = ai_categories()
    for start, camera, scene in zip(_times(rng, incidents, day), rng.choice(cams.to_numpy(), incidents),
                                    rng.choice(scenes, incidents)):
        at = start
        for _ in range(int(rng.integers(1, 13))):
            lines.append((at, {"kind": "detection", "body": {
                "camera_id": str(camera), "category": str(scene), "confidence": round(float(rng.uniform(0.6, 0.98)), 2),
                "detected_at": at.isoformat(), "snapshot_url": f"http://video.zd.local/snap/{camera}/{at:%H%M%S}.jpg",
                "bbox": [int(v) for v in rng.integers(40, 900, 2)] + [int(v) for v in rng.integers(40, 300, 2)]}}))
            at += pd.Timedelta(seconds=int(rng.integers(20, 120)))
    every = con.execute("SELECT label_x, label_y, address FROM buildings ORDER BY building_id").df()
    buildings = every.iloc[np.sort(rng.choice(len(every), size=min(reports, len(every)), replace=False))]
    kinds = [s for s in load_taxonomy()["subcategories"] if not s.get("ai")]
    weights = np.array([float(s.get("weight") or 1) for s in kinds])
    if len(buildings):
        jitter = rng.normal(0, 4, size=(len(buildings), 2))
        lonlat = transform_xy(buildings[["label_x", "label_y"]].to_numpy() + jitter, crs, "EPSG:4326")
        for at, (lon, lat), address, k in zip(_times(rng, len(buildings), day), lonlat, buildings["address"],
                                              rng.choice(len(kinds), len(buildings), p=weights / weights.sum())):
            kind = kinds[k]
            lines.append((at, {"kind": "open311", "form": {
                "service_code": kind["code"], "lat": f"{lat:.7f}", "long": f"{lon:.7f}",
                "address_string": address or "", "description": f"{kind['name']} ({kind['name_en']})"}}))
    lines.sort(key=lambda t: t[0])
    return [line for _, line in lines]


def write_feed(lines: list[dict], path: str | Path) -> Path:
    """Write feed lines as JSON lines (UTF-8)."""
    path = Path(path)
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    return path
