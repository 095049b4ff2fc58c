// The dashboard's "Hooks & tools" page (loaded before app.js, whose helpers it uses when
// the page is shown): interceptors by event with their priority, fail mode and decisions,
// and tools by app with their calls, error rate and latency percentiles. The lists come
// from `kernel.hooks` and `kernel.capabilities`; the numbers from the kernel's own
// `GET /metrics` (Prometheus's text format), read here. Refreshed every 3 s.
'use strict';

/** The kernel's /metrics; a refusal throws as `rpc` does (with its `status` and the
 * token it was asked with, so a 401 shows the login form). */
async function metricsText() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const response = await authorizedFetch('/metrics');
  if (!response.ok) {
    throw Object.assign(new Error(`/metrics: HTTP ${response.status}`), { status: response.status, token });
  }
  return response.text();
}

/** Prometheus text as samples: `{name, labels, value}`. */
function parseMetrics(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, '$1');
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

/** The samples named `name` whose labels include `want`. */
function pick(samples, name, want) {
  return samples.filter((s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v));
}

const sum = (xs) => xs.reduce((a, s) => a + s.value, 0);

/** The `q` quantile (0..1) of histogram `name` for `want`, in ms, read off its
 * cumulative buckets (the upper bound of the bucket it falls in); null when empty. */
function quantileMs(samples, name, want, q) {
  const buckets = pick(samples, `${name}_bucket`, want)
    .map((s) => ({ le: s.labels.le === '+Inf' ? Infinity : Number(s.labels.le), n: s.value }))
    .sort((a, b) => a.le - b.le);
  const total = buckets.length ? buckets[buckets.length - 1].n : 0;
  if (!total) return null;
  const found = buckets.find((b) => b.n >= q * total);
  return found ? found.le * 1000 : null;
}

const ms = (v) => (v === null ? '–' : v === Infinity ? '> 600 s' : v < 1 ? `≤ ${v.toFixed(3)} ms` : `≤ ${v.toFixed(v < 10 ? 1 : 0)} ms`);

function hooksPage(main, page) {
  const interceptors = el('tbody');
  const tools = el('tbody');
  const head = (...names) => el('thead', {}, el('tr', {}, ...names.map((n) => el('th', { text: n }))));
  main.append(
    el('h1', { text: 'Hooks & tools' }),
    el('h2', { text: 'Interceptors' }),
    el('table', { class: 'list', id: 'interceptors' }, head('Event', 'App', 'Priority', 'Fail mode', 'Decisions', 'p50', 'p95'), interceptors),
    el('h2', { text: 'Tools' }),
    el('table', { class: 'list', id: 'tools' }, head('Tool', 'App', 'Calls', 'Errors', 'p50', 'p95', 'p99'), tools),
    el('p', { class: 'muted', text: 'Counts since the kernel started (its /metrics); latencies are read off histogram buckets (their upper bounds). Refreshed every 3 s.' }),
  );
  every(page, 3000, async () => {
    const [hooks, caps, text] = await Promise.all([
      rpc('kernel.hooks'),
      rpc('kernel.capabilities', { type: 'tool' }),
      metricsText(),
    ]);
    if (page.stopped) return;
    const samples = parseMetrics(text);
    const hookRows = hooks.interceptors.map((h) => {
      const want = { event: h.event, app: h.appId };
      const decisions = pick(samples, 'burrow_interceptions_total', want)
        .map((s) => `${s.labels.decision} ${s.value}`)
        .join(', ');
      const q = (x) => ms(quantileMs(samples, 'burrow_interception_duration_seconds', want, x));
      return el('tr', { 'data-event': h.event, 'data-app': h.appId },
        el('td', { class: 'mono', text: h.event }), el('td', { text: h.appId }),
        el('td', { text: h.priority }), el('td', { text: h.failMode }),
        el('td', { class: 'decisions', text: decisions || 'none yet' }), el('td', { text: q(0.5) }), el('td', { text: q(0.95) }));
    });
    interceptors.replaceChildren(...(hookRows.length ? hookRows : [el('tr', {}, el('td', { colspan: 7, class: 'muted', text: 'No interceptor is registered.' }))]));
    const toolRows = caps.capabilities.map((c) => {
      const name = c.config.name;
      const calls = sum(pick(samples, 'burrow_tool_calls_total', { tool: name }));
      const errors = calls - sum(pick(samples, 'burrow_tool_calls_total', { tool: name, outcome: 'ok' }));
      const q = (x) => ms(quantileMs(samples, 'burrow_tool_call_duration_seconds', { tool: name }, x));
      const rate = calls ? `${errors} (${Math.round((errors / calls) * 100)}%)` : '0';
      return el('tr', { 'data-tool': name },
        el('td', { class: 'mono', text: name }), el('td', { text: c.appId }),
        el('td', { class: 'calls', text: calls }), el('td', { class: 'errors', text: rate }),
        el('td', { text: q(0.5) }), el('td', { text: q(0.95) }), el('td', { text: q(0.99) }));
    });
    tools.replaceChildren(...(toolRows.length ? toolRows : [el('tr', {}, el('td', { colspan: 7, class: 'muted', text: 'No tool is registered.' }))]));
  });
}
