"""Users with slow salted hashes, masks that keep personal numbers hidden, and an audit chain that shows edits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data.build import DEMO_ROLES
from tests.test_cli import twin
from twin.access.access import (
    add_user,
    audit,
    authenticate,
    disable_user,
    hash_password,
    mask_id_number,
    mask_phone,
    verify_audit,
    verify_password,
)
from twin.errors import AccessError, InputError, OptionError
from twin.store.store import Store, open_for_command


def test_passwords_are_salted_and_checked():
    a, b = hash_password("correct horse battery"), hash_password("correct horse battery")
    assert a != b and a.startswith("scrypt$")
    assert verify_password("correct horse battery", a) and not verify_password("correct horse batterY", a)
    assert not verify_password("anything", "md5$nonsense")


@settings(max_examples=200)
@given(st.text(alphabet="0123456789X", min_size=11, max_size=18), st.text(alphabet="0123456789", min_size=8,
                                                                          max_size=11))
def test_masks_hide_the_middle_and_keep_the_length(id_number, phone):
    masked_id, masked_phone = mask_id_number(id_number), mask_phone(phone)
    assert len(masked_id) == len(id_number) and len(masked_phone) == len(phone)
    assert masked_id[6:-4] == "*" * (len(id_number) - 10) and masked_phone[3:-4] == "*" * (len(phone) - 7)
    assert mask_id_number("410105199001011234") == "410105********1234" and mask_phone("13812345678") == "138****5678"


def test_users_sign_in_and_every_attempt_is_audited(demo_copy):
    with open_for_command(demo_copy, create=False) as store:
        grid, = store.con.execute("SELECT grid_id FROM grids WHERE level = 'grid' LIMIT 1").fetchone()
        first, = store.con.execute("SELECT max(seq) + 1 FROM audit").fetchone()  # after the demo's own users
        add_user(store.con, "wang.fang", "a long passphrase", role="operator", grids=[grid])
        with pytest.raises(InputError, match="bound to grids"):
            add_user(store.con, "li.lei", "a long passphrase", role="operator")
        with pytest.raises(OptionError, match="role"):
            add_user(store.con, "li.lei", "a long passphrase", role="mayor")
        assert authenticate(store.con, "wang.fang", "a long passphrase", source="10.0.0.7")["grids"] == [grid]
        with pytest.raises(AccessError):
            authenticate(store.con, "wang.fang", "wrong", source="10.0.0.7")
        with pytest.raises(AccessError):
            authenticate(store.con, "nobody", "a long passphrase")
        disable_user(store.con, "wang.fang")
        with pytest.raises(AccessError):
            authenticate(store.con, "wang.fang", "a long passphrase")
        actions = [r[0] for r in store.con.execute("SELECT action FROM audit WHERE seq >= ? ORDER BY seq",
                                                   [first]).fetchall()]
    assert actions == ["user.add", "signin", "signin.failed", "signin.failed", "user.disable", "signin.failed"]


def test_the_audit_chain_finds_an_edited_or_removed_row(demo_copy):
    with open_for_command(demo_copy, create=False) as store:
        seqs = [audit(store.con, actor="op", action="resident.view", target=f"R{k}", source="10.0.0.7")
                for k in range(5)]
        assert verify_audit(store.con) is None
    with Store(demo_copy) as store:  # someone edits the file behind the product's back
        store.con.execute("UPDATE audit SET target = 'R9' WHERE seq = ?", [seqs[2]])
        assert verify_audit(store.con) == seqs[2]
        store.con.execute("UPDATE audit SET target = 'R2' WHERE seq = ?", [seqs[2]])
        store.con.execute("DELETE FROM audit WHERE seq = ?", [seqs[3]])
        assert verify_audit(store.con) == seqs[4]
    done = twin("audit", "verify", "--db", str(demo_copy))
    assert done.returncode == 2 and f"broken at row {seqs[4]}" in done.stderr


def test_users_from_the_command_line(demo_copy):
    import subprocess
    import sys

    from tests.conftest import ROOT

    def run(*args, stdin=""):
        return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args, "--db", str(demo_copy)], input=stdin,
                              capture_output=True, text=True, cwd=ROOT, timeout=120)

    added = run("users", "add", "zhao.min", "--role", "planner", "--password-stdin", stdin="long enough pw\n")
    assert added.returncode == 0, added.stderr
    short = run("users", "add", "qian", "--role", "leader", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "at least 10" in short.stderr
    listed = run("users", "list", "--json")
    users = {u["username"]: u for u in __import__("json").loads(listed.stdout)["users"]}
    assert users["zhao.min"]["role"] == "planner" and set(users) == {"zhao.min", *DEMO_ROLES}
    assert "password" not in listed.stdout and "scrypt" not in listed.stdout
    assert run("audit", "verify", "--json").returncode == 0
