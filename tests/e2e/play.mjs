// Browser end-to-end test of the reference app and the console, in Debian's
// headless Chromium driven by playwright-core. Started by
// crates/nimbus/tests/browser.rs against a real server that has the game
// deployed twice (revisions 1 and 2).
//
//   BASE_URL   the server's app listener, e.g. http://127.0.0.1:41234
//   CONTROL_URL its console and control API (an origin of their own)
//   ADMIN_KEY  an admin API key, for the console
//   ARTIFACTS  where screenshots go
//   CHROMIUM   the browser (default /usr/bin/chromium)
//
// Two browser contexts (two phones) sign up as two users and play a game of
// Connect Four to a win: each sees the other's moves without reloading,
// pushed over a WebSocket (neither phone long-polls), a reload mid-game
// restores the board, an illegal move is refused with a clear message, and
// the winner tops the leaderboard. A third phone, whose browser has no
// WebSocket, follows the game by the long-poll fallback. Mid-game the
// console lists the players' live connections; after it, the game's
// invocations, a trace, rollback.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import assert from "node:assert/strict";

const BASE = process.env.BASE_URL;
const CONTROL = process.env.CONTROL_URL;
const ADMIN_KEY = process.env.ADMIN_KEY;
const ARTIFACTS = process.env.ARTIFACTS || "e2e-artifacts";
assert.ok(BASE && CONTROL && ADMIN_KEY, "set BASE_URL, CONTROL_URL and ADMIN_KEY");
mkdirSync(ARTIFACTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const step = (text) => console.log(`[e2e] ${text}`);
const shot = async (page, name) => {
  await page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });
  step(`screenshot ${ARTIFACTS}/${name}.png`);
};

// Long polls (`/next`) each phone made.
const polls = new Map();

async function phone(email, { websockets = true } = {}) {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  if (!websockets) await context.addInitScript(() => { delete window.WebSocket; });
  const page = await context.newPage();
  polls.set(email, 0);
  page.on("request", (r) => { if (r.url().includes("/next?")) polls.set(email, polls.get(email) + 1); });
  page.setDefaultTimeout(15000);
  page.on("dialog", (d) => d.accept());
  page.on("pageerror", (e) => { throw new Error(`page error on ${email}'s phone: ${e.message}`); });
  await page.goto(`${BASE}/`);
  assert.match(page.url(), /\/game\/$/, "/ leads to the game");
  await page.fill("#email", email);
  await page.fill("#password", "correct horse battery");
  await page.click("#signup");
  await page.waitForSelector("#new-game", { state: "visible" });
  return page;
}

const status = (page) => page.locator("#status");
const transport = (page) => page.evaluate(() => document.body.dataset.transport);
const discs = (page) => page.locator("#board .cell.R, #board .cell.Y").count();

async function move(page, other, column, movesAfter) {
  await status(page).filter({ hasText: "Your turn" }).waitFor();
  await page.locator(`#board .cell[data-col="${column}"]`).first().click();
  // The mover's board shows the disc; the opponent's shows it without a reload.
  for (const p of [page, other]) {
    await p.waitForFunction((n) => document.querySelectorAll("#board .cell.R, #board .cell.Y").length === n, movesAfter);
  }
}

