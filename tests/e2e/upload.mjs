// A browser upload straight to object storage, in Debian's headless
// Chromium driven by playwright-core. Started by crates/nimbus/tests/browser.rs
// against a real server running examples/uploads, whose function signs a
// POST policy with the app's S3 key; the page posts the file to the S3
// endpoint (another origin: the bucket's CORS rules let the page read the
// answers), reads the object back, and makes a preflighted request.
//
//   BASE_URL    the server's app listener (the page is BASE_URL/uploads/)
//   CHROMIUM    the browser (default /usr/bin/chromium)
//   CONTENT     what the uploaded file holds
//
// Passes if the upload is answered 201 under uploads/RANDOM/hello.txt and the
// object reads back as sent.
import { chromium } from "playwright-core";
import assert from "node:assert/strict";

const BASE = process.env.BASE_URL;
const CONTENT = process.env.CONTENT;
assert.ok(BASE && CONTENT, "set BASE_URL and CONTENT");
const step = (text) => console.log(`[e2e] ${text}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(15000);
  page.on("console", (m) => step(`page console: ${m.text()}`));
  step("open the page");
  await page.goto(`${BASE}/uploads/`);
  step("pick a file and upload it");
  await page.setInputFiles("#file", {
    name: "hello.txt",
    mimeType: "text/plain",
    buffer: Buffer.from(CONTENT),
  });
  await page.click("#go");
  await page.waitForFunction(() => document.getElementById("status").textContent !== "waiting");
  const status = await page.textContent("#status");
  step(`answered: ${status}`);
  assert.equal(status, "201", "the S3 endpoint accepted the form upload");
  const key = await page.textContent("#key");
  assert.match(key, /^uploads\/[0-9a-f]{16}\/hello\.txt$/, "${filename} was substituted");
  step(`stored as: ${key}`);
  await page.waitForFunction(() => document.getElementById("checked").textContent !== "");
  assert.equal(await page.textContent("#readback"), CONTENT, "read back across origins");
  const checked = await page.textContent("#checked");
  step(`preflighted HEAD: ${checked}`);
  assert.equal(checked, `200 ${Buffer.byteLength(CONTENT)}`, "the preflight passed");
  console.log("all upload checks passed");
} finally {
  await browser.close();
}
