// The dashboard's Sessions page at 100 000 stored sessions (issue 23), in headless
// Chromium driven by Playwright (playwright-core from tests/npm, with Debian's
// /usr/bin/chromium, as dashboard.test.mjs). Run by tests/e2e/ui_scale.rs, which seeds
// the kernel's store before starting it and passes in the environment:
//
//   BURROW_UI_BASE          the kernel's HTTP surface, http://127.0.0.1:PORT
//   BURROW_SEED             how the store was seeded, JSON {stored, agents, channels,
//                           keepAliveEvery}: session i is `seed-` and i on 6 digits, of
//                           agent agents[i % agents.length], on channel
//                           channels[i % channels.length], keep-alive when
//                           i % keepAliveEvery is 0, and the higher i, the newer
//   BURROW_UI_SCREENSHOTS   where the screenshot goes (printed as `screenshot: PATH`)
//   BURROW_CHROMIUM         the browser (default /usr/bin/chromium)
//
// Every page shown is checked row by row against the seed: first, next, previous, a
// middle and the last page, and each filter (agent, channel, keep-alive, resident).
// Then the page is checked to react while a page loads. Each page's time, from the action
// to its rows shown, is printed; only a generous liveness deadline is asserted (the
// performance goals are the `sessions` benchmark's). Exit 0 when every check holds.

import assert from 'node:assert/strict';

import { mustEnv, overallDeadline, rpc as rpcAt, screenshots, withBrowser } from './lib.mjs';

const RUNNER = 'tests/e2e/ui_scale.rs';
const BASE = mustEnv('BURROW_UI_BASE', RUNNER);
const SEED = JSON.parse(mustEnv('BURROW_SEED', RUNNER));
const SHOTS = mustEnv('BURROW_UI_SCREENSHOTS', RUNNER);
const CHROMIUM = process.env.BURROW_CHROMIUM;
/** Rows a page holds (the page's PAGE_SIZE). */
const PAGE = 50;
/** How long anything may take before the page counts as stuck: liveness, not speed. */
const LIVE_MS = 30_000;
/** How long the page's answer is held back to check the page reacts meanwhile. */
const HOLD_MS = 3_000;
/** The whole script. */
const TOTAL_MS = 150_000;

overallDeadline('sessions scale test', TOTAL_MS);
const rpc = (method, params) => rpcAt(BASE, method, params);
const screenshot = screenshots(SHOTS, { fullPage: true });

// The seeded sessions, newest activity first, as tests/e2e/ui_scale.rs stored them.
const seeded = [];
for (let i = SEED.stored - 1; i >= 0; i--) {
  seeded.push({
    key: `seed-${String(i).padStart(6, '0')}`,
    agent: SEED.agents[i % SEED.agents.length],
    channel: SEED.channels[i % SEED.channels.length],
    keepAlive: i % SEED.keepAliveEvery === 0,
  });
}
/** Sessions the script creates or sends to, newest activity first: before the others. */
const recent = [];
const all = () => [...recent, ...seeded.filter((s) => !recent.includes(s))];
/** Resident: the keep-alive sessions (made resident at start), and those sent to since. */
const resident = (s) => s.keepAlive || s.sentTo;

/** The page at `offset` of the sessions `which` selects: its count text and keys. */
function expected(which, offset) {
  const matching = all().filter(which);
  const keys = matching.slice(offset, offset + PAGE).map((s) => s.key);
  return { total: matching.length, offset, keys, count: `${offset + 1}–${offset + keys.length} of ${matching.length}` };
}

