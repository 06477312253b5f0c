"""Saving the planner's grids and showing their history: the ``save`` callables, the writes, past versions.

A save goes through a ``save`` callable that runs the write off the event loop
and returns an asyncio future of its commit: in ``twin serve`` the store's one
writer thread (:func:`save_through_writer`), otherwise one transaction on a
cursor of its own in the loop's executor (:func:`save_in_transaction`). The
loop only awaits (:func:`awaited`): it never waits on the writer or the disk.

A write refuses to overwrite a parent whose grids someone else saved since this
session read them. A write that saves several partitions raises at the first
that fails, and its whole transaction is undone: all of them commit or none.
"""

from __future__ import annotations

import asyncio
import html
import threading
from collections.abc import Callable

import duckdb
import geopandas as gpd
import pandas as pd
import panel as pn

from scenes.i18n import _, format_time
from scenes.theme import CSS
from twin.cases.live import IntakeWriter, Written
from twin.errors import GridEditError
from twin.grids.gridversions import SavedEdit, grid_history, restore_version, save_partition

WRITE_TIMEOUT_S = 30.0
RELOAD = "nothing was saved. Pick the parent again to load them, and redo the edit."

# what a write gets: the connection of its transaction; what it returns: the saved edits
Write = Callable[[duckdb.DuckDBPyConnection], list[SavedEdit]]
# what runs a write off the event loop (called on the loop): the future of the saved edits, once committed
Save = Callable[[Write], asyncio.Future]


class WriteCancelled(GridEditError):
    """A write was cancelled before it started: nothing of it was written."""


def save_in_transaction(con: duckdb.DuckDBPyConnection) -> Save:
    """A ``save`` that runs a write in one transaction in the loop's executor (no writer thread: tests,
    notebooks, ``panel serve``), on a cursor of ``con`` that only that executor thread uses."""
    def save(write: Write) -> asyncio.Future:
        cursor = con.cursor()

        def run() -> list[SavedEdit]:
            try:
                cursor.execute("BEGIN TRANSACTION")
                try:
                    answer = write(cursor)
                except BaseException:
                    cursor.execute("ROLLBACK")
                    raise
                cursor.execute("COMMIT")
                return answer
            finally:
                cursor.close()
        return asyncio.get_running_loop().run_in_executor(None, run)
    return save


def save_through_writer(writer: IntakeWriter) -> Save:
    """A ``save`` that runs a write as one job of the store's writer thread (``twin serve``).

    The job's future belongs to the calling event loop: the writer settles it
    there after the commit. The open cases a save moves to another micro-grid
    are published on the case feed, so every session sees their new grid; the
    intake re-matches new cases to the new grids; and the writer runs a
    CHECKPOINT right after the commit, so the new versions go into the
    database file, not only its log.
    """
    def save(write: Write) -> asyncio.Future:
        def job(con: duckdb.DuckDBPyConnection) -> Written:
            saved = write(con)
            moved = [c for s in saved if s.reassignment is not None
                     for c in s.reassignment.moves["cases"]["case_id"].tolist()]
            # A save rewrites many rows: fold it into the database file now rather than at the next restart. A write
            # that saved no grids (an export's audit row) neither re-matches the intake nor checkpoints.
            return Written(saved, changed=moved, checkpoint=bool(saved), grids_changed=bool(saved))
        return writer.submit(job, loop=asyncio.get_running_loop())
    return save


class QueuedWrite:
    """A write handed to another thread, which can be cancelled until that thread starts it."""

    def __init__(self, write: Write) -> None:
        self._write = write
        self._lock = threading.Lock()
        self._state = "queued"  # queued → running, or queued → cancelled

    def __call__(self, con: duckdb.DuckDBPyConnection) -> list[SavedEdit]:
        with self._lock:
            if self._state == "cancelled":
                raise WriteCancelled("this save was cancelled before it started; nothing of it was written.")
            self._state = "running"  # a writer retrying its batch one job at a time runs it again
        return self._write(con)

    def cancel(self) -> bool:
        """Cancel the write if it has not started; whether it was cancelled."""
        with self._lock:
            if self._state == "queued":
                self._state = "cancelled"
            return self._state == "cancelled"


async def awaited(save: Save, write: Write, *, timeout_s: float, running: Callable[[], None]) -> list[SavedEdit]:
    """Run ``write`` through ``save`` and await its commit, without blocking the event loop.

    After ``timeout_s`` a write that has not started is cancelled
    (:class:`WriteCancelled`: nothing was written); one that has started is
    awaited to its end, after calling ``running()`` so the planner is told.
    """
    queued = QueuedWrite(write)
    pending = save(queued)
    try:
        return await asyncio.wait_for(asyncio.shield(pending), timeout_s)
    except TimeoutError:
        if queued.cancel():
            pending.add_done_callback(lambda f: f.cancelled() or f.exception())  # it refuses when its turn comes
            raise WriteCancelled(f"the store's writer did not start this save within {timeout_s:g} s (it is busy "
                                 "with other writes), so it was cancelled before it ran; nothing was saved. "
                                 "Save again.") from None
        running()
        return await pending


