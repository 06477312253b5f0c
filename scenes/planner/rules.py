"""The planner's rules display: which grid rules the edit breaks, and what it moves, before → after per grid."""

from __future__ import annotations

import html

import panel as pn

from scenes.i18n import N_, _, format_number
from scenes.theme import CSS
from twin.grids.gridrules import Violation, errors
from twin.grids.reassign import FIGURES, Reassignment

FIGURE_TITLES = {"buildings": N_("buildings"), "households": N_("households"), "residents": N_("residents"),
                 "cameras": N_("cameras"), "open_cases": N_("open cases")}
SEVERITY_NAMES = {"error": N_("error"), "warning": N_("warning")}
RULE_NAMES = {"valid": N_("valid outline"), "inside_parent": N_("inside its parent"), "overlap": N_("overlap"),
              "gap": N_("gap"), "building_cut": N_("building cut"), "households": N_("households")}


def rule_name(code: str) -> str:
    return _(RULE_NAMES[code]) if code in RULE_NAMES else code


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
        return ("<div class='label'>" + _("before → after") + "</div><div class='twin-muted'>" + _("No change yet.")
                + "</div>")
    head = "".join(f"<th>{_(FIGURE_TITLES[f])}</th>" for f in FIGURES)
    rows = []
    for row in r.figures.itertuples(index=False):
        d = row._asdict()
        cells = []
        for f in FIGURES:
            b, a = int(d[f"{f}_before"]), int(d[f"{f}_after"])
            cls = " class='twin-alert'" if a != b else ""
            cells.append(f"<td{cls}>{format_number(b)} → {format_number(a)}</td>")
        rows.append(f"<tr><td>{html.escape(str(d['grid_id']))}</td>{''.join(cells)}</tr>")
    moved = r.summary()
    note = _("moves {buildings} buildings, {households} households, {residents} residents, {cameras} cameras, "
             "{open_cases} open cases").format(**{k: format_number(v) for k, v in moved.items()})
    return ("<div class='label'>" + _("before → after") + f"</div><div class='twin-muted'>{note}</div>"
            "<table class='twin-table'><tr><th>" + _("grid") + f"</th>{head}</tr>{''.join(rows)}</table>")


def rules_html(violations: list[Violation]) -> str:
    """The broken rules, errors first: severity, rule, grid, area (m²) and what is wrong."""
    if not violations:
        return "<div class='label'>" + _("rules") + "</div><div class='twin-ok'>" + _("All rules hold.") + "</div>"
    rows = "".join(
        f"<tr class='twin-{v.severity}'><td class='{'twin-alert' if v.severity == 'error' else ''}'>"
        f"{_(SEVERITY_NAMES[v.severity])}</td><td>{html.escape(rule_name(v.rule))}</td>"
        f"<td>{html.escape(v.grid_id)}</td><td>{format_number(v.area_m2, digits=2)}</td>"
        f"<td>{html.escape(v.message)}</td></tr>" for v in violations)
    n = len(errors(violations))
    heads = "".join(f"<th>{h}</th>" for h in ("", _("rule"), _("grid"), _("area m²"), _("what")))
    return ("<div class='label'>" + _("rules: {errors} error(s), {warnings} warning(s)").format(
        errors=n, warnings=len(violations) - n) + f"</div><table class='twin-table'><tr>{heads}</tr>{rows}</table>")
