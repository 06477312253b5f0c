"""The admin's commands and reads in twin/access: password rules, binding roles to grids, the keys' use, and the
audit trail's days, kinds and audited export."""

from __future__ import annotations

import datetime
import json

import pandas as pd
import pytest

from twin.access.access import (MIN_PASSWORD, PASSWORD_RULES, Principal, WeakPassword, add_user, generate_password,
                                password_rule_broken, set_grants, verify_audit)
from twin.access.commands import access_commands
from twin.access.keys import KeyUse, add_key, list_keys, record_key_use, revoke_key
from twin.access.policy import AUDIT_KINDS, Gate
from twin.errors import AccessError, InputError
from twin.store.clock import store_now, store_timezone
from twin.store.store import open_for_command


@pytest.mark.parametrize("password, rule", [("short", "length"), ("x" * (MIN_PASSWORD - 1), "length"),
                                            ("my-li.lei-password", "name"), ("MY-LI.LEI-PASSWORD", "name"),
                                            ("abababababab", "variety"), ("a good long passphrase", None)])
def test_a_weak_password_is_refused_with_the_rule_it_breaks(demo_copy, password, rule):
    assert password_rule_broken(password, username="li.lei") == rule
    assert password_rule_broken("li li li li li 42", username="li") is None, "a two-letter name is no rule"
    with open_for_command(demo_copy, create=False) as store:
        if rule is None:
            add_user(store.con, "li.lei", password, role="leader")
            return
        with pytest.raises(WeakPassword, match="the rule it breaks") as refused:
            add_user(store.con, "li.lei", password, role="leader")
    assert refused.value.rule == rule and rule in PASSWORD_RULES


def test_generated_passwords_keep_every_rule():
    assert all(password_rule_broken(generate_password(name), username=name) is None
               for name in ("a", "ab", "abc", "li.lei") for _ in range(50))


def test_a_role_is_bound_to_grids_audited_with_before_and_after(demo_copy):
    with open_for_command(demo_copy, create=False) as store:
        con = store.con
        community, micro = (con.execute(f"SELECT grid_id FROM grids WHERE level = '{level}' AND valid_to IS NULL "
                                        "ORDER BY grid_id LIMIT 1").fetchone()[0] for level in ("community", "micro"))
        add_user(con, "wang.fang", "a long passphrase", role="leader", grids=[community])
        with pytest.raises(InputError, match="bound to grids"):
            set_grants(con, "wang.fang", role="operator", grids=[])
        with pytest.raises(InputError, match="no grid 'G-nope'"):
            set_grants(con, "wang.fang", role="operator", grids=["G-nope"])
        with pytest.raises(InputError, match="no user"):
            set_grants(con, "nobody", role="leader", grids=[])
        set_grants(con, "wang.fang", role="operator", grids=[micro, micro], actor="boss", source="10.0.0.1")
        assert con.execute("SELECT role, grids FROM users WHERE username = 'wang.fang'").fetchone() == (
            "operator", [micro])
        actor, source, detail = con.execute("SELECT actor, source, detail FROM audit WHERE action = 'user.grants'"
                                            ).fetchone()
        assert (actor, source) == ("boss", "10.0.0.1") and json.loads(detail) == {
            "role": "operator", "grids": [micro], "role_before": "leader", "grids_before": [community]}


