"""``twin volunteers ...``: the scheme's accounts, merchants and rewards, run offline on the store or in the server
that holds it (:class:`twin.store.control.Command`), each audited with who asked and from where."""

from __future__ import annotations

from collections.abc import Callable

import duckdb

from twin.store.control import Command
from twin.volunteers.accounts import add_merchant, create_resident_account
from twin.volunteers.ledger import verify_ledger
from twin.volunteers.rewards import add_reward

WHO = {"actor": str, "source": str | None}


def _account(con: duckdb.DuckDBPyConnection, args: dict, step: Callable[[str], None]) -> dict:
    made = create_resident_account(con, args["resident_id"], username=args["username"], actor=args["actor"],
                                   source=args["source"])
    return {**made, "expires_at": str(made["expires_at"])}


def _merchant(con: duckdb.DuckDBPyConnection, args: dict, step: Callable[[str], None]) -> dict:
    return add_merchant(con, args["merchant_id"], args["name"], address=args["address"], grid_id=args["grid"],
                        actor=args["actor"], source=args["source"])


def _reward(con: duckdb.DuckDBPyConnection, args: dict, step: Callable[[str], None]) -> dict:
    return add_reward(con, args["merchant_id"], args["title"], points=int(args["points"]), stock=int(args["stock"]),
                      actor=args["actor"], source=args["source"])


def _verify(con: duckdb.DuckDBPyConnection, args: dict, step: Callable[[str], None]) -> dict:
    rows, total = con.execute("SELECT count(*), coalesce(sum(amount), 0) FROM points_ledger").fetchall()[0]
    return {"rows": int(rows), "points_outstanding": int(total), "broken_at": verify_ledger(con)}


def volunteer_commands() -> dict[str, Command]:
    """``volunteers.*`` by name (``verify`` only reads)."""
    return {"volunteers.account": Command({"resident_id": str, "username": str | None, **WHO}, _account),
            "volunteers.merchant": Command({"merchant_id": str, "name": str, "address": str | None,
                                            "grid": str | None, **WHO}, _merchant),
            "volunteers.reward": Command({"merchant_id": str, "title": str, "points": int, "stock": int, **WHO},
                                         _reward),
            "volunteers.verify": Command({}, _verify, reads_only=True)}
