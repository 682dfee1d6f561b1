// The Nimbus web console: a client of the control API (/v1), with the API
// key the user logged in with. Views (in the URL hash, so reload and back
// work): #/apps, #/apps/APP, #/invocations/APP, #/invocation/APP/ID,
// #/trace/ID, #/dlq/APP, #/usage/APP?period=day|week.
"use strict";

const $ = (sel, root) => (root || document).querySelector(sel);
const view = $("#view");
// The key lives in this page's memory only: never in storage that app
// pages on the same origin could read. A reload asks for it again.
let key = null;
let apps = [];

// ---- helpers ----

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el[k] = v;
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
  }
  return el;
}

function say(text, kind) {
  const m = $("#message");
  m.textContent = text || "";
  m.className = kind || "";
  m.hidden = !text;
}

async function api(method, path, body) {
  const resp = await fetch(path, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (resp.status === 401) {
    logout("That key was refused (revoked or mistyped): log in again.");
    throw new Error("unauthorized");
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (!resp.ok) throw new Error((data && data.error) || `${resp.status} ${resp.statusText}`);
  return data;
}

const enc = encodeURIComponent;
const when = (us) => new Date(us / 1000).toLocaleString();
const ms = (us) => (us / 1000).toFixed(us < 10000 ? 2 : 1);
const bytes = (n) => n >= 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;
const money = (x, cur) => `${x < 0.01 && x > 0 ? x.toExponential(2) : x.toFixed(4)} ${cur || ""}`;

function table(headers, rows, onClick) {
  return h("table", {},
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.length ? rows.map((r) => {
      const tr = h("tr", { class: onClick ? "clickable" : "" }, r.cells.map((c) => h("td", { class: typeof c === "number" ? "num" : "" }, c)));
      if (onClick) tr.onclick = () => onClick(r);
      if (r.id) tr.dataset.id = r.id;
      return tr;
    }) : h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, "nothing here yet"))));
}

function appPicker(current, target) {
  const sel = h("select", { id: "app-picker", onchange: () => { location.hash = target(sel.value); } },
    apps.map((a) => h("option", { value: a.name, selected: a.name === current }, a.name)));
  return h("label", { class: "inline" }, "App ", sel);
}

function outcome(inv) {
  const good = inv.outcome === "ok" && (inv.status === null || inv.status < 500);
  return h("span", { class: good ? "ok" : "bad" }, `${inv.status ?? ""} ${inv.outcome}`);
}

// ---- views ----

async function showApps() {
  // The nodes serving this database: only platform-wide keys may see them.
  const [list, cluster] = await Promise.all([
    api("GET", "/v1/apps"),
    api("GET", "/v1/cluster").catch(() => null),
  ]);
  apps = list;
  view.replaceChildren(h("h1", {}, "Apps"),
    table(["App", "Active revision", "Functions", "Routes", "Updated"],
      apps.map((a) => ({ id: a.name, app: a.name, cells: [a.name, a.active_revision, a.functions, a.routes, when(a.updated_at_us)] })),
      (r) => { location.hash = `#/apps/${enc(r.app)}`; }),
    cluster && h("section", { id: "nodes" },
      h("h2", {}, `Nodes (${cluster.backend === "postgres" ? "PostgreSQL, shared" : "embedded SQLite, this node only"})`),
      table(["Node", "Serves at", "Up since", "Last heartbeat", "State"], cluster.nodes.map((n) => ({
        id: n.id,
        cells: [n.id === cluster.node ? `${n.id} (this one)` : n.id, n.url, when(n.started_at_us), when(n.seen_at_us),
          h("span", { class: n.live ? "ok" : "bad" }, n.live ? "live" : "gone")],
      })))));
}

