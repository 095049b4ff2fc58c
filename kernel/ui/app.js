// Burrow's dashboard: plain JavaScript, no build step, nothing from another host.
// Everything it shows comes from the kernel's host methods over `POST /rpc` (the same
// service layer as every surface); a session's live text comes from
// `GET /sessions/{id}/events` (server-sent events), and an open app log follows
// `GET /logs/{id}` (server-sent events: its tail, then each new line). Pages poll on
// bounded intervals: apps every second, sessions every 3 s, the kernel every 5 s.
// Text from the kernel is only ever set as text (`textContent`), never as markup.
// wire.js (loaded first) holds the calls: `rpc`, `authorizedFetch`, `Events`.
'use strict';

const PAGE_SIZE = 50;
const TRANSCRIPT_TAIL = 200;
const LOG_LINES = 200;
const RUNS_SHOWN = 5;

// ---- small helpers -----------------------------------------------------------------

/** An element: `props` sets attributes (`class`, `href`, `data-*`, ...), `text`, and
 * event handlers (`on: {click: f}`); children are nodes or strings. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') node.textContent = value;
    else if (key === 'on') for (const [ev, f] of Object.entries(value)) node.addEventListener(ev, f);
    else if (key === 'disabled' || key === 'hidden') node[key] = Boolean(value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** How long ago `ms` (ms since the epoch) was, or how long since: "4 s", "3 min", "2 h". */
function age(ms) {
  if (!ms) return '—';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : '—';
}

const problem = document.getElementById('problem');
const login = document.getElementById('login');
const tokenInput = document.getElementById('token');

/** Shows (or, with null, clears) a problem in the header; a refusal for want of a
 * (valid) host token shows the login form. */
function report(err) {
  const unauthorized = err?.status === 401;
  // A refusal of a request made with a token since replaced says nothing of the new one.
  if (unauthorized && err.token !== sessionStorage.getItem(TOKEN_KEY)) return;
  if (unauthorized) login.hidden = false;
  problem.hidden = !err;
  problem.textContent = !err ? '' : unauthorized ? '⚠ this kernel needs a host token' : `⚠ ${err.message || err}`;
}

// The login form: the token is kept for this tab, and the page shown again with it.
document.getElementById('use-token').addEventListener('click', () => {
  const token = tokenInput.value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  tokenInput.value = '';
  login.hidden = true;
  route();
});
tokenInput.addEventListener('keydown', (e) => {
  if (e.key === 'Enter') document.getElementById('use-token').click();
});

/** Runs `f` now and then `ms` after each run ends, until the page's `stop`; a run's
 * error is reported and the polling goes on. */
function every(page, ms, f) {
  let timer = null;
  const tick = async () => {
    if (page.stopped) return;
    try {
      await f();
      report(null);
    } catch (err) {
      report(err);
    }
    if (!page.stopped) timer = setTimeout(tick, ms);
  };
  page.onStop(() => clearTimeout(timer));
  tick();
}

/** A page's lifetime: what to undo when another page is shown. */
class Page {
  constructor() {
    this.stopped = false;
    this.undo = [];
  }
  onStop(f) {
    this.undo.push(f);
  }
  stop() {
    this.stopped = true;
    for (const f of this.undo) f();
  }
}

// ---- Apps --------------------------------------------------------------------------

/** Unmanaged apps seen connected while the page is open (so that one that goes is
 * shown as disconnected, not just dropped), with when it was last seen gone. */
const unmanaged = new Map();

