"""Cameras, and cases with their histories, of the demo district.

Cameras stand at intersections, compound gates, building corners and along
the streets; cases are drawn from the taxonomy (``load_taxonomy``) and walk
the status machine up to ``DEMO_NOW``. Party organisations are in :mod:`data.party`.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from data import names as N
from data.common import CRS, DEMO_NOW, _apportion, _nullable, _Plan
from data.people import _ids, _person_names
from twin.cases.cases import load_taxonomy

# --------------------------------------------------------------------------- taxonomy

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
    for comp in B.compounds:
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
