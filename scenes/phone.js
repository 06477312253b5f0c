// The phone pages' common helpers (the grid worker's /worker, the volunteers' /v, /m and /worker/tasks), inlined
// before each page's own script by scenes/phone.py: the page's words, its DOM builder.
"use strict";
window.twinPhone = (() => {
  const CFG = JSON.parse(document.getElementById("twin-config").textContent);
  const TEXTS = CFG.texts;
  function _(message) { return TEXTS[message] || message; }
  function fill(text, params) { return text.replace(/\{(\w+)\}/g, (m, k) => (k in params ? String(params[k]) : m)); }
  const $ = (id) => document.getElementById(id);
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }
  return { CFG, _, fill, $, el };
})();
