// The dashboard (/ui) in headless Chromium, driven by Playwright (playwright-core from
// tests/npm, with Debian's /usr/bin/chromium: Playwright never downloads a browser).
// Run by tests/e2e/ui.rs against a real kernel, which passes in the environment:
//
//   BURROW_UI_BASE          the kernel's HTTP surface, http://127.0.0.1:PORT
//   BURROW_SOCKET           its socket (for the app this script starts and kills)
//   BURROW_CLOCK_TOOL       the clock-tool example's binary
//   BURROW_UI_SCREENSHOTS   where the screenshots go (one per page, printed as
//                           `screenshot: PATH`)
//   BURROW_CHROMIUM         the browser (default /usr/bin/chromium)
//
// The kernel runs the echo provider (streaming 150 ms a word) and `greeter` (the hello
// example, managed, restart = "never"). Every wait has a deadline; nothing sleeps to
// synchronise. Exit 0 when every check holds.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';

import { mustEnv, overallDeadline, rpc as rpcAt, screenshots, until as untilWithin, withBrowser } from './lib.mjs';

const BASE = mustEnv('BURROW_UI_BASE');
const SOCKET = mustEnv('BURROW_SOCKET');
const CLOCK_TOOL = mustEnv('BURROW_CLOCK_TOOL');
const SHOTS = mustEnv('BURROW_UI_SCREENSHOTS');
const CHROMIUM = process.env.BURROW_CHROMIUM;
/** How long anything that should happen soon may take. */
const SOON_MS = 15_000;
/** The whole script. */
const TOTAL_MS = 180_000;

overallDeadline('dashboard test', TOTAL_MS);
const rpc = (method, params) => rpcAt(BASE, method, params);
const until = (what, f, ms = SOON_MS) => untilWithin(what, f, ms);
const screenshot = screenshots(SHOTS);

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

