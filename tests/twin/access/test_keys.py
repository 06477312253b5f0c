"""Intake API keys: made once, stored hashed, revocable; and the CLI that prints them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from twin.errors import InputError
from twin.access.keys import add_key, client_for, revoke_key
from twin.store.store import Store, open_for_command


def test_a_key_identifies_its_client_until_revoked(tmp_path):
    db = tmp_path / "s.duckdb"
    with open_for_command(db) as store:
        key = add_key(store.con, "citizen-app")
        assert client_for(store.con, key) == "citizen-app"
        assert client_for(store.con, key + "x") is None and client_for(store.con, None) is None
        assert key not in str(store.con.execute("SELECT * FROM api_keys").fetchall())  # only the hash is kept
        with pytest.raises(InputError, match="already a key"):
            add_key(store.con, "citizen-app")
        revoke_key(store.con, "citizen-app")
        assert client_for(store.con, key) is None
    with pytest.raises(InputError, match="letters, digits"), open_for_command(db) as store:
        add_key(store.con, "'; DROP TABLE api_keys; --")
    with Store(db, read_only=True) as store:
        assert store.count("api_keys") == 1


def test_twin_keys_add_prints_the_key_once(tmp_path):
    db = tmp_path / "s.duckdb"
    with open_for_command(db):
        pass
    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "keys", "add", "detector-1", "--db", str(db), "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["name"] == "detector-1" and len(out["api_key"]) >= 40
    with Store(db, read_only=True) as store:
        assert client_for(store.con, out["api_key"]) == "detector-1"
