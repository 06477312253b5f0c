"""Notices between the processes that serve one PostgreSQL store: LISTEN/NOTIFY carrying changed ids.

A writer queues a notice in its transaction (:func:`notify`); PostgreSQL delivers it to every listening
session when the transaction commits, and never when it rolls back. Each process listens on its own
connection (:class:`Listener`) and reads the rows the ids name. A notice names its sender, and a listener
skips what its own process did already (its own cases, its own grid saves). The change triggers on the keys,
users and grids (:func:`twin.store.store.create_change_triggers`) name the sender that
:func:`sign_transaction` gave the writing transaction. A DuckDB file has one writing process, so there
:func:`notify` and :func:`sign_transaction` do nothing.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

import duckdb

from twin.errors import StoreError
from twin.store.schema import ORIGIN_SETTING
from twin.store.store import ATTACHED, AttachedConnection, check_postgres_url

log = logging.getLogger(__name__)

CASES = "twin_cases"  # ids of cases created or changed
MAX_PAYLOAD = 7000  # PostgreSQL's limit is 8000 bytes; longer lists go in several notices
SAFE_ID = re.compile(r"[A-Za-z0-9_.:-]+")
RECONNECT_S = 1.0


def notify(con: duckdb.DuckDBPyConnection, channel: str, ids: list[str], *, sender: str) -> None:
    """Queue a notice of changed ``ids`` from ``sender`` in the open transaction of a PostgreSQL store
    (nothing on a file)."""
    if not ids or not isinstance(con, AttachedConnection):
        return
    unsafe = [i for i in [sender, *ids] if not SAFE_ID.fullmatch(i)]
    if unsafe:
        raise StoreError(f"cannot announce ids {unsafe[:3]}: ids are letters, digits and _.:- only.")
    chunk: list[str] = []
    for i in [*ids, None]:
        if i is None or len(sender) + sum(len(c) + 1 for c in chunk) + len(i) + 1 > MAX_PAYLOAD:
            if chunk:
                sql = f"SELECT pg_notify('{channel}', '{sender}|{','.join(chunk)}')"
                con.execute(f"CALL postgres_execute('{ATTACHED}', '{sql.replace(chr(39), chr(39) * 2)}')")
            chunk = []
        if i is not None:
            chunk.append(i)


def sign_transaction(con: duckdb.DuckDBPyConnection, sender: str) -> None:
    """Name ``sender`` as the writer of the open transaction of a PostgreSQL store, for the change triggers' notices
    (nothing on a file). Costs one round trip."""
    if not isinstance(con, AttachedConnection):
        return
    if not SAFE_ID.fullmatch(sender):
        raise StoreError(f"cannot sign a transaction as {sender!r}: a sender is letters, digits and _.:- only.")
    sql = f"SELECT set_config('{ORIGIN_SETTING}', '{sender}', true)"
    con.execute(f"CALL postgres_execute('{ATTACHED}', '{sql.replace(chr(39), chr(39) * 2)}')")


class Listener:
    """A thread that listens on ``channel`` of the store at ``url`` and hands the ids of its notices to ``on_ids``,
    but those that ``skip(sender, id)`` says to leave out (what this process did itself).

    It reconnects by itself after a lost connection (``on_ids`` is then called with None: notices may have been
    missed meanwhile, so what depends on them should be read afresh; :attr:`lost_at` says since when).
    """

    lost_at: float | None = None  # when listening was last lost (seconds since the epoch), None before

    def __init__(self, url: str, channel: str, on_ids: Callable[[list[str] | None], None], *,
                 skip: Callable[[str, str], bool]) -> None:
        self._url = check_postgres_url(url)
        self._skip = skip
        self._channel = channel
        self._on_ids = on_ids
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"twin-listen-{channel}", daemon=True)
        self._thread.start()

    @property
    def listening(self) -> bool:
        """Whether the listener is connected now (while not, the server is down or out of reach)."""
        return self._listening.is_set()

    def wait_listening(self, timeout: float) -> bool:
        """Whether the listener listens (within ``timeout`` seconds): notices committed after that reach it."""
        return self._listening.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psycopg

        missed = False
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True) as con:
                    con.execute(f"LISTEN {self._channel}")
                    self._listening.set()
                    if missed:
                        self._hand_over(None)
                    for notice in _notices(con, self._stop):
                        sender, _, ids = notice.payload.partition("|")
                        kept = [i for i in ids.split(",") if i and not self._skip(sender, i)]
                        if kept:
                            self._hand_over(kept)
            except psycopg.Error as exc:
                if self._listening.is_set() or self.lost_at is None:
                    self.lost_at = time.time()
                self._listening.clear()
                missed = True
                log.warning("listening on %s lost (%s); reconnecting in %.0f s", self._channel, exc, RECONNECT_S)
                self._stop.wait(RECONNECT_S)

    def _hand_over(self, ids: list[str] | None) -> None:
        try:
            self._on_ids(ids)
        except Exception:  # a reader's failure must not stop the listening
            log.exception("handling a notice on %s failed", self._channel)


def _notices(con, stop: threading.Event):
    while not stop.is_set():
        yield from con.notifies(timeout=0.5)