async function showApp(app) {
  const [revisions, fns, queues, connections] = await Promise.all([
    api("GET", `/v1/apps/${enc(app)}/revisions`),
    api("GET", `/v1/apps/${enc(app)}/functions`),
    api("GET", `/v1/apps/${enc(app)}/queues`),
    // A key that may not list connections still sees the rest.
    api("GET", `/v1/apps/${enc(app)}/connections?limit=200`).catch((e) => ({ error: e.message })),
  ]);
  const active = revisions.find((r) => r.active);
  const rollback = async (number) => {
    if (!confirm(number ? `Make revision ${number} of ${app} active?` : `Roll ${app} back to its previous revision?`)) return;
    try {
      const r = await api("POST", `/v1/apps/${enc(app)}/rollback`, number ? { revision: number } : {});
      say(`${app} now serves revision ${r.active_revision}.`, "info");
      showApp(app);
    } catch (e) { say(`Rollback failed: ${e.message}`); }
  };
  view.replaceChildren(
    h("h1", {}, `App ${app} `, h("span", { class: "badge", id: "active-revision" }, `revision ${active ? active.number : "none"} active`)),
    h("div", { class: "toolbar" },
      h("button", { id: "rollback", onclick: () => rollback(null), disabled: revisions.length < 2 }, "Roll back to the previous revision"),
      h("a", { href: `#/invocations/${enc(app)}` }, "Invocations"),
      h("a", { href: `#/dlq/${enc(app)}` }, "Dead letters"),
      h("a", { href: `#/usage/${enc(app)}` }, "Usage")),
    h("h2", {}, "Revisions"),
    table(["#", "Created", "Functions", "Routes", ""], revisions.map((r) => ({
      id: String(r.number),
      cells: [r.number, when(r.created_at_us), r.functions.join(", "), r.routes,
        r.active ? h("span", { class: "badge" }, "active") :
          h("button", { class: "secondary", "data-revision": r.number, onclick: () => rollback(r.number) }, "Activate")],
    }))),
    h("h2", {}, "Functions and routes"),
    table(["Function", "Memory", "Timeout", "Concurrency", "In flight", "Routes"], fns.functions.map((f) => ({
      id: f.name,
      cells: [f.name, `${f.limits.memory_mb} MiB`, `${f.limits.timeout_ms} ms`, f.limits.max_concurrency, f.in_flight,
        h("span", { class: "mono" }, f.routes.map((r) => `${(r.methods || ["*"]).join(",")} ${r.path}`).join("\n") || "—")],
    }))),
    h("h2", {}, "Queues, topics and schedules"),
    table(["Channel", "Function", "Queued", "Running", "Failed", "Dead"], queues.channels
      .filter((c) => !c.channel.startsWith("async:") || c.queued + c.running + c.failed + c.dead > 0)
      .map((c) => ({ cells: [c.channel, c.function || "", c.queued, c.running, c.failed, c.dead] }))),
    h("h2", {}, `Live WebSocket connections (${connections.error ? "?" : connections.length}) `,
      h("button", { class: "secondary", id: "refresh-connections", onclick: () => showApp(app) }, "Refresh")),
    h("div", { id: "connections" }, connections.error ? h("p", { class: "muted" }, `Not shown: ${connections.error}`) :
      connections.length ? table(["Connection", "Node", "Route", "Path", "Opened", "In", "Out", "Channels", ""],
      connections.map((c) => ({
        id: c.id,
        cells: [h("span", { class: "mono" }, c.id), c.node, c.route, h("span", { class: "mono" }, c.path),
          when(c.opened_at_ms * 1000), c.messages_in ?? "—", c.messages_out ?? "—", (c.channels || []).join(", "),
          h("button", { class: "secondary", onclick: () => closeConnection(app, c.id) }, "Close")],
      }))) : h("p", {}, "No open connections.")));
}

async function closeConnection(app, id) {
  if (!confirm(`Close connection ${id} of ${app}?`)) return;
  try {
    await api("DELETE", `/v1/apps/${enc(app)}/connections/${enc(id)}?code=1000&reason=${enc("closed from the console")}`);
    say(`Connection ${id} is closing.`, "info");
    showApp(app);
  } catch (e) { say(`Closing failed: ${e.message}`); }
}

