// hyperfleet dashboard: one page over the JSON API (/api/...), redrawn every REFRESH_MS without a reload.
"use strict";

const REFRESH_MS = 2000;
const view = document.getElementById("view");
const tokenInput = document.getElementById("token");
let actions = false;
let readToken = false;  // the server wants the token for reads too
let timer = null;
let table = {state: "", param: "", min: "", max: "", sort: "tid", order: "asc", offset: 0};
let tableKey = null;

tokenInput.value = sessionStorage.getItem("hyperfleet-token") || "";
tokenInput.addEventListener("change", () => {
  sessionStorage.setItem("hyperfleet-token", tokenInput.value);
  if (readToken) { say(""); route(); }
});

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

async function api(path, options = {}) {
  // actions always carry the token; reads when the server wants it for them
  const headers = options.method || readToken ? {Authorization: "Bearer " + tokenInput.value} : {};
  const response = await fetch(path, {...options, headers});
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function say(text) { document.getElementById("message").textContent = text || ""; }
const fmt = (x, digits = 6) => (x === null || x === undefined ? "-" : typeof x === "number" ? +x.toPrecision(digits) + "" : x);
function duration(s) {
  if (s === null || s === undefined) return "-";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h ? `${h}h${String(m).padStart(2, "0")}m` : m ? `${m}m${String(r).padStart(2, "0")}s` : `${r}s`;
}
const enc = encodeURIComponent;

// -- experiments ------------------------------------------------------------------------------

async function experimentsView() {
  crumbs([]);
  const rows = await api("/api/experiments");
  const head = ["experiment", "new", "running", "done", "pruned", "error", "cancelled", "max", "best loss", "trials/min", "ETA"];
  view.replaceChildren(el("h2", {}, "Experiments"), rows.length ? el("table", {id: "experiments"},
    el("tr", {}, head.map((h, i) => el("th", {class: i ? null : "name"}, h))),
    rows.map(s => el("tr", {"data-key": s.exp_key},
      el("td", {class: "name"}, el("a", {href: `#/exp/${enc(s.exp_key)}`}, s.exp_key)),
      [s.new, s.running, s.done, s.pruned, s.error, s.cancelled, s.max_evals ?? "-", fmt(s.best_loss),
       fmt(s.trials_per_minute, 3), s.complete ? "done" : duration(s.eta_seconds)].map(v => el("td", {}, v))))
  ) : el("p", {class: "muted"}, "No experiment in this database yet."));
}

// -- one experiment ---------------------------------------------------------------------------

async function experimentView(key) {
  crumbs([[key, `#/exp/${enc(key)}`]]);
  if (tableKey !== key) { table = {...table, state: "", param: "", min: "", max: "", offset: 0}; tableKey = key; }
  const [exp, page, curves] = await Promise.all([api(`/api/experiments/${enc(key)}`), api(trialsQuery(key)),
                                                 api(`/api/experiments/${enc(key)}/curves`)]);
  const s = exp.status;
  const counts = el("div", {class: "counts"}, [["new", s.new], ["running", s.running], ["done", s.done],
    ["pruned", s.pruned], ["error", s.error], ["cancelled", s.cancelled], ["best loss", fmt(s.best_loss)],
    ["trials/min", fmt(s.trials_per_minute, 3)], ["ETA", s.complete ? "done" : duration(s.eta_seconds)]]
    .map(([name, value]) => el("div", {class: "count", id: `count-${name.toLowerCase().replace(/[^a-z]/g, "")}`}, el("b", {}, value), name)));
  const buttons = el("div", {class: "filters"},
    el("button", {id: "cancel", disabled: !actions || s.complete || exp.cancelled, onclick: () => act(
      `/api/experiments/${enc(key)}/cancel`, "POST", `Cancel ${key}? Queued trials are withdrawn; running ones finish.`)},
      exp.cancelled ? "Cancelled" : "Cancel experiment"),
    el("button", {id: "delete", class: "danger", disabled: !actions, onclick: () => deleteExperiment(key)},
      "Delete experiment"));
  view.replaceChildren(el("h2", {}, key), counts, buttons, plots(exp, curves), filters(key, exp.parameters), trialsTable(key, page));
}

function trialsQuery(key) {
  const q = new URLSearchParams({sort: table.sort, order: table.order, offset: table.offset, limit: 50});
  if (table.state) q.set("state", table.state);
  if (table.param && (table.min !== "" || table.max !== "")) {
    q.set("param", table.param);
    if (table.min !== "") q.set("min", table.min);
    if (table.max !== "") q.set("max", table.max);
  }
  return `/api/experiments/${enc(key)}/trials?${q}`;
}

function filters(key, parameters) {
  const redraw = () => { table.offset = 0; route(); };
  const input = (name, attrs) => el("input", {...attrs, id: `filter-${name}`, value: table[name],
    onchange: e => { table[name] = e.target.value; redraw(); }});
  return el("div", {class: "filters"},
    "state", el("select", {id: "filter-state", onchange: e => { table.state = e.target.value; redraw(); }},
      ["", "new", "running", "done", "error", "cancel"].map(v => el("option", {value: v, selected: v === table.state}, v || "any"))),
    "parameter", el("select", {id: "filter-param", onchange: e => { table.param = e.target.value; redraw(); }},
      ["", ...parameters].map(v => el("option", {value: v, selected: v === table.param}, v || "-"))),
    "min", input("min", {type: "number", step: "any", size: 8}), "max", input("max", {type: "number", step: "any", size: 8}));
}

function trialsTable(key, page) {
  const params = [...new Set(page.rows.flatMap(r => Object.keys(r.params)))].sort();
  const steps = page.rows.some(r => r.steps !== null);  // the objective reports intermediate values
  const columns = [["tid", "tid"], ["state", "state"], ["loss", "loss"], ...(steps ? [["reported steps", null]] : []),
                   ...params.map(p => [p, `param:${p}`]), ["started", "book_time"], ["updated", "refresh_time"], ["ran on", null]];
  const sortBy = sort => { if (!sort) return; table.order = table.sort === sort && table.order === "asc" ? "desc" : "asc"; table.sort = sort; route(); };
  const mark = sort => (table.sort === sort ? (table.order === "asc" ? " ▲" : " ▼") : "");
  const pager = el("div", {class: "filters"},
    el("button", {disabled: table.offset === 0, onclick: () => { table.offset = Math.max(0, table.offset - 50); route(); }}, "‹ previous"),
    `${page.total ? page.offset + 1 : 0}–${page.offset + page.rows.length} of ${page.total}`,
    el("button", {disabled: page.offset + page.rows.length >= page.total, onclick: () => { table.offset += 50; route(); }}, "next ›"));
  return el("div", {},
    el("table", {id: "trials"},
      el("tr", {}, columns.map(([label, sort]) => el("th", sort ? {onclick: () => sortBy(sort)} : {}, label + mark(sort)))),
      page.rows.map(r => el("tr", {"data-tid": r.tid, "data-state": r.state, "data-pruned": r.pruned},
        el("td", {}, el("a", {href: `#/trial/${enc(key)}/${r.tid}`}, r.tid)),
        el("td", {class: r.pruned ? "state-pruned" : `state-${r.state}`}, r.pruned ? `${r.state} (pruned)` : r.state),
        el("td", {}, fmt(r.loss)), steps ? el("td", {}, r.steps ?? "-") : [],
        params.map(p => el("td", {}, fmt(r.params[p]))),
        el("td", {}, (r.started || "").slice(11, 19)), el("td", {}, (r.updated || "").slice(11, 19)),
        el("td", {class: "ran-on"}, r.ran_on || "")))),
    pager);
}

// -- plots (drawn here on canvases: loss over time, learning curves, loss against each parameter) -------

function plots(exp, curves) {
  const ok = exp.points.filter(p => p.loss !== null && p.finished);
  const times = ok.map(p => Date.parse(p.finished) / 1000);
  const t0 = Math.min(...times);
  let best = Infinity;
  const order = ok.map((p, i) => [times[i] - t0, p.loss]).sort((a, b) => a[0] - b[0]);
  const line = order.map(([t, loss]) => [t, (best = Math.min(best, loss))]);
  return el("div", {class: "plots", id: "plots"},
    plot("loss over time (s)", order, [[line, "#d62728"]], "plot-time"),
    curves.curves.length ? learningCurves(curves) : [],
    exp.parameters.map(name => [name, ok.filter(p => typeof p.params[name] === "number").map(p => [p.params[name], p.loss])])
      .filter(([, points]) => points.length)  // a choice of strings has no axis to plot on
      .map(([name, points]) => plot(`loss against ${name}`, points, [], `plot-${name}`)));
}

// a pruned trial's grey is lighter than the axes' (#999), so the two never read as one
const PRUNED_GREY = "rgba(190, 190, 190, 0.8)", CURVE_BLUE = "rgba(31, 119, 180, 0.75)";

function learningCurves(curves) {
  // one line per trial, loss against step; pruned trials in grey, drawn under the others
  const ordered = [...curves.curves].sort((a, b) => b.pruned - a.pruned);
  const lines = ordered.map(c => [c.points, c.pruned ? PRUNED_GREY : CURVE_BLUE]);
  const pruned = curves.curves.filter(c => c.pruned).length;
  const title = `learning curves (${curves.trials} trials, ${pruned} pruned in grey)`;
  return plot(title, ordered.flatMap(c => c.points), lines, "plot-curves",
              {dots: false, "data-curves": curves.curves.length, "data-pruned": pruned});
}

function plot(title, points, lines, id, {dots = true, ...data} = {}) {
  // a canvas, not SVG: 10^4 points draw in milliseconds without 10^4 DOM nodes
  const W = 300, H = 190, L = 46, B = 22, ratio = window.devicePixelRatio || 1;
  const canvas = el("canvas", {width: W * ratio, height: H * ratio, style: `width:${W}px;height:${H}px`,
                               "data-points": points.length, ...data});
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  if (points.length) {
    let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
    for (const [x, y] of points) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
    const sx = x => L + (x1 > x0 ? (x - x0) / (x1 - x0) : .5) * (W - L - 8);
    const sy = y => 6 + (y1 > y0 ? 1 - (y - y0) / (y1 - y0) : .5) * (H - B - 10);
    g.strokeStyle = "#999";
    g.beginPath(); g.moveTo(L, 4); g.lineTo(L, H - B); g.lineTo(W - 4, H - B); g.stroke();
    g.fillStyle = "#1d2330"; g.font = "10px system-ui, sans-serif";
    g.textAlign = "right";
    for (const [y, base] of y1 > y0 ? [[y1, "top"], [y0, "bottom"]] : [[y0, "middle"]]) {
      g.textBaseline = base; g.fillText(fmt(y, 3), L - 4, sy(y));
    }
    g.textBaseline = "bottom";
    for (const [x, align] of x1 > x0 ? [[x0, "left"], [x1, "right"]] : [[x0, "center"]]) {
      g.textAlign = align; g.fillText(fmt(x, 3), sx(x), H - 4);
    }
    g.fillStyle = "rgba(31, 119, 180, 0.6)";
    if (dots) for (const [x, y] of points) { g.beginPath(); g.arc(sx(x), sy(y), 2.5, 0, 2 * Math.PI); g.fill(); }
    for (const [line, color] of lines) {
      g.strokeStyle = color; g.beginPath();
      line.forEach(([x, y], i) => (i ? g.lineTo(sx(x), sy(y)) : g.moveTo(sx(x), sy(y))));
      if (line.length === 1) g.arc(sx(line[0][0]), sy(line[0][1]), 1.5, 0, 2 * Math.PI);  // a curve of one step
      g.stroke();
    }
  }
  return el("div", {class: "plot", id}, el("h3", {}, title), canvas);
}

// -- one trial ----------------------------------------------------------------------------------

async function trialView(key, tid) {
  crumbs([[key, `#/exp/${enc(key)}`], [`trial ${tid}`, `#/trial/${enc(key)}/${tid}`]]);
  const t = await api(`/api/experiments/${enc(key)}/trials/${tid}`);
  const kv = obj => el("table", {}, Object.entries(obj).map(([k, v]) => el("tr", {}, el("td", {class: "name"}, k), el("td", {}, fmt(v)))));
  const parts = [el("h2", {}, `${key} · trial ${tid} · `, el("span", {class: `state-${t.state}`, id: "trial-state"}, t.state)),
    ...(t.ran_on ? [el("p", {id: "ran-on"}, `ran on ${t.ran_on}`)] : []),
    el("h3", {}, "Parameters"), kv(t.params), el("h3", {}, "Result"), kv(t.result)];
  if (t.state === "error") {
    parts.push(el("p", {}, el("button", {id: "requeue", disabled: !actions, onclick: () => act(
      `/api/experiments/${enc(key)}/trials/${tid}/requeue`, "POST", null)}, "Requeue this trial")));
    parts.push(el("h3", {}, "Error"), el("pre", {id: "error"}, (t.error || []).join(": ")));
    if (t.traceback) parts.push(el("h3", {}, "Traceback"), el("pre", {id: "traceback"}, t.traceback));
  }
  if (t.history.length) parts.push(el("h3", {}, "History"), el("table", {}, t.history.map(h =>
    el("tr", {}, el("td", {}, (h.at || "").slice(0, 19)), el("td", {class: "name"}, h.event), el("td", {class: "name"}, h.reason || "")))));
  parts.push(el("h3", {}, "Attachments"), t.attachments.length ? el("ul", {}, t.attachments.map(a =>
    el("li", {}, el("a", {href: "#", onclick: e => { e.preventDefault(); showAttachment(key, tid, a.name, 0, true); }},
      a.name), ` (${a.bytes} bytes)`))) : el("p", {class: "muted"}, "none"), el("div", {id: "attachment"}));
  view.replaceChildren(...parts);
  const log = t.attachments.find(a => a.name === "container.log");
  if (log) showAttachment(key, tid, log.name, 0, true);
}

async function showAttachment(key, tid, name, offset, fresh) {
  const page = await api(`/api/experiments/${enc(key)}/trials/${tid}/attachments/${enc(name)}?offset=${offset}`);
  const box = document.getElementById("attachment");
  const pre = fresh ? el("pre", {id: "attachment-text"}) : box.querySelector("pre");
  pre.append(page.text);
  const more = page.next_offset === null ? el("p", {class: "muted"}, `${name}: ${page.bytes} bytes`)
    : el("button", {id: "more", onclick: () => showAttachment(key, tid, name, page.next_offset, false)},
         `more of ${name} (${page.bytes - page.next_offset} bytes left)`);
  box.replaceChildren(el("h3", {}, name), pre, more);
}

// -- actions, navigation -------------------------------------------------------------------------

async function act(path, method, question) {
  if (question && !confirm(question)) return;
  try { await api(path, {method}); say(""); } catch (err) { say(err.message); }
  route();
}

async function deleteExperiment(key) {
  if (prompt(`Delete ${key} with all its trials and attachments? Type its name to confirm.`) !== key) return;
  try { await api(`/api/experiments/${enc(key)}`, {method: "DELETE"}); say(""); location.hash = "#/"; }
  catch (err) { say(err.message); route(); }
}

function crumbs(items) {
  document.getElementById("crumbs").replaceChildren(...items.flatMap(([text, href]) => [" / ", el("a", {href}, text)]));
}

let drawing = false, again = false;
async function route(auto = false) {
  clearTimeout(timer);
  if (drawing) { again = true; return; }  // drawn once more when the current drawing ends
  const typing = view.contains(document.activeElement) && document.activeElement.tagName === "INPUT";
  if (auto === true && typing) {  // not while the user types in a filter
    timer = setTimeout(() => route(true), REFRESH_MS);
    return;
  }
  drawing = true;
  const [, kind, key, tid] = location.hash.split("/").map(decodeURIComponent);
  const focused = document.activeElement && document.activeElement.id;
  try {
    if (kind === "exp") await experimentView(key);
    else if (kind === "trial") await trialView(key, +tid);
    else await experimentsView();
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
  } catch (err) { say(err.message); }
  finally { drawing = false; }
  if (again) { again = false; return route(); }
  // a trial's page stays as it is (its log may be paged); lists and experiments follow the database
  if (kind !== "trial") timer = setTimeout(() => route(true), REFRESH_MS);
}

async function start() {
  const config = await api("/api/config");
  actions = config.actions;
  readToken = config.read_token;
  document.getElementById("actions-note").textContent = actions ? "" : "Actions are off: no token is configured.";
  document.getElementById("token-box").hidden = !actions;
  if (readToken && !tokenInput.value) {
    view.replaceChildren(el("p", {class: "muted"}, "This dashboard needs its token to show anything: enter it above."));
    tokenInput.focus();
  }
  window.addEventListener("hashchange", () => { table.offset = 0; route(); });
  if (!readToken || tokenInput.value) route();
}
start();
