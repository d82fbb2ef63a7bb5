// lapcast live timing page. It folds nothing: it keeps what the server sends (one snapshot,
// then deltas of the consumers' published states) and draws it, at most once a frame.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const token = new URLSearchParams(location.search).get("token") || "";
  const STALE_MS = 8000;
  const CHART_EVERY_MS = 1000;
  const PALETTE = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0",
    "#f032e6", "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000",
    "#aaffc3", "#808000", "#ffd8b1", "#00a3ff", "#ff7f7f", "#7fff7f", "#c0c0c0"];
  const CLASS_COLOURS = { HYPERCAR: "#e10600", LMP2: "#2f6fe4", LMGT3: "#1fa34a",
    "LMGTE AM": "#f08a24", "GTE AM": "#f08a24", LMGTE: "#f08a24", GTE: "#f08a24" };

  // --- the model: what the server told us ---------------------------------------------
  let model = emptyModel();
  const dirty = new Set();
  let frameAsked = false;
  let lastMessageAt = 0;
  let statusAt = 0;
  let lastChartAt = 0;
  let chartTimer = null;

  function emptyModel() {
    return { meta: null, status: null, consumers: {}, connection: "", problems: [],
      control: false, views: {}, laps: {} };
  }

  function takeState(name, entry) {
    if (entry.cleared) { delete model.views[name]; return; }
    let v = model.views[name];
    if (entry.replace || !v || v.shape !== entry.shape) {
      v = model.views[name] = { shape: entry.shape, fields: {}, rows: {} };
    }
    Object.assign(v.fields, entry.fields || {});
    const rows = entry.rows || {};
    for (const k in rows) {
      if (rows[k] === null) delete v.rows[k]; else v.rows[k] = rows[k];
    }
    v.seq = entry.seq; v.epoch = entry.epoch;
  }

  function takeLaps(laps) {
    for (const car in laps) {
      const known = model.laps[car] || (model.laps[car] = new Map());
      for (const cell of laps[car]) known.set(cell[0], cell);
    }
  }

  function apply(doc, whole) {
    const t0 = performance.now();
    if (whole) model = Object.assign(emptyModel(), { control: !!doc.control });
    const set = whole ? doc : (doc.set || {});
    for (const key of ["meta", "status", "consumers", "connection", "problems"]) {
      if (key in set) {
        model[key] = set[key];
        dirty.add(key === "meta" || key === "status" ? "header" : key);
        if (key === "status") statusAt = performance.now();
        if (key === "meta") dirty.add("tables");
      }
    }
    const states = doc.states || {};
    for (const name in states) { takeState(name, states[name]); dirty.add(name); }
    if (doc.laps_reset) model.laps = {};
    if (doc.laps) { takeLaps(doc.laps); dirty.add("charts"); }
    if (doc.rejected) toast(`the engine refused ${doc.rejected.command || "the command"}: ${doc.rejected.reason}`);
    if (whole) { dirty.add("all"); }
    performance.measure("lapcast-apply", { start: t0, end: performance.now() });
    ask();
  }

  function view(name) {
    const v = model.views[name];
    if (!v) return undefined;
    if (v.shape === "rows") return Object.assign({}, v.fields, { rows: Object.values(v.rows) });
    if (v.shape === "map") return v.rows;
    return v.fields.value;
  }

  // --- the feed: SSE, reconnecting, with a staleness check ------------------------------
  let source = null;
  function connect() {
    if (source) source.close();
    source = new EventSource("/api/events");
    source.addEventListener("snapshot", (e) => { seen(); apply(JSON.parse(e.data), true); });
    source.addEventListener("delta", (e) => { seen(); apply(JSON.parse(e.data), false); });
    source.addEventListener("ping", () => seen());
    source.onerror = () => {
      feed("connecting", "reconnecting…");
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
    };
  }
  function seen() { lastMessageAt = performance.now(); }
  function feed(kind, text) {
    const el = $("feed");
    el.className = `feed feed-${kind}`; el.textContent = text;
  }
  setInterval(() => {
    const age = performance.now() - lastMessageAt;
    const problems = [];
    if (lastMessageAt && age > STALE_MS) problems.push(`No update from the server for ${Math.round(age / 1000)} s: what you see is stale. Reconnecting…`);
    if (model.connection) problems.push(`The server lost the broker: ${model.connection}. What you see is stale.`);
    if (model.status && model.status.state === "lost") problems.push("The replay engine is lost (no status from it): the timing is frozen.");
    for (const p of model.problems || []) problems.push(p);
    const banner = $("banner");
    banner.hidden = !problems.length; banner.textContent = problems.join("  ·  ");
    if (!lastMessageAt) feed("connecting", "connecting…");
    else if (age > STALE_MS || model.connection) feed("stale", "stale");
    else feed("live", "live");
    tickClock();
  }, 250);

  // --- drawing, batched: one frame draws whatever changed since the last ---------------
  function ask() {
    if (!frameAsked) { frameAsked = true; requestAnimationFrame(frame); }
  }
  function frame() {
    frameAsked = false;
    const t0 = performance.now();
    const all = dirty.has("all");
    if (all || dirty.has("header") || dirty.has("running-order")) renderHeader();
    if (all || dirty.has("running-order") || dirty.has("class-poles") || dirty.has("tables")) renderTables();
    if (all || dirty.has("class-poles") || dirty.has("header")) renderPoles();
    if (all || dirty.has("championship")) renderChampionship();
    if (all || dirty.has("consumers")) renderConsumers();
    fillPending(t0);
    const charts = all || dirty.has("charts") || dirty.has("running-order");
    dirty.clear();
    // The first frame of a snapshot builds every table; the updates after it are measured:
    // `lapcast-render` our script, `lapcast-frame` that plus the browser's style, layout and
    // paint of the frame (a message posted now is handled once the frame is rendered).
    performance.measure(all ? "lapcast-first-render" : "lapcast-render", { start: t0, end: performance.now() });
    if (frameStart === null) { frameStart = t0; frameName = all ? "lapcast-first-frame" : "lapcast-frame"; afterFrame.port2.postMessage(0); }
    if (charts) scheduleCharts(all);
  }
  const afterFrame = new MessageChannel();
  let frameStart = null, frameName = "";
  afterFrame.port1.onmessage = () => {
    performance.measure(frameName, { start: frameStart, end: performance.now() });
    frameStart = null;
  };
  // The charts are drawn at most once a second, in their own frame, and only when they are
  // on (or near) the screen: far below a 1,000-car field's tables they cost nothing until
  // scrolled to. Their size comes from a ResizeObserver, so drawing never forces a layout.
  let chartsNear = false, chartsWanted = false;
  new IntersectionObserver((entries) => {
    chartsNear = entries[entries.length - 1].isIntersecting;
    if (chartsNear && chartsWanted) scheduleCharts(true);
  }, { rootMargin: "300px 0px" }).observe(document.querySelector(".charts"));
  const chartSizes = new ResizeObserver((entries) => {
    for (const e of entries) { e.target._w = e.contentRect.width; e.target._h = e.contentRect.height; }
    scheduleCharts(true);
  });
  for (const id of ["gap-chart", "lap-chart"]) chartSizes.observe($(id));
  function scheduleCharts(now) {
    if (!chartsNear) { chartsWanted = true; return; }
    chartsWanted = false;
    if (chartTimer !== null) return;
    const wait = now ? 0 : Math.max(0, CHART_EVERY_MS - (performance.now() - lastChartAt));
    chartTimer = setTimeout(() => requestAnimationFrame(() => { chartTimer = null; renderCharts(); }), wait);
  }

  // --- formatting, as timing screens print ----------------------------------------------
  function pad(n, w) { return String(n).padStart(w, "0"); }
  function fmtMs(ms, hours) {
    if (ms === null || ms === undefined) return "";
    const sign = ms < 0 ? "-" : ""; ms = Math.abs(ms);
    const h = Math.floor(ms / 3600000), m = Math.floor(ms / 60000) % 60;
    const s = Math.floor(ms / 1000) % 60, f = ms % 1000;
    if (h || hours) return `${sign}${h}:${pad(m, 2)}:${pad(s, 2)}.${pad(f, 3)}`;
    return `${sign}${m}:${pad(s, 2)}.${pad(f, 3)}`;
  }
  function fmtClock(ms) {
    ms = Math.max(0, Math.floor(ms || 0));
    const h = Math.floor(ms / 3600000), m = Math.floor(ms / 60000) % 60, s = Math.floor(ms / 1000) % 60;
    return `${h}:${pad(m, 2)}:${pad(s, 2)}`;
  }
  function fmtGap(ms, laps) {
    if (laps) return `+${laps} lap${laps === 1 ? "" : "s"}`;
    if (ms === null || ms === undefined) return "";
    if (ms < 60000) return `+${Math.floor(ms / 1000)}.${pad(ms % 1000, 3)}`;
    return "+" + fmtMs(ms);
  }
  function fmtSec(ms) {
    if (ms === null || ms === undefined) return "";
    return `${Math.floor(ms / 1000)}.${pad(ms % 1000, 3)}`;
  }
  function shortName(name) {
    const parts = (name || "").trim().split(" ");
    return parts.length > 1 && parts[0] ? `${parts[0][0]}. ${parts.slice(1).join(" ")}` : (name || "");
  }
  function esc(text) {
    return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }
  const MARKER = { "overall-best": "ob", "class-best": "cb", "personal-best": "pb" };
  function classCss(name) {
    const key = (name || "").toUpperCase().replace(/\s+/g, "-");
    return ["HYPERCAR", "LMP2", "LMGT3", "LMGTE-AM", "GTE-AM", "GTE", "LMGTE"].includes(key) ? `cls-${key}` : "cls-other";
  }
  function classColour(name, i) { return CLASS_COLOURS[(name || "").toUpperCase()] || PALETTE[i % PALETTE.length]; }
  function classOrder(seen) {
    const order = model.meta ? model.meta.classes.slice() : [];
    for (const c of seen) if (!order.includes(c)) order.push(c);
    return order;
  }

  // --- header ----------------------------------------------------------------------------
  function clockNow() {
    const st = model.status;
    const running = view("running-order");
    let ms = st && st.session_time_ms !== null && st.session_time_ms !== undefined ? st.session_time_ms
      : (running ? running.session_time_ms : 0);
    // Between two statuses a running replay's clock advances at its speed.
    if (st && st.state === "running" && typeof st.speed === "number") {
      ms += (performance.now() - statusAt) * st.speed;
      if (st.end_ms !== null && st.end_ms !== undefined) ms = Math.min(ms, st.end_ms);
    }
    return ms || 0;
  }
  function tickClock() {
    const ms = clockNow();
    const text = fmtClock(ms);
    const el = $("clock");
    if (el.textContent !== text) el.textContent = text;
    const meta = model.meta;
    const toGo = meta && meta.duration_ms ? `of ${fmtClock(meta.duration_ms)} · to go ${fmtClock(Math.max(meta.duration_ms - ms, 0))}` : "";
    if ($("to-go").textContent !== toGo) $("to-go").textContent = toGo;
  }
  function renderHeader() {
    const meta = model.meta, st = model.status, running = view("running-order");
    if (meta) {
      $("series").textContent = `${meta.series} · ${meta.event_name}`;
      $("event-name").textContent = `${meta.session_kind[0].toUpperCase()}${meta.session_kind.slice(1)} · session ${meta.session_id}`;
      $("poles-title").textContent = meta.session_kind === "race" ? "Class fastest laps" : "Class poles";
      document.title = `${meta.event_name} · ${meta.session_kind} · lapcast`;
    }
    const flag = running ? (running.chequered ? "CHEQUERED" : (running.flag || "")) : "";
    const f = $("flag");
    f.className = `flag flag-${flag || "none"}`;
    f.textContent = flag ? flag.replace("_", " ") : "—";
    const state = st ? (st.state || "?") : "not heard yet";
    const es = $("engine-state");
    es.textContent = state; es.className = `engine-state st-${state}`;
    $("engine-speed").textContent = st ? (st.speed === "max" ? "at max speed" : (st.speed !== null && st.speed !== undefined ? `at ${st.speed}×` : "")) : "";
    $("engine-lag").textContent = st && st.lag_ms !== null && st.lag_ms !== undefined ? `lag ${Math.round(st.lag_ms)} ms` : "";
    const pause = $("btn-pause");
    pause.textContent = state === "paused" ? "▶ resume" : "❚❚ pause";
    const speed = $("speed");
    if (st && document.activeElement !== speed) {
      const want = st.speed === "max" ? "max" : String(st.speed);
      if (![...speed.options].some((o) => o.value === want) && want !== "undefined") {
        speed.add(new Option(`${want}×`, want));
      }
      speed.value = want;
    }
    $("controls").hidden = !(model.control && token);
    tickClock();
  }

  // --- timing tables: one per class, one row slot per class position --------------------
  // Slot i of a class's table always shows the car in class position i: an overtake rewrites
  // two slots' cells instead of moving rows around the DOM. A slot whose content changed is
  // filled at once when it is on (or near) the screen; one far off screen is only marked and
  // filled when it scrolls near, or in idle time. The browser's style and layout cost follows
  // the cells that changed, so a 1,000-car update costs what its visible rows cost.
  const tables = new Map();  // class -> {table, body, slots: [tr], sectors, columns}
  const pending = new Map();  // near-screen slots to fill in the next frame: tr -> args
  const offscreen = new Set();  // far-off slots with content to fill when near or idle
  const FILL_BUDGET_MS = 8;
  const IDLE_ROWS = 12;
  let idleAsked = false;
  const nearScreen = new IntersectionObserver((entries) => {
    for (const e of entries) {
      const tr = e.target;
      tr._near = e.isIntersecting;
      if (tr._near && offscreen.delete(tr)) pending.set(tr, tr._want);
    }
    if (pending.size) ask();
  }, { rootMargin: "150px 0px" });
  function fillSlot(tr, args) {
    fillRow(tr, ...args);
    tr._row = args[0]; tr._ob = args[2]; tr._cb = args[3]; tr._sectors = args[1];
  }
  function fillPending(t0) {
    for (const [tr, args] of pending) {
      pending.delete(tr);
      fillSlot(tr, args);
      if (performance.now() - t0 > FILL_BUDGET_MS) break;
    }
    if (pending.size) ask();
    if (offscreen.size) askIdle();
  }
  function askIdle() {
    if (idleAsked) return;
    idleAsked = true;
    requestIdleCallback((deadline) => {
      idleAsked = false;
      let n = 0;
      for (const tr of offscreen) {
        if (n++ >= IDLE_ROWS || deadline.timeRemaining() < 2) break;
        offscreen.delete(tr);
        fillSlot(tr, tr._want);
      }
      if (offscreen.size) askIdle();
    }, { timeout: 5000 });
  }
  function renderTables() {
    const running = view("running-order");
    const host = $("tables");
    if (!running) return;
    const waiting = host.querySelector(".waiting");
    if (waiting) waiting.remove();
    const rows = running.rows;
    const sectors = Math.max(model.meta ? model.meta.sectors || 0 : 0,
      ...rows.slice(0, 50).map((r) => (r.last_sectors_ms || []).length), 0);
    const poles = view("class-poles") || {};
    let overall = null;
    for (const r of rows) if (r.best_lap_ms !== null && (overall === null || r.best_lap_ms < overall)) overall = r.best_lap_ms;
    const byClass = new Map();
    for (const r of rows) {
      const c = r["class"] || "";
      if (!byClass.has(c)) byClass.set(c, []);
      byClass.get(c).push(r);
    }
    const order = classOrder(byClass.keys());
    let previous = null;
    for (const c of order) {
      const list = byClass.get(c);
      if (!list) continue;
      list.sort((a, b) => (a.class_position ?? 1e9) - (b.class_position ?? 1e9) || (a.position ?? 1e9) - (b.position ?? 1e9));
      let t = tables.get(c);
      if (!t || t.sectors !== sectors) {
        if (t) dropSlots(t, 0);
        if (t) t.table.remove();
        t = makeTable(c, sectors);
        tables.set(c, t);
      }
      // Keep the tables in class order.
      const want = previous ? previous.nextSibling : host.firstChild;
      if (want !== t.table) host.insertBefore(t.table, want);
      previous = t.table;
      let classBest = poles[c] && poles[c].lap_time_ms !== undefined ? poles[c].lap_time_ms : null;
      if (classBest === null) for (const r of list) if (r.best_lap_ms !== null && (classBest === null || r.best_lap_ms < classBest)) classBest = r.best_lap_ms;
      while (t.slots.length < list.length) {
        const tr = makeRow(t.columns);
        // Until the observer first reports, a slot in the first screenful counts as near.
        tr._near = t.slots.length < 80;
        t.slots.push(tr); t.body.appendChild(tr);
        nearScreen.observe(tr);
      }
      dropSlots(t, list.length);
      for (let i = 0; i < list.length; i++) {
        const r = list[i], tr = t.slots[i];
        if (tr._row === r && tr._ob === overall && tr._cb === classBest) {
          if (tr._want) { pending.delete(tr); offscreen.delete(tr); tr._want = null; }
          continue;
        }
        tr._want = [r, sectors, overall, classBest];
        if (tr._near) pending.set(tr, tr._want); else offscreen.add(tr);
      }
    }
    for (const [c, t] of tables) if (!byClass.has(c)) { dropSlots(t, 0); t.table.remove(); tables.delete(c); }
  }
  function dropSlots(t, keep) {
    while (t.slots.length > keep) {
      const tr = t.slots.pop();
      nearScreen.unobserve(tr); pending.delete(tr); offscreen.delete(tr); tr.remove();
    }
  }
  function makeTable(c, sectors) {
    const table = document.createElement("table");
    table.className = "timing";
    table.dataset.class = c;
    const columns = ["Pos", "Car", "Driver", "Team", "Laps", "Best", "Gap", "Int", "Last"];
    for (let i = 0; i < sectors; i++) columns.push(`S${i + 1}`);
    columns.push("Pit");
    const left = new Set(["Driver", "Team"]);
    table.innerHTML = `<caption class="${classCss(c)}">${esc(c)}</caption><thead><tr>${columns.map((h) => `<th class="${left.has(h) ? "t" : ""}">${h}</th>`).join("")}</tr></thead><tbody></tbody>`;
    return { table, body: table.tBodies[0], slots: [], sectors, columns };
  }
  function makeRow(columns) {
    const tr = document.createElement("tr");
    const kinds = { Car: "car n", Driver: "t", Team: "t team", Pit: "n pitcell" };
    tr._cells = columns.map((h) => {
      const td = document.createElement("td");
      td._base = kinds[h] || "n";
      td.className = td._base;
      td._text = ""; td._cls = "";
      tr.appendChild(td);
      return td;
    });
    return tr;
  }
  // Cells are plain text and a class: no HTML to parse for the thousand rows of a big field.
  function setCell(td, text, cls) {
    text = String(text ?? "");
    if (td._text !== text) { td.textContent = text; td._text = text; }
    cls = cls || "";
    if (td._cls !== cls) { td.className = cls ? `${td._base} ${cls}` : td._base; td._cls = cls; }
  }
  function fillRow(tr, r, sectors, overall, classBest) {
    const c = tr._cells;
    const status = (r.status || "").toLowerCase();
    const rowCls = status === "retired" || status === "disqualified" ? "ret" : "";
    if (tr.className !== rowCls) tr.className = rowCls;
    setCell(c[0], r.class_position ?? "");
    setCell(c[1], `#${r.car}${r.penalty_ms ? ` +${Math.floor(r.penalty_ms / 1000)}s` : ""}`, r.penalty_ms ? "penalised" : "");
    setCell(c[2], shortName(r.driver));
    setCell(c[3], r.team || "");
    setCell(c[4], r.laps);
    const bestCls = r.best_lap_ms === null ? "" : r.best_lap_ms === overall ? "ob" : r.best_lap_ms === classBest ? "cb" : "";
    setCell(c[5], fmtMs(r.best_lap_ms), bestCls);
    setCell(c[6], fmtGap(r.class_gap_ms, r.class_gap_laps || 0));
    setCell(c[7], fmtGap(r.class_interval_ms, r.class_interval_laps || 0));
    setCell(c[8], fmtMs(r.last_lap_ms), MARKER[r.last_lap_marker] || "");
    const ls = r.last_sectors_ms || [], lm = r.last_sector_markers || [];
    for (let i = 0; i < sectors; i++) setCell(c[9 + i], fmtSec(ls[i]), MARKER[lm[i]] || "");
    let pit = [r.pit_stops ? String(r.pit_stops) : "", "stops"];
    if (status === "retired") pit = ["RET", "tag-ret"];
    else if (status === "disqualified") pit = ["DSQ", "tag-ret"];
    else if (r.in_pit) pit = ["PIT", "pit"];
    else if (status === "finished") pit = ["FIN", "tag-fin"];
    setCell(c[9 + sectors], pit[0], pit[1]);
  }

  // --- class poles, with their history ----------------------------------------------------
  function renderPoles() {
    const poles = view("class-poles");
    if (!poles) return;
    const rows = [];
    for (const c of classOrder(Object.keys(poles))) {
      const p = poles[c];
      if (!p) continue;
      const name = `<span class="clsname ${classCss(c)}">${esc(c)}</span>`;
      if (!p.car) { rows.push(`<tr><td>${name}</td><td colspan="3" class="dim">no time yet</td></tr>`); continue; }
      rows.push(`<tr class="pole" data-class="${esc(c)}"><td>${name}</td><td class="car num"><b>#${esc(p.car)}</b></td><td class="time num">${fmtMs(p.lap_time_ms)}</td><td class="drv">${esc(p.driver || "")}${p.lap ? ` · lap ${p.lap}` : ""}</td></tr>`);
      const history = p.history || [];
      for (let i = 1; i < history.length; i++) {
        const before = history[i - 1], after = history[i];
        if (after.cause !== "deleted" || !before.car) continue;
        const when = after.session_time_ms !== null && after.session_time_ms !== undefined ? ` at ${fmtClock(after.session_time_ms)}` : "";
        rows.push(`<tr class="hist"><td></td><td class="num">#${esc(before.car)}</td><td class="num deleted">${fmtMs(before.lap_time_ms)}</td><td>lap deleted${when}: pole to #${esc(after.car || "—")}</td></tr>`);
      }
      if (history.length > 1) {
        const items = history.map((h) => `<li>${fmtClock(h.session_time_ms)} #${esc(h.car || "—")} ${fmtMs(h.lap_time_ms)} ${h.cause === "deleted" ? "(after a deletion)" : ""}</li>`).join("");
        rows.push(`<tr class="hist"><td colspan="4"><details><summary>${history.length} changes of pole</summary><ol>${items}</ol></details></td></tr>`);
      }
    }
    $("poles-body").innerHTML = `<table>${rows.join("")}</table>`;
  }

  // --- championship, clinch lines and counterfactuals -------------------------------------
  function renderChampionship() {
    const v = view("championship");
    const body = $("champ-body");
    if (v === undefined) return;
    if (v === null) { body.innerHTML = '<div class="waiting">no championship for this session</div>'; return; }
    $("champ-title").textContent = (v.name || "Championship") + (v["class"] ? ` · ${v["class"]}` : "");
    const plus = (n) => (n ? `+${n}` : "");
    const rows = (v.standings || []).map((s) => `<tr data-car="${esc(s.car)}"><td>${esc(s.position ?? "")}</td><td class="num"><b>#${esc(s.car)}</b></td><td class="t crew">${esc(s.name)}</td><td class="num">${esc(s.points_before ?? "")}</td><td class="num">${plus(s.pole_points)}</td><td class="num">${plus(s.race_points)}</td><td class="num pts">${esc(s.points ?? "")}</td></tr>`).join("");
    body.innerHTML = `<table><thead><tr><th>Pos</th><th>Car</th><th class="t">Crew</th><th>Before</th><th>Pole</th><th>Race</th><th>Pts</th></tr></thead><tbody>${rows}</tbody></table>` +
      (v.clinch || []).map((l) => `<div class="clinch">${esc(l)}</div>`).join("") +
      (v.counterfactuals || []).map((l) => `<div class="cf">${esc(l)}</div>`).join("");
  }

  // --- consumers -----------------------------------------------------------------------------
  function renderConsumers() {
    const items = Object.keys(model.consumers || {}).sort().map((name) => {
      const h = model.consumers[name] || {};
      const bad = ["lost", "stopped"].includes(h.state);
      const lag = h.lag_events ? ` · lag ${h.lag_events} events${h.lag_ms ? ` (${Math.round(h.lag_ms)} ms)` : ""}` : " · up to date";
      return `<span class="consumer ${bad ? "bad" : h.lag_events ? "lagging" : ""}" data-consumer="${esc(name)}"><b>●</b> ${esc(name)} <span>${esc(h.state || "?")} · seq ${esc(h.last_seq ?? "–")}${lag}${h.dead_letters ? ` · ${h.dead_letters} dead letters` : ""}</span></span>`;
    });
    $("consumers").innerHTML = items.length ? `<span>consumers</span>${items.join("")}` : "";
  }

  // --- charts ----------------------------------------------------------------------------------
  function carsByClass() {
    const running = view("running-order");
    const out = new Map();
    const rows = running ? running.rows : [];
    for (const r of rows) {
      const c = r["class"] || "";
      if (!out.has(c)) out.set(c, []);
      out.get(c).push(r);
    }
    for (const list of out.values()) list.sort((a, b) => (a.class_position ?? 1e9) - (b.class_position ?? 1e9));
    return out;
  }
  function syncSelect(select, values, labels, keep) {
    const want = values.join("|");
    if (select._values !== want) {
      const current = select.value;
      select.innerHTML = "";
      values.forEach((v, i) => select.add(new Option(labels[i], v)));
      select._values = want;
      if (values.includes(current)) select.value = current;
      else if (keep !== undefined && values.includes(keep)) select.value = keep;
    }
  }
  function renderCharts() {
    const t0 = performance.now();
    lastChartAt = t0;
    const groups = carsByClass();
    const classes = classOrder(groups.keys()).filter((c) => groups.has(c));
    const gapClass = $("gap-class"), lapClass = $("lap-class"), ref = $("gap-ref");
    syncSelect(gapClass, classes, classes);
    syncSelect(lapClass, ["", ...classes], ["overall", ...classes]);
    const c = gapClass.value || classes[0] || "";
    const inClass = groups.get(c) || [];
    // By car number: the list is rebuilt when the field changes, not at every overtake.
    const byNumber = inClass.map((r) => r.car).sort((a, b) => (parseInt(a, 10) - parseInt(b, 10)) || (a < b ? -1 : 1));
    syncSelect(ref, ["", ...byNumber], ["class leader", ...byNumber.map((car) => `#${car}`)]);
    drawGap(c, inClass, ref.value || (inClass[0] ? inClass[0].car : ""));
    drawLaps(lapClass.value, groups);
    performance.measure("lapcast-chart", { start: t0, end: performance.now() });
  }
  function drawGap(c, cars, refCar) {
    const refLaps = model.laps[refCar];
    const series = [];
    const all = [];
    cars.forEach((r, i) => {
      const laps = model.laps[r.car];
      if (!laps || !refLaps) return;
      const points = [];
      for (const [lap, cell] of laps) {
        const other = refLaps.get(lap);
        if (!other || cell[3] === null || other[3] === null) continue;
        const y = (cell[3] - other[3]) / 1000;
        points.push([lap, y]);
        all.push(Math.abs(y));
      }
      points.sort((a, b) => a[0] - b[0]);
      series.push({ key: r.car, label: `#${r.car}`, color: PALETTE[i % PALETTE.length], points });
    });
    // Keep the pack readable: the scale follows most cars, not the one a lap behind.
    all.sort((a, b) => a - b);
    const span = all.length ? Math.max(2, all[Math.floor(all.length * 0.9)] * 1.15) : 10;
    LapcastChart.draw($("gap-chart"), {
      series, highlight: refCar, invertY: true, yMin: -span, yMax: span, zeroLine: true,
      xTitle: "lap", yFormat: (v) => (v > 0 ? `+${v}` : String(v)) + " s",
      empty: "no laps yet",
    });
  }
  function drawLaps(c, groups) {
    const series = [];
    const classes = [...groups.keys()];
    const pick = c ? [[c, groups.get(c) || []]] : classes.map((k) => [k, groups.get(k)]);
    let maxPos = 1;
    for (const [k, list] of pick) {
      const shade = classes.indexOf(k);
      list.forEach((r, i) => {
        const laps = model.laps[r.car];
        if (!laps) return;
        const col = c ? 2 : 1;
        const points = [];
        for (const [lap, cell] of laps) if (cell[col] !== null) { points.push([lap, cell[col]]); if (cell[col] > maxPos) maxPos = cell[col]; }
        points.sort((a, b) => a[0] - b[0]);
        series.push({ key: r.car, label: `#${r.car}`, color: c ? PALETTE[i % PALETTE.length] : classColour(k, shade), points, width: c ? 1.6 : 1.2 });
      });
    }
    LapcastChart.draw($("lap-chart"), { series, invertY: true, yInteger: true, yMin: 1, yMax: Math.max(maxPos, 2), xTitle: "lap", empty: "no laps yet" });
  }
  for (const id of ["gap-class", "gap-ref", "lap-class"]) $(id).addEventListener("change", () => { if (id === "gap-class") $("gap-ref").value = ""; renderCharts(); });

  // --- controls: commands go to our server, which checks the token and the origin -------
  let toastTimer = null;
  function toast(text) {
    const el = $("toast");
    el.textContent = text; el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.hidden = true; }, 8000);
  }
  async function command(body) {
    try {
      const reply = await fetch("/api/control", { method: "POST", headers: { "Content-Type": "application/json", "X-Lapcast-Token": token }, body: JSON.stringify(body) });
      if (!reply.ok) {
        const doc = await reply.json().catch(() => ({}));
        toast(`refused: ${doc.error || reply.statusText}`);
      }
    } catch (err) {
      toast(`could not reach the server: ${err}`);
    }
  }
  function currentSpeed() { const st = model.status; return st && typeof st.speed === "number" ? st.speed : 1; }
  $("btn-pause").addEventListener("click", () => command({ command: model.status && model.status.state === "paused" ? "resume" : "pause" }));
  $("speed").addEventListener("change", (e) => command({ command: "speed", factor: e.target.value === "max" ? "max" : Number(e.target.value) }));
  for (const b of document.querySelectorAll("[data-speed]")) {
    b.addEventListener("click", () => command({ command: "speed", factor: Math.max(0.125, currentSpeed() * Number(b.dataset.speed)) }));
  }
  for (const b of document.querySelectorAll("[data-seek]")) {
    b.addEventListener("click", () => command({ command: "seek", to: Math.max(0, Math.round(clockNow() + Number(b.dataset.seek))) }));
  }
  $("seek-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const to = $("seek-to").value.trim();
    if (to) command({ command: "seek", to });
  });
  document.addEventListener("keydown", (e) => {
    if (!(model.control && token) || e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    const keys = { " ": () => $("btn-pause").click(), "+": () => document.querySelector('[data-speed="2"]').click(),
      "-": () => document.querySelector('[data-speed="0.5"]').click(),
      ArrowLeft: () => document.querySelector('[data-seek="-60000"]').click(), ArrowRight: () => document.querySelector('[data-seek="60000"]').click(),
      ArrowDown: () => document.querySelector('[data-seek="-600000"]').click(), ArrowUp: () => document.querySelector('[data-seek="600000"]').click() };
    if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
  });

  connect();
})();
