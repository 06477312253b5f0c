"""The ``twin`` command line.

Every subcommand takes ``--db PATH`` (a DuckDB file) or ``--db postgresql://user@host:port/dbname`` (the password
in ``PGPASSWORD`` or ``~/.pgpass``, never on the command line); with ``--json`` it prints one JSON
object on stdout. Progress bars go to stderr. Bad input exits with code 2
and a message naming the file, the feature and the fix, and the store is left
as it was (each command is one transaction). While ``twin serve`` holds the
store, ``keys`` and ``users`` (:mod:`twin.access.commands`), ``grids import`` and ``party import`` run in that
server's writer, through the store's control socket (:mod:`twin.store.control`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from twin.access.access import ROLES
from twin.errors import OptionError, TwinError

log = logging.getLogger("twin")


class StageBar:
    """A progress bar over named stages, on stderr."""

    def __init__(self, stages: Sequence[str], *, desc: str) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=len(stages), desc=desc, file=sys.stderr, unit="stage", leave=False)

    def __call__(self, name: str) -> None:
        self.bar.set_postfix_str(name)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def db_option(value: str) -> str:
    """``--db``: a DuckDB file, or a PostgreSQL URL without a password (refused here, before anything runs)."""
    from twin.store.store import check_postgres_url, is_postgres

    if is_postgres(value):
        try:
            check_postgres_url(value)
        except TwinError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc
    return value


def _side_files(db: str) -> Path:
    """What the demo's side files (feed, key, users) are named after: the store file, or the database's name
    in the current folder for a PostgreSQL store."""
    from urllib.parse import urlsplit

    from twin.store.store import is_postgres

    return Path(urlsplit(db).path.strip("/") + ".duckdb") if is_postgres(db) else Path(db)


def _cmd_demo(args: argparse.Namespace) -> dict:
    import shutil
    import tempfile

    from data.build import DEMO_STAGES, build_demo_store, demo_users, write_demo_users
    from twin.store.copy import copy_store
    from twin.store.store import is_postgres, open_for_command

    if args.users:
        with open_for_command(args.db, create=False) as store:
            users = demo_users(store.con)
        return {"users_file": str(write_demo_users(users, _side_files(args.db)))}

    if args.scale == "city":
        return _build_city(args)
    if args.copies is not None:
        raise OptionError(f"--copies {args.copies} with --scale {args.scale}: copies make a city. "
                          "Give --scale city, or leave --copies out.")
    bar = StageBar(DEMO_STAGES, desc="demo district")
    try:
        if not is_postgres(args.db):
            return build_demo_store(args.db, scale=args.scale, seed=args.seed, step=bar, force=args.force)
        # Built as a file first (DuckDB's bulk load is the fast one), then copied in one transaction.
        with tempfile.TemporaryDirectory(prefix="twin-demo-") as folder:
            built = build_demo_store(Path(folder) / _side_files(args.db).name, scale=args.scale, seed=args.seed,
                                     step=bar)
            copied = copy_store(built["db"], args.db)
            side = {}
            for key in ("feed", "api_key_file", "users_file"):
                side[key] = str(Path(shutil.move(built[key], Path.cwd() / Path(built[key]).name)))
        return {**built, **side, "db": args.db, "tables": copied["tables"]}
    finally:
        bar.close()


def _build_city(args: argparse.Namespace) -> dict:
    from tqdm import tqdm

    from data.build_city import CITY_COPIES, build_city_store

    with tqdm(desc="demo city", unit="district", file=sys.stderr, leave=False) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)
        return build_city_store(args.db, copies=args.copies or CITY_COPIES, seed=args.seed, force=args.force,
                                progress=progress)


def _cmd_store_copy(args: argparse.Namespace) -> dict:
    from tqdm import tqdm

    from twin.store.copy import copy_store
    from twin.store.schema import TABLES

    with tqdm(total=len(TABLES), desc=f"copy to {args.target}", file=sys.stderr, unit="table", leave=False) as bar:
        def step(table: str, rows: int) -> None:
            bar.set_postfix_str(f"{table}: {rows:,} rows")
            bar.update(1)

        return copy_store(args.source, args.target, step=step)


def _cmd_ingest_footprints(args: argparse.Namespace) -> dict:
    from ingest.footprints import ingest_footprints, read_footprints
    from twin.store.store import open_for_command

    bar = StageBar(("read", "transform", "clean", "mesh", "store"), desc=f"ingest {Path(args.path).name}")
    try:
        where = f"{args.path}" + (f" (layer {args.layer})" if args.layer else "")
        features = read_footprints(args.path, layer=args.layer)
        bar("read")
        with open_for_command(args.db) as store:
            return ingest_footprints(
                store, features, source=args.source or Path(args.path).stem, where=where,
                source_crs=args.source_crs, crs=args.crs, id_attr=args.id_attr, height_attr=args.height_attr,
                levels_attr=args.levels_attr, storey_height=args.storey_height,
                default_height=args.default_height, step=bar)
    finally:
        bar.close()


def _cmd_ingest_basemap(args: argparse.Namespace) -> dict:
    from ingest.basemap import BASEMAP_STAGES, ingest_basemap, read_basemap_layers
    from twin.store.store import open_for_command

    bar = StageBar(BASEMAP_STAGES, desc=f"ingest {Path(args.path).name}")
    try:
        layers = read_basemap_layers(args.path, layers=args.layer)
        bar("read")
        with open_for_command(args.db) as store:
            return ingest_basemap(store, layers, source=args.source or Path(args.path).stem, where=str(args.path),
                                  source_crs=args.source_crs, crs=args.crs, kind=args.kind, step=bar)
    finally:
        bar.close()


def _cmd_ingest_ifc(args: argparse.Namespace) -> dict:
    from ingest.ifc import ingest_ifc
    from twin.store.store import open_for_command

    bar = StageBar(("read", "geometry", "place", "store"), desc=f"ingest {Path(args.path).name}")
    try:
        with open_for_command(args.db) as store:
            return ingest_ifc(store, args.path, building_id=args.building_id, anchor=args.anchor, crs=args.crs,
                              step=bar)
    finally:
        bar.close()


def _cmd_ingest_mesh(args: argparse.Namespace) -> dict:
    from ingest.mesh import ingest_mesh
    from twin.store.store import open_for_command

    bar = StageBar(("read", "place and store"), desc=f"ingest {Path(args.path).name}")
    try:
        with open_for_command(args.db) as store:
            return ingest_mesh(store, args.path, crs=args.crs, anchor=args.anchor, up=args.up, units=args.units,
                               building_id=args.building_id, step=bar)
    finally:
        bar.close()


def _grids_import(con, args: dict, step: Callable[[str], None]) -> dict:
    from ingest.grids import import_grids_file

    return import_grids_file(con, args["path"], layer=args["layer"], actor=args["actor"], reason=args["reason"],
                             mode=args["mode"], step=step)


def _party_import(con, args: dict, step: Callable[[str], None]) -> dict:
    from ingest.party import import_party_file
    from twin.access.access import audit

    summary = import_party_file(con, args["path"], what=args["what"], mode=args["mode"], step=step)
    audit(con, actor=args["actor"], action="party.import", target=args["path"], source=args["source"],
          detail={"what": args["what"], "mode": args["mode"], "rows": summary["rows"]})
    return summary


def _tiles_export(con, args: dict, step: Callable[[str], None]) -> dict:
    from twin.store.store import district_of
    from twin.tiles.export import export_tiles

    return export_tiles(con, district_of(con), args["out_dir"], cell_m=args["cell_size"],
                        max_vertices=args["max_vertices"], normals=args["normals"])


def _duties_import(con, args: dict, step: Callable[[str], None]) -> dict:
    from twin.cases.duties import import_duties

    return import_duties(con, args["path"], actor=args["actor"], source=args["source"])


def _duties_export(con, args: dict, step: Callable[[str], None]) -> dict:
    from twin.cases.duties import export_duties

    return export_duties(con, args["path"])


def _evaluations_sweep(con, args: dict, step: Callable[[str], None]) -> dict:
    from twin.cases.evaluations import sweep_evaluations

    return {"evaluated_by_default": sweep_evaluations(con, source=args["source"])}


def writing_commands() -> dict:
    """The commands on the store that run offline, or in the server that holds it (``twin serve``): those on
    users and keys (:mod:`twin.access.commands`), the grid and party imports, the duties list's import and export,
    the evaluations' sweep, and ``tiles.export``, which reads the store whole."""
    from twin.access.commands import access_commands
    from twin.store.control import Command
    from twin.volunteers.commands import volunteer_commands

    return {**access_commands(), **volunteer_commands(),
            "duties.import": Command({"path": str, "actor": str, "source": str | None}, _duties_import),
            "duties.export": Command({"path": str}, _duties_export, reads_only=True),
            "evaluations.sweep": Command({"source": str | None}, _evaluations_sweep),
            "tiles.export": Command({"out_dir": str, "cell_size": float, "max_vertices": int, "normals": bool},
                                    _tiles_export,
                                    reads_only=True),
            "grids.import": Command({"path": str, "layer": str | None, "actor": str, "reason": str, "mode": str},
                                    _grids_import, grids_changed=True),
            "party.import": Command({"path": str, "what": str, "mode": str, "actor": str, "source": str},
                                    _party_import)}


