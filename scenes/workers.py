"""Several `twin serve` processes on one PostgreSQL store, behind Debian's nginx.

``twin serve --workers N --port P`` starts N app processes on ports P+1 .. P+N (listening on 127.0.0.1 only)
and nginx on P in front of them, with a configuration made here: ``ip_hash`` keeps a browser on one process,
so a Bokeh session's page and its websocket reach the same one, and the websocket upgrade is passed through.
``--print-proxy-config`` prints the part of it that goes into an existing nginx's ``http`` block.

Only a PostgreSQL store can be served so: a DuckDB file has one writing process.

The app processes share one secret for the sign-in cookies (:data:`COOKIE_SECRET_ENV`, drawn at start and handed
down in their environment, never on a command line): when a process is stopped or killed, its browsers reload
through nginx onto another (:mod:`scenes.reconnect`) and stay signed in. A process that ends is started again.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twin.errors import OptionError
from twin.store.store import is_postgres

log = logging.getLogger(__name__)

UPSTREAM = "twin_workers"
PROXY_READ_TIMEOUT_S = 3600  # a browser's websocket stays open for its whole session
MAX_BODY = "1m"  # as scenes.server.MAX_HTTP_BODY_BYTES
COOKIE_SECRET_ENV = "TWIN_COOKIE_SECRET"  # the sign-in cookies' secret that `twin serve` takes from its environment


def worker_ports(port: int, workers: int) -> list[int]:
    """The ports of the app processes behind a proxy on ``port``: the next ``workers`` ones."""
    if workers < 1:
        raise OptionError(f"--workers {workers}: give 1 or more app processes.")
    return [port + k for k in range(1, workers + 1)]


def proxy_config(*, address: str, port: int, workers: int) -> str:
    """The nginx configuration for an ``http`` block: the upstream of the workers and the server in front."""
    servers = "".join(f"    server 127.0.0.1:{p};\n" for p in worker_ports(port, workers))
    return f"""# twin serve --workers {workers}: nginx on {address}:{port}, app processes on 127.0.0.1:{port + 1}-{port + workers}
map $http_upgrade $twin_connection_upgrade {{
    default upgrade;
    ''      close;
}}

upstream {UPSTREAM} {{
    ip_hash;  # one browser, one process: a Bokeh session's page and websocket must meet the same one
{servers}}}

server {{
    listen {address}:{port};
    client_max_body_size {MAX_BODY};

    location / {{
        proxy_pass http://{UPSTREAM};
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $twin_connection_upgrade;
        proxy_set_header Host $http_host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_read_timeout {PROXY_READ_TIMEOUT_S}s;
        proxy_buffering off;
    }}
}}
"""


def nginx_main_config(http_block: str, *, prefix: Path) -> str:
    """A whole nginx.conf around ``http_block`` that keeps its files (pid, logs, temporary files) in ``prefix``."""
    temp = "\n".join(f"    {kind}_temp_path {prefix / kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                            "uwsgi", "scgi"))
    indented = "".join(f"    {line}\n" if line else "\n" for line in http_block.splitlines())
    return f"""worker_processes 1;
daemon off;
pid {prefix / 'nginx.pid'};
error_log {prefix / 'error.log'} warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
{temp}
{indented}}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        raise OptionError("--workers needs Debian's nginx: apt-get install nginx (`make test` installs it), or "
                          "run the workers yourself behind an nginx given `twin serve --print-proxy-config`.")
    return found


def check_config(config: str) -> None:
    """Have nginx check a whole configuration (``nginx -t``); raise :class:`OptionError` with its words if bad."""
    with tempfile.TemporaryDirectory(prefix="twin-nginx-check-") as folder:
        path = Path(folder) / "nginx.conf"
        path.write_text(config)
        done = subprocess.run([nginx_binary(), "-t", "-q", "-c", str(path), "-p", folder], capture_output=True,
                              text=True)
    if done.returncode:
        raise OptionError(f"nginx refuses the generated configuration: {done.stderr.strip()}")


def serve_workers(db: str, *, address: str, port: int, workers: int, serve_args: list[str]) -> None:
    """Run ``workers`` app processes and nginx in front of them until interrupted; stop them all at the end.

    ``serve_args`` are the other ``twin serve`` options, passed to every app process.
    """
    if not is_postgres(db):
        raise OptionError(f"--workers {workers} --db {db}: a DuckDB file has one writing process. Move the store "
                          f"to PostgreSQL first (`twin store copy {db} postgresql://user@host:port/dbname`).")
    ports = worker_ports(port, workers)
    nginx = nginx_binary()
    prefix = Path(tempfile.mkdtemp(prefix="twin-nginx-"))
    config = prefix / "nginx.conf"
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / kind).mkdir()
    config.write_text(nginx_main_config(proxy_config(address=address, port=port, workers=workers), prefix=prefix))
    origins = [a for o in (f"{address}:{port}", f"localhost:{port}", f"127.0.0.1:{port}")
               for a in ("--allow-origin", o)]
    cli = str(Path(__file__).resolve().parent.parent / "cli.py")

    env = {**os.environ, COOKIE_SECRET_ENV: os.environ.get(COOKIE_SECRET_ENV) or secrets.token_urlsafe(32)}

    def app_process(p: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, cli, "serve", "--db", db, "--port", str(p), "--address", "127.0.0.1",
                                 "--behind-proxy", *origins, *serve_args], env=env)

    apps = {p: app_process(p) for p in ports}
    proxy = subprocess.Popen([nginx, "-c", str(config), "-p", str(prefix)])
    log.info("serving %s on http://%s:%d/app through nginx; app processes on ports %s", db, address, port,
             ", ".join(map(str, ports)))
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while proxy.poll() is None:
            for p, app in apps.items():  # a process that died is started again; nginx sends its browsers on
                if app.poll() is not None:
                    log.error("the app process on port %d ended (%s); starting it again", p, app.returncode)
                    apps[p] = app_process(p)
            time.sleep(0.5)
        log.error("nginx ended (%s): stopping the app processes", proxy.returncode)
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        children = [proxy, *apps.values()]
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        shutil.rmtree(prefix, ignore_errors=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
