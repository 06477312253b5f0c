"""The planner's rules display: which grid rules the edit breaks, and what it moves, before → after per grid."""

from __future__ import annotations

import html

import panel as pn

from scenes.theme import CSS
from twin.grids.gridrules import Violation, errors
from twin.grids.reassign import FIGURES, Reassignment

FIGURE_TITLES = {"buildings": "buildings", "households": "households", "residents": "residents",
                 "cameras": "cameras", "open_cases": "open cases"}


class RulesDisplay:
    """Two side panes: the before → after table of the edit (``figures_pane``), the broken rules (``rules_pane``)."""

    def __init__(self) -> None:
        self.figures_pane = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width",
                                         css_classes=["twin-before-after"])
        self.rules_pane = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width", css_classes=["twin-rules"])

    def show(self, violations: list[Violation], reassignment: Reassignment | None) -> None:
        self.figures_pane.object = figures_html(reassignment)
        self.rules_pane.object = rules_html(violations)


def figures_html(reassignment: Reassignment | None) -> str:
    """Per affected grid, each figure before → after (changed ones marked), and what moves in all."""
    r = reassignment
    if r is None or not len(r.figures):
        return "<div class='label'>before → after</div><div class='twin-muted'>No change yet.</div>"
    head = "".join(f"<th>{FIGURE_TITLES[f]}</th>" for f in FIGURES)
    rows = []
    for row in r.figures.itertuples(index=False):
        d = row._asdict()
        cells = []
        for f in FIGURES:
            b, a = int(d[f"{f}_before"]), int(d[f"{f}_after"])
            cls = " class='twin-alert'" if a != b else ""
            cells.append(f"<td{cls}>{b:,} → {a:,}</td>")
        rows.append(f"<tr><td>{html.escape(str(d['grid_id']))}</td>{''.join(cells)}</tr>")
    moved = r.summary()
    note = (f"moves {moved['buildings']:,} buildings, {moved['households']:,} households, "
            f"{moved['residents']:,} residents, {moved['cameras']:,} cameras, {moved['open_cases']:,} open cases")
    return (f"<div class='label'>before → after</div><div class='twin-muted'>{note}</div>"
            f"<table class='twin-table'><tr><th>grid</th>{head}</tr>{''.join(rows)}</table>")


def rules_html(violations: list[Violation]) -> str:
    """The broken rules, errors first: severity, rule, grid, area (m²) and what is wrong."""
    if not violations:
        return "<div class='label'>rules</div><div class='twin-ok'>All rules hold.</div>"
    rows = "".join(
        f"<tr class='twin-{v.severity}'><td class='{'twin-alert' if v.severity == 'error' else ''}'>"
        f"{v.severity}</td><td>{v.rule}</td><td>{html.escape(v.grid_id)}</td><td>{v.area_m2:,.2f}</td>"
        f"<td>{html.escape(v.message)}</td></tr>" for v in violations)
    n = len(errors(violations))
    return (f"<div class='label'>rules: {n} error(s), {len(violations) - n} warning(s)</div>"
            "<table class='twin-table'><tr><th></th><th>rule</th><th>grid</th><th>area m²</th><th>what</th></tr>"
            f"{rows}</table>")