function appsPage(main, page) {
  const body = el('tbody');
  const rows = new Map();
  main.append(
    el('h1', { text: 'Apps' }),
    el(
      'table',
      { class: 'list', id: 'apps' },
      el(
        'thead',
        {},
        el(
          'tr',
          {},
          ['App', 'State', 'PID', 'Uptime', 'Restarts', 'Heartbeat', 'Capabilities', ''].map((t) =>
            el('th', { text: t, class: ['PID', 'Restarts'].includes(t) ? 'num' : undefined }),
          ),
        ),
      ),
      body,
    ),
    el('p', { class: 'muted', text: 'Refreshed every second. Managed apps are the ones the kernel runs ([apps.<id>.run]).' }),
  );

  // Start, stop or restart: answered once it has taken effect (or failed); the row's
  // buttons wait for it.
  const control = async (action, id) => {
    const r = rows.get(id);
    r.busy = true;
    for (const b of Object.values(r.buttons)) b.disabled = true;
    r.row.dataset.pending = action;
    try {
      await rpc(`supervisor.${action}`, { appId: id });
      report(null);
    } catch (err) {
      report(err);
    } finally {
      r.busy = false;
      delete r.row.dataset.pending;
      r.buttons.restart.disabled = false;
    }
  };

  const makeRow = (id) => {
    const cells = {
      state: el('td', { class: 'state-cell' }),
      pid: el('td', { class: 'num pid' }),
      uptime: el('td', { class: 'uptime' }),
      restarts: el('td', { class: 'num restarts' }),
      heartbeat: el('td', { class: 'heartbeat' }),
      caps: el('td', { class: 'caps' }),
    };
    const buttons = {};
    for (const action of ['start', 'stop', 'restart']) {
      buttons[action] = el('button', {
        text: action[0].toUpperCase() + action.slice(1),
        'data-action': action,
        on: { click: () => control(action, id) },
      });
    }
    const logPre = el('pre', { class: 'log' });
    const logRow = el('tr', { class: 'logrow', 'data-log': id, hidden: true }, el('td', { colspan: 8 }, logPre));
    const logButton = el('button', {
      text: 'Log',
      'data-action': 'log',
      on: {
        click: () => {
          logRow.hidden = !logRow.hidden;
          if (logRow.hidden) unfollowLog(id);
          else followLog(id, logPre, logRow);
        },
      },
    });
    const actions = el('div', { class: 'actions' }, buttons.start, buttons.stop, buttons.restart, logButton);
    const row = el(
      'tr',
      { 'data-app': id },
      el('td', { class: 'mono', text: id }),
      cells.state,
      cells.pid,
      cells.uptime,
      cells.restarts,
      cells.heartbeat,
      cells.caps,
      el('td', {}, actions),
    );
    return { row, logRow, cells, buttons, logButton };
  };

  // Open logs, each followed over `GET /logs/{id}` (server-sent events, read by `Events`
  // so a host token goes with them) while its row is shown: the tail, then each new
  // line; at most LOG_LINES lines kept (the oldest go).
  // Each open log holds one of the few connections a browser makes to one host (six
  // over HTTP/1.1), which the page's own requests need too: at most LOGS_FOLLOWED are
  // open, and opening another closes (and hides) the one opened first.
  const LOGS_FOLLOWED = 3;
  const following = new Map(); // app id -> its Events, in the order opened
  const unfollowLog = (id) => {
    following.get(id)?.close();
    following.delete(id);
  };
  page.onStop(() => {
    for (const source of following.values()) source.close();
    following.clear();
  });
  const followLog = (id, pre, row) => {
    unfollowLog(id);
    while (following.size >= LOGS_FOLLOWED) {
      const [oldest] = following.keys();
      rows.get(oldest).logRow.hidden = true;
      unfollowLog(oldest);
    }
    pre.textContent = '';
    row.dataset.stream = 'opening';
    const source = new Events(`/logs/${encodeURIComponent(id)}?lines=${LOG_LINES}`);
    following.set(id, source);
    let lines = [];
    let drawing = null;
    // Drawn at most every 50 ms, whatever the rate of lines; pinned to the bottom when
    // it was there.
    const draw = () => {
      drawing = null;
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent = lines.length ? lines.join('\n') : '(no output yet)';
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    };
    const redraw = () => {
      if (drawing === null) drawing = setTimeout(draw, 50);
    };
    const add = (line) => {
      lines.push(line);
      if (lines.length > LOG_LINES) lines.splice(0, lines.length - LOG_LINES);
      redraw();
    };
    const on = (type, f) =>
      source.addEventListener(type, (e) => {
        try {
          f(JSON.parse(e.data));
        } catch (err) {
          report(err);
        }
      });
    // A tail comes first, and again after a reconnection: it replaces what is shown.
    on('tail', (d) => {
      lines = d.lines.slice(-LOG_LINES);
      row.dataset.stream = 'live';
      redraw();
    });
    on('line', (d) => add(d.line));
    on('lagged', (d) => add(`[… ${d.missed} lines skipped: the page fell behind]`));
    source.addEventListener('error', () => {
      if (source.readyState !== Events.CLOSED) {
        row.dataset.stream = 'reconnecting';
        return;
      }
      // Refused (not found, busy, ...): the stream does not say why; the kernel does.
      row.dataset.stream = 'closed';
      if (following.get(id) === source) following.delete(id);
      rpc('supervisor.tail', { appId: id, lines: 0 }).then(
        () => add('(the log stream closed; open the log again to retry)'),
        (err) => add(`(no log: ${err.message})`),
      );
    });
  };

  every(page, 1000, async () => {
    const [apps, caps] = await Promise.all([rpc('kernel.apps'), rpc('kernel.capabilities')]);
    const connected = new Map(apps.apps.map((a) => [a.appId, a]));
    const managed = new Map((apps.managed || []).map((m) => [m.appId, m]));
    const byApp = new Map();
    for (const c of caps.capabilities) {
      const counts = byApp.get(c.appId) || new Map();
      counts.set(c.type, (counts.get(c.type) || 0) + 1);
      byApp.set(c.appId, counts);
    }
    for (const id of connected.keys()) if (!managed.has(id)) unmanaged.set(id, { goneAt: null });
    const ids = new Set([...managed.keys(), ...connected.keys(), ...unmanaged.keys()]);
    for (const id of [...ids].sort()) {
      let r = rows.get(id);
      if (!r) {
        r = makeRow(id);
        rows.set(id, r);
      }
      body.append(r.row, r.logRow); // keeps them sorted (moves existing nodes)
      const m = managed.get(id);
      const a = connected.get(id);
      let state, reason;
      if (m) {
        state = m.state;
        if (m.state === 'running' && a && a.state !== 'ready') state = a.state;
        if (m.state === 'failed' || (m.state === 'restarting' && m.lastExit)) reason = m.lastExit;
      } else if (a) {
        state = a.state === 'ready' ? 'connected' : a.state;
      } else {
        const v = unmanaged.get(id);
        v.goneAt = v.goneAt || Date.now();
        state = 'disconnected';
        reason = `gone ${age(v.goneAt)} ago`;
      }
      const label = m ? state : state === 'disconnected' ? state : `${state} (unmanaged)`;
      r.row.dataset.state = state;
      r.cells.state.replaceChildren(el('span', { class: `state ${state}`, text: label }));
      if (reason) r.cells.state.append(el('span', { class: 'reason', text: reason }));
      r.cells.pid.textContent = m?.pid ?? '—';
      r.cells.uptime.textContent = m?.startedAt ? age(m.startedAt) : a ? age(a.registeredAt) : '—';
      r.cells.restarts.textContent = m ? m.restarts : '—';
      r.cells.heartbeat.textContent = a ? `${age(a.lastSeenAt)} ago` : '—';
      const counts = byApp.get(id);
      r.cells.caps.textContent = counts
        ? [...counts].map(([type, n]) => (n > 1 ? `${type} ×${n}` : type)).join(', ')
        : '—';
      const up = m && ['running', 'starting', 'restarting'].includes(m.state);
      r.buttons.start.hidden = !m;
      r.buttons.stop.hidden = !m;
      r.buttons.restart.hidden = !m;
      r.logButton.hidden = !m;
      if (m && !r.busy) {
        r.buttons.start.disabled = up;
        r.buttons.stop.disabled = !up;
        r.buttons.restart.disabled = false;
      }
    }
  });
}

