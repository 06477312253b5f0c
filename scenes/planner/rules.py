"""The planner's rules display: which grid rules the edit breaks, and what it moves, before → after per grid."""

from __future__ import annotations

import html
import re

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


# What each broken rule means, in plain words (a child redrawn under the edited grid has its own sentence).
PLAIN = {
    "valid": N_("The outline of {grid} crosses itself or is empty: redraw it."),
    "inside_parent": N_("{area} m² of {grid} lie outside its parent: move its vertices inside."),
    "overlap": N_("{grid} and {other} overlap by {area} m²: move the shared vertices so they meet along one edge."),
    "gap": N_("{area} m² of {grid} belong to no grid: move a neighbour over the gap, or draw a grid there."),
    "building_cut": N_("The boundary of {grid} cuts building {other} ({area} m² of it on this side): move the "
                       "boundary off the building, or snap it to the building's corners."),
    "households": N_("{grid} holds {households} households, not 70–80 (nor one high-rise building): split or "
                     "merge micro-grids."),
}
PLAIN_REDRAWN = {
    "inside_parent": N_("Saving redraws {grid} to fit {parent}, and {area} m² of it would still lie outside "
                        "{parent}: move the boundary along the edges of the grids inside."),
    "overlap": N_("Saving redraws {grid} to fit {parent}, and it would overlap {other} by {area} m²: move the "
                  "boundary along the edges of the grids inside."),
    "gap": N_("Saving would give {parent} {area} m² that none of its grids borders: draw one there first, or move "
              "the boundary back."),
    "building_cut": N_("Saving redraws {grid} to fit {parent}, and its new boundary would cut building {other} "
                       "({area} m²): move the boundary along the edges of the grids inside, or off the building."),
}
PLAIN_OTHER = N_("Saving redraws {grid} to fit {parent}, and it would break the rule “{rule}” ({area} m²).")


def rule_name(code: str) -> str:
    return _(RULE_NAMES[code]) if code in RULE_NAMES else code


def plain_words(v: Violation, names: dict[str, str] | None = None) -> str:
    """One broken rule in plain words, grids called by name (``names``: grid id -> name) and id."""
    names = names or {}

    def called(grid_id: str | None) -> str:
        return f"{names[grid_id]} ({grid_id})" if grid_id in names and names[grid_id] != grid_id else str(grid_id)
    found = re.search(r"holds (\d+) households", v.message)
    words = {"grid": called(v.grid_id), "other": called(v.other_id), "parent": called(v.under),
             "area": format_number(v.area_m2, digits=1), "households": found.group(1) if found else "?",
             "rule": rule_name(v.rule)}
    if v.under is not None:
        return _(PLAIN_REDRAWN.get(v.rule, PLAIN_OTHER)).format(**words)
    return _(PLAIN[v.rule]).format(**words) if v.rule in PLAIN else v.message


class RulesDisplay:
    """Two side panes: the before → after table of the edit (``figures_pane``), the broken rules (``rules_pane``)."""

    def __init__(self) -> None:
        self.figures_pane = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width",
                                         css_classes=["twin-before-after"])
        self.rules_pane = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width", css_classes=["twin-rules"])

    def show(self, violations: list[Violation], reassignment: Reassignment | None,
             names: dict[str, str] | None = None) -> None:
        self.figures_pane.object = figures_html(reassignment)
        self.rules_pane.object = rules_html(violations, names)


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


def rules_html(violations: list[Violation], names: dict[str, str] | None = None) -> str:
    """The broken rules, errors first, each in plain words (with its area, m²), before Save is pressed."""
    if not violations:
        return "<div class='label'>" + _("rules") + "</div><div class='twin-ok'>" + _("All rules hold.") + "</div>"
    rows = "".join(
        f"<tr class='twin-{v.severity}'><td class='{'twin-alert' if v.severity == 'error' else ''}' "
        f"style='white-space:nowrap'>{_(SEVERITY_NAMES[v.severity])}</td>"
        f"<td style='white-space:nowrap'>{html.escape(rule_name(v.rule))}</td>"
        f"<td>{format_number(v.area_m2, digits=2)}</td><td>{html.escape(plain_words(v, names))}</td></tr>"
        for v in violations)
    n = len(errors(violations))
    heads = "".join(f"<th>{h}</th>" for h in ("", _("rule"), _("area m²"), _("what")))
    note = ("<div class='twin-alert'>" + _("Save is refused until every error is mended.") + "</div>") if n else ""
    return ("<div class='label'>" + _("rules: {errors} error(s), {warnings} warning(s)").format(
        errors=n, warnings=len(violations) - n) + f"</div>{note}<table class='twin-table'><tr>{heads}</tr>{rows}"
        "</table>")
