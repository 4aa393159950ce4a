// tomocycle monitor page: polls /api/snapshot and draws it with plain SVG (no libraries, no network).
"use strict";

const POLL_MS = 1500;
const params = new URLSearchParams(window.location.search);
const token = params.get("token");
let experiment = params.get("experiment");
const SVGNS = "http://www.w3.org/2000/svg";
const STATE_COLOURS = {
  charging: "#d62728", discharging: "#1f77b4", holding: "#9467bd", resting: "#2ca02c",
  scan_rest: "#bcbd22", scanning: "#ff7f0e", idle: "#7f7f7f", done: "#17becf", fault: "#000000",
};
const CLASS_COLOURS = ["#2ca02c", "#d62728", "#7f7f7f", "#1f77b4", "#ff7f0e", "#9467bd"];

function api(path, extra) {
  const q = new URLSearchParams(extra || {});
  if (token) q.set("token", token);
  return path + "?" + q.toString();
}

function $(id) { return document.getElementById(id); }

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVGNS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function hms(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return `${h}:${String(m).padStart(2, "0")}:${String(r).padStart(2, "0")}`;
}

function si(value, unit) {
  if (value === null || value === undefined) return "-";
  const a = Math.abs(value);
  for (const [f, p] of [[1, ""], [1e-3, "m"], [1e-6, "u"], [1e-9, "n"]]) {
    if (a >= f || f === 1e-9) return `${(value / f).toPrecision(3)} ${p}${unit}`;
  }
  return `${value} ${unit}`;
}

function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((k) => k * mag).find((s) => s >= raw);
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
  return ticks;
}

// One panel: y against the shared x (hours), segments coloured by state.
function drawPanel(svg, box, xs, ys, states, stateNames, xr, label, fmt) {
  const finite = ys.filter((v) => v !== null && isFinite(v));
  let lo = Math.min(...finite), hi = Math.max(...finite);
  if (!finite.length) { lo = 0; hi = 1; }
  if (hi - lo < 1e-12) { lo -= 0.5 * (Math.abs(lo) || 1); hi += 0.5 * (Math.abs(hi) || 1); }
  const pad = 0.05 * (hi - lo); lo -= pad; hi += pad;
  const X = (x) => box.x + ((x - xr[0]) / (xr[1] - xr[0] || 1)) * box.w;
  const Y = (y) => box.y + box.h - ((y - lo) / (hi - lo)) * box.h;
  svg.appendChild(el("svg:rect", { x: box.x, y: box.y, width: box.w, height: box.h, fill: "none", stroke: "#bbb" }));
  for (const t of niceTicks(lo, hi, 4)) {
    svg.appendChild(el("svg:line", { x1: box.x, x2: box.x + box.w, y1: Y(t), y2: Y(t), stroke: "#eee" }));
    svg.appendChild(el("svg:text", { x: box.x - 4, y: Y(t) + 4, "text-anchor": "end", "font-size": 11 }, fmt(t)));
  }
  svg.appendChild(el("svg:text", { x: box.x + 4, y: box.y + 13, "font-size": 12, "font-weight": "bold" }, label));
  // Consecutive points of one state form one polyline (sharing the boundary point).
  let start = 0;
  for (let i = 1; i <= xs.length; i++) {
    if (i === xs.length || states[i] !== states[start]) {
      const pts = [];
      for (let k = start; k < Math.min(i + 1, xs.length); k++) {
        if (ys[k] !== null) pts.push(`${X(xs[k]).toFixed(1)},${Y(ys[k]).toFixed(1)}`);
      }
      const name = stateNames[states[start]];
      svg.appendChild(el("svg:polyline", { points: pts.join(" "), fill: "none", "stroke-width": 1.5,
        stroke: STATE_COLOURS[name] || "#444", class: "segment", "data-state": name }));
      start = i;
    }
  }
  return X;
}

function drawEc(snap) {
  const svg = $("ec-plot");
  svg.replaceChildren();
  const c = snap.curve;
  const scans = snap.scans || [];
  const xs = c.t_h;
  const xmax = Math.max(xs.length ? xs[xs.length - 1] : 0, ...scans.map((s) => s.t_h || 0), 1e-3);
  const xr = [0, xmax];
  const left = 70, width = 810;
  const X = drawPanel(svg, { x: left, y: 20, w: width, h: 170 }, xs, c.voltage, c.state, c.states, xr, "V (V)",
    (v) => v.toFixed(2));
  drawPanel(svg, { x: left, y: 210, w: width, h: 170 }, xs, c.current, c.state, c.states, xr, "I",
    (v) => si(v, "A"));
  for (const t of niceTicks(0, xmax, 8)) {
    svg.appendChild(el("svg:text", { x: X(t), y: 398, "text-anchor": "middle", "font-size": 11 }, `${t} h`));
  }
  const markers = el("svg:g", { id: "scan-markers" });
  let lastX = -Infinity, row = 0;
  scans.forEach((s) => {
    if (s.t_h === null || s.t_h === undefined) return;
    // Scans taken back to back (002's two noise scans) share a time: stack their labels.
    row = X(s.t_h) - lastX < 22 ? row + 1 : 0;
    lastX = X(s.t_h);
    const g = el("svg:g", { class: "scan-marker", "data-label": s.label, "data-status": s.status });
    g.appendChild(el("svg:line", { x1: X(s.t_h), x2: X(s.t_h), y1: 20, y2: 380, stroke: s.status === "success" ? "#555" : "#b00020",
      "stroke-dasharray": "3,3" }));
    g.appendChild(el("svg:text", { x: X(s.t_h) + 2, y: 16 + 11 * row, "font-size": 10, class: "scan-label" }, s.label));
    g.appendChild(el("svg:title", {}, `${s.label}: ${s.step || ""} at ${hms(s.t_h * 3600)}`));
    markers.appendChild(g);
  });
  svg.appendChild(markers);
  const legend = $("legend");
  legend.replaceChildren();
  c.states.forEach((name) => {
    const item = el("span", { class: "legend-item" });
    item.appendChild(el("i", { style: `background:${STATE_COLOURS[name] || "#444"}` }));
    item.appendChild(document.createTextNode(name));
    legend.appendChild(item);
  });
}