def _who() -> dict:
    """Who runs a command on users or keys, for the audit trail: the operating-system user, from the CLI."""
    import getpass

    return {"actor": getpass.getuser(), "source": "cli"}


def _run(db: str, name: str, args: dict, *, step: Callable[[str], None] = lambda stage: None) -> dict:
    """Run a command in the server that holds the store, or, with none, on the file in one transaction."""
    from twin.store.control import ask_server
    from twin.store.store import open_for_command

    command = writing_commands()[name]
    args = command.check(name, args)
    answer = ask_server(db, name, args)
    if answer is not None:
        log.info("%s ran in the server that holds %s", name, db)
        return answer
    with open_for_command(db, create=False) as store:
        return command(store.con, args, step=step)


def _cmd_keys(args: argparse.Namespace) -> dict:
    if args.action == "list":
        answer = _run(args.db, "keys.list", {})
        if not args.json:
            for k in answer["keys"]:
                print(f"{k['name']}\t{'revoked ' + k['revoked_at'] if k['revoked_at'] else 'active'}\t"
                      f"last used {k['last_used'] or 'never'}\t{k['requests_today']} requests today")
        return answer
    answer = _run(args.db, f"keys.{args.action}", {"name": args.name, **_who()})
    if args.action == "add" and not args.json:
        print(answer["api_key"])  # the only time the key is shown
    return answer


