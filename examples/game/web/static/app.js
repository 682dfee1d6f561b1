// The Connect Four client. Everything it uses is a Nimbus part:
//   /v1/apps/game/auth/...            the app's user pool (sign up, log in, refresh)
//   /api/games...                     the game functions (JWT routes)
//   /v1/apps/game/docs/leaderboard    public-read, straight from the data API
//   /v1/apps/game/docs/results        owner rule: the user's own results
// The session lives in the tab's sessionStorage (two tabs can be two
// players) and the game in the URL hash, so a reload comes back to the
// same board.
"use strict";

const APP = "game";
const $ = (sel) => document.querySelector(sel);
let session = JSON.parse(sessionStorage.getItem("session") || "null");
let current = null;      // the game on screen
let watching = 0;        // generation of the live updates that may run
let socket = null;       // the game's WebSocket, while it is open
let lobbyTimer = null;
let refreshing = null;   // the refresh in flight: one per tab, shared

function save(s) {
  session = s;
  if (s) sessionStorage.setItem("session", JSON.stringify(s));
  else sessionStorage.removeItem("session");
}

function say(text, kind) {
  const m = $("#message");
  m.textContent = text || "";
  m.className = kind || "";
  m.hidden = !text;
}

async function errorOf(resp) {
  try {
    const body = await resp.json();
    return body.error || body.message || JSON.stringify(body);
  } catch (_) {
    return `${resp.status} ${resp.statusText}`;
  }
}

// Calls Nimbus with the user's token; a 401 refreshes the session once.
async function call(method, path, body, retried) {
  const headers = { "content-type": "application/json" };
  if (session) headers.authorization = `Bearer ${session.access_token}`;
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (resp.status === 401 && session && !retried) {
    if (await refresh()) return call(method, path, body, true);
    save(null);
    show();
    throw new Error("your session ended: log in again");
  }
  if (!resp.ok) throw Object.assign(new Error(await errorOf(resp)), { status: resp.status });
  return resp.status === 204 ? null : resp.json();
}

// A refresh token is single use: concurrent 401s (a move and the long
// poll) share one refresh instead of spending the token twice.
function refresh() {
  if (!refreshing) {
    const token = session.refresh_token;
    refreshing = fetch(`/v1/apps/${APP}/auth/refresh`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ refresh_token: token }),
    }).then(async (resp) => {
      if (resp.ok) save(await resp.json());
      return resp.ok;
    }).catch(() => false).finally(() => { refreshing = null; });
  }
  return refreshing;
}

async function authenticate(kind) {
  const email = $("#email").value.trim();
  const password = $("#password").value;
  if (!email || password.length < 8) {
    say("Enter your email and a password of at least 8 characters.");
    return;
  }
  try {
    save(await call("POST", `/v1/apps/${APP}/auth/${kind}`, { email, password }));
    say("");
    show();
  } catch (e) {
    say(e.message);
  }
}

function nameOf(s) {
  return s && s.user && s.user.email ? s.user.email.split("@")[0] : "";
}

// ---- views ----

function show() {
  const route = location.hash.replace(/^#/, "") || "/";
  const signedIn = !!session;
  $("#who").hidden = !signedIn;
  $("#user-name").textContent = nameOf(session);
  $("#auth-view").hidden = signedIn;
  const gameId = (route.match(/^\/game\/([A-Za-z0-9]+)$/) || [])[1];
  $("#lobby-view").hidden = !signedIn || !!gameId;
  $("#game-view").hidden = !signedIn || !gameId;
  clearInterval(lobbyTimer);
  watching++; // ends any live updates of the view we are leaving
  if (socket) socket.close(1000, "left the game");
  if (!signedIn) {
    current = null;
  } else if (gameId) {
    openGame(gameId);
  } else {
    current = null;
    loadLobby();
    lobbyTimer = setInterval(loadLobby, 3000);
  }
  loadLeaderboard();
}

function item(text, buttonText, onClick, testid) {
  const li = document.createElement("li");
  const span = document.createElement("span");
  span.innerHTML = text;
  li.appendChild(span);
  if (buttonText) {
    const b = document.createElement("button");
    b.textContent = buttonText;
    if (testid) b.dataset.testid = testid;
    b.onclick = onClick;
    li.appendChild(b);
  }
  return li;
}

function fill(list, items, emptyText) {
  list.replaceChildren(...(items.length ? items : [item(emptyText)]));
  if (!items.length) list.firstChild.className = "empty";
}

const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function loadLobby() {
  try {
    const lists = await call("GET", "/api/games");
    fill($("#my-games"), lists.mine.map((g) => item(
      g.status === "open" ? "Waiting for an opponent…" :
        `vs ${esc(g.you === "red" ? g.yellow_name : g.red_name)} — ${g.turn === g.you ? "<b>your turn</b>" : "their turn"}`,
      "Open", () => { location.hash = `#/game/${g.id}`; }, "open")), "No games yet: start one.");
    fill($("#open-games"), lists.open.map((g) => item(
      `<span class="dot red"></span> ${esc(g.red_name)} is waiting`, "Join", () => join(g.id), "join")),
      "No open games: create one and wait for someone to join.");
    const results = await call("POST", `/v1/apps/${APP}/docs/results/_query`,
      { order_by: [["finished_at", "desc"]], limit: 10 });
    fill($("#results"), results.documents.map((d) => item(
      `${d.body.outcome === "won" ? "Won" : d.body.outcome === "lost" ? "Lost" : "Draw"} vs ${esc(d.body.opponent_name)}
       <small>(${esc(d.body.reason)}, ${esc(d.body.moves)} moves)</small>`)), "No finished games yet.");
  } catch (e) {
    say(e.message);
  }
}

async function loadLeaderboard() {
  try {
    // public-read: no token needed, no function in between.
    const resp = await fetch(`/v1/apps/${APP}/docs/leaderboard/_query`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ order_by: [["points", "desc"]], limit: 10 }),
    });
    if (!resp.ok) throw new Error(await errorOf(resp));
    const rows = (await resp.json()).documents.map((d, i) => {
      const r = d.body;
      const tr = document.createElement("tr");
      tr.innerHTML = `<td>${i + 1}</td><td>${esc(r.name)}</td><td>${r.wins}</td><td>${r.draws}</td><td>${r.losses}</td><td>${r.points}</td>`;
      return tr;
    });
    $("#leaderboard tbody").replaceChildren(...rows);
  } catch (e) {
    say(`The leaderboard could not be loaded: ${e.message}`);
  }
}