// ---- Sessions ----------------------------------------------------------------------

function sessionsPage(main, page, query) {
  const filter = {
    agent: query.get('agent') || '',
    channel: query.get('channel') || '',
    active: query.get('active') || '',
    keep: query.get('keep') || '',
  };
  const offset = Math.max(0, Number(query.get('offset')) || 0);
  const go = (changes) => {
    const next = new URLSearchParams({ ...filter, offset: String(offset), ...changes });
    for (const [k, v] of [...next]) if (!v || (k === 'offset' && v === '0')) next.delete(k);
    const q = next.toString();
    location.hash = q ? `#/sessions?${q}` : '#/sessions';
  };
  const agent = el('input', { name: 'agent', value: filter.agent, placeholder: 'any' });
  const channel = el('input', { name: 'channel', value: filter.channel, placeholder: 'any' });
  const active = el(
    'select',
    { name: 'active' },
    el('option', { value: '', text: 'any' }),
    el('option', { value: 'true', text: 'active' }),
    el('option', { value: 'false', text: 'inactive' }),
  );
  active.value = filter.active;
  const keep = el(
    'select',
    { name: 'keep' },
    el('option', { value: '', text: 'any' }),
    el('option', { value: 'true', text: 'keep-alive' }),
    el('option', { value: 'false', text: 'not keep-alive' }),
  );
  keep.value = filter.keep;
  const apply = (e) => {
    e.preventDefault();
    go({ agent: agent.value.trim(), channel: channel.value.trim(), active: active.value, keep: keep.value, offset: '0' });
  };
  const create = async (e) => {
    e.currentTarget.disabled = true;
    try {
      const params = { prompt: '', initial_turn: 'deferred' };
      if (filter.agent) params.agent_id = filter.agent;
      const made = await rpc('session/create', params);
      location.hash = `#/sessions/${encodeURIComponent(made.session_id)}`;
    } catch (err) {
      report(err);
      e.currentTarget.disabled = false;
    }
  };
  const body = el('tbody');
  const count = el('span', { class: 'count' });
  const prev = el('button', { text: '← Newer', 'data-page': 'prev', disabled: offset === 0, on: { click: () => go({ offset: String(Math.max(0, offset - PAGE_SIZE)) }) } });
  const next = el('button', { text: 'Older →', 'data-page': 'next', disabled: true, on: { click: () => go({ offset: String(offset + PAGE_SIZE) }) } });
  main.append(
    el('h1', { text: 'Sessions' }),
    el(
      'form',
      { class: 'filters', on: { submit: apply } },
      el('label', {}, 'Agent', agent),
      el('label', {}, 'Channel', channel),
      el('label', {}, 'Active', active),
      el('label', {}, 'Keep-alive', keep),
      el('button', { type: 'submit', text: 'Filter' }),
      el('button', { type: 'button', text: 'New session', on: { click: create } }),
    ),
    el('div', { class: 'pager' }, prev, next, count),
    el(
      'table',
      { class: 'list', id: 'sessions' },
      el(
        'thead',
        {},
        el(
          'tr',
          {},
          ['Session', 'Agent', 'Channel', 'Messages', 'Last activity', 'Active', 'Keep-alive', 'Comms name'].map((t) =>
            el('th', { text: t, class: t === 'Messages' ? 'num' : undefined }),
          ),
        ),
      ),
      body,
    ),
    el('p', { class: 'muted', text: `Newest activity first, ${PAGE_SIZE} a page, refreshed every 3 s.` }),
  );
  const sessionFilter = {};
  if (filter.agent) sessionFilter.agentId = filter.agent;
  if (filter.channel) sessionFilter.channelId = filter.channel;
  if (filter.active) sessionFilter.active = filter.active === 'true';
  if (filter.keep) sessionFilter.keepAlive = filter.keep === 'true';
  every(page, 3000, async () => {
    const { sessions, total } = await rpc('session.list', { filter: sessionFilter, limit: PAGE_SIZE, offset });
    body.replaceChildren(
      ...sessions.map((s) =>
        el(
          'tr',
          { 'data-session': s.key },
          el('td', { class: 'mono' }, el('a', { href: `#/sessions/${encodeURIComponent(s.key)}`, text: s.key })),
          el('td', { text: s.agentId }),
          el('td', { text: s.channelId || '—' }),
          el('td', { class: 'num', text: s.messageCount }),
          el('td', { text: `${age(s.lastActiveAt)} ago`, title: when(s.lastActiveAt) }),
          el('td', { text: s.active ? 'yes' : 'no' }),
          el('td', { text: s.keepAlive ? 'yes' : 'no' }),
          el('td', { text: s.commsName || '—' }),
        ),
      ),
    );
    if (!sessions.length) body.append(el('tr', {}, el('td', { colspan: 8, class: 'muted', text: 'No sessions match.' })));
    const last = offset + sessions.length;
    count.textContent = total ? `${offset + 1}–${last} of ${total}` : '0 of 0';
    next.disabled = last >= total;
  });
}

