"""Saving the planner's grids and showing their history: the ``save`` callables, the writes, past versions.

A save goes through a ``save`` callable: in ``twin serve`` the store's one writer
thread (:func:`save_through_writer`), otherwise one transaction on the editor's
own connection (:func:`save_in_transaction`). A write refuses to overwrite a
parent whose grids someone else saved since this session read them.
"""

from __future__ import annotations

import html
from collections.abc import Callable

import duckdb
import geopandas as gpd
import pandas as pd
import panel as pn

from scenes.theme import CSS
from twin.cases.live import IntakeWriter, Written
from twin.errors import GridEditError
from twin.grids.gridversions import SavedEdit, grid_history, restore_version, save_partition

WRITE_TIMEOUT_S = 30.0

# what a write gets: the connection of its transaction; what it returns: the saved edits
Write = Callable[[duckdb.DuckDBPyConnection], list[SavedEdit]]
Save = Callable[[Write], list[SavedEdit]]


def save_in_transaction(con: duckdb.DuckDBPyConnection) -> Save:
    """A ``save`` that runs a write in one transaction on ``con`` (no writer thread: tests, notebooks)."""
    def save(write: Write) -> list[SavedEdit]:
        con.execute("BEGIN TRANSACTION")
        try:
            answer = write(con)
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        return answer
    return save


def save_through_writer(writer: IntakeWriter, *, timeout_s: float = WRITE_TIMEOUT_S) -> Save:
    """A ``save`` that runs a write on the store's one writer thread (``twin serve``) and waits for its commit.

    The open cases a save moves to another micro-grid are published on the case
    feed, so every session sees their new grid. The job asks the writer for a
    CHECKPOINT right after the commit, so the new versions go into the
    database file, not only its log.
    """
    def save(write: Write) -> list[SavedEdit]:
        def job(con: duckdb.DuckDBPyConnection) -> Written:
            saved = write(con)
            moved = [c for s in saved if s.reassignment is not None
                     for c in s.reassignment.moves["cases"]["case_id"].tolist()]
            # A save rewrites many rows: fold it into the database file now rather than at the next restart.
            return Written(saved, changed=moved, checkpoint=True)
        return writer.submit(job).result(timeout=timeout_s)
    return save


def versions_of(con: duckdb.DuckDBPyConnection, parent_id: str) -> dict[str, int]:
    """The version in force of each child of ``parent_id``."""
    return {str(g): int(v) for g, v in con.execute("SELECT grid_id, version FROM grids WHERE parent_id = ? AND "
                                                   "valid_to IS NULL", [parent_id]).fetchall()}


def check_unchanged(con: duckdb.DuckDBPyConnection, loaded: dict[str, dict[str, int]]) -> None:
    """Refuse a save when someone else saved the same parent's grids since this session read them
    (the later save would silently undo the earlier one)."""
    for parent_id, versions in loaded.items():
        now = versions_of(con, parent_id)
        if now != versions:
            differ = sorted(g for g in set(now) | set(versions) if now.get(g) != versions.get(g))
            raise GridEditError(f"the grids of {parent_id} were saved by someone else since you loaded them "
                                f"({', '.join(differ[:5])}{'…' if len(differ) > 5 else ''}); nothing was saved. "
                                "Pick the parent again to load them, and redo the edit.")


def edit_write(parent_id: str, shapes: gpd.GeoSeries, *, loaded: dict[str, int], level: str, actor: str,
               reason: str, source: str | None) -> Write:
    """The write that saves an edit of ``parent_id``'s children, refused if they changed since ``loaded``."""
    def write(con: duckdb.DuckDBPyConnection) -> list[SavedEdit]:
        check_unchanged(con, {parent_id: loaded})
        # the buildings, cameras and cases are read in this transaction: another planner may have moved some
        # save_partition writes the audit row (grid.save) in this transaction
        return [save_partition(con, parent_id, shapes, actor=actor, reason=reason, level=level, source=source)]
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
        items = []
        for r in self.frame.itertuples():
            until = "in force" if pd.isna(r.valid_to) else f"until {str(r.valid_to)[:19]}"
            mark = " class='twin-group'" if r.version == version else ""
            items.append(f"<tr{mark}><td>v{r.version}</td><td>{str(r.valid_from)[:19]}</td><td>{until}</td>"
                         f"<td>{html.escape(str(r.actor if isinstance(r.actor, str) else '—'))}</td>"
                         f"<td>{html.escape(str(r.reason if isinstance(r.reason, str) else 'first version'))}</td>"
                         "</tr>")
        self.pane.object = (f"<div class='label'>versions of {html.escape(self.grid_id)}</div>"
                            "<table class='twin-table'><tr><th>version</th><th>from</th><th>to</th>"
                            f"<th>who</th><th>why</th></tr>{''.join(items)}</table>")

    def restore_write(self, version: int, *, actor: str, reason: str, source: str | None) -> Write:
        """The write that restores ``version`` of the shown grid as a new version."""
        grid_id = self.grid_id

        def write(con: duckdb.DuckDBPyConnection) -> list[SavedEdit]:
            return [restore_version(con, grid_id, version, actor=actor, reason=reason, source=source)]
        return write