async def read_off_loop(con: duckdb.DuckDBPyConnection, read: Callable, *args):
    """``read(cursor, *args)`` in the loop's executor, on a cursor of ``con`` that only that thread uses."""
    cursor = con.cursor()
    try:
        return await asyncio.get_running_loop().run_in_executor(None, read, cursor, *args)
    finally:
        cursor.close()


def versions_of(con: duckdb.DuckDBPyConnection, parent_id: str) -> dict[str, int]:
    """The version in force of each child of ``parent_id``."""
    return {str(g): int(v) for g, v in con.execute("SELECT grid_id, version FROM grids WHERE parent_id = ? AND "
                                                   "valid_to IS NULL", [parent_id]).fetchall()}


def check_unchanged(con: duckdb.DuckDBPyConnection, parent_id: str, loaded: dict[str, int], *, fix: str) -> None:
    """Refuse a save when someone else saved ``parent_id``'s grids since this session read them (the later
    save would silently undo the earlier one); ``fix`` says what to do then."""
    now = versions_of(con, parent_id)
    if now != loaded:
        differ = sorted(g for g in set(now) | set(loaded) if now.get(g) != loaded.get(g))
        raise GridEditError(f"the grids of {parent_id} were saved by someone else since you loaded them "
                            f"({', '.join(differ[:5])}{'…' if len(differ) > 5 else ''}); {fix}")


def edit_write(parent_id: str, shapes: gpd.GeoSeries, *, loaded: dict[str, int], level: str, actor: str,
               reason: str, source: str | None, names: dict[str, str] | None = None) -> Write:
    """The write that saves an edit of ``parent_id``'s children (and ``names``: grid id -> new name), refused if
    they changed since ``loaded``."""
    attrs = pd.DataFrame({"name": pd.Series(names or {}, dtype=object)})

    def write(con: duckdb.DuckDBPyConnection) -> list[SavedEdit]:
        check_unchanged(con, parent_id, loaded, fix=RELOAD)
        # the buildings, cameras and cases are read in this transaction: another planner may have moved some
        # save_partition writes the audit row (grid.save) in this transaction
        return [save_partition(con, parent_id, shapes, actor=actor, reason=reason, level=level, source=source,
                               attrs=attrs)]
    return write


class VersionHistory:
    """The past versions of one grid: read from the store, listed in ``pane``, and restored as a new version."""

    def __init__(self) -> None:
        self.pane = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width",
                                 css_classes=["twin-history-versions"])
        self.grid_id: str | None = None
        self.frame: gpd.GeoDataFrame | None = None

    def load(self, con: duckdb.DuckDBPyConnection, grid_id: str) -> list[int]:
        """Read every version of ``grid_id`` (raises TwinError for an unknown grid); its version numbers."""
        self.frame = grid_history(con, grid_id)
        self.grid_id = grid_id
        return [int(v) for v in self.frame["version"]]

    def clear(self) -> None:
        self.grid_id, self.frame = None, None
        self.pane.object = ""

    def geometry(self, version: int | None):
        """The boundary of ``version``; None when no such version is loaded."""
        if self.frame is None or version not in set(self.frame["version"]):
            return None
        return self.frame[self.frame["version"] == version].geometry.iloc[0]

    def show(self, version: int) -> None:
        """List the versions (``version`` marked) with when, who and why."""
        items, first = [], _("first version")
        for r in self.frame.itertuples():
            until = _("in force") if pd.isna(r.valid_to) else _("until {time}").format(time=format_time(r.valid_to))
            mark = " class='twin-group'" if r.version == version else ""
            items.append(f"<tr{mark}><td>v{r.version}</td><td>{format_time(r.valid_from)}</td><td>{until}</td>"
                         f"<td>{html.escape(str(r.actor if isinstance(r.actor, str) else '—'))}</td>"
                         f"<td>{html.escape(str(r.reason if isinstance(r.reason, str) else first))}</td>"
                         "</tr>")
        heads = "".join(f"<th>{h}</th>" for h in (_("version"), _("valid from"), _("valid to"), _("who"), _("why")))
        title = _("versions of {grid}").format(grid=html.escape(self.grid_id))
        self.pane.object = (f"<div class='label'>{title}</div><table class='twin-table'><tr>{heads}</tr>"
                            f"{''.join(items)}</table>")

    def restore_write(self, version: int, *, actor: str, reason: str, source: str | None) -> Write:
        """The write that restores ``version`` of the shown grid as a new version."""
        grid_id = self.grid_id

        def write(con: duckdb.DuckDBPyConnection) -> list[SavedEdit]:
            return [restore_version(con, grid_id, version, actor=actor, reason=reason, source=source)]
        return write
