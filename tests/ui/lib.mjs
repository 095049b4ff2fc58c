// What the dashboard's browser tests share: their environment, a deadline for the whole
// script, the host methods over POST /rpc, polling with a deadline, screenshots, and
// Debian's Chromium launched headless by Playwright (playwright-core from tests/npm: it
// never downloads a browser), watched for script errors.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';

const require = createRequire(new URL('../npm/package.json', import.meta.url));
const { chromium } = require('playwright-core');

/** Environment variable `name`; throws (naming `runner`, which sets it) when unset. */
export function mustEnv(name, runner = 'tests/e2e/ui.rs') {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (${runner} sets it)`);
  return value;
}

/** Ends the process (exit 2) if the script `name` is not done within `ms`. */
export function overallDeadline(name, ms) {
  const timer = setTimeout(() => {
    console.error(`${name}: not done within ${ms} ms`);
    process.exit(2);
  }, ms);
  timer.unref();
}

/** Calls host method `method` over `base`'s POST /rpc, as the page does (with `token`
 * as a bearer token when given); its result, or a thrown error. */
export async function rpc(base, method, params = {}, token = null) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`${base}/rpc`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  const body = await response.json();
  if (body.error) throw new Error(`${method}: ${JSON.stringify(body.error)}`);
  return body.result;
}

/** Polls `f` every 50 ms until it returns something truthy (returned), or throws after
 * `ms` naming `what` and the last value seen. */
export async function until(what, f, ms) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await f();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`never: ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A function saving a page's screenshot as `dir/<name>.png` and printing its path as
 * `screenshot: PATH` (CI keeps the files). */
export function screenshots(dir, { fullPage = false } = {}) {
  mkdirSync(dir, { recursive: true });
  return async (page, name) => {
    const file = path.join(dir, `${name}.png`);
    await page.screenshot({ path: file, fullPage });
    console.log(`screenshot: ${file}`);
  };
}

/** Runs `f(page, problems)` in headless Chromium (`executable`, default Debian's) with a
 * fresh profile, every wait defaulting to `timeoutMs`; `problems` collects script errors
 * and console errors (refused loads) on the page. The browser is closed and its profile
 * removed however `f` ends. */
export async function withBrowser(f, { executable, timeoutMs, before = async () => {} }) {
  const profile = mkdtempSync(path.join(tmpdir(), 'burrow-ui-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: executable || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(timeoutMs);
    const problems = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    await before(page);
    return await f(page, problems);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}