def test_the_keys_list_says_when_each_was_last_used_and_how_often_today(demo_copy_db):
    """On both backends: the day's count is an upsert (INSERT ... ON CONFLICT DO UPDATE), which DuckDB runs
    itself on a file and hands to PostgreSQL on an attached store."""
    with open_for_command(demo_copy_db, create=False) as store:
        con = store.con
        add_key(con, "field-app", actor="boss", source="cli")
        add_key(con, "spare")
        revoke_key(con, "spare", actor="boss")
        use = KeyUse(store_timezone(con))
        for client in ("field-app", "field-app", None, "field-app"):
            use.note(client)
        assert record_key_use(con, use.take()) == 1 and use.take() == []
        use.note("field-app")
        record_key_use(con, use.take())  # a second flush adds to the day's count
        yesterday = store_now(con).date() - datetime.timedelta(days=1)
        record_key_use(con, [("field-app", yesterday, 7, pd.Timestamp(yesterday))])
        keys = {k["name"]: k for k in list_keys(con)}
        assert keys["field-app"]["requests_today"] == 4 and keys["field-app"]["revoked_at"] is None
        assert pd.Timestamp(keys["field-app"]["last_used"]).date() == store_now(con).date()
        assert keys["spare"]["revoked_at"] is not None and keys["spare"]["last_used"] is None
        assert [tuple(r) for r in con.execute("SELECT action, target, actor FROM audit WHERE action LIKE 'key.%' "
                                              "ORDER BY seq DESC LIMIT 3").fetchall()] == [
            ("key.revoke", "spare", "boss"), ("key.add", "spare", "admin"), ("key.add", "field-app", "boss")]


def test_the_trail_keeps_whole_days_refused_access_as_its_kind_and_audits_its_export(demo_copy):
    with open_for_command(demo_copy, create=False) as store:
        con = store.con
        leader = Gate(con, Principal("l.eader", "leader", source="10.0.0.2"))
        resident, = con.execute("SELECT resident_id FROM residents LIMIT 1").fetchone()
        with pytest.raises(AccessError):
            leader.unmask(resident, reason="just looking")
        admin = Gate(con, Principal("boss", "admin", source="10.0.0.1"))
        today = store_now(con).date()
        assert admin.audit_trail(until=today - datetime.timedelta(days=1)).empty
        whole_day = admin.audit_trail(since=today, until=today)
        assert len(whole_day) == len(admin.audit_trail()), "until a day keeps all of that day"
        refused = admin.audit_trail(kind="refused")
        assert list(refused["action"]) == ["access.refused"] and refused["actor"].iloc[0] == "l.eader"
        assert set(admin.audit_trail(kind="change")["action"]).isdisjoint(a for k in AUDIT_KINDS.values() for a in k)
        with pytest.raises(InputError, match="audit kind"):
            admin.audit_trail(kind="everything")
        exported = admin.export_audit(kind="refused", since=today)
        assert len(exported) == 1
        seq, actor, detail = con.execute("SELECT seq, actor, detail FROM audit WHERE action = 'audit.export'"
                                         ).fetchone()
        assert actor == "boss" and json.loads(detail) == {"kind": "refused", "since": str(today), "rows": 1}
        assert admin.record_names([resident]) == {}, "residents are named by their ids alone"
        assert verify_audit(con) is None


def test_only_an_admin_runs_the_commands_on_users_and_keys(demo_copy):
    with open_for_command(demo_copy, create=False) as store:
        con = store.con
        with pytest.raises(AccessError, match="users and keys"):
            Gate(con, Principal("p", "planner")).command("users.disable", {"name": "leader"})
        args = Gate(con, Principal("boss", "admin", source="10.0.0.1")).command("users.disable", {"name": "leader"})
        command = access_commands()["users.disable"]
        assert command(con, command.check("users.disable", args)) == {"username": "leader", "disable": True}
        assert con.execute("SELECT actor, source FROM audit ORDER BY seq DESC LIMIT 1").fetchone() == (
            "boss", "10.0.0.1")
        assert con.execute("SELECT action FROM audit WHERE action = 'access.refused'").fetchall()


def test_counts_given_back_after_a_failed_write_are_written_with_the_next():
    """The server gives the keys' counts back when the store could not be reached, so the next flush has them."""
    from zoneinfo import ZoneInfo

    from twin.store.schema import DEFAULT_TIMEZONE

    use = KeyUse(ZoneInfo(DEFAULT_TIMEZONE))
    for _ in range(3):
        use.note("field-app")
    taken = use.take()
    use.note("field-app")
    use.give_back(taken)  # the write of ``taken`` failed
    (name, day, count, last), = use.take()
    assert (name, count) == ("field-app", 4) and last >= taken[0][3]