def _cmd_grids(args: argparse.Namespace) -> dict:
    if args.action == "export":
        import getpass

        from ingest.grids import export_grids
        from twin.access.access import audit
        from twin.store.store import open_for_command

        with open_for_command(args.db, create=False) as store:
            summary = export_grids(store.con, args.path, level=args.level, history=args.history)
            audit(store.con, actor=getpass.getuser(), action="grids.export", target=str(args.path), source="cli",
                  detail={"level": args.level, "history": args.history})
            return summary
    bar = StageBar(("read", "check and save"), desc="grids")
    try:
        return _run(args.db, "grids.import", {"path": str(Path(args.path).resolve()), "layer": args.layer,
                                                "actor": args.actor, "reason": args.reason, "mode": args.mode},
                      step=bar)
    finally:
        bar.close()


def _cmd_party(args: argparse.Namespace) -> dict:
    if args.action == "export":
        from ingest.party import export_party
        from twin.access.access import audit
        from twin.store.store import open_for_command

        with open_for_command(args.db, create=False) as store:  # party membership is personal: the export is audited
            summary = export_party(store.con, args.path, what=args.what)
            audit(store.con, action="party.export", target=str(args.path), detail={"what": args.what, "rows":
                                                                                    summary["rows"]}, **_who())
            return summary
    bar = StageBar(("read", "check and save"), desc="party")
    try:
        return _run(args.db, "party.import", {"path": str(Path(args.path).resolve()), "what": args.what,
                                                "mode": args.mode, **_who()}, step=bar)
    finally:
        bar.close()
def _cmd_duties(args: argparse.Namespace) -> dict:
    path = str(Path(args.path).resolve())
    if args.action == "export":
        return _run(args.db, "duties.export", {"path": path})
    return _run(args.db, "duties.import", {"path": path, **_who()})


def _cmd_volunteers(args: argparse.Namespace) -> dict:
    if args.action == "verify":
        answer = _run(args.db, "volunteers.verify", {})
        if answer["broken_at"] is not None:
            raise TwinError(f"{args.db}: the points ledger is broken at row {answer['broken_at']} of {answer['rows']}: "
                            "that row or the one before it was changed or removed outside the product.")
        return answer
    if args.action == "account":
        answer = _run(args.db, "volunteers.account", {"resident_id": args.resident_id, "username": args.username,
                                                      **_who()})
        if not args.json:  # shown once: the resident sets their password with it at /v/activate
            print(f"account {answer['username']} for {answer['resident_id']}: one-time code {answer['code']} "
                  f"(until {answer['expires_at'][:16]}; the resident sets a password with it at /v/activate)")
        return answer
    if args.action == "merchant":
        answer = _run(args.db, "volunteers.merchant", {"merchant_id": args.merchant_id, "name": args.name,
                                                       "address": args.address, "grid": args.grid, **_who()})
        if not args.json:
            print(f"merchant {answer['merchant_id']}: user {answer['username']}, password {answer['password']} "
                  "(shown once)")
        return answer
    return _run(args.db, "volunteers.reward", {"merchant_id": args.merchant_id, "title": args.title,
                                               "points": args.points, "stock": args.stock, **_who()})


