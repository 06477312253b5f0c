"""``twin demo``: write the synthetic district into a new store.

The footprints go through the same cleaning, meshing and writing as
``twin ingest footprints``. The store is built in a temporary file next to
the target and moved into place at the end, so a failed build leaves no file
and a rebuild (``--force``) leaves the old store until the new one is whole.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import shapely

from data.demo import DEMO_NOW, DemoDistrict, generate_district, level_counts
from data.feed import demo_feed, write_feed
from data.field import DEMO_WORKERS, demo_patrols, demo_worker_grids, demo_workers
from data.volunteers import demo_volunteers, volunteer_users
from data.loop import write_loop
from twin.access.access import add_user, set_password
from twin.buildings import building_ids, upsert_buildings
from twin.geo.crs import District
from twin.errors import InputError
from twin.geo.footprints import prepare_footprints
from twin.grids.grids import locate
from twin.access.keys import add_key
from twin.geo.mesh import extrude_footprints
from twin.cases.cameras import keep_camera_sight
from twin.store.store import Store, create_indexes, drop_indexes, insert_frame
from twin.timing import StageTimer

log = logging.getLogger(__name__)

DEMO_CRS = "EPSG:4547"
DEMO_SOURCE = "demo"
DEMO_STAGES = ("generate", "grids", "buildings", "residents", "cameras", "cases", "indexes")


def _demo_id(source_ids: pd.Series) -> pd.Series:
    return building_ids(DEMO_SOURCE, source_ids).where(source_ids.notna(), None)


def build_demo_store(path: str | os.PathLike, *, scale: str = "full", seed: int = 0, force: bool = False,
                     step: Callable[[str], None] = lambda _: None) -> dict:
    """Generate the demo district and write it to a new store at ``path``.

    Returns
    -------
    dict
        JSON-ready counts per table and per grid level, and timings in seconds.
    """
    path = Path(path)
    check_target(path, force=force)
    partial = path.with_name(f".{path.name}.building-{os.getpid()}")
    timer = StageTimer(step, digits=3)
    lap = timer.lap
    try:
        district = generate_district(scale=scale, seed=seed)
        lap("generate")
        with Store(partial, create=True) as store, store.transaction():
            drop_indexes(store.con)
            counts = write_district(store, district, lap=lap, scale=scale, seed=seed)
            create_indexes(store.con)
            lap("indexes")
            keep_camera_sight(store.con)  # the per-grid coverage, so that serving starts without computing it
            lap("camera sight")
            extras = demo_extras(store.con, seed=seed, small=scale != "full")
        os.replace(partial, path)
    finally:
        for p in (partial, Path(f"{partial}.wal")):
            p.unlink(missing_ok=True)
    return {"db": str(path), "scale": scale, "seed": seed, **counts, "grid_levels": level_counts(district),
            **write_extras(path, *extras), "timings_s": timer.timings}


def check_target(path: Path, *, force: bool) -> None:
    """Refuse to overwrite a store without ``force``; make the target's folder."""
    if path.exists() and not force:
        raise InputError(f"{path}: a store already exists here. Give --force to replace it, "
                         "or another --db path.")
    path.parent.mkdir(parents=True, exist_ok=True)


def demo_extras(con: duckdb.DuckDBPyConnection, *, seed: int, small: bool) -> tuple[list[dict], str, list[dict]]:
    """In the store: the duties list and the past cases' departments and evaluations (:mod:`data.loop`); a day
    of intake to replay (returned, not stored), the intake key, the users (one per desk role and department, and
    a handful of grid workers) and the workers' patrols of the day."""
    write_loop(con)
    feed = demo_feed(con, crs=DEMO_CRS, seed=seed, incidents=40 if small else 400, reports=30 if small else 300)
    demo_volunteers(con, seed=seed, worker_grids=demo_worker_grids(con))
    key, users = add_key(con, "demo-feed", actor="demo"), demo_users(con)
    demo_patrols(con, seed=seed)
    return feed, key, users


def write_extras(path: Path, feed: list[dict], key: str, users: list[dict]) -> dict:
    """Beside the store: the feed, the demo's own intake key (fake data, so kept beside it) and the users' file."""
    feed_path = write_feed(feed, path.with_suffix(".feed.jsonl"))
    key_path = path.with_suffix(".key")
    key_path.write_text(key + "\n")
    key_path.chmod(0o600)
    return {"feed": str(feed_path), "feed_lines": len(feed), "api_key_file": str(key_path),
            "users_file": str(write_demo_users(users, path))}