async function showInvocations(app) {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const fn = params.get("function") || "";
  const list = await api("GET", `/v1/apps/${enc(app)}/invocations?limit=100${fn ? `&function=${enc(fn)}` : ""}`);
  const fns = await api("GET", `/v1/apps/${enc(app)}/functions`);
  const picker = h("select", { id: "function-picker", onchange: () => {
    location.hash = `#/invocations/${enc(app)}${picker.value ? `?function=${enc(picker.value)}` : ""}`;
  } }, h("option", { value: "" }, "all functions"), fns.functions.map((f) => h("option", { value: f.name, selected: f.name === fn }, f.name)));
  view.replaceChildren(h("h1", {}, "Recent invocations"),
    h("div", { class: "toolbar" }, appPicker(app, (a) => `#/invocations/${enc(a)}`), picker,
      h("button", { class: "secondary", onclick: () => showInvocations(app) }, "Refresh")),
    table(["Started", "Function", "Trigger", "Request", "Outcome", "Duration ms", "Peak memory", "Cold"],
      list.map((i) => ({
        id: i.id, inv: i,
        cells: [when(i.started_at_us), i.function, i.trigger, h("span", { class: "mono" }, `${i.method} ${i.path}`),
          outcome(i), Number(ms(i.duration_us)), bytes(i.peak_memory_bytes), i.cold ? "cold" : ""],
      })),
      (r) => { location.hash = `#/invocation/${enc(app)}/${r.id}`; }));
}

async function showInvocation(app, id) {
  const rec = await api("GET", `/v1/invocations/${enc(id)}`);
  const logs = await api("GET", `/v1/apps/${enc(app)}/logs?invocation=${enc(id)}&limit=500`);
  const fields = [
    ["Function", `${rec.app}/${rec.function} (revision ${rec.revision})`],
    ["Trigger", `${rec.trigger} ${rec.method} ${rec.path}`],
    ["Outcome", outcome(rec)],
    ["Error", rec.error || "—"],
    ["Started", when(rec.started_at_us)],
    ["Duration", `${ms(rec.duration_us)} ms`],
    ["Memory", `${bytes(rec.peak_memory_bytes)} peak of ${rec.memory_mb} MiB`],
    ["Bytes", `${bytes(rec.bytes_in)} in, ${bytes(rec.bytes_out)} out`],
    ["Trace", rec.trace_id ? h("a", { href: `#/trace/${rec.trace_id}`, id: "trace-link" }, rec.trace_id) : "—"],
  ];
  view.replaceChildren(h("h1", {}, "Invocation ", h("span", { class: "mono" }, id)),
    table(["Field", "Value"], fields.map(([k, v]) => ({ cells: [k, v] }))),
    h("h2", {}, "Logs"),
    logs.length ? h("pre", { id: "logs" }, logs.map((l) => `${l.stream}: ${l.text}`).join("")) : h("p", { class: "muted", id: "logs" }, "This invocation wrote nothing to stdout or stderr."));
}

async function showTrace(id) {
  const t = await api("GET", `/v1/traces/${enc(id)}`);
  const spans = t.spans || [];
  if (!spans.length) {
    view.replaceChildren(h("h1", {}, "Trace"), h("p", { class: "muted" }, `No spans stored for ${id}.`));
    return;
  }
  const start = Math.min(...spans.map((s) => s.started_at_us), ...(t.operations || []).map((o) => o.started_at_us));
  const end = Math.max(...spans.map((s) => s.started_at_us + s.duration_us), ...(t.operations || []).map((o) => o.started_at_us + o.duration_us));
  const total = Math.max(end - start, 1);
  const rows = [];
  const bySpan = new Map(spans.map((s) => [s.span_id, s]));
  const children = (parent) => spans.filter((s) => (s.parent_span_id && bySpan.has(s.parent_span_id) ? s.parent_span_id : null) === parent);
  const bar = (at, dur, cls) => {
    const b = h("div", { class: `span ${cls}` });
    b.style.left = `${((at - start) / total) * 100}%`;
    b.style.width = `${Math.max((dur / total) * 100, 0.2)}%`;
    return b;
  };
  const row = (depth, label, at, dur, cls, title) => {
    const l = h("div", { class: "label", title }, label, h("span", { class: "muted" }, ` ${ms(dur)} ms`));
    l.style.paddingLeft = `${depth * 1.2}rem`;
    rows.push(h("div", { class: "row" }, l, h("div", { class: "track" }, bar(at, dur, cls))));
  };
  const walk = (s, depth) => {
    const failed = s.outcome !== "ok" || (s.status && s.status >= 500);
    row(depth, h("a", { href: `#/invocation/${enc(s.app)}/${s.id}` }, `${s.app}/${s.function} ${s.trigger} ${s.method} ${s.path} → ${s.status ?? ""} ${s.outcome}`),
      s.started_at_us, s.duration_us, failed ? "failed" : "", s.id);
    for (const o of (t.operations || []).filter((o) => o.invocation_id === s.id)) {
      row(depth + 1, `${o.service} ${o.op} ${o.target}${o.ok ? "" : " (failed)"}`, o.started_at_us, o.duration_us, o.ok ? "op" : "op failed", o.span_id);
    }
    for (const c of children(s.span_id)) walk(c, depth + 1);
  };
  for (const root of children(null)) walk(root, 0);
  view.replaceChildren(h("h1", {}, "Trace ", h("span", { class: "mono" }, t.trace_id)),
    h("p", { class: "muted" }, `${spans.length} invocations, ${(t.operations || []).length} operations, ${ms(total)} ms from first start to last end`),
    h("div", { class: "waterfall", id: "waterfall" }, rows));
}

