"""A light sortable, paged table: the per-grid figures without a table library in the page.

Tabulator and Bokeh's tables add 0.8 MB of scripts that every page evaluates
before it can draw the district; this table is a few dozen lines. Rows travel
as plain lists; a live change of a few cells travels as those cells only.
"""

from __future__ import annotations

import param
from panel.custom import JSComponent

from scenes.theme import ACCENT, FONT_STACK, MUTED, PANEL, TEXT


class SortableTable(JSComponent):
    """Rows of a table, in their own order until a click on a column's title sorts them; a page at a time.

    ``columns`` are ``[title, numeric]``; ``rows`` are lists in that order. A click on a
    row sets ``clicked`` to ``{'row': index into rows, 'seq': n}``. ``cells`` patches
    ``[row, column, value]`` into the rows without resending them. A row's title is its first cell.
    ``importance`` lists the columns, most important first: those at its end are left out while a
    title or a cell of the first row would be cut short (all columns are shown without it); with
    ``wrap_titles`` the titles wrap instead, and only the cells decide.
    """

    columns = param.List(default=[], doc="[title, numeric] per column")
    rows = param.List(default=[], doc="The rows, each a list in column order")
    cells = param.List(default=[], doc="Live changes: [row, column, value]")
    page_size = param.Integer(default=15, bounds=(1, None))
    clicked = param.Dict(default={}, doc="Set by the browser: {'row', 'seq'}")
    rows_word = param.String(default="rows", doc="The pager's word for rows, in the session's language")
    importance = param.List(default=[], doc="Column indices, most important first; the last give way to the width")
    wrap_titles = param.Boolean(default=False, doc="Titles wrap onto more lines rather than be cut (and their "
                                                   "columns left out): for many short numeric columns")

    _esm = """
    export function render({ model, el }) {
      const box = document.createElement("div");
      box.className = "twin-table-box";
      el.appendChild(box);
      let sortCol = -1, sortDesc = false, page = 0, seq = 0, order = [];  // -1: the rows' own order
      function sortRows() {
        const rows = model.rows || [], numeric = (model.columns[sortCol] || [])[1];
        order = rows.map((_, i) => i);
        if (sortCol >= 0) order.sort((a, b) => {
          const x = rows[a][sortCol], y = rows[b][sortCol];
          const c = numeric ? x - y : String(x).localeCompare(String(y));
          return sortDesc ? -c : c;
        });
      }
      function draw() {
        // The most important columns that fit the box's width (all of them without an importance order).
        box.classList.toggle("wrap", !!model.wrap_titles);
        const ranked = (model.importance || []).filter((c) => c < model.columns.length);
        for (let keep = ranked.length || model.columns.length; keep >= 1; keep--) {
          drawColumns(ranked.length ? new Set(ranked.slice(0, keep)) : null);
          if (!ranked.length || !cut()) break;
        }
      }
      // A title or a cell of the first row cut short: the columns share too little width.
      const cut = () => [...box.querySelectorAll("th, tbody tr:first-child td")].some(
        (e) => e.scrollWidth > e.clientWidth + 1);
      function drawColumns(shown) {
        const rows = model.rows || [], size = model.page_size, pages = Math.max(1, Math.ceil(rows.length / size));
        page = Math.min(page, pages - 1);
        const cols = model.columns.map((col, c) => [col, c]).filter(([, c]) => !shown || shown.has(c));
        const head = cols.map(([[title, numeric], c]) =>
          `<th data-col="${c}" class="${numeric ? "num" : ""}" title="${title}">${title}` +
          `${c === sortCol ? (sortDesc ? " ▼" : " ▲") : ""}</th>`).join("");
        const body = order.slice(page * size, (page + 1) * size).map((r) =>
          `<tr data-row="${r}" title="${String(rows[r][0] ?? "")}">` +
          cols.map(([[, numeric], c]) => numeric  // columns and rows may arrive apart
            ? `<td class="num">${Number(rows[r][c]).toLocaleString()}</td>` : `<td>${String(rows[r][c] ?? "")}</td>`)
            .join("") + "</tr>").join("");
        box.innerHTML = `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>` +
          `<div class="pager"><button data-go="-1" ${page ? "" : "disabled"}>‹</button>` +
          `<span>${page + 1} / ${pages} · ${rows.length.toLocaleString()} ${model.rows_word}</span>` +
          `<button data-go="1" ${page < pages - 1 ? "" : "disabled"}>›</button></div>`;
      }
      box.addEventListener("click", (e) => {
        const th = e.target.closest("th"), tr = e.target.closest("tr[data-row]"), go = e.target.closest("button");
        if (th) {
          const c = Number(th.dataset.col);
          sortDesc = c === sortCol ? !sortDesc : (model.columns[c] || [])[1];  // numbers: largest first
          sortCol = c; sortRows(); draw();
        } else if (go) { page += Number(go.dataset.go); draw(); }
        else if (tr) { model.clicked = { row: Number(tr.dataset.row), seq: ++seq }; }
      });
      model.on("rows", () => { sortRows(); draw(); });
      model.on("columns", () => { sortCol = -1; sortDesc = false; sortRows(); draw(); });
      model.on("cells", () => {
        for (const [r, c, v] of model.cells || []) if (model.rows[r]) model.rows[r][c] = v;
        sortRows(); draw();
      });
      model.on("importance", draw);
      let width = 0;
      const resized = new ResizeObserver(() => { if (box.clientWidth !== width) { width = box.clientWidth; draw(); } });
      resized.observe(box);
      model.on("remove", () => resized.disconnect());
      sortRows(); draw();
    }
    """
    _stylesheets = [f"""
    :host {{ display: block; width: 100%; }}
    .twin-table-box {{ font: 12px {FONT_STACK}; color: {TEXT}; }}
    /* The columns share the width the table has: no sideways scrolling; a cut title shows whole on hover. */
    table {{ width: 100%; border-collapse: collapse; table-layout: fixed; }}
    th {{ text-align: left; color: {MUTED}; font-weight: 500; padding: 4px; cursor: pointer; user-select: none;
          border-bottom: 1px solid {ACCENT}; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }}
    td {{ padding: 3px 4px; border-bottom: 1px solid {PANEL}; white-space: nowrap; overflow: hidden;
          text-overflow: ellipsis; max-width: 110px; }}
    .num {{ text-align: right; }}
    /* Titles wrap at spaces (between any characters in Chinese), and inside a word only when it cannot fit. */
    .wrap th {{ white-space: normal; overflow-wrap: break-word; vertical-align: bottom; }}
    .wrap th:first-child {{ width: 30%; }}  /* the names: the numbers beside them are short */
    tbody tr {{ cursor: pointer; }}
    tbody tr:hover {{ background: {PANEL}; }}
    .pager {{ display: flex; gap: 8px; align-items: center; justify-content: flex-end; padding: 6px 0; color: {MUTED}; }}
    .pager button {{ background: {PANEL}; color: {TEXT}; border: 1px solid {ACCENT}; border-radius: 4px; padding: 2px 10px;
                     cursor: pointer; }}
    .pager button:disabled {{ opacity: .4; cursor: default; }}
    """]
