// Drives headless Chromium for tests/sdk_browser.rs: two tabs of a page built on the
// installed @palaver/client chat, share an image, live through a server kill -9 and
// restart after their tokens expired, and a third tab whose token backend keeps failing
// ends `unauthorized`; a fourth tab, given a first token and renewing with
// onTokenExpired, lives through the restart too. Then tab B reports A's message (tab A,
// the room's owner, hears of it live, lists and resolves it), exports its account and
// logs out.
//   node package_chat.mjs CHROMIUM TAB_A_URL TAB_B_URL FAILING_URL RENEWING_URL PNG_FILE [SCREENSHOT]
// Prints CHATTED once the tabs chatted and shared the image (the test then kills the
// server, waits past the tokens' lifetime and restarts it), then RESUMED once both tabs
// reconnected by themselves and chatted again, then ACCOUNT once the report and account
// calls worked. Exits non-zero on any failure.
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
  // Each tab must notice the server's death. Over WebSocket the closed TCP connection
  // says so at once; over WebTransport QUIC learns it when it next sends (a ping), which
  // may be after the restart, and the tab is then back within moments: so a tab's
  // passage through `reconnecting` is recorded as it happens, not polled for.
  for (const page of [a, b, renewing]) {
    await page.evaluate(() => {
      const status = document.getElementById("status");
      new MutationObserver(() => {
        if (status.dataset.state === "reconnecting") window.sawReconnecting = true;
      }).observe(status, { attributes: true });
    });
  }
  console.log("CHATTED");

  // The server goes down for longer than the tokens live, then comes back.
  for (const page of [a, b, renewing]) {
    await page.waitForFunction(() => window.sawReconnecting === true, null, { timeout: 2 * WAIT });
  }
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

  // Reports: B reports A's message; A (the room's owner) is told live, lists, resolves.
  const room = new URL(urlA).searchParams.get("room");
  const report = await b.evaluate(async (room) => {
    const page = await window.palaver.history(room, { limit: 20 });
    const target = page.messages.find((m) => m.text === "after the restart from A");
    return window.palaver.report(room, target.seq, "spam");
  }, room);
  if (report.reason !== "spam" || report.text !== "after the restart from A") {
    throw new Error(`report: ${JSON.stringify(report)}`);
  }
  await a.locator(`#reports li[data-report-id="${report.report_id}"]`).waitFor({ timeout: WAIT });
  const resolved = await a.evaluate(async ([room, id]) => {
    const open = await window.palaver.roomReports(room, { openOnly: true });
    if (!open.reports.some((r) => r.report_id === id)) throw new Error("the report is not listed");
    return window.palaver.resolveReport(id, "handled");
  }, [room, report.report_id]);
  if (resolved.resolved?.note !== "handled") throw new Error(`resolve: ${JSON.stringify(resolved)}`);
  const refused = await b.evaluate(async (room) => {
    try {
      await window.palaver.roomReports(room);
      return null;
    } catch (e) {
      return e.code;
    }
  }, room);
  if (refused !== "forbidden") throw new Error(`a member listed the room's reports: ${refused}`);

  // The account: B exports it, then logs out (the client closes).
  const exported = await b.evaluate(() => window.palaver.exportAccount());
  if (exported.account?.username !== "bob") throw new Error(`export: ${JSON.stringify(exported).slice(0, 200)}`);
  await b.evaluate(() => window.palaver.logout());
  await state(b, "closed");
  console.log("ACCOUNT");
} catch (e) {
  console.error(`package_chat.mjs failed: ${e.stack ?? e}`);
  for (const page of browser.contexts()[0]?.pages() ?? []) {
    try { console.error(await page.content()); } catch {}
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
