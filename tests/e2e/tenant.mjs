// Browser probe of tenant isolation, in Debian's headless Chromium driven by
// playwright-core. Started by crates/nimbus/tests/browser.rs against a real
// server where a hostile tenant, "evil", serves a page that registers a
// service worker over the whole origin; the worker copies every
// Authorization header it sees into a cache the tenant's page can read.
//
//   BASE_URL    the server's app listener
//   CONTROL_URL its console and control API
//   ADMIN_KEY   an admin API key, for the console
//   CHROMIUM    the browser (default /usr/bin/chromium)
//
// Then the console is used in the same browser. Passes if the worker could
// not be registered and the tenant's page finds no key.
import { chromium } from "playwright-core";
import assert from "node:assert/strict";

const BASE = process.env.BASE_URL;
const CONTROL = process.env.CONTROL_URL;
const ADMIN_KEY = process.env.ADMIN_KEY;
assert.ok(BASE && CONTROL && ADMIN_KEY, "set BASE_URL, CONTROL_URL and ADMIN_KEY");
const step = (text) => console.log(`[e2e] ${text}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(15000);

  step("the tenant's page tries to register a service worker at scope /");
  await page.goto(`${BASE}/evil`);
  const registration = await page.evaluate(() => window.registration);
  step(`registration: ${registration}`);
  // Give a worker that did register the time to take control.
  await page.waitForTimeout(500);

  step("the console, in the same browser: log in with the admin key");
  const ops = await context.newPage();
  ops.setDefaultTimeout(15000);
  await ops.goto(`${CONTROL}/console`);
  await ops.fill("#key", ADMIN_KEY);
  await ops.click("#login");
  await ops.locator("#view table tr[data-id=evil]").waitFor();
  await ops.evaluate((h) => { location.hash = h; }, `#/invocations/evil`);
  await ops.locator("#view tbody tr").first().waitFor();

  step("back on the tenant's page: what did its worker capture?");
  await page.goto(`${BASE}/evil`);
  const loot = await page.evaluate(async () => {
    if (!(await caches.keys()).includes("loot")) return [];
    const cache = await caches.open("loot");
    const out = [];
    for (const req of await cache.keys()) out.push(await (await cache.match(req)).text());
    return out;
  });
  const workers = await page.evaluate(async () => (await navigator.serviceWorker.getRegistrations()).length);
  step(`captured ${loot.length} header(s); ${workers} worker registration(s)`);
  assert.equal(loot.length, 0, `the tenant's worker captured: ${loot.join(", ")}`);
  assert.ok(!loot.some((h) => h.includes(ADMIN_KEY)), "the admin key leaked");
  assert.equal(workers, 0, "no service worker is registered on the shared origin");
  assert.match(registration, /^refused/, "the registration was refused");
  step("all tenant checks passed");
} finally {
  await browser.close();
}