DEMO_ROLES = ("leader", "operator", "planner", "admin")
# Users of the departments on the demo's duties list (data/duties.csv), one each: dept-<department id>.
DEMO_DEPARTMENTS = ("cgj", "sthjj", "zjj", "xfjy", "ga", "scjg")


def demo_user_names() -> tuple[str, ...]:
    """The user names :func:`demo_users` makes."""
    return (*DEMO_ROLES, *(f"dept-{d}" for d in DEMO_DEPARTMENTS), *(f"worker{k + 1}" for k in range(DEMO_WORKERS)))


def demo_users(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """(Re)make the demo's users with fresh random passwords: one per desk role, one per demo department
    (``dept-cgj``...), and its grid workers (``worker1``..., :mod:`data.field`).

    The operator is bound to the first community, so the demo shows what an
    operator cannot see as well as what they can; the workers to its first micro-grids.
    """
    community, = con.execute("SELECT min(grid_id) FROM grids WHERE level = 'community' AND valid_to IS NULL").fetchone()
    wanted = [(role, role, [community] if role == "operator" and community else [], None) for role in DEMO_ROLES]
    known = {r[0] for r in con.execute("SELECT department_id FROM departments").fetchall()}
    wanted += [(f"dept-{d}", "department", [], d) for d in DEMO_DEPARTMENTS if d in known]
    made = []
    for name, role, grids, department in wanted:
        password = secrets.token_urlsafe(12)
        if con.execute("SELECT 1 FROM users WHERE username = ?", [name]).fetchone():
            set_password(con, name, password, actor="demo")
        else:
            add_user(con, name, password, role=role, grids=grids, actor="demo", department=department)
        made.append({"username": name, "password": password, "role": role, "grids": grids, "department": department})
    return made + demo_workers(con) + volunteer_users(con)


def write_demo_users(users: list[dict], db: Path) -> Path:
    """``<db>.users``: one line per demo user (name, password, role, grids), readable by the owner only."""
    out = Path(db).with_suffix(".users")
    out.write_text("".join(f"{u['username']:<9} {u['password']}  ({u['role']}"
                           + (f", department {u['department']}" if u.get("department") else
                              f", grids {','.join(u['grids'])}" if u["grids"] else
                              "" if u["role"] in ("resident", "merchant") else ", whole district") + ")\n"
                           for u in users))
    out.chmod(0o600)
    return out


def write_district(store: Store, demo: DemoDistrict, *, lap: Callable[[str], None], scale: str, seed: int) -> dict:
    """Write every table of a generated district into an open, empty store."""
    set_demo_meta(store, demo.grids.total_bounds, name="郑东新区 (demo)", scale=scale, seed=seed)
    write_tables(store, demo, lap=lap)
    tables = ("buildings", "meshes", "grids", "compounds", "residents", "cameras", "cases", "case_events",
              "party_orgs", "party_reports", "party_services", "basemap")
    counts = {t: store.count(t) for t in tables}
    counts["households"] = store.con.execute("SELECT count(DISTINCT household_id) FROM residents").fetchone()[0]
    return counts


def set_demo_meta(store: Store, bounds: np.ndarray, *, name: str, scale: str, seed: int) -> None:
    """The demo's CRS, its origin at the centre of ``bounds`` (xmin, ymin, xmax, ymax; m), its name and clock."""
    store.set_district(District(crs=DEMO_CRS, origin=(float(np.round((bounds[0] + bounds[2]) / 2)),
                                                      float(np.round((bounds[1] + bounds[3]) / 2)), 0.0)))
    # The demo's cases are dated around a fixed day, so its clock ("now") is fixed too.
    store.set_meta(district_name=name, demo_scale=scale, demo_seed=seed, now=DEMO_NOW.isoformat())


def write_tables(store: Store, demo: DemoDistrict, *, lap: Callable[[str], None]) -> None:
    """Append a generated district's rows to every table of a store whose district (CRS, origin) is set.

    Residents are written when listed; when counted they ride on ``buildings.residents``.
    """
    con = store.con
    grids = demo.grids
    insert_frame(con, "grids", pd.DataFrame({
        "grid_id": grids["grid_id"], "parent_id": grids["parent_id"], "level": grids["level"],
        "name": grids["name"], "kind": grids["kind"], "worker": grids["worker"],
        "worker_phone": grids["worker_phone"],
        "boundary": grids.geometry.values, "version": 1,
        "valid_from": pd.Timestamp("2026-01-01")}), geometry=("boundary",))
    micro = grids[grids["level"] == "micro"]
    micro_ids, micro_shapes = micro["grid_id"].to_numpy(dtype=object), micro.geometry.to_numpy()
    insert_frame(con, "compounds", pd.DataFrame({
        "compound_id": demo.compounds["compound_id"], "name": demo.compounds["name"],
        "boundary": demo.compounds.geometry.values, "grid_id": demo.compounds["grid_id"]}), geometry=("boundary",))
    ground = demo.basemap
    insert_frame(con, "basemap", pd.DataFrame({
        "feature_id": DEMO_SOURCE + ":" + ground["source_id"], "kind": ground["kind"], "name": ground["name"],
        "source": DEMO_SOURCE, "source_id": ground["source_id"], "geometry": ground.geometry.values}),
        geometry=("geometry",))
    lap("grids")

    district = store.district
    buildings, _ = prepare_footprints(demo.buildings, where="demo district", id_attr="source_id",
                                      height_attr="height", levels_attr="floors")
    known = ["use", "compound_id", "households", "grid_id", "residents"]  # residents: when counted
    extra = demo.buildings.set_index("source_id")[[c for c in known if c in demo.buildings.columns]]
    buildings = buildings.join(extra, on="source_id")
    buildings["source"] = DEMO_SOURCE
    buildings["building_id"] = building_ids(DEMO_SOURCE, buildings["source_id"])
    meshes = extrude_footprints(buildings.geometry.values, base_z=buildings["base_z"].to_numpy(),
                                height=buildings["height"].to_numpy(), origin=district.origin)
    upsert_buildings(con, buildings, meshes)
    lap("buildings")

    r = demo.residents
    if len(r):
        insert_frame(con, "residents", pd.DataFrame({
            "resident_id": r["resident_id"], "household_id": r["household_id"],
            "building_id": _demo_id(r["building_source_id"]), "unit": r["unit"], "room": r["room"],
            "name": r["name"], "gender": r["gender"], "id_number": r["id_number"], "phone": r["phone"],
            "birth_date": pd.to_datetime(r["birth_date"]), "tags": r["tags"]}))
    insert_frame(con, "party_orgs", demo.party_orgs[["org_id", "name", "kind", "grid_id", "compound_id", "members",
                                                     "parent_id", "secretary"]])
    if len(demo.party_reports):
        insert_frame(con, "party_reports", demo.party_reports)
        insert_frame(con, "party_services", demo.party_services)
    lap("residents")

    cams = demo.cameras
    cam_xy = shapely.get_coordinates(cams.geometry.values)
    insert_frame(con, "cameras", pd.DataFrame({
        "camera_id": cams["camera_id"], "name": cams["name"], "position": cams.geometry.values,
        "z": cams["z"], "heading_deg": cams["heading_deg"], "pitch_deg": cams["pitch_deg"],
        "fov_deg": cams["fov_deg"], "range_m": cams["range_m"], "stream_url": cams["stream_url"],
        "status": cams["status"], "grid_id": locate(cam_xy, micro_ids, micro_shapes),
        "building_id": _demo_id(cams["building_source_id"])}), geometry=("position",))
    lap("cameras")

    cases = demo.cases
    case_grid = locate(shapely.get_coordinates(cases.geometry.values), micro_ids, micro_shapes)
    insert_frame(con, "cases", pd.DataFrame({
        "case_id": cases["case_id"], "category": cases["category"], "subcategory": cases["subcategory"],
        "source": cases["source"], "status": cases["status"], "description": cases["description"],
        "address": cases["address"], "location": cases.geometry.values,
        "building_id": _demo_id(cases["building_source_id"]), "grid_id": case_grid,
        "reported_grid_id": case_grid, "camera_id": cases["camera_id"],
        "reported_at": cases["reported_at"], "updated_at": cases["updated_at"], "due_at": cases["due_at"]}),
        geometry=("location",))
    insert_frame(con, "case_events", demo.case_events[["case_id", "at", "from_status", "to_status", "actor", "note"]])
    lap("cases")
