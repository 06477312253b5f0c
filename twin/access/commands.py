"""The commands on users and API keys: one definition for ``twin users|keys`` and the admin screen.

Each is a :class:`twin.store.control.Command`: run offline on the store in one transaction,
or, while ``twin serve`` holds the store, as one job of its writer (the CLI through the
control socket, the admin screen directly). Every writing one is audited with who asked
(``actor``: the signed-in admin, or the operating-system user of the CLI) and from where
(``source``: the browser's address, or ``cli``).
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

from twin.access.access import add_user, disable_user, list_users, set_grants, set_password
from twin.access.keys import add_key, list_keys, revoke_key
from twin.store.control import Command

WHO = {"actor": str, "source": str | None}  # every writing command's: who asks, and from where


def _keys_add(con: duckdb.DuckDBPyConnection, args: dict, step: Callable[[str], None]) -> dict:
    return {"name": args["name"], "api_key": add_key(con, args["name"], actor=args["actor"], source=args["source"])}


def _keys_revoke(con: duckdb.DuckDBPyConnection, args: dict, step: Callable[[str], None]) -> dict:
    revoke_key(con, args["name"], actor=args["actor"], source=args["source"])
    return {"name": args["name"], "revoked": True}


def _users_add(con: duckdb.DuckDBPyConnection, args: dict, step: Callable[[str], None]) -> dict:
    return add_user(con, args["name"], args["password"], role=args["role"], grids=args["grids"], lang=args["lang"],
                    actor=args["actor"], source=args["source"], department=args["department"])


def _users_passwd(con: duckdb.DuckDBPyConnection, args: dict, step: Callable[[str], None]) -> dict:
    set_password(con, args["name"], args["password"], actor=args["actor"], source=args["source"])
    return {"username": args["name"], "passwd": True}


def _users_disable(con: duckdb.DuckDBPyConnection, args: dict, step: Callable[[str], None]) -> dict:
    disable_user(con, args["name"], actor=args["actor"], source=args["source"])
    return {"username": args["name"], "disable": True}


def _users_grants(con: duckdb.DuckDBPyConnection, args: dict, step: Callable[[str], None]) -> dict:
    return set_grants(con, args["name"], role=args["role"], grids=args["grids"], actor=args["actor"],
                      source=args["source"], department=args["department"])


def access_commands() -> dict[str, Command]:
    """``users.*`` and ``keys.*`` by name; the ``list`` ones only read (the server runs them too, as the file is
    its alone while it serves)."""
    name = {"name": str, **WHO}
    return {"keys.add": Command(name, _keys_add), "keys.revoke": Command(name, _keys_revoke),
            "keys.list": Command({}, lambda con, args, step: {"keys": list_keys(con)}),
            "users.add": Command({**name, "password": str, "role": str, "grids": list, "lang": str | None,
                                  "department": str | None}, _users_add),
            "users.passwd": Command({**name, "password": str}, _users_passwd),
            "users.disable": Command(name, _users_disable),
            "users.grants": Command({**name, "role": str, "grids": list, "department": str | None}, _users_grants),
            "users.list": Command({}, lambda con, args, step: {"users": list_users(con)})}
