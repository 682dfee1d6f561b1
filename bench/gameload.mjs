// Simulated Connect Four players over HTTP (no browser), for bench/game.sh.
//
//   node bench/gameload.mjs BASE_URL PLAYERS SECONDS THINK_MS
//
// PLAYERS players sign up through the user pool (before the clock starts),
// pair up, and play games for SECONDS: the player on turn waits a random
// 0..2*THINK_MS ms (mean THINK_MS), then plays a random legal column with
// the version it last saw; the other one waits for it through the long poll
// (`GET /api/games/ID/next?after=VERSION`), as the web client does. A
// finished game is followed by a new one with the roles swapped.
//
// Prints one JSON object: moves and moves/s, move latency percentiles (the
// POST of a move, request to response), how long an opponent took to see
// a move (from the move's response to the long poll's answer), games
// finished, and every non-2xx answer or network error, by kind.
import http from "node:http";

const [base, playersArg, secondsArg, thinkArg] = process.argv.slice(2);
const PLAYERS = Number(playersArg || 200);
const SECONDS = Number(secondsArg || 60);
const THINK_MS = Number(thinkArg || 0);
if (!base || PLAYERS % 2) {
  console.error("usage: node bench/gameload.mjs BASE_URL PLAYERS(even) SECONDS THINK_MS");
  process.exit(2);
}

const errors = {};
const fail = (what) => { errors[what] = (errors[what] || 0) + 1; };
const moveLatency = [];
const seenLatency = [];
let moves = 0, games = 0;
let running = true;

// Each player has its own keep-alive connections from its own loopback
// address (127.0.1.N): players are different people on different machines,
// and the user pool limits sign-ups per address.
function request(method, path, player, body) {
  const data = body === undefined ? undefined : JSON.stringify(body);
  const headers = { "content-type": "application/json" };
  if (player.token) headers.authorization = `Bearer ${player.token}`;
  if (data) headers["content-length"] = Buffer.byteLength(data);
  return new Promise((resolve, reject) => {
    const req = http.request(base + path, { method, headers, agent: player.agent }, (resp) => {
      const chunks = [];
      resp.on("data", (c) => chunks.push(c));
      resp.on("end", () => {
        const text = Buffer.concat(chunks).toString();
        let parsed = null;
        try { parsed = text ? JSON.parse(text) : null; } catch (_) { parsed = { error: text }; }
        resolve({ status: resp.statusCode, body: parsed });
      });
      resp.on("error", reject);
    });
    req.on("error", reject);
    req.end(data);
  });
}

async function signUp(i) {
  const player = {
    agent: new http.Agent({ keepAlive: true, localAddress: `127.0.${1 + (i >> 8)}.${i & 255}` }),
  };
  const r = await request("POST", "/v1/apps/game/auth/signup", player, {
    email: `p${i}-${process.pid}@bench.example`, password: "a bench password",
  });
  if (r.status !== 201) throw new Error(`sign-up ${i}: ${r.status} ${JSON.stringify(r.body)}`);
  player.token = r.body.access_token;
  return player;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const legal = (board) => [...Array(7).keys()].filter((c) => board[0][c] === ".");

// When each game's latest move was answered (for "seen by the opponent").
const movedAt = new Map();

async function play(me, side, gameId) {
  let game = (await request("GET", `/api/games/${gameId}`, me)).body;
  while (running && game.status !== "finished") {
    if (game.status === "playing" && game.turn === side) {
      if (THINK_MS) await sleep(Math.random() * 2 * THINK_MS);
      if (!running) return;
      const cols = legal(game.board);
      const column = cols[Math.floor(Math.random() * cols.length)];
      const t0 = performance.now();
      let r;
      try {
        r = await request("POST", `/api/games/${gameId}/moves`, me, { column, version: game.version });
      } catch (e) {
        fail(`move: ${e.code || e.message}`);
        return;
      }
      const t1 = performance.now();
      if (r.status !== 200) {
        fail(`move ${r.status}: ${r.body && r.body.error}`);
        return;
      }
      if (running) {
        moveLatency.push(t1 - t0);
        moves++;
      }
      movedAt.set(gameId, { version: r.body.version, at: t1 });
      game = r.body;
      if (game.status === "finished" && running) games++;
    } else {
      let r;
      try {
        r = await request("GET", `/api/games/${gameId}/next?after=${game.version}`, me);
      } catch (e) {
        fail(`watch: ${e.code || e.message}`);
        return;
      }
      if (r.status !== 200) {
        fail(`watch ${r.status}: ${r.body && r.body.error}`);
        return;
      }
      const m = movedAt.get(gameId);
      if (m && r.body.version !== game.version && m.version <= r.body.version) {
        seenLatency.push(performance.now() - m.at);
        movedAt.delete(gameId);
      }
      game = r.body;
    }
  }
}

async function pair(a, b) {
  let [red, yellow] = [a, b];
  while (running) {
    const created = await request("POST", "/api/games", red).catch((e) => ({ status: e.message }));
    if (created.status !== 201) { fail(`create ${created.status}`); await sleep(100); continue; }
    const id = created.body.id;
    const joined = await request("POST", `/api/games/${id}/join`, yellow).catch((e) => ({ status: e.message }));
    if (joined.status !== 200) { fail(`join ${joined.status}`); await sleep(100); continue; }
    await Promise.all([play(red, "red", id), play(yellow, "yellow", id)]);
    [red, yellow] = [yellow, red];
  }
}

const players = [];
for (let i = 0; i < PLAYERS; i += 8) {
  players.push(...await Promise.all([...Array(Math.min(8, PLAYERS - i)).keys()].map((k) => signUp(i + k))));
}
const start = performance.now();
setTimeout(() => { running = false; }, SECONDS * 1000);
const pairs = [];
for (let i = 0; i < PLAYERS; i += 2) pairs.push(pair(players[i], players[i + 1]));
await Promise.all(pairs);
const elapsed = (performance.now() - start) / 1000;  // includes the last long polls

const pct = (xs, p) => {
  if (!xs.length) return null;
  const s = [...xs].sort((x, y) => x - y);
  return Number(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))].toFixed(2));
};
console.log(JSON.stringify({
  players: PLAYERS, seconds: SECONDS, drained_after_s: Number(elapsed.toFixed(1)), think_ms: THINK_MS,
  moves, moves_per_sec: Number((moves / SECONDS).toFixed(1)), games_finished: games,
  move_ms: { p50: pct(moveLatency, 50), p90: pct(moveLatency, 90), p99: pct(moveLatency, 99), max: pct(moveLatency, 100) },
  seen_by_opponent_ms: { p50: pct(seenLatency, 50), p99: pct(seenLatency, 99) },
  errors: Object.values(errors).reduce((a, b) => a + b, 0), error_kinds: errors,
}));
