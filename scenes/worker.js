// The grid worker's phone page (scenes/field.py serves it, inline, with its configuration).
// Every action the worker takes goes into a queue in the phone's IndexedDB first, with an idempotency key,
// and is sent from there, in order, whenever the network lets it: a poor network loses nothing, and an
// action sent twice is applied once. An action the case has moved on from is shown to the worker, not forced.
// The phone's position leaves it only as a patrol check-in, while patrol is on (and the page says so).
"use strict";
(() => {
  const { CFG, _, fill, $, el } = window.twinPhone;  // scenes/phone.js
  const API = "/api/field";
  const FLUSH_EVERY_MS = 15000, REFRESH_EVERY_MS = 60000, FIX_FRESH_MS = 60000;

  const STEP_NAMES = { accept: _("Accept the case"), on_site: _("I am on site"), handled: _("Handled"),
                       hand_up: _("Hand up") };
  const state = {
    cases: [], byId: new Map(), current: null, card: null, position: null, fixAt: 0, patrol: CFG.patrol.on,
    online: navigator.onLine, queued: [], afterPhoto: new Set(), watch: null, checkTimer: null,
    skew: 0, // the store's clock minus the phone's (a demo store's clock stands still)
  };
  const now = () => Date.now() + state.skew;

  // -- the queue --------------------------------------------------------------------------------------------
  function newKey() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  let database = null;
  function db() {
    if (!database) database = new Promise((resolve, reject) => {
      const open = indexedDB.open(`twin-field-${CFG.user}`, 1); // one queue per worker, should a phone be shared
      open.onupgradeneeded = () => open.result.createObjectStore("queue", { keyPath: "seq", autoIncrement: true });
      open.onsuccess = () => resolve(open.result);
      open.onerror = () => reject(open.error);
    });
    return database;
  }
  async function store(mode, work) {
    const handle = await db();
    return new Promise((resolve, reject) => {
      const t = handle.transaction("queue", mode);
      const request = work(t.objectStore("queue"));
      t.oncomplete = () => resolve(request && request.result);
      t.onerror = () => reject(t.error);
    });
  }
  const queued = () => store("readonly", (s) => s.getAll());
  async function enqueue(item) {
    item.key = newKey();
    item.t = Date.now();
    item.seq = await store("readwrite", (s) => s.add(item));
    await showPending();
    flush();
    return item;
  }
  async function showPending() {
    state.queued = await queued();
    const n = state.queued.length;
    $("pending").textContent = n ? fill(_("{n} waiting to send"), { n }) : _("all sent");
    $("pending").className = n ? "pill waiting" : "pill";
  }

  function send(item) {
    const age = Date.now() - item.t;
    const headers = { [CFG.header]: "1" };
    if (item.type === "photo") {
      const query = new URLSearchParams({ kind: item.kind, key: item.key, age_ms: age, lang: CFG.lang,
                                          name: item.name || "" });
      headers["Content-Type"] = item.blob.type || "application/octet-stream";
      return fetch(`${API}/cases/${encodeURIComponent(item.case_id)}/photos?${query}`,
                   { method: "POST", body: item.blob, headers, credentials: "same-origin" });
    }
    headers["Content-Type"] = "application/json";
    return fetch(`${API}/actions?lang=${CFG.lang}`, { method: "POST", headers, credentials: "same-origin",
      body: JSON.stringify({ ...item.body, kind: item.type, key: item.key, age_ms: age }) });
  }

  let flushing = false;
  async function flush() {
    if (flushing) return;
    flushing = true;
    let moved = false;
    try {
      for (;;) {
        const items = await queued();
        if (!items.length) break;
        const item = items[0];
        let res;
        try {
          res = await send(item);
        } catch (e) { // no network: the item stays, and goes when the network is back
          setOnline(false);
          break;
        }
        setOnline(true);
        const body = await res.json().catch(() => ({}));
        const message = (body.error && body.error.message) || `HTTP ${res.status}`;
        if (res.status === 401) { notice("error", message, { signIn: true }); break; }
        if (res.status >= 500 || res.status === 429) break; // try again later, as sent
        await store("readwrite", (s) => s.delete(item.seq));
        moved = true;
        if (res.ok) applied(item, body);
        else notice(res.status === 409 ? "conflict" : "error", `${describe(item)}: ${message}`);
      }
    } finally {
      flushing = false;
      await showPending();
    }
    if (moved && state.online) refresh();
  }

  function describe(item) {
    const c = item.case_id ? `${item.case_id} · ` : "";
    if (item.type === "step") return c + STEP_NAMES[item.body.step];
    if (item.type === "photo") {
      return c + (item.kind === "after" ? _("Photo after the work") : _("Photo before the work"));
    }
    if (item.type === "patrol") return item.body.on ? _("Patrol on") : _("Patrol off");
    return _("Check-in");
  }

  function applied(item, body) {
    if (item.type === "patrol") CFG.patrol.since = body.since;
  }

  function setOnline(online) {
    state.online = online;
    $("net").textContent = online ? _("online") : _("offline");
    $("net").className = online ? "pill online" : "pill offline";
  }

  // -- notices: conflicts and refusals, kept until the worker dismisses them ------------------------------------
  function notice(kind, text, { signIn = false } = {}) {
    const box = el("div", { class: `notice ${kind}`, role: "alert" },
      el("span", { class: "notice-text" }, text),
      signIn ? el("a", { href: `/login?next=/worker&lang=${CFG.lang}` }, _("Sign in")) : null,
      el("button", { class: "dismiss", "aria-label": _("Dismiss"), onclick: () => box.remove() }, "×"));
    $("notices").append(box);
  }

  // -- reading ---------------------------------------------------------------------------------------------------
  async function getJSON(path) {
    const res = await fetch(`${API}${path}${path.includes("?") ? "&" : "?"}lang=${CFG.lang}`,
                            { credentials: "same-origin" });
    const body = await res.json().catch(() => ({}));
    if (res.status === 401) notice("error", body.error.message, { signIn: true });
    if (!res.ok) throw Object.assign(new Error((body.error && body.error.message) || `HTTP ${res.status}`),
                                     { status: res.status });
    return body;
  }

  async function refresh() {
    try {
      const body = await getJSON("/cases");
      setOnline(true);
      state.skew = Date.parse(body.now) - Date.now();
      const pending = pendingSteps();
      state.cases = body.cases.map((c) => withPending(c, pending));
      state.byId = new Map(state.cases.map((c) => [c.case_id, c]));
      renderList();
      if (state.current) openCase(state.current, { quiet: true });
    } catch (e) {
      if (!e.status) setOnline(false);
    }
  }

  // The steps still in the queue, by case: the case shows the status they lead to.
  function pendingSteps() {
    const out = new Map();
    for (const item of state.queued) if (item.type === "step") out.set(item.case_id, CFG.steps[item.body.step]);
    return out;
  }
  function withPending(c, pending) {
    if (!pending.has(c.case_id)) return c;
    const status = pending.get(c.case_id);
    return { ...c, status, steps: CFG.next[status] || [], waiting: true };
  }

  // -- the list --------------------------------------------------------------------------------------------------
  function distanceM(c) {
    if (!state.position || c.lat === undefined) return null;
    const R = 6371008.8, rad = Math.PI / 180;
    const dLat = (c.lat - state.position.lat) * rad, dLon = (c.lon - state.position.lon) * rad;
    const h = Math.sin(dLat / 2) ** 2 +
      Math.cos(state.position.lat * rad) * Math.cos(c.lat * rad) * Math.sin(dLon / 2) ** 2;
    return 2 * R * Math.asin(Math.sqrt(h));
  }
  function distanceText(m) {
    if (m === null) return _("distance unknown");
    return m < 1000 ? fill(_("{m} m"), { m: Math.round(m) }) : fill(_("{km} km"), { km: (m / 1000).toFixed(1) });
  }
  function duration(ms) {
    const minutes = Math.round(Math.abs(ms) / 60000), days = Math.floor(minutes / 1440), rest = minutes % 1440;
    if (days) return fill(_("{days} d {hours} h"), { days, hours: Math.floor(rest / 60) });
    return rest >= 60 ? fill(_("{hours} h"), { hours: Math.floor(rest / 60) })
                      : fill(_("{minutes} min"), { minutes: rest });
  }
  function deadlineText(c) {
    if (!c.deadline) return ["", ""];
    const left = Date.parse(c.deadline) - now();
    return left < 0 ? [fill(_("Overdue by {duration}"), { duration: duration(left) }), "overdue"]
                    : [fill(_("Due in {duration}"), { duration: duration(left) }), ""];
  }
  function sortKey(c) {
    const d = c.deadline ? Date.parse(c.deadline) : Infinity, m = distanceM(c);
    return [d, m === null ? Infinity : m];
  }

  function renderList() {
    const list = $("cases");
    list.replaceChildren();
    const cases = [...state.cases].sort((a, b) => {
      const [ka, kb] = [sortKey(a), sortKey(b)];
      return ka[0] - kb[0] || ka[1] - kb[1] || a.case_id.localeCompare(b.case_id);
    });
    for (const c of cases) {
      const [due, dueClass] = deadlineText(c);
      list.append(el("li", {},
        el("button", { class: "case", "data-case-id": c.case_id, onclick: () => openCase(c.case_id) },
          el("div", { class: "case-head" },
            el("span", { class: "kind" }, CFG.kinds[c.subcategory] || c.subcategory),
            el("span", { class: `status s-${c.status}` }, CFG.statuses[c.status] || c.status)),
          el("div", { class: "case-line" },
            el("span", { class: `due ${dueClass}` }, due),
            el("span", { class: "distance" }, distanceText(distanceM(c)))),
          el("div", { class: "case-line muted" }, `${c.case_id} · ${c.address || c.grid_name || ""}`),
          c.waiting ? el("div", { class: "waiting" }, _("waiting to send")) : null,
          c.assigned_worker && !c.mine ? el("div", { class: "muted" }, fill(_("given to {worker}"),
                                                                             { worker: c.assigned_worker })) : null)));
    }
    $("empty").hidden = cases.length > 0;
  }

  // -- one case --------------------------------------------------------------------------------------------------
  async function openCase(caseId, { quiet = false } = {}) {
    state.current = caseId;
    if (!quiet) {
      state.card = null;
      $("note").value = "";
      window.scrollTo(0, 0);
    }
    $("list-view").hidden = true;
    $("case-view").hidden = false;
    renderCase();
    try {
      const card = await getJSON(`/cases/${encodeURIComponent(caseId)}`);
      if (state.current !== caseId) return;
      state.card = card;
      const pending = pendingSteps();
      if (pending.has(caseId)) Object.assign(card, withPending(card, pending));
      renderCase();
    } catch (e) {
      if (e.status) notice(e.status === 409 ? "conflict" : "error", e.message);
    }
  }

  function closeCase() {
    state.current = null;
    state.card = null;
    $("case-view").hidden = true;
    $("list-view").hidden = false;
    renderList();
  }

  function currentCase() {
    const listed = state.byId.get(state.current) || { case_id: state.current, status: "", steps: [] };
    return state.card ? { ...listed, ...state.card, waiting: listed.waiting } : listed;
  }

  function hasAfterPhoto(c) {
    if (state.afterPhoto.has(c.case_id)) return true;
    if (!state.card || !state.card.photos) return false;
    const arrived = (state.card.history || []).filter((e) => e.to_status === "on_site").map((e) => Date.parse(e.at));
    const since = arrived.length ? Math.max(...arrived) : Infinity;
    return state.card.photos.some((p) => p.kind === "after" && Date.parse(p.at) >= since);
  }

  function renderCase() {
    const c = currentCase();
    $("case-title").textContent = `${CFG.kinds[c.subcategory] || c.subcategory || ""} · ${c.case_id}`;
    const waiting = _("waiting to send");
    $("case-status").textContent = (CFG.statuses[c.status] || c.status) + (c.waiting ? ` · ${waiting}` : "");
    $("case-status").className = `status s-${c.status}`;
    const [due, dueClass] = deadlineText(c);
    const facts = [[_("where"), c.address], [_("what"), c.description], [_("deadline"), due],
                   [_("distance"), distanceText(distanceM(c))], [_("micro-grid"), c.grid_name || c.grid_id]];
    $("case-facts").replaceChildren(...facts.filter(([, v]) => v).flatMap(([k, v]) =>
      [el("dt", {}, k), el("dd", { class: k === _("deadline") ? dueClass : "" }, v)]));
    renderMap(state.card && state.card.map);
    renderSteps(c);
    renderPhotos(c);
    $("history").replaceChildren(...((state.card && state.card.history) || []).map((e) =>
      el("li", {}, `${(e.at || "").slice(5, 16).replace("T", " ")} · ${CFG.statuses[e.to_status] || e.to_status} · ` +
                   `${e.actor}${e.note ? ` · ${e.note}` : ""}`)));
  }

  function renderSteps(c) {
    const steps = c.steps || [];
    const box = $("steps");
    box.replaceChildren();
    for (const step of steps) {
      const needsPhoto = step === "handled" && !hasAfterPhoto(c);
      box.append(el("button", { class: `step step-${step}`, disabled: needsPhoto,
                                onclick: () => takeStep(step) }, STEP_NAMES[step]));
      if (needsPhoto) box.append(el("div", { class: "hint" }, _("Take a photo after the work first.")));
    }
    if (!steps.length) box.append(el("div", { class: "muted" }, _("No step for you to take on this case now.")));
    $("note-box").hidden = !steps.length;
  }

  async function takeStep(step) {
    const c = currentCase();
    const note = $("note").value.trim();
    if (step === "hand_up" && note.length < CFG.min_reason) {
      notice("error", fill(_("Handing up needs a reason of at least {n} characters: write it in the note."),
                           { n: CFG.min_reason }));
      return;
    }
    await enqueue({ type: "step", case_id: c.case_id,
                    body: { case_id: c.case_id, step, seen_status: c.status, note: note || null } });
    $("note").value = "";
    const status = CFG.steps[step];
    const listed = state.byId.get(c.case_id);
    const local = { status, steps: CFG.next[status] || [], waiting: true };
    if (listed) Object.assign(listed, local);
    if (state.card) Object.assign(state.card, local);
    if (step === "handled" || step === "hand_up") closeCase();
    else renderCase();
  }

  function renderPhotos(c) {
    const allowed = CFG.photo_statuses;
    $("photo-before-label").hidden = !(allowed.before.includes(c.status) && (c.steps || []).length);
    $("photo-after-label").hidden = !(allowed.after.includes(c.status) && (c.steps || []).length);
    const shown = ((state.card && state.card.photos) || []).map((p) =>
      el("figure", { class: `photo photo-${p.kind}` },
        el("img", { src: `${API}/photos/${p.photo_id}`, alt: p.kind, loading: "lazy" }),
        el("figcaption", {}, p.kind === "after" ? _("after") : _("before"))));
    const waiting = state.queued.filter((q) => q.type === "photo" && q.case_id === c.case_id).map((q) =>
      el("figure", { class: `photo photo-${q.kind} waiting` },
        el("img", { src: URL.createObjectURL(q.blob), alt: q.kind }),
        el("figcaption", {}, `${q.kind === "after" ? _("after") : _("before")} · ${_("waiting to send")}`)));
    $("photo-list").replaceChildren(...shown, ...waiting);
  }

  async function photoTaken(kind, input) {
    const file = input.files && input.files[0];
    input.value = "";
    if (!file) return;
    if (file.type && !CFG.photo_types.includes(file.type)) {
      notice("error", _("Only JPEG, PNG or WebP photos can be sent."));
      return;
    }
    if (file.size > CFG.max_photo_bytes) {
      notice("error", fill(_("The photo is {size} MB; a photo may be at most {max} MB."),
                           { size: (file.size / 1048576).toFixed(1), max: CFG.max_photo_bytes / 1048576 }));
      return;
    }
    const c = currentCase();
    await enqueue({ type: "photo", case_id: c.case_id, kind, blob: file, name: file.name });
    if (kind === "after") state.afterPhoto.add(c.case_id);
    renderCase();
  }

  // -- the map of the case's micro-grid ---------------------------------------------------------------------------
  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  }
  function renderMap(map) {
    const box = $("map");
    box.replaceChildren();
    box.hidden = !map;
    if (!map) return;
    const pad = Math.max(map.width, map.height) * 0.06, w = map.width + 2 * pad, h = map.height + 2 * pad;
    box.setAttribute("viewBox", `${-pad} ${-pad} ${w} ${h}`);
    const path = (rings) => rings.map((r) => "M" + r.map(([x, y]) => `${x},${map.height - y}`).join("L") + "Z")
      .join("");
    box.append(svg("path", { d: path(map.grid), class: "map-grid" }));
    box.append(svg("path", { d: path(map.buildings), class: "map-buildings" }));
    const r = Math.max(w, h) / 45;
    box.append(svg("circle", { cx: map.case[0], cy: map.height - map.case[1], r, class: "map-case" }));
    if (state.position && map.frame) {
      const f = map.frame, dl = state.position.lon - f.lon0, db = state.position.lat - f.lat0;
      const x = f.a * dl + f.b * db + f.dx, y = f.c * dl + f.d * db + f.dy;
      if (x > -w && x < 2 * w && y > -h && y < 2 * h) {
        box.append(svg("circle", { cx: x, cy: map.height - y, r: r * 0.8, class: "map-me" }));
      }
    }
  }

  // -- patrol ----------------------------------------------------------------------------------------------------
  function renderPatrol() {
    $("patrol-switch").checked = state.patrol;
    $("patrol-state").textContent = state.patrol
      ? fill(_("On patrol: your position is recorded every {s} s."), { s: CFG.check_in_s })
      : _("Patrol is off: your position is not recorded.");
    $("patrol").className = state.patrol ? "patrol on" : "patrol";
  }
  function onFix(pos) {
    state.position = { lon: pos.coords.longitude, lat: pos.coords.latitude, accuracy: pos.coords.accuracy };
    state.fixAt = Date.now();
    if (state.patrol && !state.checkedIn) checkIn();
    if (state.current) renderCase(); else renderList();
  }
  function onGeoError(err) {
    if (state.patrol) notice("error", fill(_("The phone gives no position ({reason}): no check-ins are recorded."),
                                           { reason: err.message || err.code }));
  }
  function checkIn() {
    if (!state.patrol || !state.position || Date.now() - state.fixAt > FIX_FRESH_MS) return;
    state.checkedIn = true;
    const { lon, lat, accuracy } = state.position;
    enqueue({ type: "position", body: { lon, lat, accuracy } });
  }
  function watchPosition(on) {
    if (!navigator.geolocation) return;
    if (on && state.watch === null) {
      state.watch = navigator.geolocation.watchPosition(
        onFix, onGeoError, { enableHighAccuracy: true, maximumAge: 10000, timeout: 30000 });
      state.checkTimer = setInterval(checkIn, CFG.check_in_s * 1000);
    } else if (!on && state.watch !== null) {
      navigator.geolocation.clearWatch(state.watch);
      clearInterval(state.checkTimer);
      state.watch = null;
      state.checkedIn = false;
    }
  }
  async function setPatrol(on) {
    state.patrol = on;
    renderPatrol();
    await enqueue({ type: "patrol", body: { on } });
    state.checkedIn = false;
    watchPosition(on);
  }

  // -- start -----------------------------------------------------------------------------------------------------
  async function start() {
    setOnline(navigator.onLine);
    await showPending();
    const lastPatrol = state.queued.filter((q) => q.type === "patrol").pop(); // not yet sent: the phone's word stands
    if (lastPatrol) state.patrol = lastPatrol.body.on;
    renderPatrol();
    watchPosition(state.patrol);
    if (!state.patrol && navigator.geolocation) { // for the distances only: this position stays on the phone
      navigator.geolocation.getCurrentPosition(onFix, () => {}, { maximumAge: 60000, timeout: 20000 });
    }
    $("patrol-switch").addEventListener("change", (e) => setPatrol(e.target.checked));
    $("back").addEventListener("click", closeCase);
    $("photo-before").addEventListener("change", (e) => photoTaken("before", e.target));
    $("photo-after").addEventListener("change", (e) => photoTaken("after", e.target));
    window.addEventListener("online", () => { setOnline(true); flush(); refresh(); });
    window.addEventListener("offline", () => setOnline(false));
    setInterval(() => { if (state.queued.length) flush(); }, FLUSH_EVERY_MS);
    setInterval(() => { if (state.online && !state.queued.length) refresh(); }, REFRESH_EVERY_MS);
    await refresh();
    flush();
    window.twinWorkerReady = true; // for tests: the first list is drawn
  }
  start();
})();
