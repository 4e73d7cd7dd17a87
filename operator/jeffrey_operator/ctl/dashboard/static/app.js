// The Jeffrey OS ladder dashboard. No framework, no build step, nothing from another origin.
// One EventSource per tab: the server holds the only watch of the Kubernetes API and pushes
// `snapshot`, `upsert`, `delete` and `connection` events. Everything shown comes from those
// dicts (jeffrey_operator/ctl/dashboard/model.py); text is set with textContent, never as HTML.
"use strict";

(function () {
  const LEVELS = ["CORE", "COGNITIVE", "EMOTIONAL", "CONSCIOUS", "LOOPS", "PRODUCTION"];
  const HEALTH_ORDER = { Degraded: 0, Progressing: 1, Suspended: 2, Unknown: 3, Healthy: 4 };
  const readOnly = document.querySelector('meta[name="read-only"]').content === "true";
  const token = document.querySelector('meta[name="csrf-token"]').content;

  const state = {
    items: new Map(), // key -> item (with _at: the server time it was computed)
    offset: 0, // server clock minus this browser's clock, ms
    sort: { key: "namespace", dir: 1 },
    route: null, // null (overview) or "namespace/name"
    sparks: null,
    sparksAt: 0,
    sparksFor: null,
    history: null,
    historySeq: -1,
    historyFor: null,
    pending: null, // the action waiting for confirmation
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // ------------------------------------------------------------------------------------ time
  function serverNow() {
    return Date.now() + state.offset;
  }

  function noteServerTime(stamp) {
    const t = Date.parse(stamp);
    if (!Number.isNaN(t)) state.offset = t - Date.now();
  }

  // The same as jeffrey_operator.ctl.render.format_age (a browser test compares them).
  function formatAge(seconds) {
    seconds = Math.max(0, seconds);
    if (seconds < 60) return Math.floor(seconds) + "s";
    if (seconds < 600) {
      const m = Math.floor(seconds / 60);
      const s = Math.floor(seconds) % 60;
      return s ? m + "m" + s + "s" : m + "m";
    }
    if (seconds < 7200) return Math.floor(seconds / 60) + "m";
    if (seconds < 172800) return Math.floor(seconds / 3600) + "h";
    return Math.floor(seconds / 86400) + "d";
  }

  function ago(stamp) {
    const t = Date.parse(stamp || "");
    if (Number.isNaN(t)) return "-";
    return formatAge((serverNow() - t) / 1000) + " ago";
  }

  function secondsText(value) {
    return value < 10 ? value.toFixed(1) + "s" : formatAge(value);
  }

  function agoNode(stamp) {
    return el("time", { "data-ago": stamp || "", datetime: stamp || null, title: stamp || null, text: ago(stamp) });
  }

  function refreshAges() {
    for (const node of document.querySelectorAll("[data-ago]")) node.textContent = ago(node.dataset.ago);
    const key = state.route;
    if (key && state.items.has(key)) renderWaiting(state.items.get(key));
  }

  // ---------------------------------------------------------------------------------- badges
  function badge(health) {
    return el("span", { class: "badge health-" + health, text: health });
  }

  function resultBadge(result) {
    return el("span", { class: "result result-" + String(result).toLowerCase(), text: result });
  }

  function announce(text) {
    const node = $("announce");
    node.textContent = "";
    window.setTimeout(() => (node.textContent = text), 50);
  }

  // -------------------------------------------------------------------------------- overview
  function rank(level) {
    const i = LEVELS.indexOf(level);
    return i < 0 ? -1 : i;
  }

  function sortValue(item, key) {
    switch (key) {
      case "target": return rank(item.targetLevel);
      case "current": return rank(item.currentLevel);
      case "phase": return HEALTH_ORDER[item.health] * 100 + (item.phase || "").charCodeAt(0);
      case "since": return -Date.parse(item.phaseSince || "") || 0;
      case "rollback": return item.lastRollback ? Date.parse(item.lastRollback.time) || 0 : 0;
      default: return item[key] || "";
    }
  }

  function sortedItems() {
    const { key, dir } = state.sort;
    return [...state.items.values()].sort((a, b) => {
      const x = sortValue(a, key);
      const y = sortValue(b, key);
      if (x < y) return -dir;
      if (x > y) return dir;
      return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
    });
  }

  function phaseText(item) {
    let text = item.phase;
    if (item.paused && item.phase !== "Paused") text += " (paused)";
    return text;
  }

  function renderOverview() {
    const rows = $("rows");
    rows.replaceChildren();
    const items = sortedItems();
    $("overview-empty").hidden = items.length > 0;
    $("table").hidden = items.length === 0;
    for (const item of items) {
      const rollback = item.lastRollback
        ? el("span", {}, item.lastRollback.reason + ", ", agoNode(item.lastRollback.time))
        : "-";
      rows.append(
        el(
          "tr",
          { "data-key": item.key, "data-health": item.health, "data-phase": item.phase },
          el("td", { "data-label": "Namespace", text: item.namespace }),
          el("td", { "data-label": "Name" }, el("a", { href: "#/" + item.key, text: item.name })),
          el("td", { "data-label": "Target", text: item.targetLevel || "-" }),
          el("td", { "data-label": "Current", text: item.currentLevel || "none" }),
          el("td", { "data-label": "Phase", class: "phase-cell" }, el("span", {}, badge(item.health), " ", phaseText(item))),
          el("td", { "data-label": "In phase" }, item.phaseSince ? agoNode(item.phaseSince) : "-"),
          el("td", { "data-label": "Last rollback" }, rollback)
        )
      );
    }
    for (const th of document.querySelectorAll("#table th[data-sort]")) {
      const active = th.dataset.sort === state.sort.key;
      th.setAttribute("aria-sort", active ? (state.sort.dir > 0 ? "ascending" : "descending") : "none");
    }
  }

  // ---------------------------------------------------------------------------------- detail
  function renderWaiting(item) {
    const box = $("waiting");
    const w = item.waiting;
    if (!w) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    const bar = $("waiting-bar");
    const level = w.level ? " of " + w.level : "";
    const names = {
      readiness: "Readiness" + level,
      validation: "Validation window" + level,
      cooldown: "Cooldown" + (w.level ? " after " + w.level : ""),
      autoRetry: "Automatic retry",
      unready: "Readiness" + level + " lost",
    };
    let elapsed = w.elapsed;
    if (!w.note || w.kind !== "validation") {
      elapsed += Math.max(0, (serverNow() - Date.parse(item._at)) / 1000);
    }
    elapsed = Math.min(w.total, elapsed);
    const left = Math.max(0, w.total - elapsed);
    bar.max = Math.max(w.total, 0.001);
    bar.value = elapsed;
    let text = names[w.kind] + ": ";
    if (w.note && w.kind === "validation") text += w.note + " (window " + w.total + "s)";
    else text += secondsText(left) + " left of " + w.total + "s" + (w.note ? " (" + w.note + ")" : "");
    $("waiting-label").textContent = text;
    bar.setAttribute("aria-valuetext", text);
  }

  function renderLadder(item) {
    const ladder = $("ladder");
    ladder.replaceChildren();
    for (const rung of [...item.rungs].reverse()) {
      const marks = el("span", { class: "marks" });
      for (const mark of ["current", "active", "target"]) {
        if (rung[mark]) marks.append(el("span", { class: "mark mark-" + mark, text: mark }));
      }
      const modules = el("ul", { class: "modules" });
      for (const m of rung.modules) {
        const ok = m.desired > 0 && m.ready >= m.desired;
        modules.append(
          el(
            "li",
            { class: "module" + (ok ? " ready" : ""), "data-deployment": m.deployment, "data-state": m.state },
            el("span", { class: "module-name", text: m.deployment }),
            " ",
            el("span", { class: "count", text: m.ready + "/" + m.desired }),
            m.optional ? el("span", { class: "optional", text: " optional" }) : null,
            m.state === "Missing" || m.state === "Progressing" ? el("span", { class: "flag", text: " " + m.state.toLowerCase() }) : null
          )
        );
      }
      const label = rung.defined ? rung.state : "not defined";
      ladder.append(
        el(
          "li",
          {
            class: "rung state-" + rung.state + (rung.current ? " is-current" : "") + (rung.active ? " is-active" : ""),
            "data-level": rung.level,
            "data-state": rung.state,
            "aria-current": rung.current ? "step" : null,
          },
          el("div", { class: "rung-head" }, el("span", { class: "level", text: rung.level }), el("span", { class: "state", text: label }), marks),
          rung.defined ? modules : null
        )
      );
    }
  }

  function sparkline(gate, data) {
    if (!data || !data.points || data.points.length < 2) {
      return el("span", { class: "note", text: data && data.error ? "error: " + data.error : "no data yet" });
    }
    const ns = "http://www.w3.org/2000/svg";
    const W = 120, H = 28, P = 2;
    const pts = data.points;
    let lo = Math.min(...pts.map((p) => p[1]));
    let hi = Math.max(...pts.map((p) => p[1]));
    const limit = gate.max !== null && gate.max !== undefined ? gate.max : gate.min;
    if (limit !== null && limit !== undefined) {
      lo = Math.min(lo, limit);
      hi = Math.max(hi, limit);
    }
    if (hi === lo) hi = lo + 1;
    const t0 = pts[0][0], t1 = pts[pts.length - 1][0] || t0 + 1;
    const x = (t) => P + ((t - t0) / Math.max(t1 - t0, 1e-9)) * (W - 2 * P);
    const y = (v) => H - P - ((v - lo) / (hi - lo)) * (H - 2 * P);
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("width", W);
    svg.setAttribute("height", H);
    svg.setAttribute("role", "img");
    svg.setAttribute("class", "spark");
    const last = pts[pts.length - 1][1];
    const label = gate.name + ", last " + Math.round(data.window / 60) + " minutes: from " + fmt(data.min) + " to " + fmt(data.max) + ", now " + fmt(last) + " (threshold " + gate.thresholdText + ")";
    svg.setAttribute("aria-label", label);
    const title = document.createElementNS(ns, "title");
    title.textContent = label;
    svg.append(title);
    if (limit !== null && limit !== undefined) {
      const line = document.createElementNS(ns, "line");
      line.setAttribute("x1", P);
      line.setAttribute("x2", W - P);
      line.setAttribute("y1", y(limit));
      line.setAttribute("y2", y(limit));
      line.setAttribute("class", "spark-limit");
      svg.append(line);
    }
    const poly = document.createElementNS(ns, "polyline");
    poly.setAttribute("points", pts.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" "));
    poly.setAttribute("class", "spark-line");
    svg.append(poly);
    svg.dataset.points = String(pts.length);
    return svg;
  }

  function fmt(v) {
    if (v === null || v === undefined) return "no data";
    const a = Math.abs(v);
    if (a >= 100) return v.toFixed(0);
    if (a >= 1) return String(Number(v.toFixed(2)));
    return String(Number(v.toPrecision(3)));
  }

  function renderGates(item) {
    const body = $("gate-rows");
    body.replaceChildren();
    const gates = item.gates.filter((g) => g.active);
    const empty = $("gates-empty");
    $("gates").hidden = gates.length === 0;
    empty.hidden = gates.length > 0;
    if (!gates.length) {
      empty.textContent = item.gates.length
        ? "None applies now (" + item.gates.length + " configured, all inactive at this level or phase)."
        : "No gate evaluated in phase " + item.phase + ".";
    }
    const sparks = state.sparksFor === item.key ? state.sparks : null;
    if (!gates.length && sparks && sparks.available) {
      // No gate is evaluated now (e.g. after a rollback): still show what the gates saw lately.
      for (const spec of item.gateSpecs || []) {
        const data = sparks.gates[spec.name];
        if (!data || !data.points || data.points.length < 2) continue;
        body.append(
          el(
            "tr",
            { "data-gate": spec.name, "data-result": "Inactive" },
            el("th", { scope: "row", text: spec.name }),
            el("td", { text: "-" }),
            el("td", { text: spec.thresholdText }),
            el("td", {}, resultBadge("Inactive")),
            el("td", { text: "-" }),
            el("td", { class: "spark-cell" }, sparkline({ name: spec.name, min: spec.min, max: spec.max, thresholdText: spec.thresholdText }, data))
          )
        );
      }
      $("gates").hidden = body.children.length === 0;
      if (body.children.length) empty.textContent += " Their recent values:";
    }
    for (const g of gates) {
      const data = sparks && sparks.available ? sparks.gates[g.name] : null;
      body.append(
        el(
          "tr",
          { "data-gate": g.name, "data-result": g.result },
          el("th", { scope: "row", text: g.name }),
          el("td", { text: g.valueText }),
          el("td", { text: g.thresholdText }),
          el("td", {}, resultBadge(g.result), g.result !== "Pass" && g.message ? el("div", { class: "note", text: g.message }) : null),
          el("td", {}, agoNode(g.since)),
          el("td", { class: "spark-cell" }, sparks && sparks.available ? sparkline(g, data) : el("span", { class: "note", text: "-" }))
        )
      );
    }
    const status = $("spark-status");
    if (!sparks) status.textContent = "Sparklines: asking Prometheus…";
    else if (!sparks.available) status.textContent = sparks.message;
    else status.textContent = "Sparklines: the last " + Math.round(sparks.window / 60) + " minutes from Prometheus at " + sparks.source + (sparks.message ? " (" + sparks.message + ")" : "") + ".";
    status.dataset.available = sparks ? String(sparks.available) : "";
  }

  function renderRollback(item) {
    const box = $("rollback");
    box.replaceChildren();
    const r = item.lastRollback;
    if (!r) {
      box.append(el("p", { class: "note", text: "None." }));
      return;
    }
    const dl = el("dl", { class: "facts" });
    const add = (k, v) => dl.append(el("dt", { text: k }), el("dd", {}, v));
    add("Reason", el("strong", { class: "reason", text: r.reason }));
    add("When", agoNode(r.time));
    add("From level", r.fromLevel || "-");
    if (r.gate) add("Gate", r.gate + ": value " + r.valueText + ", threshold " + r.thresholdText);
    if (r.message) add("Message", r.message);
    box.append(dl);
  }

  function renderRows(listId, sectionId, rows) {
    const section = $(sectionId);
    section.hidden = !rows.length;
    const list = $(listId);
    list.replaceChildren();
    for (const r of rows) {
      list.append(
        el(
          "li",
          {},
          el("strong", { text: r.name || "(unnamed)" }),
          r.level ? " " + r.level : "",
          r.result ? el("span", {}, " ", resultBadge(r.result)) : "",
          r.message ? " " + r.message : "",
          r.time ? el("span", { class: "note" }, " ", agoNode(r.time)) : ""
        )
      );
    }
  }

  function renderTimeline(item) {
    const list = $("timeline");
    list.replaceChildren();
    const fromRedis = state.historyFor === item.key && state.history && state.history.transitions;
    const rows = fromRedis ? state.history.transitions : item.timeline;
    let source = fromRedis ? state.history.source : "status.transitions (the last 50)";
    if (state.historyFor === item.key && state.history && state.history.message) source += " — " + state.history.message;
    $("timeline-source").textContent = "Newest first; from " + source + ".";
    if (!rows.length) list.append(el("li", { class: "note", text: "No transition yet." }));
    for (const r of rows) {
      const levels = r.kind === "gap" ? "(gap)" : r.fromLevel !== r.toLevel ? (r.fromLevel || "-") + " → " + (r.toLevel || "-") : r.toLevel || "-";
      list.append(
        el(
          "li",
          { "data-seq": r.seq, "data-phase": r.phase, "data-reason": r.reason },
          el("span", { class: "when" }, agoNode(r.time)),
          el("span", { class: "what" }, el("strong", { text: r.phase }), " " + levels + " · ", el("span", { class: "reason", text: r.reason })),
          r.message ? el("span", { class: "message", text: r.message }) : null
        )
      );
    }
  }

  function renderConditions(item) {
    const list = $("conditions");
    list.replaceChildren();
    for (const c of item.conditions) {
      list.append(el("li", {}, el("strong", { text: c.type + "=" + c.status }), " " + (c.reason || "") + (c.message ? ": " + c.message : "")));
    }
  }

  function renderActions(item) {
    if (readOnly) return;
    $("btn-pause").hidden = item.paused;
    $("btn-resume").hidden = !item.paused;
  }

  function renderDetail() {
    const key = state.route;
    const item = state.items.get(key);
    $("missing").hidden = !!item;
    if (!item) {
      $("detail-title").textContent = key;
      return;
    }
    $("detail-title").textContent = item.namespace + "/" + item.name;
    const h = $("detail-health");
    h.className = "badge health-" + item.health;
    h.textContent = item.health;
    const line = $("detail-phase");
    const since = [];
    if (item.reason || item.phaseSince) {
      since.push(" (" + (item.reason || ""));
      if (item.reason && item.phaseSince) since.push(", ");
      if (item.phaseSince) since.push(agoNode(item.phaseSince));
      since.push(")");
    }
    line.replaceChildren(
      el("strong", { text: phaseText(item) }),
      ...since,
      item.message ? ": " + item.message : "",
      " · target " + (item.targetLevel || "-") + ", current " + (item.currentLevel || "none")
    );
    renderActions(item);
    renderWaiting(item);
    renderLadder(item);
    renderGates(item);
    renderRollback(item);
    renderRows("checks", "checks-section", item.checks);
    renderRows("notifications", "notifications-section", item.notifications);
    renderTimeline(item);
    renderConditions(item);
  }

  // ------------------------------------------------------------------------------ fetching
  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    return response.json();
  }

  async function loadSparks(force) {
    const key = state.route;
    if (!key || !state.items.has(key)) return;
    if (!force && state.sparksFor === key && Date.now() - state.sparksAt < 5000) return;
    state.sparksAt = Date.now();
    try {
      const data = await getJSON("/api/sparklines/" + key);
      if (state.route !== key) return;
      state.sparks = data;
      state.sparksFor = key;
    } catch (err) {
      state.sparks = { available: false, message: "Sparklines: the dashboard did not answer (" + err + ")." };
      state.sparksFor = key;
    }
    if (state.items.has(key)) renderGates(state.items.get(key));
  }

  async function loadHistory() {
    const key = state.route;
    const item = state.items.get(key);
    if (!item || (state.historyFor === key && state.historySeq === item.transitions)) return;
    state.historySeq = item.transitions;
    try {
      const data = await getJSON("/api/history/" + key);
      if (state.route !== key) return;
      state.history = data;
      state.historyFor = key;
    } catch (err) {
      state.history = null;
    }
    if (state.items.has(key)) renderTimeline(state.items.get(key));
  }

  // -------------------------------------------------------------------------------- actions
  async function post(action, key, dryRun) {
    const response = await fetch("/api/steer/" + key + "/" + action, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": token },
      body: JSON.stringify({ dryRun: dryRun }),
    });
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || "HTTP " + response.status);
    return data;
  }

  async function ask(action) {
    const key = state.route;
    const item = state.items.get(key);
    if (!item) return;
    const result = $("action-result");
    result.textContent = "";
    let plan;
    try {
      plan = await post(action, key, true);
    } catch (err) {
      result.textContent = "Cannot " + action + ": " + err.message;
      return;
    }
    const verb = action[0].toUpperCase() + action.slice(1);
    $("confirm-title").textContent = verb + " " + key + "?";
    const what = {
      pause: "The operator stops promoting, demoting and rolling back this integration until it is resumed.",
      resume: "The operator takes up the ladder again from where it stands.",
      retry: "After a rollback, the operator climbs again (sets the jeffreyos.io/retry annotation).",
    }[action];
    $("confirm-what").textContent = what;
    const changes = $("confirm-changes");
    changes.replaceChildren(...plan.changes.map((c) => el("li", {}, el("code", { text: c }))));
    $("confirm-note").textContent = plan.changes.length ? plan.note : "Nothing to change: " + plan.note;
    $("confirm-warning").textContent = (item.argocd && item.argocd[action]) || "";
    $("confirm-warning").hidden = !$("confirm-warning").textContent;
    const ok = $("confirm-ok");
    ok.textContent = verb;
    ok.hidden = plan.changes.length === 0;
    $("confirm-cancel").textContent = plan.changes.length ? "Cancel" : "Close";
    state.pending = { action: action, key: key, opener: document.activeElement };
    $("confirm").showModal();
    $("confirm-cancel").focus();
  }

  async function confirmed() {
    const pending = state.pending;
    closeDialog();
    if (!pending) return;
    const result = $("action-result");
    try {
      const data = await post(pending.action, pending.key, false);
      result.textContent = pending.key + ": " + (data.patched ? data.changes.join("; ") : "unchanged") + (data.note ? " — " + data.note : "");
    } catch (err) {
      result.textContent = "Cannot " + pending.action + " " + pending.key + ": " + err.message;
    }
  }

  function closeDialog() {
    const dialog = $("confirm");
    if (dialog.open) dialog.close();
    const opener = state.pending && state.pending.opener;
    state.pending = null;
    if (opener && opener.focus) opener.focus();
  }

  // --------------------------------------------------------------------------------- routing
  function route() {
    const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
    const parts = hash.split("/").filter(Boolean);
    const key = parts.length >= 2 ? parts[0] + "/" + parts[1] : null;
    const changed = key !== state.route;
    state.route = key;
    $("overview").hidden = !!key;
    $("detail").hidden = !key;
    if (key) {
      renderDetail();
      if (changed) {
        state.sparks = null;
        state.sparksFor = null;
        state.history = null;
        state.historyFor = null;
        state.historySeq = -1;
        $("action-result").textContent = "";
        loadSparks(true);
        loadHistory();
        $("detail-title").setAttribute("tabindex", "-1");
        $("detail-title").focus();
      }
      document.title = key + " · Jeffrey OS ladder";
    } else {
      renderOverview();
      document.title = "Jeffrey OS ladder";
    }
  }

  // ---------------------------------------------------------------------------------- events
  function setConnection(text, st) {
    const node = $("connection");
    node.textContent = text;
    node.dataset.state = st;
  }

  function onUpsert(item, now) {
    item._at = item.computedAt || now; // `waiting` is as of then; renderWaiting runs the clock on
    const before = state.items.get(item.key);
    state.items.set(item.key, item);
    if (before && before.phase !== item.phase && (state.route === item.key || item.phase === "RolledBack")) {
      let text = item.key + ": " + before.phase + " → " + item.phase;
      if (item.phase === "RollingBack" || item.phase === "RolledBack") {
        text += item.lastRollback ? " (" + item.lastRollback.reason + ")" : "";
      }
      announce(text);
    }
  }

  function render() {
    if (state.route) {
      renderDetail();
      loadSparks(false);
      loadHistory();
    } else {
      renderOverview();
    }
  }

  function connect() {
    const source = new EventSource("/api/events");
    source.addEventListener("snapshot", (e) => {
      const data = JSON.parse(e.data);
      noteServerTime(data.now);
      state.items.clear();
      for (const item of data.items) onUpsert(item, data.now);
      showConnection(data.connection);
      render();
    });
    source.addEventListener("upsert", (e) => {
      const data = JSON.parse(e.data);
      noteServerTime(data.now);
      onUpsert(data.item, data.now);
      render();
    });
    source.addEventListener("delete", (e) => {
      const data = JSON.parse(e.data);
      state.items.delete(data.key);
      render();
    });
    source.addEventListener("connection", (e) => showConnection(JSON.parse(e.data)));
    source.addEventListener("open", () => setConnection("Live: watching the Kubernetes API.", "live"));
    source.addEventListener("error", () => setConnection("The dashboard server does not answer: reconnecting…", "lost"));
  }

  function showConnection(c) {
    if (!c) return;
    if (c.state === "live") setConnection("Live: watching the Kubernetes API.", "live");
    else if (c.state === "lost") setConnection("Lost the Kubernetes API: " + c.message + " — retrying.", "lost");
    else setConnection("Connecting to the Kubernetes API…", "connecting");
  }

  // ------------------------------------------------------------------------------------ start
  function start() {
    $("mode").textContent = readOnly ? "read-only" : "pause, resume and retry ask for confirmation";
    if (readOnly) $("actions").remove();
    else {
      for (const button of document.querySelectorAll("#actions button")) {
        button.addEventListener("click", () => ask(button.dataset.action));
      }
      $("confirm-ok").addEventListener("click", confirmed);
      $("confirm-cancel").addEventListener("click", closeDialog);
      $("confirm").addEventListener("cancel", (event) => {
        event.preventDefault(); // Escape: close and give the focus back, as Cancel does
        closeDialog();
      });
    }
    for (const th of document.querySelectorAll("#table th[data-sort]")) {
      th.querySelector("button").addEventListener("click", () => {
        const key = th.dataset.sort;
        state.sort = { key: key, dir: state.sort.key === key ? -state.sort.dir : 1 };
        renderOverview();
      });
    }
    window.addEventListener("hashchange", route);
    route();
    connect();
    window.setInterval(refreshAges, 1000);
    window.setInterval(() => state.route && loadSparks(false), 15000);
  }

  window.jeffreyDashboard = { formatAge: formatAge, state: state };
  start();
})();
