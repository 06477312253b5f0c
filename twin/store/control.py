"""Writing commands while ``twin serve`` holds the store: a Unix socket beside the store file.

DuckDB lets one process write a file. While ``twin serve`` holds it, ``twin keys``,
``twin users`` and ``twin grids import`` hand their work to the server instead: they
send one JSON line to ``<store>.sock`` naming a command and its arguments, and read
one JSON line back, the command's answer or its error. The server runs only the
commands it was given, each as one job of its writer (one transaction). The socket
is its owner's alone (mode 0600) and the server checks each caller's user id too;
nothing but JSON crosses it. A socket left by a server that died answers nobody, and
the commands then work on the store file as usual.

A PostgreSQL store may be served by several processes (``twin serve --workers``): each has a socket of its
own, named after the store's URL and the process id in this user's folder, and a command goes to any one of
them that answers (the others hear of its changes through the store's notices, :mod:`twin.store.notices`).
Sockets of processes that have died are removed as they are found.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import socketserver
import struct
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from twin.errors import InputError, StoreError, TwinError
from twin.store.store import is_postgres, user_folder

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 16 * 1024 * 1024  # a request is a command and its arguments, never data in bulk
REQUEST_TIMEOUT_S = 10.0  # a caller has this long to send its request


@dataclass(frozen=True)
class Command:
    """A writing command that runs offline on the store or in the server that holds it.

    Attributes
    ----------
    params : dict of str to type
        The arguments by name and type (``str | None`` for an optional text, ``list`` for a list of
        texts); no others are taken.
    run : callable
        ``run(con, args, step) -> dict`` inside the caller's transaction; the answer is what
        ``--json`` prints. ``step(name)`` reports progress (nothing in the server).
    grids_changed : bool
        The command changes grids, so the server's matching follows them.
    reads_only : bool
        The command only reads the store (``twin export tiles``): the server runs it on a cursor of its own,
        beside the writer, so a long read does not hold up intake.
    """

    params: dict[str, type | types.UnionType]
    run: Callable[..., dict]
    grids_changed: bool = False
    reads_only: bool = False

    def __call__(self, con: duckdb.DuckDBPyConnection, args: dict, *,
                 step: Callable[[str], None] = lambda stage: None) -> dict:
        return self.run(con, args, step)

    def check(self, name: str, args: object) -> dict:
        """``args`` when they are exactly this command's, each of its type; else an :class:`InputError`."""
        if not isinstance(args, dict) or set(args) != set(self.params):
            found = sorted(args) if isinstance(args, dict) else type(args).__name__
            raise InputError(f"command {name}: expected the arguments {sorted(self.params)}, found {found}.")
        for key, kind in self.params.items():
            value = args[key]
            if not isinstance(value, kind) or (kind is list and not all(isinstance(v, str) for v in value)):
                raise InputError(f"command {name}: argument {key} must be {kind} (of texts), found {value!r:.80}.")
        return args


def socket_path(db: str | os.PathLike, *, pid: int | None = None) -> Path:
    """Where the server that holds the store ``db`` listens: ``<store>.sock`` beside a file; for a PostgreSQL
    store, the socket of the process ``pid`` (this one by default) serving it, named after the URL and the
    process in this user's own folder (only the user who serves may use it)."""
    if is_postgres(db):
        return user_folder() / f"{_url_tag(db)}.{os.getpid() if pid is None else int(pid)}.sock"
    path = Path(db).resolve()
    return path.with_name(path.name + ".sock")


def _url_tag(db: str | os.PathLike) -> str:
    return hashlib.sha256(str(db).encode()).hexdigest()[:16]