async function newGame() {
  try {
    const g = await call("POST", "/api/games");
    location.hash = `#/game/${g.id}`;
  } catch (e) {
    say(e.message);
  }
}

async function join(id) {
  try {
    await call("POST", `/api/games/${id}/join`);
    location.hash = `#/game/${id}`;
  } catch (e) {
    say(e.message);
    loadLobby();
  }
}

async function openGame(id) {
  const generation = ++watching;
  try {
    const g = await call("GET", `/api/games/${id}`);
    if (generation !== watching) return;
    render(g);
    watch(id, generation);
  } catch (e) {
    say(e.message);
  }
}

// Live updates: a WebSocket on the game's channel, where every write of
// the game is pushed; the long poll is the fallback (no WebSocket in this
// browser, or the socket refused or closed). One generation runs at a time:
// opening a view starts a new one.
function watch(id, generation) {
  if (!current || current.status === "finished") return;
  if (!("WebSocket" in window) || !session) return poll(id, generation);
  const url = new URL(`/api/games/${id}/live`, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("access_token", session.access_token);
  const ws = new WebSocket(url);
  socket = ws;
  ws.onopen = () => { document.body.dataset.transport = "websocket"; };
  ws.onmessage = (ev) => {
    if (generation !== watching) return ws.close(1000, "left the game");
    const g = JSON.parse(ev.data);
    if (current && g.id === current.id && g.version > current.version) render({ ...g, you: current.you });
    if (current && current.status === "finished") ws.close(1000, "game over");
  };
  ws.onclose = () => {
    if (socket === ws) socket = null;
    if (generation !== watching || !current || current.status === "finished") return;
    // Refused, cut off, or the app was redeployed: carry on by polling.
    poll(id, generation);
  };
}

// Long poll: the server answers as soon as the game's version changes.
async function poll(id, generation) {
  document.body.dataset.transport = "poll";
  while (generation === watching && current && current.id === id && current.status !== "finished") {
    try {
      const g = await call("GET", `/api/games/${id}/next?after=${current.version}`);
      if (generation !== watching) return;
      if (g.id === current.id && g.version > current.version) render(g);
    } catch (e) {
      if (generation !== watching) return;
      say(e.message);
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

function statusText(g) {
  const opponent = g.you === "red" ? g.yellow_name : g.red_name;
  if (g.status === "open") return "Waiting for an opponent to join…";
  if (g.status === "playing") return g.turn === g.you ? "Your turn" : `Waiting for ${opponent}…`;
  if (g.result === "draw") return "Draw: the board is full";
  if (g.result === "cancelled") return "Game cancelled";
  const won = g.winner_side === g.you;
  const why = { "connect-four": "four in a row", resigned: "resignation", abandoned: "abandonment" }[g.result] || g.result;
  return won ? `You won! (${why})` : `You lost (${why})`;
}

function render(g) {
  current = g;
  $("#status").textContent = statusText(g);
  $("#players").innerHTML = `<span class="dot red"></span> ${esc(g.red_name)} vs <span class="dot yellow"></span> ${esc(g.yellow_name || "…")}`;
  const line = new Set((g.line || []).map(([r, c]) => `${r},${c}`));
  const cells = [];
  g.board.forEach((row, r) => [...row].forEach((cell, c) => {
    const b = document.createElement("button");
    b.className = "cell" + (cell !== "." ? ` ${cell}` : "") + (line.has(`${r},${c}`) ? " line" : "") +
      (g.last && g.last.row === r && g.last.column === c ? " last" : "");
    b.dataset.row = r;
    b.dataset.col = c;
    b.setAttribute("aria-label", `column ${c + 1}`);
    b.onclick = () => move(c);
    cells.push(b);
  }));
  $("#board").replaceChildren(...cells);
  $("#resign").textContent = g.status === "open" ? "Cancel" : "Resign";
  $("#resign").disabled = g.status === "finished";
  if (g.status === "finished") loadLeaderboard();
}

async function move(column) {
  if (!current) return;
  try {
    const g = await call("POST", `/api/games/${current.id}/moves`, { column, version: current.version });
    if (current && g.id === current.id && g.version > current.version) render(g);
    say("");
  } catch (e) {
    say(e.message);
    if (e.status === 409) openGame(current.id);
  }
}

async function resign() {
  if (!current || !confirm(current.status === "open" ? "Cancel this game?" : "Resign this game?")) return;
  try {
    render(await call("POST", `/api/games/${current.id}/resign`));
  } catch (e) {
    say(e.message);
  }
}

async function logout() {
  const s = session;
  save(null);
  show();
  if (s) {
    fetch(`/v1/apps/${APP}/auth/logout`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ refresh_token: s.refresh_token }),
    });
  }
}

$("#auth-form").onsubmit = (e) => { e.preventDefault(); authenticate("login"); };
$("#signup").onclick = () => authenticate("signup");
$("#logout").onclick = logout;
$("#new-game").onclick = newGame;
$("#resign").onclick = resign;
window.onhashchange = () => { say(""); show(); };
show();