def _cmd_evaluations(args: argparse.Namespace) -> dict:
    return _run(args.db, "evaluations.sweep", {"source": "cli"})


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    import getpass

    return getpass.getpass(f"password for {args.name}: ")


def _cmd_users(args: argparse.Namespace) -> dict:
    if args.action == "list":
        answer = _run(args.db, "users.list", {})
        if not args.json:
            for u in answer["users"]:
                print(f"{u['username']}\t{u['role']}\t{u['department'] or ','.join(u['grids'])}\t"
                      f"{'disabled' if u['disabled'] else ''}")
        return answer
    given = {"name": args.name, **_who()}
    if args.action in ("add", "passwd"):
        given["password"] = _password(args)
    if args.action in ("add", "grants"):
        given.update(role=args.role, grids=[g for g in (args.grids or "").split(",") if g], department=args.department)
    if args.action == "add":
        given["lang"] = args.lang
    return _run(args.db, f"users.{args.action}", given)


def _cmd_audit(args: argparse.Namespace) -> dict:
    from twin.access.access import verify_audit
    from twin.store.store import Store

    with Store(args.db, read_only=True) as store:
        broken = verify_audit(store.con)
        rows = store.count("audit")
    if broken is not None:
        raise TwinError(f"{args.db}: the audit trail is broken at row {broken} of {rows}: that row or the one "
                        "before it was changed or removed outside the product.")
    return {"rows": rows, "intact": True}


def _cmd_export_tiles(args: argparse.Namespace) -> dict:
    from tqdm import tqdm

    from twin.store.control import ask_server
    from twin.store.store import Store
    from twin.tiles.export import export_tiles

    given = {"out_dir": str(Path(args.out_dir).resolve()), "cell_size": args.cell_size,
             "max_vertices": args.max_vertices, "normals": args.normals}
    summary = ask_server(args.db, "tiles.export", writing_commands()["tiles.export"].check("tiles.export", given))
    if summary is not None:
        log.info("the server that holds %s exported the tiles", args.db)
    else:
        with Store(args.db, read_only=True) as store, \
                tqdm(desc="tiles", unit="tile", file=sys.stderr, leave=False) as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            summary = export_tiles(store.con, store.district, given["out_dir"], cell_m=args.cell_size,
                                   max_vertices=args.max_vertices, normals=args.normals, progress=progress)
    if not args.json:
        for action in ("written", "removed"):
            uris = summary[action]
            more = f" and {len(uris) - 20} more" if len(uris) > 20 else ""
            if uris:
                print(f"{action}: {', '.join(uris[:20])}{more}", file=sys.stderr)
    return summary


def _cmd_serve(args: argparse.Namespace) -> dict:
    from scenes.server import serve

    if args.print_proxy_config or args.workers:
        from scenes.workers import proxy_config, serve_workers

        if args.print_proxy_config:
            print(proxy_config(address=args.address, port=args.port, workers=args.workers or 2), end="")
            return {}
        serve_workers(args.db, address=args.address, port=args.port, workers=args.workers,
                      serve_args=_worker_options(args))
        return {}
    origins = [f"{args.address}:{args.port}", f"localhost:{args.port}", f"127.0.0.1:{args.port}", *args.allow_origin]
    log.info("serving %s on http://%s:%s/app", args.db, args.address, args.port)
    oauth = None
    if args.oauth_provider:
        secret = os.environ.get("TWIN_OAUTH_SECRET")
        if not (args.oauth_key and secret):
            raise OptionError(f"--oauth-provider {args.oauth_provider}: give --oauth-key and the secret in the "
                              "TWIN_OAUTH_SECRET environment variable (not on the command line, where ps shows it).")
        oauth = {"provider": args.oauth_provider, "key": args.oauth_key, "secret": secret,
                 "redirect_uri": args.oauth_redirect_uri}
    if args.tiles and not (Path(args.tiles) / "tileset.json").is_file():
        raise OptionError(f"--tiles {args.tiles}: no tileset.json there. Give a folder written by "
                          "`twin export tiles`, or leave --tiles out and the server exports one beside the store.")
    from scenes.workers import COOKIE_SECRET_ENV

    serve(args.db, port=args.port, address=args.address, origins=origins, dedupe_window_s=args.dedupe_window,
          intake_rate=args.intake_rate, oauth=oauth, commands=writing_commands(), behind_proxy=args.behind_proxy,
          public_rate=args.open311_public_rate if args.open311_public == "on" else None,
          view=args.view, tiles=args.tiles, cameras=args.cameras, cookie_secret=os.environ.get(COOKIE_SECRET_ENV))
    return {}