try {
  // ---- the game ----
  step("alice and bob sign up on two phones");
  const alice = await phone("alice@example.com");
  const bob = await phone("bob@example.com");

  step("alice creates a game");
  await alice.click("#new-game");
  await status(alice).filter({ hasText: "Waiting for an opponent" }).waitFor();
  const gameUrl = alice.url();
  assert.match(gameUrl, /#\/game\/[0-9a-f]+$/);

  step("bob joins it from the open games");
  await bob.locator('#open-games button[data-testid="join"]').first().click();
  await status(bob).filter({ hasText: "Waiting for alice" }).waitFor();
  await status(alice).filter({ hasText: "Your turn" }).waitFor();

  step("both follow the game over a WebSocket; carol, with none, by long poll");
  await alice.waitForFunction(() => document.body.dataset.transport === "websocket");
  await bob.waitForFunction(() => document.body.dataset.transport === "websocket");
  const carol = await phone("carol@example.com", { websockets: false });
  await carol.goto(gameUrl);
  await carol.waitForFunction(() => document.body.dataset.transport === "poll");

  step("they fill column 0 (R Y R Y R Y)");
  let n = 0;
  for (let i = 0; i < 3; i++) {
    await move(alice, bob, 0, ++n);
    await move(bob, alice, 0, ++n);
  }

  step("an illegal move is refused with a clear message");
  await status(alice).filter({ hasText: "Your turn" }).waitFor();
  await alice.locator('#board .cell[data-col="0"]').first().click();
  await alice.locator("#message").filter({ hasText: "column 0 is full" }).waitFor();
  assert.equal(await discs(alice), n, "the refused move changed nothing");
  await shot(alice, "game-illegal-move");

  step("bob's click out of turn is refused too");
  await bob.locator('#board .cell[data-col="3"]').first().click();
  await bob.locator("#message").filter({ hasText: "not your turn" }).waitFor();

  step("a reload mid-game restores the board");
  await move(alice, bob, 1, ++n);
  await bob.reload();
  await bob.waitForFunction((k) => document.querySelectorAll("#board .cell.R, #board .cell.Y").length === k, n);
  await status(bob).filter({ hasText: "Your turn" }).waitFor();
  assert.equal(await bob.locator("#board .cell.R").count(), 4);
  assert.equal(await bob.locator("#board .cell.Y").count(), 3);
  await bob.waitForFunction(() => document.body.dataset.transport === "websocket");
  await shot(bob, "game-after-reload");

  // ---- the console, in the same browser, mid-game ----
  step("console: log in with the admin key");
  const ops = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  ops.setDefaultTimeout(15000);
  ops.on("dialog", (d) => d.accept());
  ops.on("pageerror", (e) => { throw new Error(`console page error: ${e.message}`); });
  await ops.goto(`${CONTROL}/console`);
  await ops.fill("#key", "not-a-key");
  await ops.click("#login");
  await ops.locator("#message").filter({ hasText: "refused" }).waitFor();
  await ops.fill("#key", ADMIN_KEY);
  await ops.click("#login");
  await ops.locator("#view table tr[data-id=game]").waitFor();
  step("console: the node serving it, live");
  await ops.locator("#nodes tbody tr").filter({ hasText: "(this one)" }).filter({ hasText: "live" }).waitFor();
  await shot(ops, "console-apps");

  step("console: the players' live connections (bob's from before his reload is gone)");
  const gameId = gameUrl.split("/").pop();
  await ops.evaluate((h) => { location.hash = h; }, `#/apps/game`);
  for (let i = 0; ; i++) {
    const rows = await ops.locator("#connections tbody tr", { hasText: `/api/games/${gameId}/live` }).count();
    if (rows === 2) break;
    assert.ok(i < 40, `the console lists ${rows} live connections of the game, not 2`);
    await ops.waitForTimeout(250);
    await ops.click("#refresh-connections");
  }
  assert.match(await ops.locator("#connections").innerText(), new RegExp(`game:${gameId}`), "subscribed to the game's channel");
  await shot(ops, "console-connections");

  step("alice stacks four in column 1 while bob plays column 2");
  await move(bob, alice, 2, ++n);
  await move(alice, bob, 1, ++n);
  await move(bob, alice, 2, ++n);
  await move(alice, bob, 1, ++n);
  await move(bob, alice, 2, ++n);
  await move(alice, bob, 1, ++n);
  await status(alice).filter({ hasText: "You won!" }).waitFor();
  await status(bob).filter({ hasText: "You lost" }).waitFor();
  await carol.waitForFunction((k) => document.querySelectorAll("#board .cell.R, #board .cell.Y").length === k, n);
  assert.equal(polls.get("alice@example.com"), 0, "alice's moves came over the WebSocket, never a long poll");
  assert.equal(polls.get("bob@example.com"), 0, "bob's moves came over the WebSocket, never a long poll");
  assert.ok(polls.get("carol@example.com") > 0, "carol, without WebSockets, followed by long poll");
  assert.equal(await alice.locator("#board .cell.line").count(), 4, "the winning line is marked");
  await shot(alice, "game-won");
  await shot(bob, "game-lost");

  step("the winner appears on the leaderboard, read from the data API");
  await alice.click("#back");
  const top = alice.locator("#leaderboard tbody tr").first();
  for (let i = 0; ; i++) {
    const cells = await top.locator("td").allTextContents().catch(() => []);
    if (cells[1] === "alice" && cells[2] === "1" && cells[5] === "3") break;
    assert.ok(i < 40, `alice never topped the leaderboard: ${cells}`);
    await alice.waitForTimeout(250);
    await alice.reload();
  }
  await alice.locator("#results li").filter({ hasText: "Won vs bob" }).waitFor();
  await bob.click("#back");
  await bob.locator("#results li").filter({ hasText: "Lost vs alice" }).waitFor();
  await shot(alice, "game-leaderboard");

  // ---- the console, after the game ----
  step("console: the game's invocations, one move's logs and trace");
  await ops.evaluate((h) => { location.hash = h; }, `#/invocations/game`);
  const moveRow = ops.locator("#view tbody tr", { hasText: "/moves" }).first();
  await moveRow.waitFor();
  assert.ok((await ops.locator("#view tbody tr", { hasText: "scorer" }).count()) >= 1, "the scorer's deliveries are listed");
  await shot(ops, "console-invocations");
  await moveRow.click();
  await ops.locator("#logs").waitFor();
  await ops.locator("#view td", { hasText: "POST /api/games/" }).first().waitFor();
  await ops.locator("#trace-link").click();
  await ops.locator("#waterfall .row", { hasText: "game/api" }).first().waitFor();
  await ops.locator("#waterfall .row", { hasText: "docs get games" }).first().waitFor();
  await shot(ops, "console-trace");

  step("console: the scorer's logs, from a topic delivery");
  await ops.evaluate((h) => { location.hash = h; }, `#/invocations/game?function=scorer`);
  const delivery = ops.locator("#view tbody tr", { hasText: "topic" }).first();
  await delivery.waitFor();
  await delivery.click();
  await ops.locator("#logs", { hasText: "scored game" }).waitFor();

  step("console: usage charts for the last day");
  await ops.evaluate((h) => { location.hash = h; }, `#/usage/game?period=day`);
  await ops.locator("#chart-invocations svg rect.bar").last().waitFor();
  await shot(ops, "console-usage");

  step("console: roll the game back to revision 1");
  await ops.evaluate((h) => { location.hash = h; }, `#/apps/game`);
  await ops.locator("#active-revision", { hasText: "revision 2 active" }).waitFor();
  await ops.click("#rollback");
  await ops.locator("#message", { hasText: "now serves revision 1" }).waitFor();
  await ops.locator("#active-revision", { hasText: "revision 1 active" }).waitFor();
  await shot(ops, "console-rollback");
  step("all browser checks passed");
} finally {
  await browser.close();
}
