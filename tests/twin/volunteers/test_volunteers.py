"""The volunteer scheme's core on a real store, in both backends: accounts and their one-time codes, tasks
published, grabbed, checked in and out and confirmed, the points ledger, rewards redeemed at merchants, 小杜拍
reports reviewed, the figures; refusals that change nothing."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import store_fingerprint
from twin.access.access import Principal, add_user, check_credentials, verify_audit
from twin.access.policy import Gate
from twin.errors import AccessError, InputError
from twin.party.orgs import PARTY_MEMBER_TAG
from twin.store.clock import store_now
from twin.store.schema import SCHEMA_VERSION
from twin.store.store import Store, open_for_command
from twin.volunteers import ledger
from twin.volunteers.accounts import activate_account, add_merchant, create_resident_account
from twin.volunteers.figures import community_ranking, newest_completed, volunteer_table
from twin.volunteers.rewards import add_reward, check_code, merchant_overview, redeem, use_code
from twin.volunteers.tasks import CHECK_IN_RADIUS_M, check_on_site, confirm_task, grab_task, open_tasks, publish_task

PASSWORD = "volunteer-test-password-1"


def run(db, work):
    with open_for_command(db, create=False) as store:
        return work(store.con)


def resident(name: str) -> Principal:
    return Principal(name, "resident", (), source="10.0.1.1")


def make_scheme(db: str) -> dict:
    """A micro-grid with buildings, its worker, a worker elsewhere; three residents with accounts (one a party
    member, set up with their codes), two merchants with a reward each."""
    with open_for_command(db, create=False) as store:
        con = store.con
        micro, other = con.execute(
            "SELECT a.grid_id, b.grid_id FROM grids a JOIN grids b ON b.parent_id = a.parent_id AND b.grid_id > "
            "a.grid_id AND b.level = 'micro' AND b.valid_to IS NULL WHERE a.level = 'micro' AND a.valid_to IS NULL "
            "AND (SELECT count(*) FROM buildings WHERE grid_id = a.grid_id) >= 1 ORDER BY a.grid_id LIMIT 1"
        ).fetchone()
        x, y = con.execute("SELECT label_x, label_y FROM buildings WHERE grid_id = ? ORDER BY building_id LIMIT 1",
                           [micro]).fetchone()
        free = "resident_id NOT IN (SELECT resident_id FROM resident_accounts)"  # the demo's have accounts
        member = con.execute(f"SELECT resident_id FROM residents WHERE list_contains(tags, ?) AND {free} "
                             "ORDER BY resident_id LIMIT 1", [PARTY_MEMBER_TAG]).fetchone()[0]
        others = [r for r, in con.execute(f"SELECT resident_id FROM residents WHERE NOT list_contains(coalesce(tags, "
                                          f"[]), ?) AND {free} ORDER BY resident_id LIMIT 2",
                                          [PARTY_MEMBER_TAG]).fetchall()]
        add_user(con, "w1", PASSWORD, role="worker", grids=[micro], actor="test")
        add_user(con, "w3", PASSWORD, role="worker", grids=[other], actor="test")
        names = {}
        for name, rid in (("party", member), ("alice", others[0]), ("bob", others[1])):
            made = create_resident_account(con, rid, username=name, actor="op", source="10.0.0.1")
            activate_account(con, name, made["code"], PASSWORD)
            names[name] = rid
        shops = {m: add_merchant(con, f"t{m[-1]}", f"shop {m}", actor="op") for m in ("m1", "m2")}
        rewards = {m: add_reward(con, f"t{m[-1]}", f"tea at {m}", points=10, stock=2, actor="op")["reward_id"]
                   for m in ("m1", "m2")}
    return {"db": db, "micro": micro, "other": other, "x": x, "y": y, "residents": names, "shops": shops,
            "rewards": rewards, "w1": Principal("w1", "worker", (micro,), source="10.0.0.7"),
            "w3": Principal("w3", "worker", (other,), source="10.0.0.9")}


@pytest.fixture
def scheme(demo_copy_db) -> dict:
    return make_scheme(demo_copy_db)


def publish(s, *, places=2, points=10, eligibility="anyone", who="w1", dx=0.0):
    def work(con):
        now = store_now(con)
        return publish_task(Gate(con, s[who]), title="扫楼道", place="3号楼", x=s["x"] + dx, y=s["y"],
                            starts_at=now - pd.Timedelta(minutes=10), ends_at=now + pd.Timedelta(hours=2),
                            places=places, points=points, eligibility=eligibility)
    return run(s["db"], work)["task_id"]


def test_a_task_grabbed_checked_in_and_out_and_confirmed_credits_its_points_once(scheme):
    s, db = scheme, scheme["db"]
    task = publish(s, places=2, points=12)
    alice = resident("alice")
    assert run(db, lambda con: grab_task(con, alice, task)) == {"task_id": task, "place_no": 1, "places_left": 1}
    listed = run(db, lambda con: open_tasks(con, alice))
    mine = next(t for t in listed if t["task_id"] == task)
    assert mine["mine"] and mine["places_left"] == 1 and mine["distance_m"] is not None
    run(db, lambda con: check_on_site(con, alice, task, x=s["x"] + 50, y=s["y"]))
    with pytest.raises(InputError, match="not checked out"):
        run(db, lambda con: confirm_task(Gate(con, s["w1"]), task, 1))
    run(db, lambda con: check_on_site(con, alice, task, x=s["x"], y=s["y"] + 30, out=True))
    with pytest.raises(AccessError):  # a worker of another micro-grid
        run(db, lambda con: confirm_task(Gate(con, s["w3"]), task, 1))
    done = run(db, lambda con: confirm_task(Gate(con, s["w1"]), task, 1))
    assert done["points"] == 12 and done["balance"] == 12
    with pytest.raises(InputError, match="confirmed already"):
        run(db, lambda con: confirm_task(Gate(con, s["w1"]), task, 1))
    with Store(db, read_only=True) as store:
        con = store.con
        assert ledger.balance(con, s["residents"]["alice"]) == 12
        assert ledger.verify_ledger(con) is None and verify_audit(con) is None
        actions = [a for a, in con.execute("SELECT action FROM audit WHERE action LIKE 'volunteer.%' OR action LIKE "
                                           "'points.%' ORDER BY seq").fetchall()]
        assert actions[-6:] == ["volunteer.publish", "volunteer.grab", "volunteer.checkin", "volunteer.checkout",
                                "volunteer.confirm", "points.credit"]
        assert volunteer_table(con, level="micro", month=pd.Period(store_now(con), "M")).set_index("grid_id").loc[
            s["micro"], "points"] == 12
        assert newest_completed(con, limit=1)[0]["task_id"] == task
        assert community_ranking(con, month=pd.Period(store_now(con), "M"))["rank"].iloc[0] == 1


def test_bad_grabs_and_check_ins_are_refused_and_change_nothing(scheme):
    s, db = scheme, scheme["db"]
    task = publish(s, places=1)
    party_only = publish(s, places=5, eligibility="party")
    run(db, lambda con: grab_task(con, resident("alice"), task))
    before = store_fingerprint(db)
    refusals = [
        (lambda con: grab_task(con, resident("bob"), task), "full"),
        (lambda con: grab_task(con, resident("alice"), task), "already"),
        (lambda con: grab_task(con, resident("bob"), party_only), "party members only"),
        (lambda con: check_on_site(con, resident("alice"), task, x=s["x"] + CHECK_IN_RADIUS_M + 5, y=s["y"]),
         "within 200 m"),
        (lambda con: check_on_site(con, resident("alice"), task, x=s["x"], y=s["y"], out=True), "before checking out"),
        (lambda con: check_on_site(con, resident("bob"), task, x=s["x"], y=s["y"]), "grab it first"),
        (lambda con: grab_task(con, s["w1"], task), "no resident's account"),
    ]
    for work, message in refusals:
        with pytest.raises((InputError, AccessError), match=message):
            run(db, work)
    assert store_fingerprint(db) == before
    assert run(db, lambda con: grab_task(con, resident("party"), party_only))["place_no"] == 1


def test_publishing_needs_a_worker_of_the_place_and_a_sane_task(scheme):
    s, db = scheme, scheme["db"]
    before = store_fingerprint(db)
    for kw, error in ((dict(who="w3"), AccessError), (dict(places=0), InputError), (dict(points=-3), InputError),
                      (dict(eligibility="everyone"), Exception)):
        with pytest.raises(error):
            publish(s, **kw)
    with pytest.raises(AccessError):
        run(db, lambda con: publish_task(Gate(con, resident("alice")), title="x", place="y", x=s["x"], y=s["y"],
                                         starts_at=pd.Timestamp("2030-01-01"), ends_at=pd.Timestamp("2030-01-02"),
                                         places=1, points=1))
    assert store_fingerprint(db) == before


def test_rewards_are_redeemed_with_codes_their_own_merchant_takes_once(scheme):
    s, db = scheme, scheme["db"]
    alice = resident("alice")
    before = store_fingerprint(db)
    with pytest.raises(ledger.NotEnoughPoints):  # no points yet
        run(db, lambda con: redeem(con, alice, s["rewards"]["m1"]))
    assert store_fingerprint(db) == before
    task = publish(s, places=1, points=25)
    run(db, lambda con: grab_task(con, alice, task))
    run(db, lambda con: check_on_site(con, alice, task, x=s["x"], y=s["y"]))
    run(db, lambda con: check_on_site(con, alice, task, x=s["x"], y=s["y"], out=True))
    run(db, lambda con: confirm_task(Gate(con, s["w1"]), task, 1))
    got = run(db, lambda con: redeem(con, alice, s["rewards"]["m1"]))
    assert got["balance"] == 15 and len(got["code"]) == 8
    m1, m2 = (Principal(s["shops"][m]["username"], "merchant") for m in ("m1", "m2"))
    with pytest.raises(AccessError, match="another merchant"):
        run(db, lambda con: use_code(con, m2, got["code"]))
    assert run(db, lambda con: check_code(con, m1, got["code"]))["used_at"] is None
    assert run(db, lambda con: use_code(con, m1, got["code"]))["points"] == 10
    with pytest.raises(InputError, match="taken already"):
        run(db, lambda con: use_code(con, m1, got["code"]))
    run(db, lambda con: redeem(con, alice, s["rewards"]["m1"]))  # the second of a stock of two
    with pytest.raises(InputError, match="all gone"):
        run(db, lambda con: redeem(con, alice, s["rewards"]["m1"]))
    with pytest.raises(ledger.NotEnoughPoints):  # 5 left, 10 asked
        run(db, lambda con: redeem(con, alice, s["rewards"]["m2"]))
    page = run(db, lambda con: merchant_overview(con, m1))
    assert [r["code"] for r in page["redemptions"]] == [got["code"]] and page["outstanding"] == 1
    assert page["rewards"][0]["left"] == 0
    assert run(db, lambda con: merchant_overview(con, m2))["redemptions"] == []
    with Store(db, read_only=True) as store:
        assert ledger.balance(store.con, s["residents"]["alice"]) == 5
        assert ledger.verify_ledger(store.con) is None and verify_audit(store.con) is None


def test_a_residents_account_is_set_up_once_with_its_code(scheme):
    db = scheme["db"]
    with Store(db, read_only=True) as store:
        rid = store.con.execute("SELECT resident_id FROM residents WHERE resident_id NOT IN (SELECT resident_id "
                                "FROM resident_accounts) ORDER BY resident_id LIMIT 1").fetchone()[0]
    made = run(db, lambda con: create_resident_account(con, rid, actor="op"))
    assert made["new"] and made["username"] == f"r{rid.lower()}"
    with pytest.raises(InputError, match="wrong account or code"):
        run(db, lambda con: activate_account(con, made["username"], "WRONGCODE9", PASSWORD))
    with pytest.raises(InputError, match="too weak"):
        run(db, lambda con: activate_account(con, made["username"], made["code"], "short"))
    run(db, lambda con: activate_account(con, made["username"], made["code"].lower(), PASSWORD))
    with pytest.raises(InputError, match="wrong account or code"):  # once only
        run(db, lambda con: activate_account(con, made["username"], made["code"], PASSWORD + "x"))
    with Store(db, read_only=True) as store:
        user, _ = check_credentials(store.con, made["username"], PASSWORD)
        assert user["role"] == "resident"
    with pytest.raises(InputError, match="no resident"):
        run(db, lambda con: create_resident_account(con, "R-nobody", actor="op"))
    with pytest.raises(InputError, match="comes with their account"):
        run(db, lambda con: add_user(con, "someone", PASSWORD, role="resident", actor="op"))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(-60, 60).filter(bool)),
                      min_size=1, max_size=25))
def test_the_ledger_never_goes_negative_and_its_chain_verifies(ledger_store, steps):
    """For any sequence of credits and spends: each spend over the balance is refused and writes nothing, every
    balance is the sum of the accepted amounts, never negative, and the chain verifies."""
    ledger_store["n"] += 1
    tag = f"p{ledger_store['n']}-"
    expected: dict[str, int] = {}
    with open_for_command(ledger_store["db"], create=False) as store:
        con = store.con
        for who, amount in steps:
            rid = tag + who
            if expected.get(rid, 0) + amount < 0:
                with pytest.raises(ledger.NotEnoughPoints):
                    ledger.append(con, resident_id=rid, amount=amount, reason="redeem", ref=None, actor="t")
                continue
            row = ledger.append(con, resident_id=rid, amount=amount, reason="task" if amount > 0 else "redeem",
                                ref=None, actor="t")
            expected[rid] = expected.get(rid, 0) + amount
            assert row["balance"] == expected[rid] >= 0
        for rid, total in expected.items():
            assert ledger.balance(con, rid) == total
        assert ledger.verify_ledger(con) is None


@pytest.fixture
def ledger_store(new_store_db) -> dict:
    with open_for_command(new_store_db):
        pass
    return {"db": new_store_db, "n": 0}


def test_the_ledger_chain_finds_a_row_changed_behind_its_back(tmp_path):
    db = tmp_path / "s.duckdb"
    with open_for_command(db) as store:
        for amount in (10, -4, 7):
            ledger.append(store.con, resident_id="R1", amount=amount, reason="task" if amount > 0 else "redeem",
                          ref=None, actor="t")
    with Store(db) as store:
        assert ledger.verify_ledger(store.con) is None
        store.con.execute("UPDATE points_ledger SET amount = 40 WHERE seq = 1")
        assert ledger.verify_ledger(store.con) == 1
        store.con.execute("UPDATE points_ledger SET amount = 10 WHERE seq = 1")
        store.con.execute("DELETE FROM points_ledger WHERE seq = 2")
        assert ledger.verify_ledger(store.con) == 3


VOLUNTEER_TABLES = ("volunteer_tasks", "volunteer_grabs", "points_ledger", "merchants", "rewards", "redemptions",
                    "resident_accounts", "volunteer_reports")


def test_a_store_at_schema_14_is_upgraded_in_place_with_the_volunteer_tables(new_store_db):
    from twin.store.store import has_table

    with open_for_command(new_store_db) as store:
        store.set_meta(marker="kept")
    with Store(new_store_db) as store:
        for table in VOLUNTEER_TABLES:
            store.con.execute(f"DROP TABLE {table}")
        store.con.execute("UPDATE meta SET value = '14' WHERE key = 'schema_version'")
    with pytest.raises(Exception, match=f"older than this program's {SCHEMA_VERSION}"):  # read-only: told how to upgrade
        Store(new_store_db, read_only=True)
    with Store(new_store_db) as store:
        assert store.meta()["schema_version"] == str(SCHEMA_VERSION) and store.meta()["marker"] == "kept"
        assert all(has_table(store.con, t) for t in VOLUNTEER_TABLES)
        ledger.append(store.con, resident_id="R1", amount=3, reason="task", ref=None, actor="t")
        assert ledger.verify_ledger(store.con) is None
