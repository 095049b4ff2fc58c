// The dashboard's wire (loaded before stats.js and app.js, which use it): host methods
// over `POST /rpc`, and server-sent events read with `fetch`, each request carrying the
// host token the page was given (if any) as `Authorization: Bearer`.
'use strict';

let rpcId = 0;

// A kernel with host tokens wants one on every request: the page asks for it (the login
// form in the header) and keeps it for the tab's life only.
const TOKEN_KEY = 'burrow.token';

/** `fetch` with the host token, if one was given, as `Authorization: Bearer`. */
function authorizedFetch(url, init = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = new Headers(init.headers || {});
  if (token) headers.set('authorization', `Bearer ${token}`);
  return fetch(url, { ...init, headers });
}

/** Calls host method `method`; its result, or throws an Error with `code`, `data` and
 * (for the surface's own refusals) `status`. */
async function rpc(method, params = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const response = await authorizedFetch('/rpc', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: ++rpcId, method, params }),
  });
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw Object.assign(new Error(`HTTP ${response.status}: ${text.slice(0, 200)}`), { status: response.status, token });
  }
  if (!response.ok && !body.error?.message) {
    // The surface's own errors (401, 403, 503): {error, code, details}.
    const err = new Error(body.error || `HTTP ${response.status}`);
    err.code = body.code;
    err.status = response.status;
    err.token = token;
    throw err;
  }
  if (body.error) {
    const err = new Error(typeof body.error === 'string' ? body.error : body.error.message);
    err.code = body.error.code ?? body.code;
    err.data = body.error.data;
    throw err;
  }
  return body.result;
}

/** Server-sent events read with `fetch` (so the host token goes in a header, which
 * `EventSource` cannot send), with the part of `EventSource`'s interface the pages use:
 * `addEventListener(type, f)` (f gets `{data}`), `close()`, `readyState`. As with
 * `EventSource`, an answer other than 200 closes it for good (`error`, then `readyState
 * === Events.CLOSED`; its `status` says which), and a stream that ends or breaks is
 * opened again after RETRY_MS (`error` with `readyState === Events.CONNECTING`). */
class Events {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 2;
  static RETRY_MS = 3000;

  constructor(url) {
    this.url = url;
    this.readyState = Events.CONNECTING;
    this.listeners = new Map();
    this.aborter = null;
    this.status = 0;
    this.open();
  }

  addEventListener(type, f) {
    if (!this.listeners.has(type)) this.listeners.set(type, []);
    this.listeners.get(type).push(f);
  }

  close() {
    this.readyState = Events.CLOSED;
    this.aborter?.abort();
  }

  /** Calls `type`'s listeners; one that throws is reported (as an error on the console)
   * and the others, and the stream, go on. */
  emit(type, event) {
    for (const f of this.listeners.get(type) || []) {
      try {
        f(event);
      } catch (err) {
        console.error(err);
      }
    }
  }

  async open() {
    this.aborter = new AbortController();
    try {
      const response = await authorizedFetch(this.url, { signal: this.aborter.signal });
      this.status = response.status;
      if (!response.ok) {
        this.readyState = Events.CLOSED;
        response.body?.cancel();
        this.emit('error', { status: response.status });
        return;
      }
      this.readyState = Events.OPEN;
      this.emit('open', {});
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffered = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        // Line ends as LF; a CR ending this read may be half of a CRLF: kept for the next.
        buffered += value;
        const cr = buffered.endsWith('\r') ? '\r' : '';
        let text = (cr ? buffered.slice(0, -1) : buffered).replace(/\r\n?/g, '\n');
        let end;
        while ((end = text.indexOf('\n\n')) >= 0 && this.readyState !== Events.CLOSED) {
          this.dispatch(text.slice(0, end));
          text = text.slice(end + 2);
        }
        buffered = text + cr;
      }
    } catch {
      // Aborted by close(), or the connection broke: as an end.
    }
    if (this.readyState === Events.CLOSED) return;
    // Whatever ended it, the response is let go before another is asked for.
    this.aborter.abort();
    this.readyState = Events.CONNECTING;
    this.emit('error', {});
    setTimeout(() => {
      if (this.readyState !== Events.CLOSED) this.open();
    }, Events.RETRY_MS);
  }

  /** One event's block of lines: `event:` names it, `data:` lines make its data,
   * lines starting with `:` are comments (keep-alives). */
  dispatch(block) {
    let type = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') type = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length) this.emit(type, { data: data.join('\n') });
  }
}
