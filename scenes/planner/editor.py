"""The planner's grid editor: the Panel viewer that composes the plan, the edit session, the rules display,
saving and history, and the proposal, and holds their shared state as params."""

from __future__ import annotations

import html
import inspect
import io
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb
import numpy as np
import panel as pn
import param
import shapely

from scenes.i18n import N_, _, error_text, level_name
from scenes.planner.plot import MODE_TOOLS, Drag, PlanPlot
from scenes.planner.proposal import ProposalDesk
from ingest.grids import IMPORT_MODES, export_grids, import_grids_file
from scenes.planner.rules import RulesDisplay, plain_words
from scenes.planner.saving import (WRITE_TIMEOUT_S, Save, VersionHistory, Write, WriteCancelled, awaited, edit_write,
                                   read_off_loop, save_in_transaction)
from scenes.planner.session import NO_MOVE_M, ParentEdit
from scenes.planshapes import basemap_columns
from scenes.theme import CSS
from twin.access.access import audit
from twin.errors import GridEditError, GridRuleError, TwinError
from twin.grids.gridedit import EditSession
from twin.grids.gridrules import Violation, errors
from twin.grids.gridversions import SavedEdit
from twin.grids.partition import Proposal
from twin.grids.reassign import Reassignment
from twin.store.queries import grid_tree

log = logging.getLogger(__name__)

PARENT_LEVELS = ("community", "grid")  # a community's grids, a grid's micro-grids
SHOW_NAMES = {"edit": N_("edit"), "proposal": N_("proposal")}
MODE_NAMES = {"vertex": N_("Move vertex"), "split": N_("Split"), "merge": N_("Merge"), "draw": N_("Draw"),
              "delete": N_("Delete")}
MODE_HINTS = {
    "vertex": N_("Press and hold on a grid to show its vertices, then drag one; a vertex shared by neighbours "
                 "moves in all of them."),
    "split": N_("Press and hold to start a line across a grid, click to add points, press and hold to end it; "
                "then Split along the line."),
    "merge": N_("Click the grids to merge (shift-click for more than one), then Merge selected."),
    "draw": N_("Press and hold to start, click to add corners, press and hold to end; then Add drawn grid."),
    "delete": N_("Click the grid to delete (and, shift-click, the neighbour to take its area), then Delete "
                 "selected."),
}
EXPORT_SCOPES = {"parent": N_("this parent's grids"), "level": N_("all grids of this level")}
FILE_FORMATS = {".geojson": "GeoJSON", ".gpkg": "GeoPackage"}
IMPORT_MODE_NAMES = {"update": N_("update"), "replace": N_("replace")}
INDENT = "\u3000"  # a full-width space: the tree's indent in the parent picker
# The message line's kinds, told apart by how their text begins (message_html).
REFUSED = N_("Refused: {reason}")
NOTHING_MOVED = N_("Nothing moved: {why}.")
CANCELLED = N_("Cancelled: {reason}")
SAVING = N_("Saving {what}…")
STILL_SAVING = N_("Still saving {what}: the store's writer started it more than {seconds} s ago and is finishing it; "
                  "it is saved whole or not at all, and the outcome shows here.")