// ---- One session -------------------------------------------------------------------

function messageNode(row) {
  const role = row.role;
  let who = role;
  let kind = role;
  let text = '';
  if (role === 'block_assistant') {
    who = 'assistant';
    kind = 'assistant';
    const parts = [];
    for (const b of row.blocks || []) {
      if (b.block_type === 'text') parts.push(b.data.text);
      else if (b.block_type === 'tool_use') parts.push(`→ ${b.data.name}(${JSON.stringify(b.data.args)})`);
    }
    text = parts.join('\n');
    if (row.stop_reason === 'cancelled') who += ' (cancelled)';
  } else if (role === 'tool_results') {
    who = 'tool result';
    kind = 'tool';
    text = (row.results || []).map((r) => r.content).join('\n');
  } else {
    text = row.content ?? '';
  }
  return el(
    'div',
    { class: `msg ${kind}`, 'data-id': row.id },
    el('div', { class: 'who', text: `${who} · ${row.created_at ? new Date(row.created_at).toLocaleTimeString() : ''}` }),
    el('div', { class: 'text', text }),
  );
}

/** One run's steps as a timeline: a row a step (provider call, tool call, interceptor
 * decision) with a bar placed and sized by when it began and how long it took. */
function timelineNode(run) {
  const starts = run.steps.map((s) => s.started_ms);
  const ends = run.steps.map((s) => s.started_ms + s.duration_us / 1000);
  const from = Math.min(...starts);
  const span = Math.max(1, Math.max(...ends) - from);
  const rows = run.steps.map((s) => {
    const left = ((s.started_ms - from) / span) * 100;
    const width = Math.max(0.5, (s.duration_us / 1000 / span) * 100);
    const ok = ['ok', 'continue', 'modify'].includes(s.status);
    // Placed through the CSSOM: the page's CSP allows no style attributes.
    const bar = el('span', { class: 'bar' });
    bar.style.left = `${left}%`;
    bar.style.width = `${width}%`;
    return el('div', { class: `step ${s.kind}`, 'data-kind': s.kind, 'data-status': s.status },
      el('span', { class: 'kind', text: s.kind }),
      el('span', { class: 'name mono', text: s.name }),
      el('span', { class: ok ? 'status' : 'status bad', text: s.status, title: s.detail || '' }),
      el('span', { class: 'ms', text: `${(s.duration_us / 1000).toFixed(1)} ms` }),
      el('span', { class: 'track' }, bar));
  });
  const dropped = run.dropped ? el('p', { class: 'muted', text: `${run.dropped} more steps not kept.` }) : null;
  return el('div', { class: 'timeline', 'data-run': run.run_id },
    el('div', { class: 'who' }, 'run ', el('span', { class: 'mono', text: run.run_id }), ` · ${span.toFixed(1)} ms`),
    ...rows, dropped);
}

