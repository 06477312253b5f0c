"""Users with slow salted hashes, sign-in as `twin serve` runs it, masks that keep personal numbers hidden,
and an audit chain that shows edits."""

from __future__ import annotations

import html
import json
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.browser import served
from data.build import demo_user_names
from scenes.i18n import translations
from tests.scenes.test_server import fetch
from tests.test_cli import twin
from twin.access.access import (
    SIGNIN_REFUSED,
    add_user,
    audit,
    disable_user,
    hash_password,
    mask_id_number,
    mask_phone,
    verify_audit,
    verify_password,
)
from twin.errors import InputError, OptionError
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


def test_users_are_bound_to_known_roles_and_operators_to_grids(demo_copy_db):
    with open_for_command(demo_copy_db, create=False) as store:
        with pytest.raises(InputError, match="bound to grids"):
            add_user(store.con, "li.lei", "a long passphrase", role="operator")
        with pytest.raises(OptionError, match="role"):
            add_user(store.con, "li.lei", "a long passphrase", role="mayor")
        with pytest.raises(InputError, match="no grid 'G-nope'"):
            add_user(store.con, "li.lei", "a long passphrase", role="planner", grids=["G-nope"])


def sign_in_form(root: str, username: str, password: str) -> tuple[int, str, str | None]:
    """POST the login form as a browser does: the status, where it redirects, and the signed user cookie."""
    status, headers, _ = fetch(f"{root}/login", {"username": username, "password": password})
    cookies = [c.split(";")[0] for c in headers.get_all("Set-Cookie") or [] if c.startswith("user=")]
    return status, headers.get("Location", ""), cookies[0] if cookies else None


def test_sign_in_over_http_lets_in_the_right_password_only_and_audits_every_attempt(demo_copy):
    """What `twin serve`'s login form runs (scenes/auth.py's SignIns, twin.access.access.check_credentials):
    the right password of an enabled user gets a cookie that opens the app; a wrong password, an unknown
    name and a disabled user all get the same refusal and no cookie; each attempt is audited with its address."""
    with open_for_command(demo_copy, create=False) as store:
        grid, = store.con.execute("SELECT grid_id FROM grids WHERE level = 'grid' ORDER BY grid_id LIMIT 1").fetchone()
        add_user(store.con, "wang.fang", "a long passphrase", role="operator", grids=[grid])
        add_user(store.con, "li.lei", "another passphrase", role="planner")
        disable_user(store.con, "li.lei")
        first, = store.con.execute("SELECT max(seq) + 1 FROM audit").fetchone()
    with served(demo_copy) as url:
        root = url.rsplit("/", 1)[0]
        status, location, cookie = sign_in_form(root, "wang.fang", "a long passphrase")
        assert status == 302 and cookie and "login" not in location
        assert fetch(url, cookies=cookie)[0] == 200, "the signed cookie opens the app"
        assert fetch(url)[0] == 302, "without it, the app sends to the login form"
        for username, password in (("wang.fang", "a long passphrasE"), ("nobody", "a long passphrase"),
                                   ("li.lei", "another passphrase")):
            status, location, cookie = sign_in_form(root, username, password)
            assert status == 302 and cookie is None, f"{username} is not let in"
            shown = fetch(urllib.parse.urljoin(f"{root}/login", location))[2]
            refused = translations("zh").gettext(SIGNIN_REFUSED)  # the login page speaks the default, Chinese
            assert refused in html.unescape(shown), "the form says why, without telling which part was wrong"
    with Store(demo_copy, read_only=True) as store:
        rows = store.con.execute("SELECT actor, action, source, detail FROM audit WHERE seq >= ? "
                                 "AND action LIKE 'signin%' ORDER BY seq", [first]).fetchall()
        assert verify_audit(store.con) is None
    assert [(a, act, src, json.loads(d) if d else None) for a, act, src, d in rows] == [
        ("wang.fang", "signin", "127.0.0.1", None),
        ("wang.fang", "signin.failed", "127.0.0.1", {"reason": "wrong name or password"}),
        ("nobody", "signin.failed", "127.0.0.1", {"reason": "wrong name or password"}),
        ("li.lei", "signin.failed", "127.0.0.1", {"reason": "disabled"}),
    ]


def test_the_audit_chain_finds_an_edited_or_removed_row(demo_copy_db):
    with open_for_command(demo_copy_db, create=False) as store:
        seqs = [audit(store.con, actor="op", action="resident.view", target=f"R{k}", source="10.0.0.7")
                for k in range(5)]
        assert verify_audit(store.con) is None
    with Store(demo_copy_db) as store:  # someone edits the file behind the product's back
        store.con.execute("UPDATE audit SET target = 'R9' WHERE seq = ?", [seqs[2]])
        assert verify_audit(store.con) == seqs[2]
        store.con.execute("UPDATE audit SET target = 'R2' WHERE seq = ?", [seqs[2]])
        store.con.execute("DELETE FROM audit WHERE seq = ?", [seqs[3]])
        assert verify_audit(store.con) == seqs[4]
    done = twin("audit", "verify", "--db", str(demo_copy_db))
    assert done.returncode == 2 and f"broken at row {seqs[4]}" in done.stderr


def test_users_from_the_command_line(demo_copy_db):
    import subprocess
    import sys

    from tests.conftest import ROOT

    def run(*args, stdin=""):
        return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args, "--db", str(demo_copy_db)], input=stdin,
                              capture_output=True, text=True, cwd=ROOT, timeout=120)

    added = run("users", "add", "zhao.min", "--role", "planner", "--password-stdin", stdin="long enough pw\n")
    assert added.returncode == 0, added.stderr
    short = run("users", "add", "qian", "--role", "leader", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "at least 10" in short.stderr
    listed = run("users", "list", "--json")
    users = {u["username"]: u for u in __import__("json").loads(listed.stdout)["users"]}
    desk = {name for name, u in users.items() if u["role"] not in ("resident", "merchant")}  # and the volunteers'
    assert users["zhao.min"]["role"] == "planner" and desk == {"zhao.min", *demo_user_names()}
    assert "password" not in listed.stdout and "scrypt" not in listed.stdout
    assert run("audit", "verify", "--json").returncode == 0