class GridEditor(pn.viewable.Viewer):
    """Redraw the grids of one parent: move, split, merge, draw, delete; check, compare, save, restore, propose.

    The methods (:meth:`move_vertex`, :meth:`split`, …) are what the plan's edit
    events call, and what the tests call.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A cursor on the store (reads; writes only through ``save``).
    save : callable, optional
        ``save(write) -> asyncio.Future``: runs ``write(con)`` in one transaction off
        the event loop and settles the future once committed
        (:func:`~scenes.planner.saving.save_through_writer` in ``twin serve``);
        default :func:`~scenes.planner.saving.save_in_transaction` on ``con``.
    actor : str
        The signed-in user, recorded with every saved version.
    source : str, optional
        Where the user works from (an address), for the audit trail.
    allowed_parents : set of str, optional
        Grid ids the planner may edit under (any level: the communities and
        grids under them are offered too); None: the whole district.
    write_timeout_s : float
        How long (s) a save may wait for the writer to start it: a save not
        started by then is cancelled; one started is awaited to its end.

    Attributes
    ----------
    plan : PlanPlot
        The 2D plan and its Bokeh sources.
    edit : ParentEdit or None
        The edit session of the chosen parent (None before one is chosen).
    rules : RulesDisplay
        The before → after table and the broken rules.
    history : VersionHistory
        The versions of one grid.
    proposals : ProposalDesk
        The micro-grid proposal.
    """

    parent_id = param.Selector(default=None, objects=[], doc="The community or grid whose children are edited")
    tolerance_m = param.Number(default=1.0, bounds=(0.0, 25.0), step=0.5,
                               doc="Snap radius (m): a moved vertex goes to a grid vertex, building corner or edge "
                                   "this close")
    reason = param.String(default="", doc="Why: required to save, restore or accept")
    selected = param.List(default=[], item_type=str, doc="Grids selected on the plan (merge, delete, history)")
    message = param.String(default="", doc="The outcome of the last action, or why it was refused")
    show = param.Selector(default="edit", objects=["edit", "proposal"], doc="The plan shows the edit or the proposal")
    history_grid = param.String(default=None, allow_None=True, doc="The grid whose versions are shown")
    history_version = param.Selector(default=None, objects=[], doc="The version drawn on the plan")
    saved = param.Dict(default={}, doc="Set after every save: change ids, parent, level, action")
    compactness = param.Number(default=0.0, bounds=(0.0, 1.0), step=0.25,
                               doc="The proposal's weight: 0 households within 70–80 only, 1 compact shapes only")
    mode = param.Selector(default="vertex", objects=list(MODE_TOOLS), doc="The editing mode on the plan")
    new_name = param.String(default="", doc="The new name of the selected grid (Rename)")
    pending_parent = param.String(default=None, allow_None=True,
                                  doc="The parent asked for while the edit had unsaved changes (asked first)")
    saving = param.Boolean(default=False, doc="A save, restore or accepted proposal is under way")
    export_scope = param.Selector(default="parent", objects=list(EXPORT_SCOPES),
                                  doc="Export the parent's grids in force, or every grid in force of their level")
    export_suffix = param.Selector(default=".geojson", objects=list(FILE_FORMATS), doc="The exported file's format")
    import_mode = param.Selector(default="update", objects=list(IMPORT_MODES),
                                 doc="update: the file's grids join or replace their siblings; replace: each parent's "
                                     "children become exactly the file's (as `twin grids import --mode`)")
    pending_import = param.Boolean(default=False, doc="An import was asked for while the edit had unsaved changes")

    def __init__(self, con: duckdb.DuckDBPyConnection, *, save: Save | None = None, actor: str,
                 source: str | None = None, allowed_parents: set[str] | None = None,
                 write_timeout_s: float = WRITE_TIMEOUT_S, **params) -> None:
        if not actor or not str(actor).strip():
            raise GridEditError("the grid editor needs the signed-in user as actor=; got an empty name.")
        first = params.pop("parent_id", None)
        super().__init__(**params)
        self._con = con
        self._save = save if save is not None else save_in_transaction(con)
        self.write_timeout_s = float(write_timeout_s)
        self.actor, self.source = str(actor), source
        meta = dict(con.execute("SELECT key, value FROM meta WHERE key IN ('origin_x', 'origin_y')").fetchall())
        self.origin = np.array([float(meta.get("origin_x", 0.0)), float(meta.get("origin_y", 0.0))])
        self.edit: ParentEdit | None = None
        self.last_edit_s = 0.0
        self.plan = PlanPlot(self.origin, on_drag=self._dragged, on_pick=self._picked)
        self.rules = RulesDisplay()
        self.history = VersionHistory()
        self.proposals = ProposalDesk(button=_button, accept=self.accept_proposal, edit=self.edit_proposal,
                                      discard=self.discard_proposal)
        self._widgets()
        options = self._parent_options(allowed_parents)
        # an import may change the children of these only (None: anywhere in the district)
        self.import_parents = set(options.values()) if allowed_parents is not None else None
        if not options:
            # shown instead of the plan: a planner bound to micro-grids only has nothing to redraw here
            self.message = _("Refused: no community or grid with children to edit under {grids}; an administrator "
                             "can bind this planner to a street, community or grid in force (`twin users`).").format(
                grids=", ".join(sorted(allowed_parents or [])) or _("the district"))
            return
        self.param.parent_id.objects = options
        self._picker_widgets(options)
        ids = list(options.values())
        if first is not None and first not in ids:
            raise GridEditError(f"parent_id={first!r} is not a community or grid with children that this planner "
                                f"may edit; pick one of {', '.join(ids[:6])}{'…' if len(ids) > 6 else ''}.")
        levels = dict(con.execute("SELECT grid_id, level FROM grids WHERE valid_to IS NULL AND grid_id IN "
                                  "(SELECT unnest(?))", [ids]).fetchall())
        self.parent_id = first or next((g for g in ids if levels.get(g) == "grid"), ids[0])

    # -- what the parts hold -----------------------------------------------------
    @property
    def session(self) -> EditSession | None:
        """The engine's edit session (undo, redo) of the chosen parent."""
        return self.edit.session if self.edit is not None else None

    @property
    def violations(self) -> list[Violation]:
        return self.edit.violations if self.edit is not None else []

    @property
    def reassignment(self) -> Reassignment | None:
        return self.edit.reassignment if self.edit is not None else None

    @property
    def proposal(self) -> Proposal | None:
        return self.proposals.proposal

    # -- set-up --------------------------------------------------------------
    def _parent_options(self, allowed: set[str] | None) -> dict[str, str]:
        """Communities and grids with children in force, ``label -> id``; with ``allowed``, those under it."""
        tree = grid_tree(self._con)
        kids = set(tree["parent_id"].dropna())
        rows = tree[tree["level"].isin(PARENT_LEVELS) & tree["grid_id"].isin(kids)].sort_values("grid_id")
        if allowed is not None:
            allowed = set(allowed)
            under = np.zeros(len(rows), dtype=bool)
            for column in ("grid_id", "street", "community", "grid"):
                under |= rows[column].isin(allowed).to_numpy()
            rows = rows[under]
        return {f"{g} {n or ''} ({level_name(lvl)})": g
                for g, n, lvl in zip(rows["grid_id"], rows["name"], rows["level"])}

    def _picker_widgets(self, options: dict[str, str]) -> None:
        """The parent picker: the tree street → community → grid (a grouped list), and a search by name or id."""
        tree = grid_tree(self._con).set_index("grid_id")
        label_of = {g: label for label, g in options.items()}
        groups: dict[str, dict[str, str]] = {}
        for g in sorted(options.values(), key=lambda g: (tree.at[g, "street"] or "", tree.at[g, "community"] or "",
                                                         tree.at[g, "level"] != "community", g)):
            street = tree.at[g, "street"]
            title = f"{street} {tree.at[street, 'name'] or ''}" if street in tree.index else _("the district")
            indent = INDENT * (2 if tree.at[g, "level"] == "grid" else 1)
            groups.setdefault(title, {})[indent + label_of[g]] = g
        self.picker = pn.widgets.Select(label=_("parent"), groups=groups, width=250, css_classes=["twin-parent-tree"])
        self.search = pn.widgets.AutocompleteInput(
            label=_("find a parent"), options=list(options), case_sensitive=False, search_strategy="includes",
            min_characters=1, restrict=True, placeholder=_("name or id, such as 第1网格 or S01-C01"), width=190,
            css_classes=["twin-parent-search"])
        self.picker.param.watch(lambda e: self.choose_parent(e.new), "value")
        self.search.param.watch(lambda e: e.new and self.choose_parent(options.get(e.new)), "value")

    def _widgets(self) -> None:
        self.undo_button = _button(_("Undo"), self.undo, width=70)
        self.redo_button = _button(_("Redo"), self.redo, width=70)
        self.mode_buttons = pn.widgets.RadioButtonGroup.from_param(
            self.param.mode, options={_(MODE_NAMES[m]): m for m in MODE_TOOLS}, color="primary",
            variant="outline", css_classes=["twin-planner-modes"])
        args, code = self.plan.mode_switch_js(list(MODE_TOOLS))
        self.mode_buttons.jscallback(args=args, value=code)
        self.action_buttons = {"split": _button(_("Split along the line"), self.split),
                               "merge": _button(_("Merge selected"), self.merge),
                               "draw": _button(_("Add drawn grid"), self.draw),
                               "delete": _button(_("Delete selected"), self.delete)}
        self.mode_hint = pn.pane.HTML("", css_classes=["twin-muted", "twin-mode-hint"], stylesheets=[CSS],
                                      sizing_mode="stretch_width")
        # FlexBoxes wrap: on a narrow screen the buttons go to a second line rather than past the edge
        self.edit_buttons = pn.FlexBox(self.mode_buttons, *self.action_buttons.values(), self.undo_button,
                                       self.redo_button, sizing_mode="stretch_width",
                                       css_classes=["twin-planner-tools"])
        self.rename_input = pn.widgets.TextInput.from_param(self.param.new_name, name="",
                                                            placeholder=_("new name of the selected grid"),
                                                            width=220)
        self.rename_row = pn.Row(self.rename_input, _button(_("Rename"), self.rename), css_classes=["twin-rename"])
        self.ask_pane = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width",
                                     css_classes=["twin-alert", "twin-unsaved-prompt"])
        self.ask_row = pn.Row(self.ask_pane, _button(_("Discard the edits and switch"), self.discard_and_switch),
                              _button(_("Keep editing"), self.keep_editing), visible=False,
                              sizing_mode="stretch_width")
        self.import_discard = _button(_("Discard the edits and import"), self.discard_and_import, visible=False)
        self.ask_row.insert(2, self.import_discard)
        self._mode_changed()
        self._file_widgets()
        self.save_button = _button(_("Save"), self.save, color="primary", width=90)
        self.message_pane = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width",
                                         css_classes=["twin-planner-message"])
        self.history_buttons = pn.Row(_button(_("Show history of selected"), self.show_history),
                                      _button(_("Restore this version"), self.restore))

    def _file_widgets(self) -> None:
        """Export (a download of the grids in force) and import (an uploaded file, checked and saved) of grids as
        GeoJSON or GeoPackage, by the rules of ``twin grids export|import``."""
        self.download = pn.widgets.FileDownload(callback=self.export_file, filename="grids.geojson", embed=False,
                                                label=_("Export grids"), width=130,
                                                css_classes=["twin-grids-export"])
        self.upload = pn.widgets.FileInput(accept=",".join(FILE_FORMATS), multiple=False, width=190,
                                           css_classes=["twin-grids-upload"])
        self.import_button = _button(_("Import file"), self.import_file, width=90)
        self.files = pn.Column(
            pn.Row(pn.widgets.Select.from_param(self.param.export_scope, name="", width=130, options={
                       _(EXPORT_SCOPES[v]): v for v in EXPORT_SCOPES}),
                   pn.widgets.Select.from_param(self.param.export_suffix, name="", width=100, options={
                       label: v for v, label in FILE_FORMATS.items()}), self.download),
            pn.Row(self.upload, pn.widgets.Select.from_param(self.param.import_mode, name="", width=90, options={
                _(IMPORT_MODE_NAMES[v]): v for v in IMPORT_MODES}), self.import_button),
            css_classes=["twin-grids-files"])

    @param.depends("export_scope", "export_suffix", watch=True)
    def _name_download(self) -> None:
        if self.edit is not None:
            scope = self.parent_id if self.export_scope == "parent" else self.edit.level
            self.download.filename = f"grids-{scope}{self.export_suffix}"

    def export_bytes(self, con: duckdb.DuckDBPyConnection) -> bytes:
        """The file :meth:`export_file` downloads, read on ``con``: the grids in force of the parent (or of its
        children's level, :attr:`export_scope`), written by ``export_grids`` in the chosen format."""
        scope = {"parent_id": self.parent_id} if self.export_scope == "parent" else {"level": self.edit.level}
        with tempfile.TemporaryDirectory(prefix="twin-export-") as folder:
            path = Path(folder) / self.download.filename
            export_grids(con, path, **scope)
            return path.read_bytes()

    async def export_file(self) -> io.BytesIO | None:
        """The download of :meth:`export_bytes`, read off the event loop; audited (``grids.export``) like
        ``twin grids export``, through the store's writer, before the file is handed over."""
        data = await read_off_loop(self._con, self.export_bytes)
        detail = {"parent_id": self.parent_id} if self.export_scope == "parent" else {"level": self.edit.level}
        target = self.download.filename

        def write(con: duckdb.DuckDBPyConnection) -> list[SavedEdit]:
            audit(con, actor=self.actor, action="grids.export", target=target, source=self.source, detail=detail)
            return []
        try:
            await awaited(self._save, write, timeout_s=self.write_timeout_s, running=lambda: None)
        except (TwinError, duckdb.Error) as exc:
            log.exception("planner: the export of %s was not audited", target)
            self.message = _("Refused: the export could not be recorded in the audit trail ({error}); "
                             "no file was given.").format(error=exc)
            return None
        return io.BytesIO(data)

    async def import_file(self, reason: str | None = None, *, unsaved_ok: bool = False) -> dict | None:
        """Import the uploaded file (:attr:`upload`) as ``twin grids import`` does, with ``reason`` (default
        :attr:`reason`) and :attr:`import_mode`, through the store's writer: every rule is checked, nothing is
        saved on an error. With unsaved edits, asks first (unless ``unsaved_ok``). The import's summary."""
        if not self.upload.value or not self.upload.filename:
            self.message = _("Refused: choose a GeoJSON or GeoPackage file to import first.")
            return None
        reason = self._reason(reason)
        if reason is None:
            return None
        if self.edit.unsaved and not unsaved_ok:
            self.pending_import = True
            return None
        name = Path(self.upload.filename).name
        summary: dict = {}
        with tempfile.TemporaryDirectory(prefix="twin-import-") as folder:
            path = Path(folder) / name
            path.write_bytes(self.upload.value)

            def write(con: duckdb.DuckDBPyConnection) -> list[SavedEdit]:
                summary.update(import_grids_file(con, path, actor=self.actor, reason=reason, mode=self.import_mode,
                                                 where=name, source=self.source, parents=self.import_parents))
                return []
            def told() -> tuple[str, list[str], dict[str, int]]:
                said = _("Imported {file}: {changed} grid(s) changed, {added} added, {deleted} deleted, of {grids} "
                         "in the file.").format(file=name, grids=summary["grids"], **{
                             k: len(summary[k]) for k in ("changed", "added", "deleted")})
                return said, [s["change_id"] for s in summary["saves"]], summary["versions"]
            saved = await self._write(write, action="import", what=_("the file {file}").format(file=name), told=told)
        return summary if saved is not None else None

    async def discard_and_import(self) -> dict | None:
        """Drop the unsaved edits and import the file asked for."""
        self.pending_import = False
        return await self.import_file(unsaved_ok=True)

    # -- loading a parent ------------------------------------------------------
    @param.depends("parent_id", watch=True)
    def _load_parent(self) -> None:
        """Read the parent's children, the assets around it and its footprints; start a new edit session."""
        started = time.perf_counter()
        self._show_parent(ParentEdit(self._con, self.parent_id))
        log.info("planner: %s (%d %s grids, %d buildings) loaded in %.2f s", self.parent_id,
                 len(self.edit.saved_grids), self.edit.level, len(self.edit.assets.buildings),
                 time.perf_counter() - started)

    def _show_parent(self, edit: ParentEdit) -> None:
        """Start editing ``edit``'s parent: draw it, and forget the selection, history and proposal."""
        self.edit = edit
        self.history.clear()
        self.proposals.clear()
        with pn.io.hold():
            self.plan.show_parent(edit.parent_shape, edit.assets)
            p = self.plan
            p.push(p.basemap_source, basemap_columns(edit.basemap, self.origin, clip=edit.around))
            p.clear(p.history_source, p.proposal_source, p.compare_source, p.line_source, p.draw_source)
            self.param.update(selected=[], show="edit", history_grid=None, message="", pending_parent=None,
                              pending_import=False)
            self.plan.set_mode(self.mode)  # no vertex handles of the parent shown before stay
            self._after_edit()
        if hasattr(self, "picker"):
            self.picker.value = edit.parent_id
        self._name_download()

    # -- edits -------------------------------------------------------------------
    def _apply(self, edit: Callable[[], None], name: str) -> bool:
        """Run one engine edit through the session; a refused edit changes nothing and says why."""
        started = time.perf_counter()
        if self._busy():
            self._show_grids()
            return False
        try:
            edit()
        except TwinError as exc:
            self.message = _(REFUSED).format(reason=error_text(exc))
            self._show_grids()  # undo what the browser tool did locally
            return False
        self.message = ""
        self._after_edit()
        self.last_edit_s = time.perf_counter() - started
        log.debug("planner: %s took %.3f s", name, self.last_edit_s)
        return True

    def move_vertex(self, at: Sequence[float], to: Sequence[float]) -> bool:
        """Move the vertex at ``at`` to ``to`` (district CRS, m) in every grid that has it, after snapping
        ``to`` to a grid vertex, building corner or grid edge within :attr:`tolerance_m`."""
        at, to = np.asarray(at, dtype=float)[:2], np.asarray(to, dtype=float)[:2]
        if self.tolerance_m > 0:
            to = self.edit.snapped(to, self.tolerance_m)
        if np.hypot(*(to - at)) < NO_MOVE_M:
            self.message = _(NOTHING_MOVED).format(why=_(
                "the vertex snapped back to where it was (snap radius {snap} m); drag it further, or lower the "
                "snap radius").format(snap=f"{self.tolerance_m:g}"))
            self._show_grids()
            return False
        return self._apply(lambda: self.edit.move_vertex(at, to), "move_vertex")

    def split(self, line: Sequence | None = None, *, grid_id: str | None = None) -> bool:
        """Split a grid along ``line`` (district CRS, m; default: the line drawn on the plan). The grid is the
        selected one, or the one the line crosses most."""
        if line is None:
            line = self.plan.drawn_line()
            if line is None:
                self.message = _("Refused: draw a split line across a grid first (the split-line tool), then Split.")
                return False
        line = shapely.LineString(np.asarray(line, dtype=float)[:, :2])
        if grid_id is None and len(self.selected) == 1:
            grid_id = self.selected[0]
        done = self._apply(lambda: self.edit.split(line, grid_id), "split")
        self.plan.push(self.plan.line_source, {"xs": [], "ys": []})
        return done

    def merge(self, grid_ids: Sequence[str] | None = None) -> bool:
        """Merge neighbouring grids (default: the selected ones); the first keeps its id."""
        ids = list(grid_ids if grid_ids is not None else self.selected)
        if len(ids) < 2:
            self.message = _("Refused: select two or more neighbouring grids (shift-click) to merge.")
            return False
        return self._apply(lambda: self.edit.merge(ids), "merge")

    def draw(self, polygon: Sequence | None = None) -> bool:
        """Add a grid (district CRS, m; default: the one drawn on the plan), clipped to the parent; it takes
        its area from the siblings it covers."""
        if polygon is None:
            polygon = self.plan.drawn_polygon()
            if polygon is None:
                self.message = _("Refused: draw the new grid first (the draw tool), then Add drawn grid.")
                return False
        shape = shapely.Polygon(np.asarray(polygon, dtype=float)[:, :2])
        done = self._apply(lambda: self.edit.draw(shape), "draw")
        self.plan.push(self.plan.draw_source, {"xs": [], "ys": []})
        return done

    def delete(self, grid_id: str | None = None, *, to: str | None = None) -> bool:
        """Delete a grid by giving its area to a neighbour (default: the selected grid, to the second selected
        one or the neighbour sharing the longest edge)."""
        if grid_id is None:
            if not self.selected:
                self.message = _("Refused: select the grid to delete (and, shift-click, the neighbour to take it).")
                return False
            grid_id = self.selected[0]
            to = to if to is not None else (self.selected[1] if len(self.selected) > 1 else None)
        return self._apply(lambda: self.edit.delete(grid_id, to=to), "delete")

    def undo(self) -> bool:
        return self._step("undo")

    def redo(self) -> bool:
        return self._step("redo")

    def _step(self, what: str) -> bool:
        if self._busy():
            return False
        try:
            self.edit.step(what)
        except TwinError as exc:
            self.message = _(REFUSED).format(reason=error_text(exc))
            return False
        self.message = ""
        self._after_edit()
        return True

    def _busy(self) -> bool:
        """Refuse an edit while a save is under way: the saved grids replace the session when it ends."""
        if self.saving:
            self.message = _("Refused: a save is under way; edit again once it is done (its grids are loaded then).")
        return self.saving

    def _after_edit(self) -> None:
        """Check the rules, reassign, and send only what changed: the grids, the red layer, moved buildings."""
        edit = self.edit
        edit.recheck(self._con)
        self.selected = [g for g in self.selected if g in edit.shapes.index]
        with pn.io.hold():
            self._show_grids()
            self.plan.show_violations(edit.violations)
            self.plan.show_moved(edit.assets, edit.reassignment)
            self.rules.show(edit.violations, edit.reassignment, edit.names())
            self.undo_button.disabled = not edit.session.can_undo
            self.redo_button.disabled = not edit.session.can_redo

    def _show_grids(self) -> None:
        self.plan.show_grids(self.edit.shapes, self.selected, self.edit.names())

    # -- browser events ------------------------------------------------------------
    def _dragged(self, drag: Drag) -> None:
        """The vertex tool changed an outline in the browser: one engine move, or put the plan back."""
        if isinstance(drag, str):
            self.message = _(REFUSED).format(reason=drag)
            self._show_grids()
            return
        at, to, inserted = drag
        if inserted and np.hypot(*(to - at)) <= max(self.tolerance_m, 0.5):
            # the tool's new vertex still lies on its edge: nothing to move yet
            self.message = _(NOTHING_MOVED).format(why=_(
                "the new vertex still lies on the grid's edge; drag it more than {snap} m off the edge").format(
                snap=f"{max(self.tolerance_m, 0.5):g}"))
            self._show_grids()
            return
        self.move_vertex(at, to)

    def _picked(self, grid_ids: list[str]) -> None:
        self.selected = grid_ids

    def rename(self, grid_id: str | None = None, name: str | None = None) -> bool:
        """Rename a grid (default: the selected one, to :attr:`new_name`); saved with the edit, as a new version."""
        grid_id = grid_id or (self.selected[0] if self.selected else None)
        if grid_id is None:
            self.message = _("Refused: select the grid to rename on the plan first.")
            return False
        done = self._apply(lambda: self.edit.rename(grid_id, self.new_name if name is None else name), "rename")
        if done:
            self.message = _("{grid} is now called {name}; Save keeps the new name.").format(
                grid=grid_id, name=self.edit.names()[grid_id])
            self.new_name = ""
        return done

    @param.depends("mode", watch=True)
    def _mode_changed(self) -> None:
        for mode, button in self.action_buttons.items():
            button.disabled = mode != self.mode  # not hidden: the plan must not move while a mode is chosen
        self.mode_hint.object = html.escape(_(MODE_HINTS[self.mode]))
        self.plan.set_mode(self.mode)

    @param.depends("selected", watch=True)
    def _selected_changed(self) -> None:
        if self.edit is not None and len(self.selected) == 1:
            self.rename_input.placeholder = _("new name of {name}").format(name=self.edit.names().get(
                self.selected[0], self.selected[0]))

    # -- choosing a parent ----------------------------------------------------------
    def choose_parent(self, parent_id: str | None) -> None:
        """Open ``parent_id`` (from the picker or the search); with unsaved edits, ask first."""
        if parent_id is None or parent_id == self.parent_id:
            return
        if self.edit is not None and self.edit.unsaved:
            self.pending_parent = parent_id
            self.picker.value = self.parent_id  # the picker shows what is open until the planner decides
            return
        self.parent_id = parent_id

    @param.depends("pending_parent", "pending_import", watch=True)
    def _ask(self) -> None:
        if self.pending_parent is not None:
            self.ask_pane.object = html.escape(_(
                "The edits of {parent} are not saved. Switching to {other} discards them.").format(
                parent=self.parent_id, other=self.pending_parent))
        elif self.pending_import:
            self.ask_pane.object = html.escape(_(
                "The edits of {parent} are not saved. Importing {file} discards them.").format(
                parent=self.parent_id, file=self.upload.filename))
        self.ask_row[1].visible = self.pending_parent is not None
        self.import_discard.visible = self.pending_import and self.pending_parent is None
        self.ask_row.visible = self.pending_parent is not None or self.pending_import

    def discard_and_switch(self) -> None:
        """Drop the unsaved edits and open the parent asked for."""
        pending, self.pending_parent = self.pending_parent, None
        if pending is not None:
            self.parent_id = pending

    def keep_editing(self) -> None:
        self.param.update(pending_parent=None, pending_import=False)
        self.search.value = ""

    # -- saving ------------------------------------------------------------------
    def _reason(self, reason: str | None) -> str | None:
        reason = (self.reason if reason is None else reason).strip()
        if not reason:
            self.message = _("Refused: give a reason first (it is kept with the new versions); nothing was saved.")
            return None
        return reason

    async def _write(self, write: Write, *, action: str, what: str,
                     told: Callable[[], tuple[str, list[str], dict[str, int]]] | None = None
                     ) -> list[SavedEdit] | None:
        """Run a write through the injected ``save``, awaited off the event loop; then load the saved grids
        (off the loop too) and say what happened. ``what`` names the write for the planner; ``told``, when
        given, says after the commit what the planner is told, the change ids and the versions written
        (for a write whose saves are not returned as :class:`SavedEdit`)."""
        if self.saving:
            self.message = _("Refused: another save is under way; wait for its outcome, then try again.")
            return None
        self.saving = True
        self.message = _(SAVING).format(what=what)
        try:
            saved = await self._committed(write, what)
            if saved is not None:  # a fresh session on the saved grids; the assets follow the store
                self._show_parent(await read_off_loop(self._con, ParentEdit, self.parent_id))
        finally:
            self.saving = False
        if saved is None:
            return None
        if told is not None:
            self.message, ids, written = told()
        else:
            ids = [s.change_id for s in saved if s.change_id]
            written = {g: v for s in saved for g, v in s.versions.items()}
            versions = ", ".join(f"{g} v{v}" for g, v in sorted(written.items()))
            self.message = (_("Saved {changes} ({what}): {versions}").format(changes=", ".join(ids), what=what,
                                                                              versions=versions) if ids else
                            _("Nothing differed from the store; nothing was written."))
        self.reason = ""
        self.saved = {"change_ids": ids, "parent_id": self.parent_id, "level": self.edit.level, "action": action,
                      "versions": written}
        return saved

    async def _committed(self, write: Write, what: str) -> list[SavedEdit] | None:
        """The saved edits once ``write`` committed; None, with the reason in :attr:`message`, when it did not."""
        try:
            return await awaited(self._save, write, timeout_s=self.write_timeout_s,
                                 running=lambda: self._still_saving(what))
        except WriteCancelled as exc:
            self.message = _(CANCELLED).format(reason=exc)
        except GridRuleError as exc:  # the rules in plain words, as the live check lists them
            names = self.edit.names() if self.edit is not None else {}
            self.message = _(REFUSED).format(reason=_(
                "{what} breaks {n} grid rule(s); nothing was saved: {rules}").format(
                what=what, n=len(exc.violations), rules=" ".join(plain_words(v, names) for v in exc.violations[:5]))
                if exc.violations else error_text(exc))
        except TwinError as exc:
            self.message = _(REFUSED).format(reason=error_text(exc))
        except duckdb.Error as exc:
            log.exception("planner: saving failed")
            self.message = _("Refused: the store did not take the write ({error}); nothing was saved.").format(
                error=exc)
        return None

    def _still_saving(self, what: str) -> None:
        self.message = _(STILL_SAVING).format(
            what=what, seconds=f"{self.write_timeout_s:g}")

    async def save(self, reason: str | None = None) -> list[SavedEdit] | None:
        """Save the edited grids as new versions, with the actor and ``reason`` (default :attr:`reason`).

        Refused, with the reasons and nothing written, when the edit breaks a rule.
        """
        reason = self._reason(reason)
        if reason is None:
            return None
        bad = errors(self.violations)
        if bad:
            names = self.edit.names()
            listed = " ".join(plain_words(v, names) for v in bad[:5])
            self.message = _("Refused: the edit breaks {n} grid rule(s); nothing was saved: {rules}").format(
                n=len(bad), rules=listed)
            return None
        edit = self.edit
        write = edit_write(self.parent_id, edit.shapes.copy(), loaded=edit.versions(), level=edit.level,
                           actor=self.actor, reason=reason, source=self.source, names=edit.changed_names())
        return await self._write(write, action="edit", what=_("the edit of {parent}").format(parent=self.parent_id))

    # -- history -------------------------------------------------------------------
    def show_history(self, grid_id: str | None = None) -> None:
        """Show the past versions of a grid (default: the selected one) and draw the chosen one on the plan."""
        grid_id = grid_id or (self.selected[0] if self.selected else None)
        if grid_id is None:
            self.message = _("Refused: select a grid on the plan to see its versions.")
            return
        try:
            versions = self.history.load(self._con, grid_id)
        except TwinError as exc:
            self.message = _(REFUSED).format(reason=error_text(exc))
            return
        self.history_grid = grid_id
        self.param.history_version.objects = versions
        earlier = [v for v in versions if v < versions[-1]]
        pick = earlier[-1] if earlier else versions[-1]
        if self.history_version == pick:
            self._draw_version()
        else:
            self.history_version = pick

    @param.depends("history_version", watch=True)
    def _draw_version(self) -> None:
        shape = self.history.geometry(self.history_version) if self.history_grid is not None else None
        self.plan.show_version(shape)
        if shape is not None:
            self.history.show(self.history_version)

    async def restore(self, reason: str | None = None) -> list[SavedEdit] | None:
        """Restore the shown version (:attr:`history_version` of :attr:`history_grid`) as a new version."""
        if self.history_grid is None or self.history_version is None:
            self.message = _("Refused: show a grid's history and pick the version to restore first.")
            return None
        reason = self._reason(reason)
        if reason is None:
            return None
        version = int(self.history_version)
        write = self.history.restore_write(version, actor=self.actor, reason=reason, source=self.source)
        return await self._write(write, action="restore", what=_("version {version} of {grid}").format(
            version=version, grid=self.history_grid))

    # -- proposal --------------------------------------------------------------------
    def propose(self) -> Proposal | None:
        """Propose micro-grids of 70–80 households for the parent, judged against the current ones (weighted
        by :attr:`compactness`); shown on the plan only when it is better on households or shape."""
        try:
            proposal = self.proposals.make(self._con, self.parent_id, self.edit.assets, compactness=self.compactness)
        except TwinError as exc:
            self.message = _(REFUSED).format(reason=error_text(exc))
            return None
        if proposal is None:
            with pn.io.hold():
                self.plan.clear(self.plan.proposal_source, self.plan.compare_source)
                self.show = "edit"
            self.message = _("No proposal offered: it would not improve on the grids now (see beside).")
            return None
        with pn.io.hold():
            self.plan.show_proposal(self.proposals.shapes(), self.proposals.now(self._con))
            self.show = "proposal"
        self.message = ""
        return proposal

    @param.depends("show", watch=True)
    def _toggle(self) -> None:
        self.plan.show_proposal_layer(self.show == "proposal" and self.proposal is not None)

    async def accept_proposal(self, reason: str | None = None) -> list[SavedEdit] | None:
        """Save the proposal's micro-grids (every grid of the scope, one transaction), with ``reason``:
        every partition is saved, or none is, and the message says which."""
        if self.proposal is None:
            self.message = _("Refused: there is no proposal; press Propose micro-grids first.")
            return None
        reason = self._reason(reason)
        if reason is None:
            return None
        parents = self.proposals.partitions()
        whole = _("all {n} partition(s) of the proposal: {parents}").format(n=len(parents), parents=", ".join(parents))
        saved = await self._write(self.proposals.write(actor=self.actor, reason=reason, source=self.source),
                                  action="proposal", what=whole)
        refused = _(REFUSED).format(reason="")
        if saved is None and self.message.startswith(refused):
            self.message = _("Refused: nothing of the proposal was saved, none of its {n} partition(s) ({parents}): "
                             "{reason}").format(n=len(parents), parents=", ".join(parents),
                                                reason=self.message.removeprefix(refused))
        return saved

    def edit_proposal(self) -> bool:
        """Load the proposal into the edit session (for a community: its first grid's micro-grids)."""
        proposal = self.proposal
        if proposal is None:
            self.message = _("Refused: there is no proposal to edit.")
            return False
        parent = self.parent_id if self.parent_id in proposal.partitions else next(iter(proposal.partitions))
        if parent != self.parent_id:
            self.parent_id = parent  # loads that grid and clears the proposal
        self.edit.restart(proposal.partitions[parent])
        self.proposals.clear()
        self.show = "edit"
        self._after_edit()
        self.message = _("The proposal for {parent} is loaded for editing; Save keeps it, Undo does not go past "
                         "it.").format(parent=parent)
        return True

    def discard_proposal(self) -> None:
        with pn.io.hold():
            self.proposals.clear()
            self.show = "edit"
            self.plan.clear(self.plan.proposal_source, self.plan.compare_source)

    # -- the screen --------------------------------------------------------------------
    @param.depends("message", watch=True)
    def _show_message(self) -> None:
        self.message_pane.object = message_html(self.message)

    @param.depends("saving", watch=True)
    def _saving_changed(self) -> None:
        self.save_button.disabled = self.saving

    def __panel__(self) -> pn.viewable.Viewable:
        if self.edit is None:
            return pn.Column(self.message_pane, sizing_mode="stretch_both", stylesheets=[CSS])
        controls = pn.FlexBox(
            self.picker, self.search,
            pn.widgets.FloatInput.from_param(self.param.tolerance_m, label=_("snap (m)"), width=80,
                                             css_classes=["twin-snap"]),
            sizing_mode="stretch_width")
        saving = pn.Row(
            pn.widgets.TextInput.from_param(self.param.reason, name="", placeholder=_("why (required to save)"),
                                            sizing_mode="stretch_width"),
            self.save_button, sizing_mode="stretch_width")
        side = pn.Column(
            self.message_pane, self.ask_row, self.rules.rules_pane, self.rules.figures_pane, self.rename_row, saving,
            self.files,
            pn.widgets.FloatSlider.from_param(self.param.compactness, label=_(
                "proposal: households in 70–80 (0) … compact shapes (1)"), sizing_mode="stretch_width"),
            pn.Row(_button(_("Propose micro-grids"), self.propose),
                   pn.widgets.RadioButtonGroup.from_param(self.param.show, width=160, options={
                       _(SHOW_NAMES[v]): v for v in self.param.show.objects})),
            self.proposals.pane, self.proposals.buttons,
            pn.Row(pn.widgets.Select.from_param(self.param.history_version, name="", width=90),
                   self.history_buttons),
            self.history.pane, width=440, scroll=True, sizing_mode="stretch_height")
        plan = pn.Column(controls, self.edit_buttons, self.mode_hint,
                         pn.pane.Bokeh(self.plan.figure, sizing_mode="stretch_both"), sizing_mode="stretch_both")
        return pn.Row(plan, side, sizing_mode="stretch_both", stylesheets=[CSS])


def message_html(text: str) -> str:
    """The message line: a refusal or cancellation in the alert colour, a save under way muted, the rest calm."""
    if not text:
        return ""
    def starts(*messages: str) -> bool:
        return text.startswith(tuple(_(m).split("{")[0] for m in messages))
    kind = ("twin-alert" if starts(REFUSED, CANCELLED) else "twin-muted" if starts(SAVING, STILL_SAVING, NOTHING_MOVED)
            else "twin-ok")
    return f"<span class='{kind}'>{html.escape(text)}</span>"


def _button(label: str, action: Callable[[], object], **kw) -> pn.widgets.Button:
    """A button that calls ``action()`` when clicked; a coroutine ``action`` is awaited on the event loop."""
    b = pn.widgets.Button(label=label, height=32, margin=(4, 4), **kw)
    if inspect.iscoroutinefunction(action):
        async def clicked(_event) -> None:
            await action()
        b.on_click(clicked)
    else:
        b.on_click(lambda _e: action())
    return b