def _worker_options(args: argparse.Namespace) -> list[str]:
    """The ``twin serve`` options each app process of ``--workers`` gets as given (the OAuth secret: from the
    environment it inherits)."""
    options = ["--intake-rate", str(args.intake_rate), "--open311-public", args.open311_public,
               "--open311-public-rate", str(args.open311_public_rate), "--dedupe-window", str(args.dedupe_window),
               *(a for origin in args.allow_origin for a in ("--allow-origin", origin)),
               "--view", args.view, "--cameras", args.cameras, *(("--tiles", args.tiles) if args.tiles else ())]
    if args.oauth_provider:
        options += ["--oauth-provider", args.oauth_provider, "--oauth-key", args.oauth_key or ""]
        options += ["--oauth-redirect-uri", args.oauth_redirect_uri] if args.oauth_redirect_uri else []
    return options + (["-v"] if args.verbose else [])


def _cmd_feed_replay(args: argparse.Namespace) -> dict:
    import os

    from tqdm import tqdm

    from twin.cases.replay import read_feed, replay

    key = args.api_key or os.environ.get("TWIN_API_KEY")
    key_file = Path(args.path).with_suffix("").with_suffix(".key")  # demo.feed.jsonl -> demo.key
    if not key and key_file.exists():
        key = key_file.read_text().strip()
    total = len(read_feed(args.path))
    with tqdm(total=total, desc="replay", unit="req", file=sys.stderr, leave=False) as bar:
        return replay(args.path, url=args.url, api_key=key or "", rate=args.rate, live_times=not args.keep_times,
                      progress=bar.update)