function sessionPage(main, page, _query, id) {
  const facts = el('dl', { class: 'facts' });
  const runs = el('div', { class: 'timelines', id: 'timelines' }, el('p', { class: 'muted', text: 'No run of this session is kept yet.' }));
  const transcript = el('div', { class: 'transcript', id: 'transcript' });
  const live = el('div', { class: 'msg assistant live', id: 'live', hidden: true }, el('div', { class: 'who', text: 'assistant · streaming' }), el('div', { class: 'text' }));
  const liveText = live.querySelector('.text');
  const runState = el('span', { class: 'runstate', id: 'runstate', text: 'idle' });
  const stream = el('span', { class: 'stream', id: 'stream', 'data-state': 'connecting', text: '○ connecting' });
  const input = el('textarea', { id: 'message', placeholder: 'A message to the session…' });
  const send = el('button', { class: 'primary', id: 'send', text: 'Send' });
  const cancel = el('button', { id: 'cancel', text: 'Cancel run', disabled: true });
  main.append(
    el('p', {}, el('a', { href: '#/sessions', text: '← Sessions' })),
    el('h1', {}, 'Session ', el('span', { class: 'mono', text: id })),
    el('section', { class: 'panel' }, facts),
    el('section', { class: 'panel', id: 'runs' }, el('h2', { text: 'Runs' }), runs),
    el('h2', {}, 'Transcript ', runState, ' ', stream),
    transcript,
    live,
    el('div', { class: 'composer' }, input, el('div', { class: 'actions' }, send, cancel)),
  );

  const showFacts = (d) => {
    const rows = [
      ['Agent model', `${d.provider} / ${d.model}`],
      ['Created', when(d.created_at * 1000)],
      ['Last activity', `${when(d.updated_at * 1000)} (${age(d.updated_at * 1000)} ago)`],
      ['Messages', d.message_count],
      ['Resident', d.is_active ? 'yes' : 'no'],
    ];
    if (d.labels) rows.push(['Labels', Object.entries(d.labels).map(([k, v]) => `${k}=${v}`).join(', ')]);
    facts.replaceChildren(...rows.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })]));
  };

  // Reads can overlap (an event during a read): only the latest one is shown.
  let reads = 0;
  const load = async () => {
    const mine = ++reads;
    const details = await rpc('session/read', { session_id: id });
    const offset = Math.max(0, details.message_count - TRANSCRIPT_TAIL);
    const page1 = await rpc('session/history', { session_id: id, offset, limit: TRANSCRIPT_TAIL });
    const kept = await rpc('run/timeline', { session_id: id });
    if (mine !== reads || page.stopped) return;
    showFacts(details);
    if (kept.runs.length) runs.replaceChildren(...kept.runs.slice(0, RUNS_SHOWN).map(timelineNode));
    const nodes = page1.messages.map(messageNode);
    if (offset > 0) nodes.unshift(el('p', { class: 'muted', text: `${offset} earlier messages not shown.` }));
    transcript.replaceChildren(...nodes);
  };
  const reload = () => load().then(() => report(null), report);

  const running = (on) => {
    runState.textContent = on ? 'run going…' : 'idle';
    runState.className = `runstate${on ? ' running' : ''}`;
    cancel.disabled = !on;
    if (!on) {
      live.hidden = true;
      liveText.textContent = '';
    }
  };

  // The session's events: deltas shown as they come, the transcript read again at ends.
  const events = new Events(`/sessions/${encodeURIComponent(id)}/events`);
  page.onStop(() => events.close());
  const on = (type, f) =>
    events.addEventListener(type, (e) => {
      try {
        f(JSON.parse(e.data).payload || {});
      } catch (err) {
        report(err);
      }
    });
  events.addEventListener('session_loaded', () => {
    stream.dataset.state = 'live';
    stream.textContent = '● live';
  });
  on('run_started', () => {
    running(true);
    liveText.textContent = '';
  });
  on('turn_started', () => running(true));
  on('text_delta', (p) => {
    running(true);
    live.hidden = false;
    liveText.textContent += p.delta || '';
  });
  on('text_complete', () => reload());
  on('tool_result_received', () => reload());
  const ended = () => reload().then(() => running(false));
  on('run_completed', ended);
  on('run_failed', ended);
  events.addEventListener('stream_truncated', () => reload());
  events.addEventListener('error', () => {
    // It reconnects by itself; say so while it does.
    stream.dataset.state = events.readyState === Events.CLOSED ? 'closed' : 'connecting';
    stream.textContent = events.readyState === Events.CLOSED ? '○ closed (reload the page)' : '○ reconnecting';
  });

  send.addEventListener('click', async () => {
    const text = input.value;
    if (!text.trim()) return;
    send.disabled = true;
    try {
      await rpc('comms/send', { session_id: id, kind: 'input', body: text });
      input.value = '';
      report(null);
      await reload();
    } catch (err) {
      report(err);
    } finally {
      send.disabled = false;
    }
  });
  cancel.addEventListener('click', async () => {
    try {
      await rpc('turn/interrupt', { session_id: id });
    } catch (err) {
      report(err);
    }
  });
  reload();
}

