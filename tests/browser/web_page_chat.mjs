// Drives headless Chromium for tests/web_page_chat.rs: the server's built-in page (at
// `/`) in two tabs, as a newcomer uses it — alice and bob register, alice creates a room,
// bob finds and joins it, alice types (bob sees it), they chat, bob's tab reads (alice
// sees the receipt) and alice sees bob online.
//   node web_page_chat.mjs CHROMIUM SERVER_URL [SCREENSHOT]
// Prints DONE; exits non-zero on any failure, and on any Content-Security-Policy
// violation.
import { chromium } from "playwright-core";

const [executablePath, url, screenshot] = process.argv.slice(2);
const WAIT = 20000;
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const violations = [];

async function open(context, name) {
  const page = await context.newPage();
  page.on("console", (m) => {
    console.error(`[${name} ${m.type()}] ${m.text()}`);
    if (/Content Security Policy/i.test(m.text())) violations.push(m.text());
  });
  page.on("pageerror", (e) => console.error(`[${name} error] ${e.message}`));
  await page.goto(url);
  return page;
}

async function register(page, username) {
  await page.fill("#username", username);
  await page.fill("#password", "correct-horse");
  await page.click("#register");
  await page.waitForSelector('#status[data-state="connected"]', { timeout: WAIT });
  await page.waitForSelector("#sign-in", { state: "hidden", timeout: WAIT });
  await page.waitForSelector("#chat", { state: "visible", timeout: WAIT });
}

const line = (page, text) => page.locator("#messages li", { hasText: text }).first();

try {
  const context = await browser.newContext();
  const alice = await open(context, "alice");
  const bob = await open(context, "bob");
  await register(alice, "alice");
  await register(bob, "bob");

  await alice.fill("#new-room", "lobby");
  await alice.click("#create-room");
  await alice.waitForSelector("#room-title[data-room]", { timeout: WAIT });
  await bob.click("#refresh-rooms");
  await bob.locator("#rooms li button", { hasText: "lobby" }).click({ timeout: WAIT });
  await bob.waitForSelector("#room-title[data-room]", { timeout: WAIT });
  await alice.locator('#members li[data-presence="online"]', { hasText: "bob" }).waitFor({ timeout: WAIT });

  await alice.type("#text", "hi bob", { delay: 30 });
  await bob.locator("#typing", { hasText: "alice is typing" }).waitFor({ timeout: WAIT });
  await alice.click("#send");
  await line(bob, "hi bob").waitFor({ timeout: WAIT });
  await bob.locator("#typing:empty").waitFor({ timeout: WAIT });
  await line(alice, "hi bob").locator(".receipt", { hasText: "read by bob" }).waitFor({ timeout: WAIT });

  await bob.fill("#text", "hello alice");
  await bob.click("#send");
  await line(alice, "hello alice").waitFor({ timeout: WAIT });
  await bob.locator('#members li[data-presence="online"]', { hasText: "alice" }).waitFor({ timeout: WAIT });

  if (violations.length) throw new Error(`Content-Security-Policy violations: ${violations.join("; ")}`);
  if (screenshot) await alice.screenshot({ path: screenshot, fullPage: true });
  console.log("DONE");
} catch (e) {
  console.error(`web_page_chat.mjs failed: ${e.stack ?? e}`);
  for (const page of browser.contexts()[0]?.pages() ?? []) {
    try { console.error(await page.content()); } catch {}
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