let clock = null;
try {
  await withBrowser(async (page, problems) => {
    const text = async (selector) => ((await page.locator(selector).first().textContent()) ?? '').trim();
    const count = (selector) => page.locator(selector).count();

    // ---- Apps -------------------------------------------------------------------------
    await page.goto(`${BASE}/ui#/apps`);
    await page.locator('tr[data-app="echo-provider"][data-state="running"]').waitFor();
    await page.locator('tr[data-app="greeter"][data-state="running"]').waitFor();
    assert.match(await text('tr[data-app="echo-provider"] td.caps'), /provider/);
    const firstPid = Number(await until('greeter has a pid', async () => {
      const pid = await text('tr[data-app="greeter"] td.pid');
      return /^\d+$/.test(pid) && pid;
    }));
    console.log(`apps: echo-provider and greeter running (greeter pid ${firstPid})`);

    // An app that connects by itself appears, unmanaged, with its tools.
    clock = spawn(CLOCK_TOOL, [], {
      env: { ...process.env, BURROW_SOCKET: SOCKET, BURROW_APP_ID: 'clock', RUST_LOG: 'warn' },
      stdio: 'ignore',
    });
    await page.locator('tr[data-app="clock"][data-state="connected"]').waitFor();
    assert.equal(await text('tr[data-app="clock"] .state'), 'connected (unmanaged)');
    assert.match(await text('tr[data-app="clock"] td.caps'), /tool ×\d+/);
    console.log('apps: clock (unmanaged) appeared when it connected');
    await screenshot(page, 'apps');

    // Killed, it is shown disconnected.
    clock.kill('SIGKILL');
    await page.locator('tr[data-app="clock"][data-state="disconnected"]').waitFor();
    console.log('apps: clock shown disconnected once killed');

    // Restart from the page: a new process.
    await page.locator('tr[data-app="greeter"] button[data-action="restart"]').click();
    const secondPid = Number(await until('greeter restarted with a new pid', async () => {
      const pid = await text('tr[data-app="greeter"] td.pid');
      const state = await page.locator('tr[data-app="greeter"]').getAttribute('data-state');
      return state === 'running' && /^\d+$/.test(pid) && Number(pid) !== firstPid && pid;
    }));
    assert.ok(!alive(firstPid) || firstPid === secondPid, 'the first greeter process is gone');
    console.log(`apps: restart from the page: greeter pid ${firstPid} -> ${secondPid}`);

    // Its log, as the supervisor captured it, followed: what the app writes after the log
    // was opened appears in it as it is written, through the one stream the page opened
    // (`GET /logs/greeter`), with no polling.
    const logAsks = [];
    const onRequest = (r) => {
      if (new URL(r.url()).pathname.startsWith('/logs/')) logAsks.push(r.url());
      else if ((r.postData() || '').includes('supervisor.tail')) logAsks.push('supervisor.tail');
    };
    page.on('request', onRequest);
    await page.locator('tr[data-app="greeter"] button[data-action="log"]').click();
    await page.locator('tr[data-log="greeter"][data-stream="live"]').waitFor();
    const readyLines = async () =>
      (await text('tr[data-log="greeter"] pre.log')).split('\n').filter((l) => l.includes('hello: ready as greeter')).length;
    await until('the log tail shows both runs ready', async () => (await readyLines()) === 2);
    // A third run, from the page: its line comes into the open log.
    await page.locator('tr[data-app="greeter"] button[data-action="restart"]').click();
    const thirdPid = Number(await until('greeter restarted again', async () => {
      const pid = await text('tr[data-app="greeter"] td.pid');
      const state = await page.locator('tr[data-app="greeter"]').getAttribute('data-state');
      return state === 'running' && /^\d+$/.test(pid) && Number(pid) !== secondPid && pid;
    }));
    await until('the third run\'s line appears in the open log', async () => (await readyLines()) === 3);
    page.off('request', onRequest);
    assert.deepEqual(logAsks, [`${BASE}/logs/greeter?lines=200`], 'one stream, no polling');
    assert.equal(await page.locator('tr[data-log="greeter"]').getAttribute('data-stream'), 'live');
    console.log(`apps: the open log followed greeter's restart (pid ${secondPid} -> ${thirdPid})`);

    // Killed, a managed app with restart = "never" is shown failed, with how it ended.
    process.kill(thirdPid, 'SIGKILL');
    await page.locator('tr[data-app="greeter"][data-state="failed"]').waitFor();
    assert.match(await text('tr[data-app="greeter"] .reason'), /signal 9/);
    console.log('apps: greeter shown failed once killed (signal 9)');
    await screenshot(page, 'apps-failed');

    // ---- Sessions ---------------------------------------------------------------------
    const made = [];
    for (let i = 0; i < 60; i++) {
      // Three of them keep-alive, for the filter.
      made.push(rpc('session/create', { prompt: `session ${i}`, initial_turn: 'deferred', keep_alive: i < 3 }));
    }
    await Promise.all(made);
    await page.goto(`${BASE}/ui#/sessions`);
    await until('a first page of 50 sessions', async () => (await count('#sessions tbody tr[data-session]')) === 50);
    const total = Number((await text('.pager .count')).match(/of (\d+)/)[1]);
    assert.ok(total >= 60, `total ${total}`);
    assert.match(await text('.pager .count'), /^1–50 of /);
    await screenshot(page, 'sessions');
    await page.locator('button[data-page="next"]').click();
    await until('the second page', async () => (await count('#sessions tbody tr[data-session]')) === total - 50);
    assert.match(await text('.pager .count'), /^51–/);
    assert.match(page.url(), /offset=50/);
    console.log(`sessions: ${total} in all, pages of 50, the next page shows ${total - 50}`);
    // A filter that matches nothing.
    await page.locator('input[name="agent"]').fill('nobody');
    await page.locator('form.filters button[type="submit"]').click();
    await until('no session of agent nobody', async () => (await text('#sessions tbody')) === 'No sessions match.');
    // The keep-alive ones, by the kernel's filter.
    await page.locator('input[name="agent"]').fill('');
    await page.locator('select[name="keep"]').selectOption('true');
    await page.locator('form.filters button[type="submit"]').click();
    await until('the three keep-alive sessions', async () => (await text('.pager .count')).endsWith(' of 3'));
    assert.equal(await count('#sessions tbody tr[data-session]'), 3);

    // ---- One session: a message from the page, its answer streamed live ---------------
    const { session_id: sessionId } = await rpc('session/create', {
      prompt: 'You are the dashboard test.',
      initial_turn: 'deferred',
    });
    await page.goto(`${BASE}/ui#/sessions/${sessionId}`);
    await page.locator('#stream[data-state="live"]').waitFor();
    const words = Array.from({ length: 30 }, (_, i) => `word${i + 1}`);
    await page.locator('#message').fill(`please echo ${words.join(' ')}`);
    await page.locator('#send').click();
    // Part of the answer is on the page while the run is still going.
    const partial = await until('part of the answer streamed', async () => {
      const live = await text('#live .text');
      const running = (await text('#runstate')) === 'run going…';
      return running && live.split(/\s+/).length >= 4 && live;
    });
    assert.ok(!partial.includes('word30'), `the whole answer came at once: ${partial}`);
    assert.equal(await count('#transcript .msg.assistant'), 0, 'no stored answer yet');
    console.log(`session: streamed so far: "${partial}"`);
    await screenshot(page, 'session-streaming');
    const answer = await until('the answer stored and the run over', async () => {
      const stored = await page.locator('#transcript .msg.assistant .text').allTextContents();
      const idle = (await text('#runstate')) === 'idle';
      return idle && stored.find((t) => t.includes('word30'));
    }, 30_000);
    assert.equal(answer, `echo: please echo ${words.join(' ')}`);
    assert.ok(await page.locator('#live').isHidden());
    const read = await rpc('session/read', { session_id: sessionId });
    assert.equal(read.message_count, 2, 'one message and its answer');
    console.log('session: the run completed; its answer is in the transcript');

    // Cancel a run from the page: what was said so far is kept, marked cancelled.
    await page.locator('#message').fill(`again ${words.join(' ')}`);
    await page.locator('#send').click();
    await until('the second answer streaming', async () => (await text('#live .text')).split(/\s+/).length >= 3);
    await page.locator('#cancel').click();
    await until('the run cancelled', async () => {
      const idle = (await text('#runstate')) === 'idle';
      return idle && (await page.locator('#transcript .msg.assistant .who').allTextContents()).some((w) => w.includes('cancelled'));
    });
    console.log('session: cancelled from the page');
    // A run's timeline: a message asking for a tool shows the run's provider calls and
    // its tool call, with their durations and outcomes.
    clock = spawn(CLOCK_TOOL, [], {
      env: { ...process.env, BURROW_SOCKET: SOCKET, BURROW_APP_ID: 'clock', RUST_LOG: 'warn' },
      stdio: 'ignore',
    });
    await until('clock_now registered', async () => {
      const { capabilities } = await rpc('kernel.capabilities', { type: 'tool' });
      return capabilities.some((c) => c.config.name === 'clock_now');
    });
    await page.locator('#message').fill('/tool clock_now {}');
    await page.locator('#send').click();
    const latest = page.locator('#timelines .timeline').first();
    await latest.locator('.step[data-kind="tool"][data-status="ok"]', { hasText: 'clock_now' }).waitFor({ timeout: 30_000 });
    // The call asking for the tool, and the one answering after it (shown once the run ends).
    await until('both provider calls', async () => (await latest.locator('.step[data-kind="provider"][data-status="ok"]').count()) === 2, 30_000);
    assert.match(await latest.locator('.step[data-kind="tool"] .ms').first().textContent(), /^\d+\.\d ms$/);
    console.log('session: the run\'s timeline shows its provider calls and its tool call');
    await screenshot(page, 'session');

    // ---- Hooks & tools: the tool the run called, counted, with its latency -------------
    await page.goto(`${BASE}/ui#/hooks`);
    const clockRow = page.locator('#tools tr[data-tool="clock_now"]');
    await until('clock_now counted', async () => (await clockRow.locator('.calls').textContent()) === '1');
    assert.equal(await clockRow.locator('.errors').textContent(), '0 (0%)');
    assert.match(await clockRow.locator('td').nth(4).textContent(), /^≤ [\d.]+ ms$/);
    assert.equal(await text('#interceptors tbody'), 'No interceptor is registered.');
    console.log('hooks & tools: clock_now shows its one call and its latency');
    await screenshot(page, 'hooks');

    // ---- Kernel -----------------------------------------------------------------------
    const info = await rpc('kernel.info');
    await page.goto(`${BASE}/ui#/kernel`);
    await until('the version shown', async () => (await text('dd[data-fact="Version"]')) === info.version);
    await until('the configuration shown', async () => (await text('#config')).includes('"ipc"'));
    const config = await text('#config');
    assert.ok(config.includes('[redacted]'), 'the secret is redacted');
    assert.ok(!config.includes('sk-dashboard-secret'), 'the secret is not shown');
    console.log(`kernel: version ${info.version}; configuration shown with its secret redacted`);
    await screenshot(page, 'kernel');

    assert.deepEqual(problems, [], 'no script errors or refused loads on any page');
    console.log('dashboard test: ok');
  }, { executable: CHROMIUM, timeoutMs: SOON_MS });
} finally {
  if (clock && clock.exitCode === null) clock.kill('SIGKILL');
}
