// Drives headless Chromium for tests/admin_console.rs: the admin console (at `/admin/`)
// as an admin uses it — sign in (the session survives a reload), see live counts, find a
// user and suspend them, resolve a report, delete a room, read the audit log, sign out.
// A page of another origin trying to suspend the user with the console's cookie must
// change nothing.
//   node admin_console.mjs CHROMIUM CONSOLE_URL BOB_USER_ID ROOM_ID
// Prints DONE; exits non-zero on any failure, and on any Content-Security-Policy
// violation.
import { createServer } from "node:http";
import { chromium } from "playwright-core";

const [executablePath, url, bobId, roomId] = process.argv.slice(2);
const WAIT = 20000;
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const violations = [];

function watch(page, name) {
  page.on("console", (m) => {
    console.error(`[${name} ${m.type()}] ${m.text()}`);
    if (/Content Security Policy/i.test(m.text())) violations.push(m.text());
  });
  page.on("pageerror", (e) => console.error(`[${name} error] ${e.message}`));
}

const row = (page, table, attribute, value) => page.locator(`#${table} tr[${attribute}="${value}"]`);

try {
  const context = await browser.newContext();
  const page = await context.newPage();
  watch(page, "console");
  await page.goto(url);

  // Signing in; the session is in cookies, so a reload keeps it.
  await page.waitForSelector("#sign-in", { state: "visible", timeout: WAIT });
  await page.fill("#username", "alice");
  await page.fill("#password", "password-123");
  await page.click("#sign-in-button");
  await page.waitForSelector('#who[data-state="signed-in"]', { timeout: WAIT });
  await page.reload();
  await page.waitForSelector('#who[data-state="signed-in"]', { timeout: WAIT });
  await page.locator("#who", { hasText: "alice" }).waitFor({ timeout: WAIT });

  // Live counts: the room's message is stored; a second poll gives rates.
  await page.waitForFunction(() => Number(document.getElementById("stat-messages").textContent) >= 1, null, { timeout: WAIT });
  await page.waitForFunction(() => /^\d+(\.\d+)?$/.test(document.getElementById("stat-message-rate").textContent), null, { timeout: WAIT });
  const connections = Number(await page.textContent("#stat-connections"));
  if (!(connections >= 2)) throw new Error(`live connections shown: ${connections}`);

  // Another origin's page cannot use the console's cookie — not even one on the same
  // host (another port is the same site, so the browser does send the cookie; the
  // server's Origin and anti-forgery checks refuse it).
  const evilServer = createServer((_, answer) => {
    answer.writeHead(200, { "content-type": "text/html" });
    answer.end("<!doctype html><title>evil</title>");
  });
  await new Promise((listening) => evilServer.listen(0, "127.0.0.1", listening));
  const evil = await context.newPage();
  watch(evil, "evil");
  await evil.goto(`http://127.0.0.1:${evilServer.address().port}/`);
  const target = new URL(`/v1/admin/users/${bobId}/suspend`, url).href;
  await evil.evaluate(async (target) => {
    for (const mode of ["no-cors", "cors"]) {
      try {
        await fetch(target, { method: "POST", mode, credentials: "include", body: '{"reason":"forged"}' });
      } catch {}
    }
  }, target);
  await evil.close();
  evilServer.close();

  // Users: bob is active (nothing forged took effect); suspend him.
  await page.fill("#user-prefix", "bob");
  await page.click("#user-search button[type=submit]");
  const bob = row(page, "user-rows", "data-username", "bob");
  await bob.locator("td.status", { hasText: "active" }).waitFor({ timeout: WAIT });
  await page.fill("#suspend-reason", "spam account");
  await bob.locator("button.suspend").click();
  await bob.locator("button.suspend", { hasText: "Confirm suspend" }).click();
  await page.locator('#user-rows tr[data-username="bob"][data-suspended]').waitFor({ timeout: WAIT });
  await bob.locator("td.status", { hasText: "spam account" }).waitFor({ timeout: WAIT });

  // Reports: carol's report of bob's message, resolved.
  await page.click('#tabs button[data-tab="reports"]');
  const report = page.locator("#report-rows tr", { hasText: "buy cheap watches" });
  await report.waitFor({ timeout: WAIT });
  await page.fill("#resolve-note", "account suspended");
  await report.locator("button.resolve").click();
  await report.waitFor({ state: "detached", timeout: WAIT }); // open reports only
  await page.uncheck("#open-only");
  await page.click("#report-filter button[type=submit]");
  await page.locator("#report-rows tr[data-resolved]", { hasText: "account suspended" }).waitFor({ timeout: WAIT });

  // Rooms: bob's room, deleted.
  await page.click('#tabs button[data-tab="rooms"]');
  const room = row(page, "room-rows", "data-room-id", roomId);
  await room.locator("td", { hasText: "noisy corner" }).waitFor({ timeout: WAIT });
  await room.locator("button.delete").click();
  await room.locator("button.delete", { hasText: "Confirm delete" }).click();
  await room.waitFor({ state: "detached", timeout: WAIT });

  // API keys: one made (shown once), then revoked.
  await page.click('#tabs button[data-tab="keys"]');
  await page.fill("#key-name", "billing backend");
  await page.check('#key-create input[value="users"]');
  await page.click("#key-create button[type=submit]");
  await page.waitForSelector("#new-key", { state: "visible", timeout: WAIT });
  const key = await page.textContent("#new-key-value");
  if (!/^pvk_[0-9a-f]{16}_[0-9a-f]{64}$/.test(key)) throw new Error(`the new key: ${key}`);
  const keyRow = row(page, "key-rows", "data-name", "billing backend");
  await keyRow.locator("td", { hasText: "users" }).waitFor({ timeout: WAIT });
  await keyRow.locator("button.revoke").click();
  await keyRow.locator("button.revoke", { hasText: "Confirm revoke" }).click();
  await page.locator('#key-rows tr[data-name="billing backend"][data-revoked]').waitFor({ timeout: WAIT });
  console.log(`KEY ${key}`);

  // The audit log has it all.
  await page.click('#tabs button[data-tab="audit"]');
  for (const action of ["grant_admin", "suspend", "resolve_report", "delete_room", "create_api_key", "revoke_api_key"]) {
    await row(page, "audit-rows", "data-action", action).waitFor({ timeout: WAIT });
  }
  await row(page, "audit-rows", "data-action", "suspend").locator("td", { hasText: "spam account" }).waitFor({ timeout: WAIT });

  // Signing out ends the session: a reload shows the sign-in form.
  await page.click("#sign-out");
  await page.waitForSelector("#sign-in", { state: "visible", timeout: WAIT });
  await page.reload();
  await page.waitForSelector('#who[data-state="signed-out"]', { timeout: WAIT });
  await page.waitForSelector("#sign-in", { state: "visible", timeout: WAIT });

  if (violations.length) throw new Error(`Content-Security-Policy violations: ${violations.join("; ")}`);
  console.log("DONE");
} catch (e) {
  console.error(`admin_console.mjs failed: ${e.stack ?? e}`);
  for (const page of browser.contexts()[0]?.pages() ?? []) {
    try { console.error(await page.content()); } catch {}
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