async function showDlq(app) {
  const [dead, queues] = await Promise.all([
    api("GET", `/v1/apps/${enc(app)}/events?state=dead&limit=200`),
    api("GET", `/v1/apps/${enc(app)}/queues`),
  ]);
  const redrive = async (fn) => {
    try {
      const r = await api("POST", `/v1/apps/${enc(app)}/functions/${enc(fn)}/dlq/redrive`, {});
      say(`${r.redriven} events of ${fn} are queued again.`, "info");
      showDlq(app);
    } catch (e) { say(`Redrive failed: ${e.message}`); }
  };
  const withDead = queues.channels.filter((c) => c.dead > 0);
  const fnsWithDead = [...new Set(withDead.map((c) => c.function).filter(Boolean))];
  view.replaceChildren(h("h1", {}, "Dead-letter queues"),
    h("div", { class: "toolbar" }, appPicker(app, (a) => `#/dlq/${enc(a)}`),
      fnsWithDead.map((f) => h("button", { class: "secondary", onclick: () => redrive(f) }, `Redrive ${f}`))),
    table(["Channel", "Function", "Dead"], withDead.map((c) => ({ cells: [c.channel, c.function || "", c.dead] }))),
    h("h2", {}, "Dead events"),
    table(["Event", "Function", "Channel", "Attempts", "Last error", "Updated"], dead.map((m) => ({
      cells: [h("span", { class: "mono" }, m.id), m.function || "", m.channel, m.attempts, m.last_error || "", when(m.updated_at_us)],
    }))));
}

function barChart(rows, value, label, cls, format) {
  const fmt = format || ((v) => v.toLocaleString());
  const w = 720, hgt = 180, pad = 28;
  const max = Math.max(...rows.map(value), 0) || 1;
  const bw = (w - pad) / Math.max(rows.length, 1);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${hgt}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const add = (tag, attrs, text) => {
    const el = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    svg.appendChild(el);
    return el;
  };
  add("text", { x: 0, y: 10 }, fmt(max));
  rows.forEach((r, i) => {
    const v = value(r);
    const bh = ((hgt - 30) * v) / max;
    const rect = add("rect", { class: `bar ${cls || ""}`, x: pad + i * bw + 1, y: hgt - 16 - bh, width: Math.max(bw - 2, 1), height: bh });
    const t = document.createElementNS(ns, "title");
    t.textContent = `${r.label}: ${fmt(v)}`;
    rect.appendChild(t);
    if (rows.length <= 8 || i % Math.ceil(rows.length / 8) === 0) add("text", { x: pad + i * bw, y: hgt - 3 }, r.label);
  });
  return h("div", { class: "chart" }, h("div", {}, label), svg);
}

