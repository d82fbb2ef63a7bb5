// lapcast's own line charts on a <canvas>: no library. One function, draw(canvas, spec).
// spec: {series: [{key, label, color, points: [[x, y], ...], width}], invertY, yInteger,
//        yMin, yMax, xMin, xMax, xTitle, yTitle, highlight}
// Returns the number of lines drawn and records it on canvas.dataset.lines (tests read it).
"use strict";
(function () {
  function niceStep(span, target) {
    const raw = span / Math.max(target, 1);
    const mag = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return m * mag;
    return 10 * mag;
  }

  function ticks(min, max, target, integer) {
    let step = niceStep(max - min, target);
    if (integer) step = Math.max(1, Math.round(step));
    const out = [];
    for (let v = Math.ceil(min / step) * step; v <= max + 1e-9; v += step) out.push(v);
    return out;
  }

  function draw(canvas, spec) {
    const dpr = window.devicePixelRatio || 1;
    // The page passes the size its ResizeObserver saw (reading clientWidth would force a
    // layout of the whole page in the middle of a script).
    const w = canvas._w ?? canvas.clientWidth, h = canvas._h ?? canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const series = spec.series.filter((s) => s.points.length > 0);
    const m = { l: 52, r: 46, t: 12, b: 30 };
    const pw = w - m.l - m.r, ph = h - m.t - m.b;
    ctx.font = "11px DejaVu Sans, Arial, sans-serif";
    if (!series.length || pw < 20 || ph < 20) {
      ctx.fillStyle = "#8b949e";
      ctx.fillText(spec.empty || "no laps yet", m.l + 8, m.t + 20);
      canvas.dataset.lines = "0";
      return 0;
    }
    let xMin = spec.xMin, xMax = spec.xMax, yMin = spec.yMin, yMax = spec.yMax;
    if (xMin === undefined || xMax === undefined || yMin === undefined || yMax === undefined) {
      let a = Infinity, b = -Infinity, c = Infinity, d = -Infinity;
      for (const s of series) for (const p of s.points) {
        if (p[0] < a) a = p[0]; if (p[0] > b) b = p[0];
        if (p[1] < c) c = p[1]; if (p[1] > d) d = p[1];
      }
      if (xMin === undefined) xMin = a; if (xMax === undefined) xMax = b;
      if (yMin === undefined) yMin = c; if (yMax === undefined) yMax = d;
    }
    if (xMax <= xMin) xMax = xMin + 1;
    if (yMax <= yMin) { yMax = yMin + 1; }
    const X = (x) => m.l + ((x - xMin) / (xMax - xMin)) * pw;
    const Y = spec.invertY ? (y) => m.t + ((y - yMin) / (yMax - yMin)) * ph
                           : (y) => m.t + ph - ((y - yMin) / (yMax - yMin)) * ph;
    // Grid and axes.
    ctx.strokeStyle = "#252c36"; ctx.lineWidth = 1; ctx.fillStyle = "#8b949e";
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (const v of ticks(yMin, yMax, Math.max(3, ph / 40), spec.yInteger)) {
      const y = Math.round(Y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(m.l, y); ctx.lineTo(m.l + pw, y); ctx.stroke();
      ctx.fillText(spec.yFormat ? spec.yFormat(v) : String(v), m.l - 6, y);
    }
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    for (const v of ticks(xMin, xMax, Math.max(3, pw / 70), true)) {
      const x = Math.round(X(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, m.t); ctx.lineTo(x, m.t + ph); ctx.stroke();
      ctx.fillText(String(v), x, m.t + ph + 6);
    }
    if (spec.zeroLine) {
      ctx.strokeStyle = "#6e7681";
      const y = Math.round(Y(0)) + 0.5;
      ctx.beginPath(); ctx.moveTo(m.l, y); ctx.lineTo(m.l + pw, y); ctx.stroke();
    }
    ctx.fillStyle = "#6e7681"; ctx.textAlign = "left";
    if (spec.xTitle) ctx.fillText(spec.xTitle, m.l + pw - 30, m.t + ph + 17);
    // Lines, clipped to the plot: the highlighted one last, on top.
    ctx.save();
    ctx.beginPath(); ctx.rect(m.l, m.t - 1, pw, ph + 2); ctx.clip();
    ctx.lineJoin = "round";
    const ordered = series.slice().sort((a, b) => (a.key === spec.highlight) - (b.key === spec.highlight));
    // One path per colour and width: a 1,000-car field is a few strokes, not a thousand.
    const groups = new Map();
    for (const s of ordered) {
      const width = s.key === spec.highlight ? 3 : (s.width || 1.5);
      const key = s.key === spec.highlight ? "\u0000highlight" : `${s.color}|${width}`;
      if (!groups.has(key)) groups.set(key, { color: s.color, width, list: [] });
      groups.get(key).list.push(s);
    }
    for (const g of groups.values()) {
      ctx.strokeStyle = g.color; ctx.fillStyle = g.color; ctx.lineWidth = g.width;
      ctx.beginPath();
      for (const s of g.list) {
        let pen = false, last = -Infinity;
        for (const p of s.points) {
          const x = X(p[0]), y = Y(p[1]);
          if (pen && p[0] - last <= 1) ctx.lineTo(x, y); else ctx.moveTo(x, y);
          pen = true; last = p[0];
        }
        if (s.points.length === 1) ctx.rect(X(s.points[0][0]) - 1, Y(s.points[0][1]) - 1, 2, 2);
      }
      ctx.stroke();
    }
    ctx.restore();
    // Car labels at each line's end (when few enough to read).
    if (series.length <= 80) {
      ctx.textAlign = "left"; ctx.textBaseline = "middle"; ctx.font = "bold 10px DejaVu Sans, Arial";
      for (const s of ordered) {
        const p = s.points[s.points.length - 1];
        const y = Math.min(Math.max(Y(p[1]), m.t + 4), m.t + ph - 4);
        ctx.fillStyle = s.color;
        ctx.fillText(s.label, Math.min(X(p[0]) + 4, m.l + pw + 4), y);
      }
    }
    canvas.dataset.lines = String(series.length);
    return series.length;
  }

  window.LapcastChart = { draw };
})();
