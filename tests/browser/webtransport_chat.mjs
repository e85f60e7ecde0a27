// Drives headless Chromium for tests/sdk_webtransport.rs: three pages on
// @palaver/client chat in one room. Pages A and B reach the server over WebTransport;
// page C's WebTransport points at a UDP port that never answers, so it falls back to
// WebSocket after its timeout, and still chats with them.
//   node webtransport_chat.mjs CHROMIUM URL_A URL_B URL_C
// Prints `TRANSPORTS a b c` (each page's client.transport), then CHATTED once every page
// showed every message; after the test restarts the server (kill -9), RESUMED once every
// page reconnected by itself and saw a message sent after the restart. Exits non-zero on
// any failure.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const [executablePath, ...urls] = process.argv.slice(2);
const WAIT = 30000;
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-background-timer-throttling",
         "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows"],
});
const stdin = createInterface({ input: process.stdin });
const nextCommand = () => new Promise((resolve) => stdin.once("line", resolve));

const seen = (page, text) => page.locator("#messages li", { hasText: text }).first().waitFor({ timeout: WAIT });
const ready = (page) => page.waitForSelector('#status[data-state="ready"]', { timeout: WAIT });

try {
  const context = await browser.newContext();
  const pages = [];
  globalThis.openPages = pages;
  for (const [i, url] of urls.entries()) {
    const name = "ABC"[i];
    const page = await context.newPage();
    page.on("console", (m) => console.error(`[${name} ${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => console.error(`[${name} error] ${e.message}`));
    await page.goto(url);
    pages.push(page);
  }
  for (const page of pages) await ready(page);
  const transports = await Promise.all(pages.map((p) => p.textContent("#transport")));
  console.log(`TRANSPORTS ${transports.join(" ")}`);
  for (const [i, page] of pages.entries()) await page.evaluate((t) => window.say(t), `hello from ${"ABC"[i]}`);
  for (const page of pages) for (const name of "ABC") await seen(page, `hello from ${name}`);
  console.log("CHATTED");

  if ((await nextCommand()) === "RESTARTED") {
    // Each page reconnects by itself and resumes.
    // A send waits for the connection and is retried with its cid until acknowledged.
    for (const [i, page] of pages.entries()) await page.evaluate((t) => window.say(t), `after the restart from ${"ABC"[i]}`);
    for (const page of pages) for (const name of "ABC") await seen(page, `after the restart from ${name}`);
    const after = await Promise.all(pages.map((p) => p.textContent("#transport")));
    console.log(`RESUMED ${after.join(" ")}`);
  }
  await browser.close();
} catch (error) {
  console.error(error);
  for (const [i, page] of (globalThis.openPages ?? []).entries()) {
    const seen = await page.evaluate(() => [...document.querySelectorAll("#messages li")].map((li) => li.textContent));
    const state = await page.evaluate(() => `${document.getElementById("status").textContent} ${document.getElementById("transport").textContent}`);
    console.error(`page ${"ABC"[i]}: ${state}; ${seen.join(" | ")}`);
  }
  await browser.close();
  process.exit(1);
}
