// The volunteer scheme's phone pages (scenes/volunteers.py serves them, inline, with their configuration):
// the resident's (/v: tasks near them, grab, check in and out, points, rewards, 小杜拍), the merchant's (/m: check
// and take codes) and the grid worker's tasks (/worker/tasks: publish, confirm, review reports).
// Every action is one request whose answer is shown; the server refuses what is not the user's to do.
"use strict";
(() => {
  const { CFG, _, fill, $, el } = window.twinPhone;  // scenes/phone.js
  const when = (iso) => (iso ? iso.slice(5, 16).replace("T", " ") : "");

  function notice(text, ok = false) {
    const box = el("div", { class: ok ? "notice ok" : "notice", role: ok ? "status" : "alert" },
      el("span", {}, text), el("button", { "aria-label": _("Dismiss"), onclick: () => box.remove() }, "×"));
    $("notices").append(box);
    if (ok) setTimeout(() => box.remove(), 6000);
  }

  async function call(method, path, body, { raw = null, query = "" } = {}) {
    const headers = { [CFG.header]: "1" };
    let payload;
    if (raw) { payload = raw; headers["Content-Type"] = raw.type || "application/octet-stream"; }
    else if (body !== undefined) { payload = JSON.stringify(body); headers["Content-Type"] = "application/json"; }
    const sep = path.includes("?") ? "&" : "?";
    const res = await fetch(`${path}${sep}lang=${CFG.lang}${query}`,
                            { method, headers: method === "GET" ? {} : headers, body: payload,
                              credentials: "same-origin" });
    const answer = await res.json().catch(() => ({}));
    if (!res.ok) {
      const message = (answer.error && answer.error.message) || `HTTP ${res.status}`;
      throw Object.assign(new Error(message), { status: res.status });
    }
    return answer;
  }
  async function act(work, done) {
    try {
      const answer = await work();
      if (done) notice(done(answer), true);
      await refresh();
      return answer;
    } catch (e) {
      notice(e.message);
      return null;
    }
  }

  function position() {
    return new Promise((resolve, reject) => {
      if (!navigator.geolocation) { reject(new Error(_("This phone gives no position."))); return; }
      navigator.geolocation.getCurrentPosition(
        (p) => resolve({ lon: p.coords.longitude, lat: p.coords.latitude }),
        (err) => reject(new Error(fill(_("The phone gives no position ({reason})."), { reason: err.message || err.code }))),
        { enableHighAccuracy: true, maximumAge: 10000, timeout: 20000 });
    });
  }
  function distanceText(m) {
    if (m === null || m === undefined) return "";
    return m < 1000 ? fill(_("{m} m"), { m: Math.round(m) }) : fill(_("{km} km"), { km: (m / 1000).toFixed(1) });
  }
  function windowText(t) { // the end's day only when it differs from the start's
    const a = when(t.starts_at), b = when(t.ends_at);
    return `${a} – ${a.slice(0, 5) === b.slice(0, 5) ? b.slice(6) : b}`;
  }

  // -- the resident --------------------------------------------------------------------------------------------
  const state = { near: null };
  async function residentRefresh() {
    const query = state.near ? `&lon=${state.near.lon}&lat=${state.near.lat}` : "";
    const [me, tasks, offers] = await Promise.all([call("GET", "/api/v/me"), call("GET", "/api/v/tasks", undefined,
                                                   { query }), call("GET", "/api/v/rewards")]);
    $("name").textContent = me.name || CFG.user;
    $("balance").textContent = me.balance;
    $("tasks").replaceChildren(...tasks.tasks.map((t) => {
      const full = t.places_left <= 0;
      const why = t.mine ? _("You have a place") : !t.may_take ? _("Party members only") : full ? _("Full") : null;
      return el("li", { "data-task-id": t.task_id },
        el("div", { class: "row" }, el("span", { class: "title" }, t.title),
           el("span", { class: "tag" }, fill(_("{points} points"), { points: t.points }))),
        el("div", { class: "muted" }, `${t.place} · ${distanceText(t.distance_m)}`),
        el("div", { class: "muted" }, `${windowText(t)} · ` +
           fill(_("{left} of {places} places left"), { left: t.places_left, places: t.places })),
        t.eligibility === "party" ? el("span", { class: "tag party" }, _("Party members only")) : null,
        el("div", { class: "buttons" }, el("button", { class: "act grab", disabled: why !== null,
          onclick: () => act(() => call("POST", "/api/v/grab", { task_id: t.task_id }),
                             (a) => fill(_("You have place {n} on this task."), { n: a.place_no })) },
          why || _("Grab it"))));
    }));
    $("no-tasks").hidden = tasks.tasks.length > 0;
    $("my-tasks").replaceChildren(...me.tasks.map((t) => {
      const stage = t.confirmed_at ? _("Confirmed: points credited") : t.checked_out_at ? _("Checked out: waiting for the grid worker")
        : t.checked_in_at ? _("Checked in") : _("Grabbed");
      const site = (out) => act(async () => call("POST", "/api/v/site", { task_id: t.task_id, out, ...(await position()) }),
                                () => (out ? _("Checked out.") : _("Checked in.")));
      return el("li", { "data-task-id": t.task_id },
        el("div", { class: "row" }, el("span", { class: "title" }, t.title),
           el("span", { class: t.confirmed_at ? "tag done" : "tag" }, stage)),
        el("div", { class: "muted" }, `${t.place} · ${windowText(t)}`),
        el("div", { class: "buttons" },
          !t.checked_in_at ? el("button", { class: "act alt checkin", onclick: () => site(false) }, _("Check in")) : null,
          t.checked_in_at && !t.checked_out_at ? el("button", { class: "act alt checkout", onclick: () => site(true) },
                                                     _("Check out")) : null));
    }));
    $("codes").replaceChildren(...me.codes.map((c) => el("li", {},
      el("div", { class: "row" }, el("span", { class: "title" }, `${c.title} · ${c.merchant}`),
         el("span", { class: c.used_at ? "tag done" : "tag" }, c.used_at ? _("Used") : _("To show"))),
      el("div", { class: "code" }, c.code), el("div", { class: "muted" }, c.address || ""))));
    $("reports").replaceChildren(...me.reports.map((r) => el("li", {},
      el("div", { class: "row" }, el("span", { class: "title" }, CFG.kinds[r.subcategory] || r.subcategory),
         el("span", { class: "tag" }, r.verdict ? CFG.verdicts[r.verdict] : (CFG.statuses[r.status] || r.status))),
      el("div", { class: "muted" }, `${r.case_id} · ${when(r.reported_at)}` +
         (r.points ? ` · +${r.points}` : "")))));
    $("ledger").replaceChildren(...me.ledger.map((e) => el("li", { class: "row" },
      el("span", {}, `${when(e.at)} · ${CFG.reasons[e.reason] || e.reason}`),
      el("span", { class: e.amount > 0 ? "amount plus" : "amount minus" }, (e.amount > 0 ? "+" : "") + e.amount))));
    $("rewards").replaceChildren(...offers.rewards.map((r) => el("li", { "data-reward-id": r.reward_id },
      el("div", { class: "row" }, el("span", { class: "title" }, r.title),
         el("span", { class: "tag" }, fill(_("{points} points"), { points: r.points }))),
      el("div", { class: "muted" }, `${r.merchant} · ${r.address || ""} · ` + fill(_("{left} left"), { left: r.left })),
      el("div", { class: "buttons" }, el("button", { class: "act redeem", disabled: r.left <= 0 || me.balance < r.points,
        onclick: () => act(() => call("POST", "/api/v/redeem", { reward_id: r.reward_id }), (a) => {
          $("new-code").hidden = false;
          $("code-shown").textContent = a.code;
          return fill(_("Redeemed: show code {code} at {merchant}."), { code: a.code, merchant: a.merchant });
        }) }, me.balance < r.points ? _("Not enough points") : _("Redeem"))))));
  }

  function tab(name) {
    for (const b of document.querySelectorAll("nav button")) b.classList.toggle("on", b.dataset.tab === name);
    for (const t of ["tasks", "mine", "rewards", "report"]) $(`tab-${t}`).hidden = t !== name;
  }

  async function sendReport() {
    const file = $("report-photo").files && $("report-photo").files[0];
    if (!file) { notice(_("Take a photo of the problem first.")); return; }
    if (file.size > CFG.max_photo_bytes) {
      notice(fill(_("The photo is {size} MB; a photo may be at most {max} MB."),
                  { size: (file.size / 1048576).toFixed(1), max: CFG.max_photo_bytes / 1048576 }));
      return;
    }
    await act(async () => {
      const where = await position();
      const query = `&service_code=${encodeURIComponent($("report-kind").value)}&lon=${where.lon}&lat=${where.lat}` +
        `&description=${encodeURIComponent($("report-text").value)}`;
      return call("POST", "/api/v/reports", undefined, { raw: file, query });
    }, (a) => {
      $("report-photo").value = "";
      $("report-text").value = "";
      return fill(_("Sent as case {case}: points come once the grid worker finds it valid."),
                  { case: a.service_request_id });
    });
  }

  function startResident() {
    for (const b of document.querySelectorAll("nav button")) b.addEventListener("click", () => tab(b.dataset.tab));
    $("report-kind").replaceChildren(...Object.entries(CFG.kinds).map(([code, name]) => el("option", { value: code }, name)));
    $("report-hint").textContent = fill(_("A problem you report earns {points} points once the grid worker finds it valid."),
                                        { points: CFG.report_points });
    $("report-send").addEventListener("click", sendReport);
    if (navigator.geolocation) { // for the distances only: this position stays on the phone until you act
      navigator.geolocation.getCurrentPosition((p) => {
        state.near = { lon: p.coords.longitude, lat: p.coords.latitude };
        refresh();
      }, () => {}, { maximumAge: 60000, timeout: 20000 });
    }
  }

  // -- the merchant ----------------------------------------------------------------------------------------------
  async function merchantRefresh() {
    const page = await call("GET", "/api/m/overview");
    $("shop").textContent = page.merchant.name;
    $("offers").replaceChildren(...page.rewards.map((r) => el("li", { class: "row" },
      el("span", { class: "title" }, r.title),
      el("span", { class: "muted" }, `${fill(_("{points} points"), { points: r.points })} · ` +
         fill(_("{left} of {stock} left"), { left: r.left, stock: r.stock })))));
    $("outstanding").textContent = fill(_("{n} codes issued and not yet shown here."), { n: page.outstanding });
    $("taken").replaceChildren(...page.redemptions.map((d) => el("li", { class: "row" },
      el("span", {}, `${d.code} · ${d.title}`), el("span", { class: "muted" }, when(d.used_at)))));
  }
  async function checkCode() {
    const code = $("code-input").value.trim();
    const box = $("code-result");
    box.replaceChildren();
    try {
      const found = await call("POST", "/api/m/check", { code });
      box.append(el("ul", { class: "list" }, el("li", {},
        el("div", { class: "row" }, el("span", { class: "title" }, found.title),
           el("span", { class: found.used_at ? "tag" : "tag done" }, found.used_at ? fill(_("Taken on {at}"), { at: when(found.used_at) }) : _("Good"))),
        el("div", { class: "muted" }, fill(_("{points} points"), { points: found.points })),
        found.used_at ? null : el("button", { class: "act use", onclick: async () => {
          const done = await act(() => call("POST", "/api/m/use", { code }),
                                 (a) => fill(_("Code {code} taken: hand over {title}."), a));
          if (done) { box.replaceChildren(); $("code-input").value = ""; }
        } }, _("Take the code and hand over")))));
    } catch (e) { notice(e.message); }
  }

  // -- the grid worker -------------------------------------------------------------------------------------------
  function localInput(date) {
    const pad = (n) => String(n).padStart(2, "0");
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
  }
  async function workerRefresh() {
    const found = await call("GET", "/api/v/worker");
    $("w-tasks").replaceChildren(...found.tasks.map((t) => el("li", { "data-task-id": t.task_id },
      el("div", { class: "row" }, el("span", { class: "title" }, t.title),
         el("span", { class: "tag" }, fill(_("{left} of {places} places left"), { left: t.places_left, places: t.places }))),
      el("div", { class: "muted" }, `${t.place} · ${windowText(t)} · ${fill(_("{points} points"), { points: t.points })}`),
      ...t.grabs.map((g) => el("div", { class: "row grab-row", "data-place": g.place_no },
        el("span", {}, `${g.place_no}. ${g.name || g.username} · ` + (g.confirmed_at ? _("Confirmed")
          : g.checked_out_at ? fill(_("in {a}, out {b}"), { a: when(g.checked_in_at).slice(6), b: when(g.checked_out_at).slice(6) })
          : g.checked_in_at ? _("Checked in") : _("Grabbed"))),
        g.checked_out_at && !g.confirmed_at ? el("button", { class: "act confirm", onclick: () => act(
          () => call("POST", "/api/v/worker/confirm", { task_id: t.task_id, place_no: g.place_no }),
          (a) => fill(_("Confirmed: {points} points credited."), a)) }, _("Confirm done")) : null)))));
    $("w-reports").replaceChildren(...found.reports.map((r) => el("li", { "data-case-id": r.case_id },
      el("div", { class: "row" }, el("span", { class: "title" }, CFG.kinds[r.subcategory] || r.subcategory),
         el("span", { class: "muted" }, when(r.reported_at))),
      el("div", { class: "muted" }, `${r.case_id} · ${r.description || ""}`),
      r.photo_id ? el("img", { src: `/api/field/photos/${r.photo_id}`, alt: "", style: "max-width:100%;border-radius:8px" }) : null,
      el("div", { class: "buttons" }, ...Object.entries(CFG.verdicts).map(([verdict, name]) => el("button", {
        class: verdict === "valid" ? "act review" : "act grey review", onclick: () => act(
          () => call("POST", "/api/v/worker/review", { case_id: r.case_id, verdict }),
          (a) => fill(_("Reviewed: {points} points credited."), a)) }, name))))));
  }
  async function publish() {
    await act(async () => {
      const where = await position();
      return call("POST", "/api/v/worker/publish", {
        title: $("t-title").value, place: $("t-place").value, ...where,
        starts_at: new Date($("t-start").value).toISOString(), ends_at: new Date($("t-end").value).toISOString(),
        places: Number($("t-places").value), points: Number($("t-points").value),
        eligibility: $("t-party").checked ? "party" : "anyone" });
    }, (a) => fill(_("Published: {title}."), a));
  }
  function startWorker() {
    const now = new Date();
    $("t-start").value = localInput(now);
    $("t-end").value = localInput(new Date(now.getTime() + 2 * 3600000));
    $("t-where").textContent = _("The task's place is where this phone is when you publish it.");
    $("t-publish").addEventListener("click", publish);
  }

  const refreshers = { resident: residentRefresh, merchant: merchantRefresh, worker: workerRefresh };
  async function refresh() {
    try { await refreshers[CFG.page](); } catch (e) { notice(e.message); }
  }
  if (CFG.page === "resident") startResident();
  else if (CFG.page === "merchant") $("code-check").addEventListener("click", checkCode);
  else startWorker();
  refresh().then(() => { window.twinVolunteerReady = true; }); // for tests: the first answers are drawn
})();