def _cmd_bench(args: argparse.Namespace) -> dict:
    import runpy

    bench = Path(__file__).resolve().parent / "bench" / f"{args.name}.py"
    if not bench.exists():
        raise TwinError(f"no benchmark {args.name!r}: {bench} does not exist.")
    module = runpy.run_path(str(bench))
    return module["run"](db=args.db, quick=args.quick)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twin", description="The district twin: store, ingest, serve.")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Callable, sub=sub, db: bool = True, **kw) -> argparse.ArgumentParser:
        p = sub.add_parser(name, **kw)
        if db:
            p.add_argument("--db", required=True, type=db_option,
                           help="the store: a DuckDB file, or postgresql://user@host:port/dbname (password in "
                                "PGPASSWORD or ~/.pgpass)")
        p.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
        p.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
        p.set_defaults(handler=handler)
        return p

    demo = command("demo", _cmd_demo, help="build the synthetic demo district")
    demo.add_argument("--scale", choices=("full", "small", "city"), default="full",
                      help="full: the district (12,813 buildings); small: 500; city: --copies full districts "
                           "(81: 1,037,853 buildings, residents counted); a stopped city build resumes when rerun")
    demo.add_argument("--copies", type=int, help="districts in the city (--scale city; default 81)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--force", action="store_true", help="replace an existing store file")
    demo.add_argument("--users", action="store_true",
                      help="only (re)make the demo's users on an existing store, with new passwords in <db>.users")

    ingest = sub.add_parser("ingest", help="bring outside data into the store")
    isub = ingest.add_subparsers(dest="kind", required=True)
    fp = command("footprints", _cmd_ingest_footprints, sub=isub,
                 help="building footprints (GeoJSON, GeoPackage, Shapefile, GeoParquet)")
    fp.add_argument("path")
    fp.add_argument("--layer")
    fp.add_argument("--source", help="name of the source in building ids (default: the file name)")
    fp.add_argument("--id-attr")
    fp.add_argument("--height-attr")
    fp.add_argument("--levels-attr")
    fp.add_argument("--storey-height", type=float, default=3.0, metavar="M")
    fp.add_argument("--default-height", type=float, metavar="M")
    fp.add_argument("--source-crs", metavar="EPSG:N")
    fp.add_argument("--crs", metavar="EPSG:N", help="district CRS of a new store (default: the data's UTM zone)")

    bm = command("basemap", _cmd_ingest_basemap, sub=isub,
                 help="roads, water and green space drawn under the buildings (GeoJSON, GeoPackage, OSM-style "
                      "layers); re-ingesting a source replaces its features")
    bm.add_argument("path")
    bm.add_argument("--layer", action="append", metavar="NAME", help="a layer to read (repeatable; default: all)")
    bm.add_argument("--kind", choices=("road", "water", "green"),
                    help="the kind of features without a kind column value or OSM tag (highway=*, waterway=*, ...)")
    bm.add_argument("--source", help="name of the source, whose features a re-ingest replaces (default: the file name)")
    bm.add_argument("--source-crs", metavar="EPSG:N")
    bm.add_argument("--crs", metavar="EPSG:N", help="district CRS of a new store (default: the data's UTM zone)")

    ifc = command("ifc", _cmd_ingest_ifc, sub=isub, help="a BIM model (IFC2X3, IFC4, IFC4X3), placed on the map")
    ifc.add_argument("path")
    ifc.add_argument("--building-id", help="the building the model belongs to (default: the footprint it stands on)")
    ifc.add_argument("--anchor", metavar="LON,LAT,H,ROT_DEG",
                     help="place the model's origin here, turned ROT_DEG counter-clockwise; overrides the file")
    ifc.add_argument("--crs", metavar="EPSG:N", help="district CRS of a new store (default: the model's UTM zone)")

    mesh = command("mesh", _cmd_ingest_mesh, sub=isub, help="a glTF/GLB, OBJ, PLY or STL model, placed on the map")
    mesh.add_argument("path")
    mesh.add_argument("--crs", metavar="EPSG:N", help="the vertices are map coordinates in this CRS (Z up)")
    mesh.add_argument("--anchor", metavar="LON,LAT,H,ROT_DEG", help="place the local model's origin here")
    mesh.add_argument("--up", choices=("y", "z"), help="the model's up axis (default: y for glTF, z otherwise)")
    mesh.add_argument("--units", choices=("m", "cm", "mm"), default="m")
    mesh.add_argument("--building-id")

    keys = sub.add_parser("keys", help="API keys of the intake clients")
    ksub = keys.add_subparsers(dest="action", required=True)
    for action in ("add", "revoke"):
        k = command(action, _cmd_keys, sub=ksub, help=f"{action} a client's key")
        k.add_argument("name")
    command("list", _cmd_keys, sub=ksub, help="list the keys: active or revoked, last used, requests today")

    grids = sub.add_parser("grids", help="grid polygons in and out (GeoJSON, GeoPackage)")
    gsub = grids.add_subparsers(dest="action", required=True)
    gexp = command("export", _cmd_grids, sub=gsub, help="write the grids to a .geojson or .gpkg file")
    gexp.add_argument("path")
    gexp.add_argument("--level", choices=("street", "community", "grid", "micro"))
    gexp.add_argument("--history", action="store_true", help="every version, not only those in force")
    gimp = command("import", _cmd_grids, sub=gsub,
                   help="read grids from a file: every rule is checked, changed grids get new versions")
    gimp.add_argument("path")
    gimp.add_argument("--layer")
    gimp.add_argument("--actor", required=True, help="who imports (kept with each new version)")
    gimp.add_argument("--reason", required=True, help="why (kept with each new version)")
    gimp.add_argument("--mode", choices=("update", "replace"), default="update",
                      help="replace: each parent's children become exactly the file's")

    party = sub.add_parser("party", help="party organisations and party members' reporting to grids (CSV, GeoJSON)")
    psub = party.add_subparsers(dest="action", required=True)
    pexp = command("export", _cmd_party, sub=psub,
                   help="write the organisations (.csv, .geojson) or the members' reports (.csv) to a file")
    pimp = command("import", _cmd_party, sub=psub,
                   help="read organisations or members' reports from a file, checked against the store's grids and "
                        "residents: an unknown one is refused with its row, and nothing is written")
    for p in (pexp, pimp):
        p.add_argument("path", metavar="FILE")
        p.add_argument("--what", choices=("orgs", "members"), default="orgs",
                       help="orgs: the organisations; members: which party member reports to which grid (报到)")
    pimp.add_argument("--mode", choices=("update", "replace"), default="update",
                      help="update: add the file's rows, replacing those of the same id; replace: the file becomes "
                           "the whole list")
    duties = sub.add_parser("duties", help="the list of duties: which department handles which kind of case, by when")
    dsub = duties.add_subparsers(dest="action", required=True)
    dimp = command("import", _cmd_duties, sub=dsub,
                   help="make a .csv or .json file the duties list (columns kind, department_id, department, "
                        "deadline_hours, escalation_hours[, department_phone]); a bad row refuses the whole file")
    dimp.add_argument("path", metavar="FILE")
    dexp = command("export", _cmd_duties, sub=dsub, help="write the duties list to a .csv or .json file")
    dexp.add_argument("path", metavar="FILE")
    volunteers = sub.add_parser("volunteers", help="the volunteer scheme (文明小杜): residents' and merchants' "
                                                   "accounts, rewards, the points ledger's check")
    vsub = volunteers.add_subparsers(dest="action", required=True)
    vacc = command("account", _cmd_volunteers, sub=vsub,
                   help="make a resident's account from their record (or a new code for it): prints the one-time "
                        "code the resident sets a password with at /v/activate")
    vacc.add_argument("resident_id")
    vacc.add_argument("--username", help="the account's name (default: r<resident id>)")
    vmer = command("merchant", _cmd_volunteers, sub=vsub,
                   help="add a merchant and its account (prints the password once)")
    vmer.add_argument("merchant_id")
    vmer.add_argument("name")
    vmer.add_argument("--address")
    vmer.add_argument("--grid", help="the grid the shop is in")
    vrew = command("reward", _cmd_volunteers, sub=vsub, help="add a merchant's reward for points")
    vrew.add_argument("merchant_id")
    vrew.add_argument("title")
    vrew.add_argument("--points", type=int, required=True)
    vrew.add_argument("--stock", type=int, required=True)
    command("verify", _cmd_volunteers, sub=vsub, help="check the points ledger's hash chain and that no balance "
                                                      "ever went below zero")
    evaluations = sub.add_parser("evaluations", help="residents' evaluations of handled cases")
    evsub = evaluations.add_subparsers(dest="action", required=True)
    command("sweep", _cmd_evaluations, sub=evsub,
            help="close as evaluated by default the cases resolved 3 days ago or more without an answer "
                 "(twin serve does it every few minutes)")

    users = sub.add_parser("users", help="who may sign in, with which role and grids")
    usub = users.add_subparsers(dest="action", required=True)
    uadd = command("add", _cmd_users, sub=usub, help="add a user (asks for the password)")
    uadd.add_argument("name")
    uadd.add_argument("--lang", choices=("zh", "en"), help="the user's UI language (default: Simplified Chinese)")
    command("list", _cmd_users, sub=usub, help="list the users")
    for action in ("disable", "passwd"):
        u = command(action, _cmd_users, sub=usub, help=f"{action} a user")
        u.add_argument("name")
    ugrants = command("grants", _cmd_users, sub=usub, help="bind a user's role to grids (none: the whole district)")
    ugrants.add_argument("name")
    for u in (uadd, ugrants):
        u.add_argument("--role", required=True, choices=ROLES)
        u.add_argument("--grids", help="comma-separated grid ids the role is bound to (operator, worker: needed)")
        u.add_argument("--department", metavar="ID", help="role department: the department it acts for "
                                                          "(`twin duties export FILE` lists them)")
    for u in (uadd, usub.choices["passwd"]):
        u.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    audit = sub.add_parser("audit", help="the audit trail")
    asub = audit.add_subparsers(dest="action", required=True)
    command("verify", _cmd_audit, sub=asub, help="check the audit trail's hash chain")

    export = sub.add_parser("export", help="write the district out for other programs")
    esub = export.add_subparsers(dest="kind", required=True)
    tiles = command("tiles", _cmd_export_tiles, sub=esub,
                    help="a 3D Tiles 1.1 tileset (CesiumJS, 3d-tiles-renderer); only changed tiles are rewritten")
    tiles.add_argument("out_dir", metavar="OUT_DIR", help="the tileset folder: new, empty, or an earlier export")
    tiles.add_argument("--cell-size", type=float, default=250.0, metavar="M", help="the leaves' smallest width")
    tiles.add_argument("--max-vertices", type=int, default=42_000, metavar="N",
                       help="the most vertices a tile wider than one cell may hold (tyler's rule)")
    tiles.add_argument("--no-normals", dest="normals", action="store_false",
                       help="leave normals out: about half the bytes, for viewers that shade flat themselves "
                            "(the app's view; CesiumJS draws such tiles unlit)")

    stores = sub.add_parser("store", help="the store as a whole")
    ssub = stores.add_subparsers(dest="action", required=True)
    copy = command("copy", _cmd_store_copy, sub=ssub, db=False,
                   help="copy a whole store into a new one, between DuckDB files and PostgreSQL databases either way "
                        "(one transaction; rows and geometry and mesh checksums are compared before it commits)")
    copy.add_argument("source", type=db_option, metavar="SRC", help="a DuckDB file or a postgresql:// URL")
    copy.add_argument("target", type=db_option, metavar="DST",
                      help="a new DuckDB file, or a postgresql:// URL of a database without a store")

    serve = command("serve", _cmd_serve, help="serve the app")
    serve.add_argument("--port", type=int, default=5006)
    serve.add_argument("--workers", type=int, metavar="N",
                       help="N app processes on the next N ports behind Debian's nginx on --port (a PostgreSQL "
                            "store only)")
    serve.add_argument("--print-proxy-config", action="store_true",
                       help="print the nginx configuration for --workers N (default 2) on --port, for an existing "
                            "nginx's http block, and exit")
    serve.add_argument("--behind-proxy", action="store_true",
                       help="take the client's address from the proxy's X-Real-IP (only when just the proxy can "
                            "reach this port; --workers sets it)")
    serve.add_argument("--address", default="127.0.0.1", help="0.0.0.0 to serve the intranet")
    serve.add_argument("--allow-origin", action="append", default=[], metavar="HOST:PORT",
                       help="another host name browsers use to reach the app (repeatable)")
    serve.add_argument("--intake-rate", type=float, default=1000.0, metavar="N",
                       help="requests a second each intake client (API key) may send, in bursts of 2N; "
                            "more get HTTP 429 with Retry-After (default 1000)")
    serve.add_argument("--open311-public", choices=("on", "off"), default="on",
                       help="whether Open311 service requests may be read without an api_key, in their public view "
                            "(no house numbers, places to about 10 m, descriptions with numbers masked); off: a 401")
    serve.add_argument("--open311-public-rate", type=float, default=5.0, metavar="N",
                       help="keyless Open311 reads a second each address may send, in bursts of 2N; more get "
                            "HTTP 429 with Retry-After (default 5)")
    serve.add_argument("--oauth-provider", choices=("azure", "github", "gitlab", "google", "okta", "auth0", "generic"),
                       help="sign in through this OAuth provider (Panel's) instead of the store's passwords; "
                            "its user names must be users of the store")
    serve.add_argument("--oauth-key", help="the OAuth client id (the secret goes in TWIN_OAUTH_SECRET)")
    serve.add_argument("--oauth-redirect-uri")
    serve.add_argument("--view", choices=("auto", "tiles", "buffer"), default="auto",
                       help="how the 3D view draws the buildings: streamed 3D tiles, one buffer, or auto "
                            "(tiles above 200,000 buildings)")
    serve.add_argument("--cameras", choices=("auto", "near", "all"), default="auto",
                       help="which cameras each 3D view gets: all at once, those near where it looks (fetched as it "
                            "moves), or auto (near above 50,000 cameras)")
    serve.add_argument("--tiles", metavar="DIR", help="serve this tileset (from `twin export tiles`) to the view; "
                                                     "without it the server exports one to DB.tiles when it needs it")
    serve.add_argument("--dedupe-window", type=float, default=600.0, metavar="S",
                       help="detections from one camera and category this close become one case (default 600 s)")

    feed = sub.add_parser("feed", help="recorded intake streams")
    fsub = feed.add_subparsers(dest="action", required=True)
    replay = command("replay", _cmd_feed_replay, sub=fsub, db=False,
                     help="post a recorded stream (JSON lines) to a running server")
    replay.add_argument("path", metavar="FILE")
    replay.add_argument("--rate", type=float, default=5.0, metavar="N", help="requests per second (default 5)")
    replay.add_argument("--url", default="http://127.0.0.1:5006", help="the running `twin serve`")
    replay.add_argument("--api-key", help="an intake key (`twin keys add`); default: $TWIN_API_KEY, or the "
                                          "demo's key file next to the feed")
    replay.add_argument("--keep-times", action="store_true",
                        help="send detections with their recorded times (default: the time of sending)")

    bench = command("bench", _cmd_bench, db=False, help="run a benchmark and print JSON results")
    bench.add_argument("--db", type=db_option,
                       help="the store to use (view, feed, concurrency, tiles, city, scale, field: default "
                            "data/demo.duckdb)")
    bench.add_argument("name", choices=("ingest", "view", "ifc", "feed", "grids", "security", "concurrency", "tiles",
                                        "backends", "city", "scale", "field", "volunteers"))
    bench.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    try:
        result = args.handler(args)
    except TwinError as exc:
        print(f"twin {args.command}: error: {exc}", file=sys.stderr)
        if args.json:
            error_type = getattr(exc, "error_type", type(exc).__name__)  # a server's refusal keeps its own type
            print(json.dumps({"ok": False, "error": str(exc), "error_type": error_type}))
        return exc.exit_code
    result = {"ok": True, **result, "elapsed_s": round(time.perf_counter() - started, 3)}
    if args.json:
        print(json.dumps(result, ensure_ascii=False, default=str))
    else:
        counts = {k: v for k, v in result.items() if isinstance(v, int | float | str)}
        print(", ".join(f"{k}: {v}" for k, v in counts.items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
