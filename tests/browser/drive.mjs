// Drives headless Chromium for tests/sdk_browser.rs:
//   node drive.mjs PAGE_URL CHROMIUM_PATH EXPECTED_TEXT TEXT_TO_SEND AFTER_RESTART [SCREENSHOT]
// Prints JOINED once the page has joined its room (the test then sends EXPECTED_TEXT
// natively), waits for that message on the page, sends TEXT_TO_SEND from the page,
// waits for its echo, and prints DONE (the test then kills and restarts the server and
// sends AFTER_RESTART natively); waits for that message too, which the page only gets by
// reconnecting and re-joining, and prints RESUMED. Exits non-zero on any failure.
import { chromium } from 'playwright-core';

const [url, executablePath, expected, toSend, afterRestart, screenshot] = process.argv.slice(2);
const WAIT = 20000;
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  page.on('console', (m) => console.error(`[page ${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => console.error(`[page error] ${e.message}`));
  await page.goto(url);
  await page.waitForSelector('#status[data-state="joined"]', { timeout: WAIT });
  console.log('JOINED');
  await page.locator('#messages li', { hasText: expected }).first().waitFor({ timeout: WAIT });
  await page.fill('#text', toSend);
  await page.click('#send');
  await page.locator('#messages li', { hasText: toSend }).first().waitFor({ timeout: WAIT });
  console.log('DONE');
  await page.locator('#messages li', { hasText: afterRestart }).first().waitFor({ timeout: 2 * WAIT });
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  console.log('RESUMED');
} catch (e) {
  console.error(`drive.mjs failed: ${e.stack ?? e}`);
  try { console.error(await (await browser.contexts()[0]?.pages()[0])?.content()); } catch {}
  process.exitCode = 1;
} finally {
  await browser.close();
}