function drawStatus(snap) {
  $("experiment").textContent = snap.experiment || "-";
  $("protocol").textContent = snap.protocol ? `(${snap.protocol}${snap.replay_of ? `, replay of ${snap.replay_of}` : ""})` : "";
  const cur = snap.current;
  const state = $("state");
  state.textContent = cur ? cur.state : "waiting for data";
  state.style.background = cur ? (STATE_COLOURS[cur.state] || "#888") : "#888";
  $("finished").textContent = snap.finished ? "(finished)" : "";
  if (cur) {
    $("step").textContent = cur.step ? `step ${cur.step}${cur.step_label ? ` [${cur.step_label}]` : ""}: ${cur.step_text || ""}` : "-";
    $("elapsed").textContent = hms(cur.elapsed_s) + (snap.max_duration_s ? ` (at most ${hms(snap.max_duration_s)})` : "");
    $("vi").textContent = `${cur.voltage.toFixed(4)} V / ${si(cur.current, "A")}`;
    $("charge").textContent = `${si(cur.charge_Ah, "Ah")} / ${cur.soc === null ? "-" : (100 * cur.soc).toFixed(1) + "%"}`;
    $("scans-done").textContent = String(cur.scans_done);
  }
  $("next-scan").textContent = snap.next_scan ? snap.next_scan.text : (snap.finished ? "none (experiment over)" : "-");
  const alarms = $("alarms");
  alarms.replaceChildren();
  if (!snap.alarms || !snap.alarms.length) alarms.appendChild(el("li", { class: "none" }, "none"));
  (snap.alarms || []).forEach((a) => alarms.appendChild(el("li", { class: "alarm" }, `[${hms(a.time_s - snap.t0)}] ${a.message}`)));
  const body = $("scan-table").querySelector("tbody");
  body.replaceChildren();
  (snap.scans || []).forEach((s) => {
    const tr = el("tr", { class: "scan-row" });
    [s.label, s.t_h === null ? "-" : hms(s.t_h * 3600), s.voltage === null ? "-" : s.voltage.toFixed(4), s.step || "",
      s.status].forEach((v) => tr.appendChild(el("td", {}, v)));
    body.appendChild(tr);
  });
  const select = $("experiment-select");
  const ids = (snap.experiments || []).map((e) => e.id);
  if (select.dataset.ids !== ids.join(",")) {
    select.replaceChildren();
    (snap.experiments || []).forEach((e) => select.appendChild(el("option", { value: e.id }, `${e.id} (${e.protocol || "?"})`)));
    select.dataset.ids = ids.join(",");
  }
  select.value = snap.experiment || "";
}

function drawSlices(a) {
  // The scan being acquired (the consumer's live preview) if there is one, else the newest analysed timestep.
  const slices = $("slices");
  const live = a && a.live && a.live.slices.length ? a.live : null;
  const shown = live ? live.slices : (a ? a.latest_slices : []);
  if (!shown.length) {
    slices.replaceChildren(el("p", { class: "no-analysis" }, "no analysis yet"));
    slices.dataset.key = "";
    $("slices-label").textContent = "";
    return;
  }
  // Replace the images only when a path or a file's version changes (no flicker at each poll).
  const key = shown.map((s) => `${s.path}@${s.version}`).join("|");
  if (slices.dataset.key !== key) {
    slices.replaceChildren();
    shown.forEach((s) => {
      const fig = el("figure", { class: "slice", "data-name": s.name });
      const img = el("img", { alt: s.name, src: api("api/file", { path: s.path, v: s.version }) });
      img.addEventListener("load", () => fig.setAttribute("data-loaded", `${img.naturalWidth}x${img.naturalHeight}`));
      fig.appendChild(img);
      fig.appendChild(el("figcaption", {}, s.name));
      slices.appendChild(fig);
    });
    slices.dataset.key = key;
  }
  if (live) {
    const n = live.projections === null ? "" : `, ${live.projections} projections so far`;
    $("slices-label").textContent = `${live.timestep} (live${n})`;
  } else {
    const withSlices = a.timesteps.filter((t) => t.slices.length);
    $("slices-label").textContent = withSlices.length ? withSlices[withSlices.length - 1].timestep : "";
  }
}

