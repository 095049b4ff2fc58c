// The dashboard of a kernel that requires host tokens, in headless Chromium (tests/ui/
// lib.mjs). Run by tests/e2e/ui.rs, which passes in the environment:
//
//   BURROW_UI_BASE          the kernel's HTTP surface, http://127.0.0.1:PORT
//   BURROW_UI_TOKEN         a host token of that kernel
//   BURROW_UI_SCREENSHOTS   where the screenshots go (printed as `screenshot: PATH`)
//   BURROW_CHROMIUM         the browser (default /usr/bin/chromium)
//
// The page's files load without a token and what it reads does not; the page asks for a
// token, refuses a wrong one, and with the right one shows every page: its requests, the
// session's live stream, an app's log stream and /metrics all carry it. Exit 0 when every
// check holds.

import assert from 'node:assert/strict';

import { mustEnv, overallDeadline, rpc as rpcAt, screenshots, until as untilWithin, withBrowser } from './lib.mjs';

const BASE = mustEnv('BURROW_UI_BASE');
const TOKEN = mustEnv('BURROW_UI_TOKEN');
const SHOTS = mustEnv('BURROW_UI_SCREENSHOTS');
/** How long anything that should happen soon may take. */
const SOON_MS = 15_000;

overallDeadline('token test', 120_000);
const until = (what, f) => untilWithin(what, f, SOON_MS);
const screenshot = screenshots(SHOTS);

// Without a page: the files are served to anyone, what they read needs the token.
for (const file of ['/ui', '/ui/wire.js', '/ui/app.js', '/ui/stats.js', '/ui/style.css']) {
  assert.equal((await fetch(`${BASE}${file}`)).status, 200, `${file} without a token`);
}
assert.equal((await fetch(`${BASE}/metrics`)).status, 401, '/metrics without a token');
assert.equal((await fetch(`${BASE}/logs/greeter`)).status, 401, 'a log stream without a token');
await assert.rejects(rpcAt(BASE, 'kernel.info'), 'POST /rpc without a token');
const { session_id: sessionId } = await rpcAt(BASE, 'session/create', { prompt: 'token test', initial_turn: 'deferred' }, TOKEN);

await withBrowser(async (page, problems) => {
  const text = async (selector) => ((await page.locator(selector).first().textContent()) ?? '').trim();
  const login = page.locator('#login');

  // Asked for a token; a wrong one is refused and asked for again.
  await page.goto(`${BASE}/ui#/apps`);
  await login.waitFor({ state: 'visible' });
  assert.match(await text('#problem'), /needs a host token/);
  await screenshot(page, 'login');
  await page.locator('#token').fill('brw_wrong');
  await page.locator('#use-token').click();
  await login.waitFor({ state: 'visible' });
  await until('the wrong token refused', async () => /needs a host token/.test(await text('#problem')));
  console.log('token: asked for, a wrong one refused');

  // The right one: every page works with it.
  await page.locator('#token').fill(TOKEN);
  await page.locator('#token').press('Enter');
  await page.locator('tr[data-app="greeter"][data-state="running"]').waitFor();
  assert.ok(await login.isHidden(), 'the login form is gone');
  console.log('token: accepted; the Apps page shows the apps');

  // An app's log stream, with the token in its header.
  await page.locator('tr[data-app="greeter"] button[data-action="log"]').click();
  await page.locator('tr[data-log="greeter"][data-stream="live"]').waitFor();
  await until('the log shows greeter ready', async () => (await text('tr[data-log="greeter"] pre.log')).includes('hello: ready as greeter'));
  console.log('token: the log stream follows');

  // The session's live stream: a message sent from the page streams its answer.
  await page.goto(`${BASE}/ui#/sessions/${encodeURIComponent(sessionId)}`);
  await page.locator('#stream[data-state="live"]').waitFor();
  await page.locator('#message').fill('hello over a token');
  await page.locator('#send').click();
  await until('the answer stored', async () =>
    (await page.locator('#transcript .msg.assistant .text').allTextContents()).some((t) => t.includes('hello over a token')));
  console.log('token: the session page streams');

  // Hooks & tools reads /metrics with it.
  await page.goto(`${BASE}/ui#/hooks`);
  await page.locator('#tools').waitFor();
  await until('the metrics read', async () => (await page.locator('#problem').isHidden()));
  await screenshot(page, 'hooks-with-token');

  // The token lasts for the tab: a reload needs no login.
  await page.reload();
  await page.locator('#tools').waitFor();
  assert.ok(await login.isHidden(), 'no login after a reload');

  assert.deepEqual(problems.filter((p) => !p.includes('401')), [], 'no script errors');
  console.log('token test: ok');
}, { executable: process.env.BURROW_CHROMIUM, timeoutMs: SOON_MS });
