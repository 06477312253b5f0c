"""A throwaway PostgreSQL/PostGIS cluster for the tests: initdb and pg_ctl in a temporary folder, on a free port.

PostgreSQL refuses to run as root, so when the tests run as root the cluster's folder belongs to, and the server
runs as, an unprivileged user (``postgres``, which Debian's package makes, else ``nobody``). The server listens on
127.0.0.1 only and trusts local connections: it holds test data and lives as long as the test session.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SUPERUSER = "twin"


def postgres_bindir() -> Path | None:
    """The newest installed PostgreSQL's binaries (Debian keeps them out of PATH), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _server_user() -> str | None:
    """The user to run the server as: None (this one) unless this one is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root, and neither a postgres nor a nobody user exists to run PostgreSQL as")


@dataclass
class Cluster:
    """A running cluster: its folder, port and superuser; :meth:`url` names a database in it."""

    root: Path
    port: int
    bindir: Path
    user: str | None
    options: str  # the server's options (pg_ctl -o), kept so that it starts again as it was

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str | None = None, *, postgis: bool = True, template: str | None = None) -> str:
        """A new database, empty with PostGIS (unless told otherwise) or a copy of ``template``; returns its URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        if postgis and not template:
            with psycopg.connect(self.url(name), autocommit=True) as con:
                con.execute("CREATE EXTENSION postgis")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        self.stop_server()
        shutil.rmtree(self.root, ignore_errors=True)

    def stop_server(self) -> None:
        """Stop the server as an administrator would to restart it (``pg_ctl stop -m fast``: open sessions are
        ended, their transactions rolled back); its data stay. :meth:`start_server` starts it again."""
        _run(self.user, [str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop"])

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """The server stopped for the block, as for a restart, and started again after it whatever happens (other
        tests share the cluster)."""
        self.stop_server()
        try:
            yield
        finally:
            self.start_server()

    def start_server(self) -> None:
        """Start the server on its folder and port (at the start, or again after :meth:`stop_server`)."""
        _run(self.user, [str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-o", self.options, "-l",
                         str(self.root / "log"), "-w", "start"])


def _run(user: str | None, argv: list[str]) -> None:
    done = subprocess.run(argv, user=user, capture_output=True, text=True, cwd="/")
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def start_cluster(*, durable: bool = False) -> Cluster:
    """initdb a new cluster in a temporary folder and start it on a free port; :meth:`Cluster.stop` ends it.

    A test's cluster skips flushing to disk (its data dies with it); a ``durable`` one flushes every commit as a
    production server does, for benchmarks whose figures include the commits.
    """
    bindir = postgres_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql postgresql-15-postgis-3 "
                           "(`make test` does this when run as root)")
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="twin-pg-"))
    if user:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    root.chmod(0o700)
    data = root / "data"
    _run(user, [str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                "--locale=C", "--no-sync"])
    from bench.browser import free_port

    port = free_port()
    options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=128MB"
               + ("" if durable else " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"))
    cluster = Cluster(root=root, port=port, bindir=bindir, user=user, options=options)
    cluster.start_server()
    log.info("PostgreSQL %s running in %s on port %d", bindir.parent.name, root, port)
    return cluster


if __name__ == "__main__":  # a cluster to try things by hand: prints its URL, stops on Enter
    cluster = start_cluster()
    print(cluster.create_database("twin"), flush=True)
    try:
        input()
    finally:
        cluster.stop()