def server_sockets(db: str | os.PathLike) -> list[Path]:
    """The sockets of the servers holding ``db`` that may be alive: the one beside a file; for a PostgreSQL store,
    one per serving process, newest first (the sockets of processes that no longer run are removed here)."""
    if not is_postgres(db):
        return [socket_path(db)]
    found = []
    for path in user_folder().glob(f"{_url_tag(db)}.*.sock"):
        pid = path.name.split(".")[1]
        if not pid.isdigit():
            continue
        if not _running(int(pid)):  # left by a process that was killed
            path.unlink(missing_ok=True)
            continue
        found.append(path)
    return sorted(found, key=lambda p: p.stat().st_mtime if p.exists() else 0, reverse=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process of that number: not ours, and not dead
        return True
    return True


class ServerRefused(TwinError):
    """The server that holds the store refused or failed a command; its message and error type come with it."""

    def __init__(self, message: str, *, error_type: str, exit_code: int) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.exit_code = exit_code


def ask_server(db: str | os.PathLike, name: str, args: dict) -> dict | None:
    """Run a command in the server that holds ``db`` (of a PostgreSQL store's serving processes, the first that
    answers); None when no server listens there.

    Raises
    ------
    ServerRefused
        The server refused the command (bad input: the same message as offline) or failed.
    StoreError
        A server listens but cannot be asked (another user's, or it hung up).
    """
    for path in server_sockets(db):  # the first that answers runs it
        reply = _ask(path, db, name, args)
        if reply is not _NO_SERVER:
            break
    else:
        return None
    if reply is None:
        raise StoreError(f"{path}: the server holding {db} hung up without an answer; see its log. The command "
                         "may not have run: check before running it again.")
    answer = json.loads(reply)
    if answer.get("ok"):
        return answer["result"]
    raise ServerRefused(answer["error"], error_type=answer["error_type"], exit_code=int(answer["exit_code"]))


_NO_SERVER = object()


def _ask(path: Path, db: str | os.PathLike, name: str, args: dict) -> bytes | None | object:
    """The reply line of the server at ``path`` (None when it hung up), or ``_NO_SERVER`` when none listens there."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(_address(path))
        except (FileNotFoundError, ConnectionRefusedError):  # no server, or the socket of one that died
            return _NO_SERVER
        except PermissionError as exc:
            raise StoreError(f"{path}: the server holding {db} runs as another user ({exc}); run the command as "
                             "the user who runs `twin serve`.") from exc
        sock.sendall(json.dumps({"command": name, "args": args}, ensure_ascii=False).encode() + b"\n")
        return _read_line(sock.makefile("rb"))


class ControlChannel:
    """The server's end: answers each connection's one request with ``execute(command, args)`` in a thread.

    Parameters
    ----------
    db : path-like
        The store the server holds (the socket goes beside it; for a PostgreSQL store, one per process).
    commands : dict of str to Command
        What the channel runs; any other name is refused.
    execute : callable
        ``execute(command, args) -> dict``: runs a checked command (in the server's writer) and
        returns its answer, or raises.
    """

    def __init__(self, db: str | os.PathLike, commands: dict[str, Command], *,
                 execute: Callable[[Command, dict], dict]) -> None:
        self.path = socket_path(db)
        self._commands = commands
        self._execute = execute
        # The caller holds the store's write lock (or, on PostgreSQL, this process id), so a socket here is a dead
        # server's: replace it.
        self.path.unlink(missing_ok=True)
        umask = os.umask(0o177)  # the socket is made 0600, never readable by others even for an instant
        try:
            self._server = _Server(_address(self.path), _Handler)
        finally:
            os.umask(umask)
        self._inode = self.path.stat().st_ino
        self._server.channel = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="twin-control", daemon=True)
        self._thread.start()
        log.info("writing commands reach this server through %s", self.path)

    def close(self) -> None:
        """Stop answering and remove the socket (unless another server has replaced it since)."""
        self._server.shutdown()
        self._server.server_close()
        try:
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()
        except FileNotFoundError:
            pass

    def answer(self, request: bytes | None) -> dict:
        """The reply to one request line."""
        name = "?"
        try:
            if request is None:
                raise InputError(f"send one JSON line of at most {MAX_REQUEST_BYTES} bytes.")
            try:
                message = json.loads(request)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise InputError(f"the request is not UTF-8 JSON ({exc}).") from exc
            name = message.get("command") if isinstance(message, dict) else None
            command = self._commands.get(name) if isinstance(name, str) else None
            if command is None:
                raise InputError(f"no command {name!r}; the server runs {', '.join(sorted(self._commands))}.")
            result = self._execute(command, command.check(name, message.get("args")))
            return {"ok": True, "result": result}
        except TwinError as exc:
            log.info("control: %s refused: %s", name, exc)
            return {"ok": False, "error": str(exc), "error_type": type(exc).__name__, "exit_code": exc.exit_code}
        except Exception as exc:
            log.exception("control: %s failed", name)
            return {"ok": False, "error": f"the server failed to run {name} ({type(exc).__name__}: {exc}); "
                                          "nothing was written. See the server's log.",
                    "error_type": type(exc).__name__, "exit_code": 1}


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    channel: ControlChannel


class _Handler(socketserver.StreamRequestHandler):
    timeout = REQUEST_TIMEOUT_S

    def handle(self) -> None:
        creds = self.request.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", creds)
        if uid != os.getuid():  # the mode already keeps others out; this also stops root's mistakes
            reply = {"ok": False, "error": f"user id {uid} may not use this server's commands; run them as the "
                                           "user who runs `twin serve`.", "error_type": "AccessError", "exit_code": 2}
        else:
            try:
                request = _read_line(self.rfile)
            except TimeoutError:
                return
            reply = self.server.channel.answer(request)
        self.wfile.write(json.dumps(reply, ensure_ascii=False, default=str).encode() + b"\n")


def _read_line(stream) -> bytes | None:
    """One line of at most ``MAX_REQUEST_BYTES`` (None when longer, or when the other end closed first)."""
    line = stream.readline(MAX_REQUEST_BYTES + 1)
    if not line.endswith(b"\n"):
        return None
    return line


def _address(path: Path) -> str:
    """The path to bind or connect to; a path too long for a Unix socket (108 bytes) goes through /proc."""
    if len(os.fsencode(path)) < 100:
        return str(path)
    # Linux resolves the directory through the descriptor; it stays open for the process's life (one per store).
    return f"/proc/self/fd/{_directory_fd(path.parent)}/{path.name}"


_DIRECTORY_FDS: dict[Path, int] = {}


def _directory_fd(directory: Path) -> int:
    if directory not in _DIRECTORY_FDS:
        _DIRECTORY_FDS[directory] = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    return _DIRECTORY_FDS[directory]