await withBrowser(async (page, problems) => {

  /** The rows shown: key, agent, channel, active, keep-alive. */
  const rowsShown = () =>
    page.$$eval('#sessions tbody tr[data-session]', (trs) =>
      trs.map((tr) => {
        const td = [...tr.children].map((c) => c.textContent.trim());
        return { key: tr.dataset.session, agent: td[1], channel: td[2], active: td[5], keepAlive: td[6] };
      }),
    );
  const times = [];
  /** Does `action` (after `action.before`, untimed), waits (checking every frame) until
   * the page shows `want`'s rows, checks them row by row, and prints how long it took,
   * with the `session.list` call's own time as the browser measured it. The rows shown. */
  const load = async (what, action, want) => {
    await action.before?.();
    // The page's own clock; a page not yet opened starts its clock with its load.
    const opened = page.url().startsWith(BASE);
    const since = opened
      ? await page.evaluate(() => {
          performance.clearResourceTimings();
          return performance.now();
        })
      : 0;
    const start = Date.now();
    await action();
    await page.waitForFunction(
      ([count, first]) => {
        const shown = document.querySelector('.pager .count');
        const row = document.querySelector('#sessions tbody tr[data-session]');
        return shown?.textContent === count && row?.dataset.session === first;
      },
      [want.count, want.keys[0]],
      { polling: 'raf', timeout: LIVE_MS },
    );
    const ms = Date.now() - start;
    const call = await page.evaluate((since) => {
      const calls = performance.getEntriesByType('resource').filter((e) => e.name.endsWith('/rpc') && e.startTime >= since);
      return calls.length ? calls[0].duration : null;
    }, since);
    const rows = await rowsShown();
    assert.deepEqual(rows.map((r) => r.key), want.keys, `${what}: the rows, newest activity first`);
    times.push([what, ms]);
    console.log(`page: ${what}: ${want.count} shown ${ms} ms after the action (its session.list over HTTP: ${call === null ? '?' : call.toFixed(1)} ms)`);
    return rows;
  };
  const click = (selector) => () => page.locator(selector).click();
  /** Submitting filter `f`; the form filled in `before`, so the time is the page's. */
  const filterBy = (f) =>
    Object.assign(click('form.filters button[type="submit"]'), {
      before: async () => {
        await page.locator('input[name="agent"]').fill(f.agent ?? '');
        await page.locator('input[name="channel"]').fill(f.channel ?? '');
        await page.locator('select[name="active"]').selectOption(f.active ?? '');
        await page.locator('select[name="keep"]').selectOption(f.keep ?? '');
      },
    });
  const anySession = () => true;
  const disabled = (selector) => page.locator(selector).isDisabled();

  // ---- Paging: first, next, next, previous, previous; a middle and the last page ------
  const first = await load('first (opening /ui)', () => page.goto(`${BASE}/ui#/sessions`), expected(anySession, 0));
  assert.equal(first.length, PAGE);
  assert.equal(first[0].key, `seed-${String(SEED.stored - 1).padStart(6, '0')}`, 'the newest first');
  assert.ok(await disabled('button[data-page="prev"]'), 'no newer page than the first');
  await screenshot(page, 'sessions-100k');
  const second = await load('next', click('button[data-page="next"]'), expected(anySession, PAGE));
  assert.ok(second.every((r) => !first.some((f) => f.key === r.key)), 'the next page shows other sessions');
  assert.match(page.url(), /offset=50/);
  await load('next again', click('button[data-page="next"]'), expected(anySession, 2 * PAGE));
  await load('previous', click('button[data-page="prev"]'), expected(anySession, PAGE));
  await load('previous again', click('button[data-page="prev"]'), expected(anySession, 0));
  const middle = Math.floor(SEED.stored / 2);
  await load('middle (by its address)', () => page.evaluate((o) => (location.hash = `#/sessions?offset=${o}`), middle), expected(anySession, middle));
  const lastOffset = SEED.stored - PAGE;
  const last = await load('last (by its address)', () => page.evaluate((o) => (location.hash = `#/sessions?offset=${o}`), lastOffset), expected(anySession, lastOffset));
  assert.equal(last.at(-1).key, 'seed-000000', 'the oldest last');
  assert.ok(await disabled('button[data-page="next"]'), 'no older page than the last');

  // ---- Filters: each returns rows that match, paged -----------------------------------
  const [agent, channel] = [SEED.agents[1], SEED.channels[1]];
  const byAgent = (s) => s.agent === agent;
  let rows = await load(`agent ${agent}`, filterBy({ agent }), expected(byAgent, 0));
  assert.ok(rows.every((r) => r.agent === agent), `every row of agent ${agent}`);
  rows = await load(`agent ${agent}, next`, click('button[data-page="next"]'), expected(byAgent, PAGE));
  assert.ok(rows.every((r) => r.agent === agent), `every row of agent ${agent}`);
  rows = await load(`channel ${channel}`, filterBy({ channel }), expected((s) => s.channel === channel, 0));
  assert.ok(rows.every((r) => r.channel === channel), `every row on channel ${channel}`);
  const [agent2, channel2] = [SEED.agents.at(-1), SEED.channels.at(-1)];
  rows = await load(`agent ${agent2} and channel ${channel2}`, filterBy({ agent: agent2, channel: channel2 }), expected((s) => s.agent === agent2 && s.channel === channel2, 0));
  assert.ok(rows.every((r) => r.agent === agent2 && r.channel === channel2), 'every row of both');
  const keepAlive = (s) => s.keepAlive;
  const keptTotal = expected(keepAlive, 0).total;
  rows = await load('keep-alive', filterBy({ keep: 'true' }), expected(keepAlive, 0));
  assert.ok(rows.every((r) => r.keepAlive === 'yes' && r.active === 'yes'), 'every row keep-alive, so resident');
  const lastKept = Math.floor((keptTotal - 1) / PAGE) * PAGE;
  await load('keep-alive, last (by its address)', () => page.evaluate((o) => (location.hash = `#/sessions?keep=true&offset=${o}`), lastKept), expected(keepAlive, lastKept));
  rows = await load('not keep-alive', filterBy({ keep: 'false' }), expected((s) => !s.keepAlive, 0));
  assert.ok(rows.every((r) => r.keepAlive === 'no'), 'no row keep-alive');
  // Resident: the keep-alive sessions (made resident at start), and any used since.
  rows = await load('active', filterBy({ active: 'true' }), expected(resident, 0));
  assert.ok(rows.every((r) => r.active === 'yes'), 'every row active');
  rows = await load('inactive', filterBy({ active: 'false' }), expected((s) => !resident(s), 0));
  assert.ok(rows.every((r) => r.active === 'no'), 'no row active');
  rows = await load('inactive, middle (by its address)', () => page.evaluate((o) => (location.hash = `#/sessions?active=false&offset=${o}`), middle), expected((s) => !resident(s), middle));
  assert.ok(rows.every((r) => r.active === 'no'), 'no row active');

  // Newest activity first, live: a session created now shows first on the page's next
  // refresh (every 3 s); one of the oldest, once sent a message, is the newest, and
  // resident, so it shows first on the active page's.
  const refresh = (what, want) =>
    page.waitForFunction(
      ([count, first]) =>
        document.querySelector('.pager .count')?.textContent === count &&
        document.querySelector('#sessions tbody tr[data-session]')?.dataset.session === first,
      [want.count, want.keys[0]],
      { polling: 'raf', timeout: LIVE_MS },
    ).then(() => console.log(`sessions: ${what} shows first on the next refresh (${want.count})`));
  await load('all again', filterBy({}), expected(anySession, 0));
  const { session_id: fresh } = await rpc('session/create', { prompt: '', initial_turn: 'deferred' });
  recent.unshift({ key: fresh, agent: 'main', keepAlive: false });
  await refresh('a session created now', expected(anySession, 0));
  await load('active again', filterBy({ active: 'true' }), expected(resident, 0));
  // Of agent main (the kernel's default agent, the only one configured), not keep-alive.
  const old = seeded.findLast((s) => !s.keepAlive && s.agent === 'main');
  await rpc('comms/send', { session_id: old.key, kind: 'input', body: 'hello from the scale test' });
  old.sentTo = true;
  recent.unshift(old);
  await refresh(`${old.key}, sent a message now`, expected(resident, 0));
  const [row] = await rowsShown();
  assert.equal(row.active, 'yes', `${old.key} is resident once sent a message`);

  // ---- Responsive while a page loads --------------------------------------------------
  // The unfiltered page's answer is held back HOLD_MS: meanwhile typing and clicking
  // work, a filter submitted meanwhile shows its rows, and the held answer, once it comes,
  // does not replace them.
  let held = null;
  await page.route('**/rpc', async (route) => {
    const call = route.request().postDataJSON();
    if (held === null && call?.method === 'session.list' && Object.keys(call.params.filter).length === 0) {
      held = (async () => {
        const response = await route.fetch();
        await new Promise((r) => setTimeout(r, HOLD_MS));
        await route.fulfill({ response });
      })();
      return held;
    }
    return route.continue();
  });
  const unfiltered = filterBy({});
  await unfiltered.before();
  await unfiltered();
  await page.waitForFunction(() => document.querySelector('.pager .count')?.textContent === '', null, { polling: 'raf', timeout: LIVE_MS });
  const agent3 = SEED.agents[2];
  const typing = Date.now();
  await page.locator('input[name="agent"]').pressSequentially(agent3);
  await page.locator('select[name="keep"]').selectOption('false');
  const typed = Date.now() - typing;
  assert.equal(await page.locator('input[name="agent"]').inputValue(), agent3, 'typing works while the page loads');
  assert.equal(await page.locator('select[name="keep"]').inputValue(), 'false', 'choosing works while the page loads');
  assert.equal(await page.locator('.pager .count').textContent(), '', 'the page was still loading meanwhile');
  console.log(`responsive: typed "${agent3}" and chose "not keep-alive" in ${typed} ms while the page's answer was held back ${HOLD_MS} ms`);
  const byBoth = (s) => s.agent === agent3 && !s.keepAlive;
  rows = await load(`agent ${agent3}, not keep-alive (submitted while the page loaded)`, click('form.filters button[type="submit"]'), expected(byBoth, 0));
  assert.ok(held, 'the unfiltered page asked for its rows (and its answer was held back)');
  await held;
  const settled = Date.now() + 1000;
  while (Date.now() < settled) {
    assert.equal(await page.locator('.pager .count').textContent(), expected(byBoth, 0).count, 'the late answer does not replace the page shown');
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual((await rowsShown()).map((r) => r.key), expected(byBoth, 0).keys);
  console.log('responsive: the held answer, once in, left the page shown as it was');
  await page.unroute('**/rpc');

  const [observed, longTasks] = await page.evaluate(() => [PerformanceObserver.supportedEntryTypes.includes('longtask'), window.longTasks]);
  assert.ok(observed, 'the browser reports long tasks');
  const longest = longTasks.length ? Math.max(...longTasks) : 0;
  console.log(`responsive: ${longTasks.length} task(s) of 50 ms or more on the page's main thread since the last page load; the longest ${longest.toFixed(0)} ms`);
  assert.ok(longest < LIVE_MS, `the page's main thread was held ${longest} ms`);
  assert.deepEqual(problems, [], 'no script errors or refused loads');
  const slowest = times.reduce((a, b) => (b[1] > a[1] ? b : a));
  console.log(`page times (ms): ${times.map(([what, ms]) => `${what} ${ms}`).join('; ')}`);
  console.log(`sessions scale test: ok (${SEED.stored} stored; ${times.length} pages; slowest: ${slowest[0]}, ${slowest[1]} ms)`);
}, {
  executable: CHROMIUM,
  timeoutMs: LIVE_MS,
  before: async (page) => {
    // Every task that held the page's main thread 50 ms or more, for the whole run.
    await page.addInitScript(() => {
      window.longTasks = [];
      new PerformanceObserver((list) => {
        for (const e of list.getEntries()) window.longTasks.push(e.duration);
      }).observe({ type: 'longtask', buffered: true });
    });
  },
});