// ---- Kernel ------------------------------------------------------------------------

function kernelPage(main, page) {
  const facts = el('dl', { class: 'facts', id: 'kernel-facts' });
  const surfaces = el('tbody');
  const peers = el('div');
  const configFacts = el('dl', { class: 'facts' });
  const config = el('pre', { class: 'json', id: 'config' });
  main.append(
    el('h1', { text: 'Kernel' }),
    el('section', { class: 'panel' }, facts),
    el('h2', { text: 'Host surfaces' }),
    el('table', { class: 'list' }, el('thead', {}, el('tr', {}, el('th', { text: 'Surface' }), el('th', { text: 'Address' }))), surfaces),
    el('h2', { text: 'Trusted kernels' }),
    el('section', { class: 'panel' }, peers),
    el('h2', { text: 'Configuration in force' }),
    el('section', { class: 'panel' }, configFacts, config),
  );
  // Trusted kernels; `contacts` maps a kernel id to when it was last heard from (ms).
  const peerRows = (list, contacts) =>
    el(
      'table',
      { class: 'list' },
      el('thead', {}, el('tr', {}, ['Kernel', 'Name', 'Address', 'Last contact'].map((t) => el('th', { text: t })))),
      el(
        'tbody',
        {},
        list.map((b) => {
          const at = contacts[b.kernel_id];
          const contact = at
            ? el('td', { title: when(at), text: `${age(at)} ago` })
            : el('td', { class: 'muted', text: 'none since start' });
          return el('tr', { 'data-kernel': b.kernel_id || '' }, el('td', { class: 'mono', text: b.kernel_id || '—' }), el('td', { text: b.name || '—' }), el('td', { class: 'mono', text: b.address || '—' }), contact);
        }),
      ),
    );
  every(page, 5000, async () => {
    const info = await rpc('kernel.info');
    facts.replaceChildren(
      ...[
        ['Version', info.version],
        ['Protocol', info.protocolVersion],
        ['Started', `${when(info.startedAt)} (up ${age(info.startedAt)})`],
        ['Apps connected', info.apps],
        ['Sessions resident', info.sessions],
        ['Heartbeat interval', `${info.heartbeatIntervalMs} ms`],
      ].flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v, 'data-fact': k })]),
    );
    const endpoints = Object.entries(info.endpoints || {});
    surfaces.replaceChildren(
      el('tr', {}, el('td', { text: 'IPC socket' }), el('td', { class: 'muted', text: '(the local socket)' })),
      ...endpoints.map(([name, addr]) => el('tr', {}, el('td', { text: name }), el('td', { class: 'mono', text: addr }))),
    );
    try {
      const list = await rpc('peers.list');
      peers.replaceChildren(
        el('p', {}, 'This kernel: ', el('span', { class: 'mono', text: list.self ? `${list.self.name || ''} ${list.self.kernel_id || ''} ${list.self.address || ''}` : 'not listening for kernels' })),
        list.trusted.length ? peerRows(list.trusted, list.last_contact || {}) : el('p', { class: 'muted', text: 'No trusted kernels.' }),
      );
    } catch (err) {
      peers.replaceChildren(el('p', { class: 'muted', text: err.code === 'NOT_FOUND' ? 'The kernel channel is off (--comms-listen-tcp turns it on).' : err.message }));
    }
    const cfg = await rpc('kernel.config');
    configFacts.replaceChildren(
      el('dt', { text: 'File' }),
      el('dd', { class: 'mono', text: cfg.file || '(none: built-in defaults only)' }),
      el('dt', { text: 'Redacted' }),
      el('dd', { class: 'mono', text: cfg.redacted.length ? cfg.redacted.join(', ') : 'nothing' }),
    );
    config.textContent = JSON.stringify(cfg.config, null, 2);
  });
}

// ---- routing -----------------------------------------------------------------------

const routes = [
  [/^\/apps$/, 'apps', appsPage],
  [/^\/sessions$/, 'sessions', sessionsPage],
  [/^\/sessions\/([^/]+)$/, 'sessions', sessionPage],
  [/^\/hooks$/, 'hooks', hooksPage],
  [/^\/kernel$/, 'kernel', kernelPage],
];

let current = null;

function route() {
  const hash = location.hash.replace(/^#/, '') || '/apps';
  const [path, search] = hash.split('?');
  current?.stop();
  report(null);
  const main = document.getElementById('main');
  main.replaceChildren();
  current = new Page();
  for (const [pattern, nav, render] of routes) {
    const m = path.match(pattern);
    if (!m) continue;
    for (const a of document.querySelectorAll('nav a')) a.classList.toggle('current', a.dataset.nav === nav);
    document.title = `Burrow · ${nav}`;
    render(main, current, new URLSearchParams(search || ''), ...m.slice(1).map(decodeURIComponent));
    return;
  }
  main.append(el('p', { text: 'No such page. ' }, el('a', { href: '#/apps', text: 'Apps' })));
}

window.addEventListener('hashchange', route);
route();
