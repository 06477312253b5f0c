"""The planner's micro-grid proposal: made for a parent, summed up beside the plan, accepted as one save."""

from __future__ import annotations

import html
from collections.abc import Callable

import duckdb
import geopandas as gpd
import pandas as pd
import panel as pn

from scenes.planner.saving import Write, check_unchanged, versions_of
from scenes.i18n import N_, _
from scenes.theme import CSS
from twin.grids.gridversions import SavedEdit, current_grids, save_partition
from twin.grids.partition import Proposal, propose_micro_grids
from twin.grids.reassign import Assets

SUMMARY_ROWS = (("micro_grids", N_("micro-grids")), ("share_in_70_80", N_("share with 70–80 households")),
                ("high_rise_alone", N_("high-rise buildings alone")),
                ("polsby_popper_median", N_("Polsby–Popper, median")),
                ("polsby_popper_min", N_("Polsby–Popper, min")),
                ("households_min", N_("households, min")), ("households_max", N_("households, max")))


COMPACTNESS_WORDS = {"better": N_("more compact than now"), "same": N_("about as compact as now"),
                     "worse": N_("less compact than now")}


def verdict_words(judged: dict) -> str:
    """The proposal against the grids now, in one sentence (see :meth:`Proposal.judged`)."""
    new, now = judged["proposed"], judged["current"]
    return _("{n} micro-grids; {inside} hold 70–80 households (now {now_inside} of {now_n}); shapes {compact} "
             "(median Polsby–Popper {pp} against {now_pp}).").format(
        n=new["micro_grids"], inside=new["in_70_80"], now_inside=now["in_70_80"], now_n=now["micro_grids"],
        compact=_(COMPACTNESS_WORDS[judged["compactness"]]), pp=f"{new['polsby_popper_median']:.2f}",
        now_pp=f"{now['polsby_popper_median']:.2f}")


class ProposalDesk:
    """The proposal of micro-grids of 70–80 households for one parent, its summary pane and its buttons.

    Parameters
    ----------
    accept, edit, discard : callable
        What the Accept, Edit and Discard buttons call.
    button : callable
        ``button(label, action, **kw) -> Button``, the editor's button maker.
    """

    def __init__(self, *, button: Callable, accept: Callable, edit: Callable, discard: Callable) -> None:
        self.proposal: Proposal | None = None
        self.loaded: dict[str, dict[str, int]] = {}  # the versions each partition was proposed over
        self.pane = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width", css_classes=["twin-proposal"])
        self.buttons = pn.Row(button(_("Accept"), accept, color="primary"), button(_("Edit"), edit),
                              button(_("Discard"), discard), visible=False)

    def make(self, con: duckdb.DuckDBPyConnection, parent_id: str, assets: Assets | None, *,
             compactness: float = 0.0) -> Proposal | None:
        """Propose micro-grids for ``parent_id`` (raises TwinError when it cannot), judged against the grids now.

        Returns the proposal when it earns an offer (:meth:`~twin.grids.partition.Proposal.judged`), summed up
        in words and figures; None when it does not, with the pane saying why.
        """
        proposal = propose_micro_grids(con, parent_id, assets=assets, compactness=compactness)
        judged = proposal.judged()
        self.clear()
        if not judged["offered"]:
            self.pane.object = ("<div class='twin-alert'>" + html.escape(_(
                "No proposal is offered for {scope}: it is not better than the grids now.").format(
                scope=parent_id)) + f"</div><div>{html.escape(verdict_words(judged))}</div>"
                + "<div class='twin-muted'>" + _("Try another weight between households and compactness, or "
                                                 "keep the current grids.") + "</div>")
            return None
        self.proposal = proposal
        self.loaded = {p: versions_of(con, p) for p in proposal.partitions}
        self.pane.object = f"<div class='twin-verdict'>{html.escape(verdict_words(judged))}</div>" + self._html()
        self.buttons.visible = True
        return proposal

    def shapes(self) -> gpd.GeoSeries:
        """Every proposed micro-grid, of every partition."""
        return pd.concat(list(self.proposal.partitions.values()))

    def now(self, con: duckdb.DuckDBPyConnection) -> gpd.GeoSeries:
        """The micro-grids in force under the proposal's partitions."""
        now = current_grids(con, level="micro")
        return now[now["parent_id"].isin(list(self.proposal.partitions))].geometry

    def clear(self) -> None:
        self.proposal = None
        self.pane.object = ""
        self.buttons.visible = False

    def write(self, *, actor: str, reason: str, source: str | None) -> Write:
        """The write that saves every partition of the proposal (every grid of the scope), with ``reason``.

        It raises at the first partition that cannot be saved (say, another
        planner saved newer grids there since the proposal was made), after the
        partitions before it were written: the transaction, or the writer's job,
        is then undone as a whole, so all partitions are saved or none.
        """
        partitions, loaded = dict(self.proposal.partitions), self.loaded

        def write(con: duckdb.DuckDBPyConnection) -> list[SavedEdit]:
            saved = []
            for parent, shapes in partitions.items():
                check_unchanged(con, parent, loaded[parent], fix="propose again to start from the grids in force.")
                saved.append(save_partition(con, parent, shapes, actor=actor, reason=f"micro-grid proposal: {reason}",
                                            level="micro", source=source))
            return saved
        return write

    def partitions(self) -> list[str]:
        """The parents whose micro-grids the proposal redraws."""
        return list(self.proposal.partitions)

    def _html(self) -> str:
        s = self.proposal.summary()
        rows = "".join(f"<tr><td>{_(label)}</td><td>{s['current'].get(key, '—')}</td>"
                       f"<td>{s['proposed'].get(key, '—')}</td></tr>" for key, label in SUMMARY_ROWS)
        title = _("micro-grid proposal for {scope}").format(scope=html.escape(self.proposal.scope))
        return (f"<div class='label'>{title}</div><table class='twin-table'><tr><th></th><th>" + _("now")
                + "</th><th>" + _("proposed") + "</th></tr>" + rows + "</table>")
