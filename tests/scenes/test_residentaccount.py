"""The building card's volunteer account block without a browser, on both backends: an operator picks a listed
resident, presses, and the account is in the store with a code that activates it; a second press gives a new code;
the card shows refusals and the store is left as it was."""

from __future__ import annotations

import threading

import pytest

from scenes.inspector import Inspector
from tests.twin.access.test_policy import two_grids
from twin.access.access import Principal, check_credentials
from twin.access.policy import Gate
from twin.cases.live import CaseFeed, IntakeWriter, Written
from twin.errors import AccessError, InputError
from twin.store.store import Store
from twin.volunteers.accounts import activate_account, issue_resident_account

PASSWORD = "a resident's new password 1"


def counts(con) -> tuple:
    """What a refused account would have written: users, accounts, audit rows."""
    return con.execute("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM resident_accounts), "
                       "(SELECT count(*) FROM audit)").fetchone()


@pytest.fixture
def served_store(demo_copy_db):
    """The store with its writer, as ``twin serve`` holds it."""
    with Store(demo_copy_db) as store:
        writer = IntakeWriter(store.con, CaseFeed(), dedupe_window_s=60)
        try:
            yield store, writer
        finally:
            writer.close()


def inspector_for(store, writer, principal: Principal) -> Inspector:
    """The operator's inspector (residents listed, actions on) with its audit rows going through the writer."""
    gate = Gate(store.con.cursor(), principal, audit_sink=lambda **row: writer.audit(**row).result(timeout=10))
    return Inspector(gate, writer=writer, show_residents=True, can_act=True)


def test_an_operator_opens_a_listed_residents_account_and_its_code_sets_the_password(served_store):
    store, writer = served_store
    con = store.con.cursor()
    grid_a, building_a, _, _ = two_grids(con)
    operator = Principal("op.a", "operator", (grid_a,), source="10.2.2.2")
    inspector = inspector_for(store, writer, operator)
    inspector.building_id = building_a
    block = inspector.volunteer_account
    assert block.layout.visible and block.resident_id == "" and block.button.disabled
    listed = [r for r in block.param.resident_id.objects.values() if r]
    assert listed == list(inspector.resident_rows["resident_id"])
    rid = next(r for r in listed if not con.execute("SELECT 1 FROM resident_accounts WHERE resident_id = ?",
                                                      [r]).fetchone())

    block.pick.value = rid  # the operator picks them in the list
    assert block.known and block.account is None and "No volunteer account yet" in block.state.object
    assert not block.button.disabled and block.button.label == "Open a volunteer account"
    block.button.clicks += 1
    made = block.issued
    assert made["new"] and made["resident_id"] == rid and not block.error
    shown = block.shown.object
    assert made["username"] in shown and made["code"] in shown and "/v/activate" in shown and "7 days" in shown
    username, created_by = con.execute("SELECT username, created_by FROM resident_accounts WHERE resident_id = ?",
                                       [rid]).fetchone()
    assert (username, created_by) == (made["username"], "op.a")
    assert con.execute("SELECT actor, source FROM audit WHERE action = 'volunteer.account' AND target = ?",
                       [username]).fetchall() == [("op.a", "10.2.2.2")]
    activate_account(con, username, made["code"], PASSWORD)
    assert check_credentials(con, username, PASSWORD)[0]["role"] == "resident"

    # Picked again: they have an account; pressing gives a new code, which works, and says so.
    block.pick.value = ""
    assert block.issued is None and made["code"] not in block.shown.object  # shown once
    block.pick.value = rid
    assert block.account["username"] == username and block.account["activated"]
    assert block.button.label == "Issue a new one-time code"
    block.button.clicks += 1
    again = block.issued
    assert not again["new"] and again["code"] != made["code"] and "already had an account" in block.shown.object
    activate_account(con, username, again["code"], PASSWORD + "x")
    assert check_credentials(con, username, PASSWORD + "x")[0]["username"] == username

    # Another building: the block starts afresh, nothing of the code left on the card.
    inspector.building_id = con.execute("SELECT building_id FROM residents r JOIN buildings b USING (building_id) "
                                        "WHERE b.grid_id IN (SELECT grid_id FROM grids WHERE parent_id = ?) "
                                        "AND building_id <> ? LIMIT 1", [grid_a, building_a]).fetchone()[0]
    assert block.issued is None and block.resident_id == "" and again["code"] not in block.shown.object


def test_refusals_are_shown_on_the_card_and_change_nothing_but_the_audit(served_store):
    store, writer = served_store
    con = store.con.cursor()
    grid_a, building_a, grid_b, _ = two_grids(con)
    inspector = inspector_for(store, writer, Principal("op.a", "operator", (grid_a,), source="10.2.2.2"))
    inspector.building_id = building_a
    block = inspector.volunteer_account
    rid = [r for r in block.param.resident_id.objects.values() if r][0]
    block.pick.value = rid
    # The resident moved out meanwhile: the core's error, in the card, and nothing written.
    con.execute("UPDATE residents SET resident_id = 'R-gone' WHERE resident_id = ?", [rid])
    before = counts(con)
    block.button.clicks += 1
    assert block.issued is None and "no resident" in block.shown.object and rid in block.shown.object
    assert counts(con) == before

    # An operator of another grid, and a leader, are refused by the gate (and the refusal audited).
    resident_a, = con.execute("SELECT resident_id FROM residents WHERE building_id = ? LIMIT 1",
                              [building_a]).fetchone()
    for principal, why in ((Principal("op.b", "operator", (grid_b,), source="10.3.3.3"), "outside op.b's grids"),
                           (Principal("lead", "leader", (), source="10.4.4.4"), "may not see resident records")):
        with pytest.raises(AccessError, match=why):
            issue_resident_account(Gate(con, principal), resident_a)
        assert con.execute("SELECT count(*) FROM audit WHERE action = 'access.refused' AND actor = ? AND target = ?",
                           [principal.username, resident_a]).fetchone()[0] == 1
    assert not con.execute("SELECT count(*) FROM resident_accounts WHERE resident_id = ?", [resident_a]).fetchone()[0]
    with pytest.raises(InputError, match="no resident"):
        issue_resident_account(Gate(con, Principal("op.a", "operator", (grid_a,))), "R-nobody")


def test_a_writer_that_does_not_answer_in_time_is_said_so_on_the_card(served_store):
    store, writer = served_store
    con = store.con.cursor()
    grid_a, building_a, _, _ = two_grids(con)
    inspector = inspector_for(store, writer, Principal("op.a", "operator", (grid_a,)))
    inspector.building_id = building_a
    block = inspector.volunteer_account
    block._timeout_s = 0.5
    rid = [r for r in block.param.resident_id.objects.values() if r][0]
    block.pick.value = rid
    busy = threading.Event()
    writer.submit(lambda con: Written(busy.wait(30)))  # the writer is busy with another job
    try:
        block.button.clicks += 1
    finally:
        busy.set()
    assert block.issued is None and "did not answer within 0.5 s" in block.shown.object