async function showUsage(app) {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const period = params.get("period") === "week" ? "week" : "day";
  const by = period === "day" ? "hour" : "day";
  const base = app ? `/v1/apps/${enc(app)}/usage` : "/v1/usage";
  const since = period === "day" ? "24h" : "7d";
  const [series, perFn] = await Promise.all([
    api("GET", `${base}?since=${since}&by=${by}`),
    api("GET", `${base}?since=${since}&by=function`),
  ]);
  // One bar per hour (or day) of the period, empty ones included.
  const step = by === "hour" ? 3600e3 : 86400e3;
  const now = Date.now();
  const n = period === "day" ? 24 : 7;
  const keyOf = (t) => by === "hour" ? new Date(t).toISOString().slice(0, 13) + ":00Z" : new Date(t).toISOString().slice(0, 10);
  const found = new Map(series.rows.map((r) => [r.key, r]));
  const rows = [];
  for (let i = n - 1; i >= 0; i--) {
    const k = keyOf(now - i * step);
    const r = found.get(k) || { invocations: 0, gb_seconds: 0, cost: 0, errors: 0 };
    rows.push({ ...r, label: by === "hour" ? k.slice(11, 16) : k.slice(5) });
  }
  const cur = series.prices.currency;
  const t = perFn.total;
  const card = (label, value) => h("div", { class: "card" }, h("div", { class: "muted" }, label), h("div", { class: "value" }, value));
  const periodPicker = h("select", { id: "period-picker", onchange: () => {
    location.hash = `#/usage/${enc(app)}?period=${periodPicker.value}`;
  } }, h("option", { value: "day", selected: period === "day" }, "last day"), h("option", { value: "week", selected: period === "week" }, "last week"));
  view.replaceChildren(h("h1", {}, "Usage and cost"),
    h("div", { class: "toolbar" }, appPicker(app, (a) => `#/usage/${enc(a)}?period=${period}`), periodPicker),
    h("div", { class: "cards" },
      card("Invocations", t.invocations.toLocaleString()),
      card("Errors", t.errors.toLocaleString()),
      card("GB-seconds", t.gb_seconds.toFixed(3)),
      card("Storage GB-hours", (t.gb_hours || 0).toFixed(6)),
      card("Estimated cost", money(t.cost, cur))),
    h("h2", {}, `Invocations per ${by}`), h("div", { id: "chart-invocations" }, barChart(rows, (r) => r.invocations, "invocations")),
    h("h2", {}, `Cost per ${by} (${cur})`), h("div", { id: "chart-cost" }, barChart(rows, (r) => r.cost, `compute, requests and operations, ${cur}`, "cost", (v) => money(v, cur))),
    h("h2", {}, "Per function"),
    table(["Function", "Invocations", "Errors", "GB-seconds", "Cold starts", "Data operations", `Cost ${cur}`], perFn.rows.map((r) => ({
      cells: [r.key, r.invocations, r.errors, Number(r.gb_seconds.toFixed(4)), r.cold_starts,
        Object.values(r.operations || {}).reduce((a, b) => a + b, 0), money(r.cost)],
    }))),
    h("p", { class: "muted" }, `Prices: ${series.prices.per_gb_second} ${cur} per GB-second, ${series.prices.per_million_requests} per million requests, ${series.prices.per_million_operations} per million data operations, ${series.prices.per_gb_month} per GB-month stored (nimbus up --prices).`));
}

// ---- routing ----

async function route() {
  say("");
  const signedIn = !!key;
  $("#login-view").hidden = signedIn;
  $("#nav").hidden = !signedIn;
  view.hidden = !signedIn;
  if (!signedIn) return;
  const hash = location.hash.replace(/^#/, "").split("?")[0] || "/apps";
  const parts = hash.split("/").filter(Boolean).map(decodeURIComponent);
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("href") === `#/${parts[0]}`);
  try {
    if (!apps.length) apps = await api("GET", "/v1/apps");
    const firstApp = apps.length ? apps[0].name : "";
    switch (parts[0]) {
      case "apps": return parts[1] ? showApp(parts[1]) : showApps();
      case "invocations": return showInvocations(parts[1] || firstApp);
      case "invocation": return showInvocation(parts[1], parts[2]);
      case "trace": return showTrace(parts[1]);
      case "dlq": return showDlq(parts[1] || firstApp);
      case "usage": return showUsage(parts[1] || firstApp);
      default: location.hash = "#/apps";
    }
  } catch (e) {
    if (e.message !== "unauthorized") say(e.message);
  }
}

function logout(message) {
  key = null;
  apps = [];
  route();
  if (message) say(message);
}

$("#login-form").onsubmit = async (e) => {
  e.preventDefault();
  const candidate = $("#key").value.trim();
  const resp = await fetch("/v1/apps", { headers: { authorization: `Bearer ${candidate}` } });
  if (!resp.ok) {
    say(resp.status === 401 || resp.status === 403 ? "That key was refused: paste an API key with at least the read-logs scope." : `Login failed: ${resp.status}`);
    return;
  }
  key = candidate;
  $("#key").value = "";
  route();
};
$("#logout").onclick = () => logout();
window.onhashchange = route;
route();
