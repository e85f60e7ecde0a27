// Drives headless Chromium for tests/sdk_browser.rs: two tabs of a page built on the
// installed @palaver/client chat, share an image, live through a server kill -9 and
// restart after their tokens expired, and a third tab whose token backend keeps failing
// ends `unauthorized`; a fourth tab, given a first token and renewing with
// onTokenExpired, lives through the restart too.
//   node package_chat.mjs CHROMIUM TAB_A_URL TAB_B_URL FAILING_URL RENEWING_URL PNG_FILE [SCREENSHOT]
// Prints CHATTED once the tabs chatted and shared the image (the test then kills the
// server, waits past the tokens' lifetime and restarts it), then RESUMED once both tabs
// reconnected by themselves and chatted again. Exits non-zero on any failure.
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const [executablePath, urlA, urlB, urlFailing, urlRenewing, png, screenshot] = process.argv.slice(2);
const WAIT = 30000;
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-background-timer-throttling",
         "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows"],
});

async function open(context, url, name) {
  const page = await context.newPage();
  page.on("console", (m) => console.error(`[${name} ${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => console.error(`[${name} error] ${e.message}`));
  await page.goto(url);
  return page;
}

const state = (page, value) => page.waitForSelector(`#status[data-state="${value}"]`, { timeout: WAIT });
const seen = (page, text) => page.locator("#messages li", { hasText: text }).first().waitFor({ timeout: WAIT });

async function say(page, text) {
  await page.fill("#text", text);
  await page.click("#send");
}

async function noStoredTokens(page) {
  const stored = await page.evaluate(() => localStorage.length + sessionStorage.length + document.cookie.length);
  if (stored !== 0) throw new Error(`the page stored ${stored} items`);
}

async function imageShown(page) {
  await page.waitForFunction(
    () => [...document.querySelectorAll("#messages img")].some((i) => i.complete && i.naturalWidth === 2),
    null,
    { timeout: WAIT },
  );
}

try {
  const context = await browser.newContext();
  const a = await open(context, urlA, "A");
  const b = await open(context, urlB, "B");
  const failing = await open(context, urlFailing, "failing");
  const renewing = await open(context, urlRenewing, "renewing");
  for (const page of [a, b, renewing]) await page.waitForSelector('#status[data-state="connected"][data-joined="true"]', { timeout: WAIT });

  await say(a, "hello from tab A");
  await seen(b, "hello from tab A");
  await say(b, "hello from tab B");
  await seen(a, "hello from tab B");

  await a.setInputFiles("#file", { name: "dot.png", mimeType: "image/png", buffer: readFileSync(png) });
  await imageShown(a);
  await imageShown(b);

  // A backend that keeps failing: a final state after bounded retries, no loop.
  await state(failing, "unauthorized");
  const attempts = Number(await failing.getAttribute("#tokens", "data-count"));
  if (attempts !== 3) throw new Error(`${attempts} token attempts, expected maxTokenFailures = 3`);

  for (const page of [a, b]) await noStoredTokens(page);
  console.log("CHATTED");

  // The server goes down for longer than the tokens live, then comes back.
  for (const page of [a, b, renewing]) await state(page, "reconnecting");
  for (const page of [a, b, renewing]) await page.waitForSelector('#status[data-state="connected"]', { timeout: 2 * WAIT });
  await say(a, "after the restart from A");
  await seen(b, "after the restart from A");
  await say(b, "after the restart from B");
  await seen(a, "after the restart from B");
  await seen(renewing, "after the restart from B");
  for (const page of [a, b]) await noStoredTokens(page);
  for (const [name, page] of [["A", a], ["renewing", renewing]]) {
    const renewals = Number(await page.getAttribute("#tokens", "data-count"));
    if (renewals < 3) throw new Error(`tab ${name} asked its backend for ${renewals} tokens`);
  }
  if ((await failing.getAttribute("#tokens", "data-count")) !== "3") throw new Error("the failed tab kept trying");
  if (screenshot) await b.screenshot({ path: screenshot, fullPage: true });
  console.log("RESUMED");
} catch (e) {
  console.error(`package_chat.mjs failed: ${e.stack ?? e}`);
  for (const page of browser.contexts()[0]?.pages() ?? []) {
    try { console.error(await page.content()); } catch {}
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