function drawAnalysis(snap) {
  const a = snap.analysis;
  const fractions = $("fractions"), plot = $("analysis-plot");
  plot.replaceChildren();
  drawSlices(a);
  if (!a || !a.timesteps.length) {
    fractions.replaceChildren(el("p", { class: "no-analysis" }, "no analysis yet"));
    return;
  }
  // Fractions: a table, one row per timestep, one column per class, plus the thickness.
  const table = el("table", { class: "grid", id: "fraction-table" });
  const head = el("tr");
  ["scan", ...a.classes, "thickness"].forEach((h) => head.appendChild(el("th", {}, h)));
  table.appendChild(head);
  a.timesteps.forEach((t) => {
    const tr = el("tr", { class: "fraction-row", "data-timestep": t.timestep });
    tr.appendChild(el("td", {}, t.timestep));
    a.classes.forEach((c) => {
      const v = t.class_fractions[c];
      tr.appendChild(el("td", { class: "fraction", "data-class": c }, v === undefined ? "-" : v.toFixed(3)));
    });
    tr.appendChild(el("td", { class: "thickness" }, t.thickness_um === null ? "-" : `${t.thickness_um.toFixed(2)} um`));
    table.appendChild(tr);
  });
  fractions.replaceChildren(table);
  // Plot: fractions (0-1, left axis) and thickness (right axis) against the scan index.
  const box = { x: 40, y: 15, w: 350, h: 200 };
  const n = a.timesteps.length;
  const X = (i) => box.x + (n > 1 ? (i / (n - 1)) * box.w : box.w / 2);
  const Yf = (f) => box.y + box.h - f * box.h;
  plot.appendChild(el("svg:rect", { x: box.x, y: box.y, width: box.w, height: box.h, fill: "none", stroke: "#bbb" }));
  [0, 0.5, 1].forEach((f) => plot.appendChild(el("svg:text", { x: box.x - 4, y: Yf(f) + 4, "text-anchor": "end", "font-size": 10 }, f)));
  a.timesteps.forEach((t, i) => plot.appendChild(el("svg:text", { x: X(i), y: box.y + box.h + 14, "text-anchor": "middle", "font-size": 10 }, t.timestep)));
  a.classes.forEach((c, k) => {
    const pts = a.timesteps.map((t, i) => (t.class_fractions[c] === undefined ? null : `${X(i)},${Yf(t.class_fractions[c])}`)).filter((p) => p);
    plot.appendChild(el("svg:polyline", { points: pts.join(" "), fill: "none", stroke: CLASS_COLOURS[k % CLASS_COLOURS.length], "stroke-width": 2, class: "fraction-line", "data-class": c }));
    plot.appendChild(el("svg:text", { x: box.x + 4 + 80 * k, y: box.y + box.h + 32, "font-size": 11, fill: CLASS_COLOURS[k % CLASS_COLOURS.length] }, c));
  });
  const th = a.timesteps.map((t) => t.thickness_um).filter((v) => v !== null);
  if (th.length) {
    let lo = Math.min(...th), hi = Math.max(...th);
    if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
    const Yt = (v) => box.y + box.h - ((v - lo) / (hi - lo)) * box.h;
    const pts = a.timesteps.map((t, i) => (t.thickness_um === null ? null : `${X(i)},${Yt(t.thickness_um)}`)).filter((p) => p);
    plot.appendChild(el("svg:polyline", { points: pts.join(" "), fill: "none", stroke: "#000", "stroke-dasharray": "4,2", class: "thickness-line" }));
    plot.appendChild(el("svg:text", { x: box.x + box.w + 4, y: Yt(hi) + 4, "font-size": 10 }, `${hi.toFixed(1)} um`));
    plot.appendChild(el("svg:text", { x: box.x + box.w + 4, y: Yt(lo) + 4, "font-size": 10 }, `${lo.toFixed(1)} um`));
  }
}

async function refresh() {
  try {
    const resp = await fetch(api("api/snapshot", experiment ? { experiment } : {}), { cache: "no-store" });
    const snap = await resp.json();
    if (!resp.ok) throw new Error(snap.error || resp.status);
    if (!snap.experiment) {
      $("connection").textContent = snap.message || "no experiment yet";
    } else {
      drawStatus(snap);
      drawEc(snap);
      drawAnalysis(snap);
      $("connection").textContent = `updated ${new Date().toLocaleTimeString()} (${snap.polls} polls)`;
      document.body.setAttribute("data-updated", String(Number(document.body.getAttribute("data-updated") || 0) + 1));
    }
  } catch (err) {
    $("connection").textContent = `no connection to the monitor (${err.message})`;
  }
  setTimeout(refresh, POLL_MS);
}

$("experiment-select").addEventListener("change", (ev) => {
  experiment = ev.target.value;
  const q = new URLSearchParams(window.location.search);
  q.set("experiment", experiment);
  window.history.replaceState(null, "", "?" + q.toString());
  refresh();
});
refresh();
