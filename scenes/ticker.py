"""The live case ticker: the latest changed cases as buttons along the bottom of the screen.

A component of its own, of fixed size, so that new labels every second change
a few buttons in its own DOM and never make the browser lay the page out again
(with Panel buttons, a busy feed kept a core of the browser busy doing that).
"""

from __future__ import annotations

import param
from panel.custom import JSComponent

from scenes.theme import ACCENT, FONT_STACK, MUTED, PANEL, TEXT


class CaseTicker(JSComponent):
    """``items`` are ``[case_id, label]``; a click sets ``clicked`` to ``{'case_id', 'seq'}``."""

    title = param.String(default="LIVE CASES", doc="The row's heading, in the session's language")
    items = param.List(default=[], doc="[case_id, label] of the latest cases, newest first")
    clicked = param.Dict(default={}, doc="Set by the browser: the clicked case's id and a sequence number")

    _esm = """
    export function render({ model, el }) {
      const row = document.createElement("div");
      row.className = "twin-ticker-row";
      el.appendChild(row);
      let seq = 0;
      function draw() {
        const items = model.items || [];
        const title = document.createElement("span");
        title.className = "twin-ticker-title";
        title.textContent = model.title;
        row.replaceChildren(title, ...items.map(([id, label]) => {
          const b = document.createElement("button");
          b.textContent = label;
          b.className = id.startsWith("task|") ? "twin-ticker-task" : "twin-ticker-case";  // a volunteer task's, or a case's
          b.addEventListener("click", () => { model.clicked = { case_id: id, seq: ++seq }; });
          return b;
        }));
      }
      model.on("items", draw);
      draw();
    }
    """
    _stylesheets = [f"""
    :host {{ display: block; width: 100%; height: 40px; overflow: hidden; }}
    .twin-ticker-row {{ display: flex; gap: 6px; align-items: center; height: 40px; overflow: hidden;
                        white-space: nowrap; }}
    .twin-ticker-title {{ color: {MUTED}; font: 12px {FONT_STACK}; flex: none; width: 84px; }}
    button {{ flex: none; background: {PANEL}; color: {TEXT}; border: 1px solid {ACCENT}; border-radius: 4px;
              padding: 5px 10px; font: 12px {FONT_STACK}; cursor: pointer; }}
    """]
