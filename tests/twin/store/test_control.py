"""The control channel: a Unix socket beside the store through which writing commands reach a running server."""

from __future__ import annotations

import json
import socket
import stat

import pytest

from twin.errors import InputError
from twin.store.control import Command, ControlChannel, ServerRefused, ask_server, socket_path


def _echo(con, args, step):
    if args["text"] == "bug":
        raise RuntimeError("a bug")
    if args["text"] == "bad":
        raise InputError("bad text: say something else.")
    return {"text": args["text"], "note": args["note"]}


@pytest.fixture(params=("duckdb", "postgres"))
def channel(tmp_path, monkeypatch, request):
    """A channel for a store file (its socket beside it) or a PostgreSQL URL (its socket in the user's folder)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    db = tmp_path / "s.duckdb" if request.param == "duckdb" else "postgresql://twin@127.0.0.1:5432/district"
    commands = {"echo": Command({"text": str, "note": str | None}, _echo),
                "tag": Command({"tags": list}, lambda con, args, step: {"tags": args["tags"]})}
    served = ControlChannel(db, commands, execute=lambda command, args: command(None, args))
    yield db, served
    served.close()


def _raw(db, data: bytes) -> dict:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(socket_path(db)))
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return json.loads(sock.makefile("rb").readline())


def test_a_known_command_runs_and_its_refusal_comes_back_as_it_was(channel):
    db, _ = channel
    assert stat.S_IMODE(socket_path(db).stat().st_mode) == 0o600
    assert ask_server(db, "echo", {"text": "你好", "note": None}) == {"text": "你好", "note": None}
    assert ask_server(db, "tag", {"tags": ["a", "b"]}) == {"tags": ["a", "b"]}
    with pytest.raises(ServerRefused, match="bad text: say something else") as refused:
        ask_server(db, "echo", {"text": "bad", "note": None})
    assert (refused.value.error_type, refused.value.exit_code) == ("InputError", 2)
    with pytest.raises(ServerRefused, match="failed to run echo.*a bug") as failed:
        ask_server(db, "echo", {"text": "bug", "note": None})
    assert failed.value.exit_code == 1


@pytest.mark.parametrize(("request_line", "words"), [
    (b'{"command": "shell", "args": {"cmd": "rm -rf /"}}\n', "no command 'shell'"),
    (b'{"command": "echo", "args": {"text": "x"}}\n', "expected the arguments ['note', 'text']"),
    (b'{"command": "echo", "args": {"text": 7, "note": null}}\n', "argument text must be"),
    (b'{"command": "echo", "args": ["x"]}\n', "expected the arguments"),
    (b'{"command": "tag", "args": {"tags": ["a", {"b": 1}]}}\n', "argument tags must be"),
    (b"\x80\x04\x95pickle\n", "not UTF-8 JSON"),
    (b'{"command": "echo"', "send one JSON line"),
])
def test_anything_but_a_known_command_with_its_arguments_is_refused(channel, request_line, words):
    db, _ = channel
    reply = _raw(db, request_line)
    assert reply["ok"] is False and words in reply["error"] and reply["exit_code"] == 2


def test_without_a_listening_server_the_commands_work_on_the_file(tmp_path, channel):
    db, served = channel
    served.close()
    assert not socket_path(db).exists() and ask_server(db, "echo", {"text": "x", "note": None}) is None
    stale = socket.socket(socket.AF_UNIX)  # what a killed server leaves behind
    stale.bind(str(socket_path(db)))
    stale.close()
    assert ask_server(db, "echo", {"text": "x", "note": None}) is None


def test_a_store_deep_in_the_file_system_still_gets_its_socket(tmp_path):
    deep = tmp_path.joinpath(*["a-rather-long-directory-name"] * 4)
    deep.mkdir(parents=True)
    db = deep / "district.duckdb"
    assert len(str(socket_path(db))) > 108
    served = ControlChannel(db, {"echo": Command({"text": str, "note": str | None}, _echo)},
                            execute=lambda command, args: command(None, args))
    try:
        assert socket_path(db).exists()
        assert ask_server(db, "echo", {"text": "x", "note": "n"}) == {"text": "x", "note": "n"}
    finally:
        served.close()
    assert not socket_path(db).exists()


SERVE_IN_ANOTHER_PROCESS = """
import os, sys, time
from twin.store.control import Command, ControlChannel
channel = ControlChannel(sys.argv[1], {"who": Command({}, lambda con, args, step: {"pid": os.getpid()})},
                         execute=lambda command, args: command(None, args))
print("ready", flush=True)
sys.stdin.read()  # until the test closes our stdin
channel.close()
"""


def test_each_process_serving_a_postgres_store_has_its_own_socket_and_any_one_answers(tmp_path, monkeypatch):
    """Several processes serve one PostgreSQL store (`twin serve --workers`): each keeps its own socket, a command
    reaches one that is alive, and a killed one's socket is cleared away."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT
    from twin.store.control import server_sockets

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    db = "postgresql://twin@127.0.0.1:5432/district"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = socket.socket(socket.AF_UNIX)  # what a process killed with -9 leaves behind
    stale.bind(str(socket_path(db, pid=dead_pid)))
    stale.close()
    here = ControlChannel(db, {"who": Command({}, lambda con, args, step: {"pid": os.getpid()})},
                          execute=lambda command, args: command(None, args))
    other = subprocess.Popen([sys.executable, "-c", SERVE_IN_ANOTHER_PROCESS, db], cwd=ROOT, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert other.stdout.readline().strip() == "ready"
        assert sorted(server_sockets(db)) == sorted([socket_path(db), socket_path(db, pid=other.pid)])
        assert not socket_path(db, pid=dead_pid).exists(), "the dead process's socket is cleared away"
        assert ask_server(db, "who", {})["pid"] in (os.getpid(), other.pid)
        here.close()
        assert ask_server(db, "who", {}) == {"pid": other.pid}, "the other process answers when this one stops"
    finally:
        here.close()
        other.stdin.close()
        other.wait(timeout=30)
    assert server_sockets(db) == [] and ask_server(db, "who", {}) is None
