// Drives headless Chromium for tests/push_service_worker.rs: a page on http://127.0.0.1
// (a secure context) registers the package's push service worker, with notifications
// allowed; pushes arrive through the DevTools protocol (ServiceWorker.deliverPushMessage,
// as if from the browser's push service, which needs the internet).
//   node push_service_worker.mjs CHROMIUM SERVICE_WORKER_FILE
// Prints `READY` once the worker is active; then for each line read on stdin — a push's
// decrypted payload, as JSON text in a JSON string — delivers it, waits for the worker's
// message to the page, and prints one JSON line: {posted, notifications}, the message and
// the registration's notifications (`getNotifications()`). Ends at the end of stdin;
// exits non-zero on any failure.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const [executablePath, workerFile] = process.argv.slice(2);
const WAIT = 20000;

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>push</title>
<link rel="icon" href="data:,">
<script type="module">
  window.posted = [];
  navigator.serviceWorker.addEventListener("message", (event) => window.posted.push(event.data));
  navigator.serviceWorker.startMessages();
  await navigator.serviceWorker.register("/palaver-push-sw.js");
  await navigator.serviceWorker.ready;
  document.body.dataset.ready = "yes";
</script>
<body></body>`;

const web = createServer((request, response) => {
  const path = new URL(request.url, "http://127.0.0.1").pathname;
  if (path === "/") {
    response.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
    response.end(PAGE);
  } else if (path === "/palaver-push-sw.js") {
    response.writeHead(200, { "content-type": "text/javascript", "cache-control": "no-store" });
    response.end(readFileSync(workerFile));
  } else {
    response.writeHead(404).end();
  }
});
await new Promise((resolve) => web.listen(0, "127.0.0.1", resolve));
const origin = `http://127.0.0.1:${web.address().port}`;

// A profile of its own, as a user's browser has: not an incognito-like context, where
// Chromium has no push messaging.
const profile = mkdtempSync(join(tmpdir(), "palaver-push-profile-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});

try {
  // Browser.grantPermissions: showNotification needs the permission a user would give.
  await context.grantPermissions(["notifications"], { origin });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (m) => console.error(`[page ${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => console.error(`[page error] ${e.message}`));

  const cdp = await context.newCDPSession(page);
  const registrations = new Map();
  cdp.on("ServiceWorker.workerRegistrationUpdated", ({ registrations: updated }) => {
    for (const r of updated) {
      if (r.isDeleted) registrations.delete(r.registrationId);
      else registrations.set(r.registrationId, r.scopeURL);
    }
  });
  await cdp.send("ServiceWorker.enable");
  await page.goto(`${origin}/`);
  await page.waitForSelector("body[data-ready=yes]", { state: "attached", timeout: WAIT });
  const scope = `${origin}/`;
  const deadline = Date.now() + WAIT;
  let registrationId;
  while (!(registrationId = [...registrations].find(([, s]) => s === scope)?.[0])) {
    if (Date.now() > deadline) throw new Error(`no registration for ${scope}: ${JSON.stringify([...registrations])}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  console.log("READY");

  for await (const line of createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    const data = JSON.parse(line);
    const before = await page.evaluate(() => window.posted.length);
    await cdp.send("ServiceWorker.deliverPushMessage", { origin, registrationId, data });
    await page.waitForFunction((n) => window.posted.length > n, before, { timeout: WAIT });
    const answer = await page.evaluate(async (n) => {
      const registration = await navigator.serviceWorker.ready;
      const notifications = (await registration.getNotifications()).map((n) => ({
        title: n.title, body: n.body, tag: n.tag, renotify: n.renotify, data: n.data,
      }));
      return { posted: window.posted[n], notifications };
    }, before);
    console.log(JSON.stringify(answer));
  }
} catch (e) {
  console.error(`push_service_worker.mjs failed: ${e.stack ?? e}`);
  process.exitCode = 1;
} finally {
  await context.close();
  web.close();
  rmSync(profile, { recursive: true, force: true });
}
