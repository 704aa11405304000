// A tiny HTTP + WebSocket reverse proxy that plays the load balancer in the browser tests.
//
// Each proxy has an ordered list of backends and a preferred one (changeable at any time with
// prefer()). A request goes to the preferred backend first; when that backend refuses the
// connection, drops it before answering, or answers 503, the request is replayed to the next
// one. That is what a load balancer does with a draining instance, so a page that reconnects
// through the same origin lands on "the other instance".
//
// Plain HTTP requests are buffered (the app's bodies are small) so they can be replayed; each
// goes over a fresh upstream connection, so no pooled connection to a dead backend is reused.
// `Upgrade` requests (WebSocket) are tunnelled as raw TCP: the request head is written to the
// backend, its response head is read to decide (503 -> next backend), and from then on bytes
// are piped both ways. The Host header is passed through unchanged, so the server's same-origin
// check sees the origin the browser used.
//
// Engine.IO sessions are sticky, as every Socket.IO deployment behind a load balancer must be:
// the proxy reads the session id from each handshake's answer, and later requests of that
// session (polls, posts, the WebSocket upgrade; `?sid=`) go to the backend that opened it,
// with no fallback (a session lives on one instance; when that one is gone the client opens a
// new session, which goes the usual way). With `blockWebSocket` the proxy refuses every
// WebSocket upgrade (403), like a corporate proxy or network that only lets plain HTTP pass.
import http from 'node:http';
import net from 'node:net';

const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade',
]);
const MAX_HEAD_BYTES = 64 * 1024;
// Longer than the server's ping interval (25 s): an idle long-poll waits that long for a ping.
const UPSTREAM_TIMEOUT_MS = 60_000;
const MAX_HANDSHAKE_BYTES = 64 * 1024;

/** A backend that should be skipped: refused, reset before answering, or `503`. */
class Unavailable extends Error {}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function forwardHeaders(headers, bodyLength) {
  const out = {};
  for (const [key, value] of Object.entries(headers)) {
    if (!HOP_BY_HOP.has(key)) out[key] = value;
  }
  if (bodyLength > 0) out['content-length'] = String(bodyLength);
  else delete out['content-length'];
  return out;
}

/** One attempt at one backend; resolves with the upstream response or rejects with Unavailable. */
function requestOnce(backend, req, body, canFallThrough) {
  return new Promise((resolve, reject) => {
    const upstream = http.request({
      host: backend.host,
      port: backend.port,
      method: req.method,
      path: req.url,
      headers: forwardHeaders(req.headers, body.length),
      agent: false,
      timeout: UPSTREAM_TIMEOUT_MS,
    });
    upstream.once('response', (res) => {
      if (res.statusCode === 503 && canFallThrough) {
        res.resume();
        reject(new Unavailable(`${backend.name} answered 503`));
        return;
      }
      resolve(res);
    });
    upstream.once('timeout', () => upstream.destroy(new Error(`${backend.name} did not answer within ${UPSTREAM_TIMEOUT_MS} ms`)));
    upstream.once('error', (err) => reject(new Unavailable(`${backend.name}: ${err.code ?? err.message}`)));
    upstream.end(body);
  });
}

/** The Engine.IO session id a request belongs to (`sid` query parameter), or null. */
function sessionOf(req) {
  if (!req.url.startsWith('/socket.io/')) return null;
  return new URL(req.url, 'http://proxy').searchParams.get('sid');
}

/** A long-polling handshake: an Engine.IO request without a session id. */
function isHandshake(req) {
  return req.url.startsWith('/socket.io/') && sessionOf(req) === null;
}

/** The `sid` of an Engine.IO open packet (`0{"sid": …}`) at the start of a polling answer. */
function sessionFromOpen(body) {
  const text = body.toString('utf8');
  if (!text.startsWith('0')) return null;
  try {
    const end = text.indexOf('\x1e');
    return JSON.parse(end < 0 ? text.slice(1) : text.slice(1, end)).sid ?? null;
  } catch {
    return null;
  }
}

function rawRequestHead(req) {
  const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
  for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/**
 * Start a proxy on 127.0.0.1 (free port).
 * @param {{backends: {name: string, url: string}[], prefer?: string, blockWebSocket?: boolean}} options
 *   backends in fallback order; `prefer` names the one tried first (default: the first);
 *   `blockWebSocket` refuses every WebSocket upgrade with 403.
 * @returns {Promise<{url, prefer(name), preferred(), tunnels(), sessions(), log, close()}>}
 *   tunnels() lists the backend names of the open WebSocket tunnels; sessions() maps each
 *   Engine.IO session id seen to its backend; log records each request as
 *   {kind, path, backend, status} (backend null when none could serve it).
 */
export async function startProxy({ backends, prefer, blockWebSocket = false } = {}) {
  const targets = backends.map(({ name, url }) => {
    const parsed = new URL(url);
    return { name, host: parsed.hostname, port: Number(parsed.port) };
  });
  const byName = (name) => {
    const index = targets.findIndex((t) => t.name === name);
    if (index < 0) throw new Error(`unknown backend ${name}; expected one of ${targets.map((t) => t.name).join(', ')}`);
    return index;
  };
  let preferred = prefer === undefined ? 0 : byName(prefer);
  const order = () => [targets[preferred], ...targets.filter((_, i) => i !== preferred)];
  const sessions = new Map(); // Engine.IO sid -> backend name
  /** The backends to try for `req`: the session's own one, or all in order of preference. */
  const candidatesFor = (req) => {
    const owner = sessions.get(sessionOf(req));
    return owner ? [targets[byName(owner)]] : order();
  };
  const log = [];
  const tunnels = new Set(); // {backend, client, upstream}
  const sockets = new Set(); // every client connection, for close()
  let offline = false; // while set, every request and connection is cut (network loss)
  let blocked = blockWebSocket; // while set, WebSocket upgrades are refused

  const server = http.createServer(async (req, res) => {
    if (offline) {
      res.destroy();
      return;
    }
    let body;
    try {
      body = await readBody(req);
    } catch {
      res.destroy();
      return;
    }
    const candidates = candidatesFor(req);
    const failures = [];
    for (const [i, backend] of candidates.entries()) {
      let upstream;
      try {
        upstream = await requestOnce(backend, req, body, i < candidates.length - 1);
      } catch (err) {
        failures.push(err.message);
        continue;
      }
      log.push({ kind: 'http', method: req.method, path: req.url, backend: backend.name, status: upstream.statusCode });
      if (isHandshake(req) && upstream.statusCode === 200) {
        // Read the open packet to learn the session id, then pass the answer on unchanged.
        let answer;
        try {
          answer = await readBody(upstream);
        } catch {
          res.destroy();
          return;
        }
        if (answer.length <= MAX_HANDSHAKE_BYTES) {
          const sid = sessionFromOpen(answer);
          if (sid) sessions.set(sid, backend.name);
        }
        res.writeHead(upstream.statusCode, forwardHeaders(upstream.headers, answer.length));
        res.end(answer);
        return;
      }
      res.writeHead(upstream.statusCode, forwardHeaders(upstream.headers, 0));
      upstream.pipe(res);
      upstream.once('error', () => res.destroy());
      return;
    }
    log.push({ kind: 'http', method: req.method, path: req.url, backend: null, status: 502 });
    res.writeHead(502, { 'content-type': 'text/plain' });
    res.end(`no backend could serve the request: ${failures.join('; ')}`);
  });

  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  server.on('upgrade', (req, client, head) => {
    client.on('error', () => {});
    if (offline) {
      client.destroy();
      return;
    }
    if (blocked) {
      log.push({ kind: 'upgrade', path: req.url, backend: null, status: 403 });
      client.end('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 24\r\nConnection: close\r\n\r\nWebSocket is not allowed');
      return;
    }
    const candidates = candidatesFor(req);
    const failures = [];
    const attempt = (i) => {
      if (client.destroyed) return;
      if (i >= candidates.length) {
        log.push({ kind: 'upgrade', path: req.url, backend: null, status: 502 });
        client.end(`HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nno backend: ${failures.join('; ')}`);
        return;
      }
      const backend = candidates[i];
      const upstream = net.connect({ host: backend.host, port: backend.port });
      let decided = false;
      let skipped = false;
      let buffered = Buffer.alloc(0);
      const skip = (why) => {
        if (decided || skipped) return;
        skipped = true;
        failures.push(`${backend.name}: ${why}`);
        upstream.destroy();
        attempt(i + 1);
      };
      upstream.setTimeout(UPSTREAM_TIMEOUT_MS, () => (decided ? upstream.destroy() : skip('timeout')));
      upstream.once('connect', () => {
        upstream.write(rawRequestHead(req));
        if (head.length) upstream.write(head);
      });
      const onData = (chunk) => {
        buffered = Buffer.concat([buffered, chunk]);
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) {
          if (buffered.length > MAX_HEAD_BYTES) skip('response head too large');
          return;
        }
        const status = Number(buffered.toString('latin1', 0, end).split(' ')[1]);
        if (status === 503 && i < candidates.length - 1) {
          skip('answered 503');
          return;
        }
        decided = true;
        upstream.off('data', onData);
        upstream.setTimeout(0);
        log.push({ kind: 'upgrade', path: req.url, backend: backend.name, status });
        client.write(buffered);
        const tunnel = { backend: backend.name, client, upstream };
        tunnels.add(tunnel);
        const done = () => {
          tunnels.delete(tunnel);
          client.destroy();
          upstream.destroy();
        };
        upstream.once('close', done);
        client.once('close', done);
        upstream.pipe(client);
        client.pipe(upstream);
      };
      upstream.on('data', onData);
      upstream.on('error', (err) => {
        if (!decided) skip(err.code ?? err.message);
      });
      upstream.once('close', () => {
        if (!decided) skip('closed before answering');
      });
    };
    attempt(0);
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();

  return {
    url: `http://127.0.0.1:${port}`,
    /** Route new requests and connections to this backend first (open tunnels stay where they are). */
    prefer(name) { preferred = byName(name); },
    preferred: () => targets[preferred].name,
    tunnels: () => [...tunnels].map((t) => t.backend),
    sessions: () => new Map(sessions),
    /** Refuse (true) or pass (false) WebSocket upgrades from now on. */
    blockWebSocket(on) { blocked = on; },
    /**
     * Network loss: cut the open tunnels, the pending requests (long-polls) and every new
     * request until online().
     */
    offline() {
      offline = true;
      for (const tunnel of tunnels) {
        tunnel.client.destroy();
        tunnel.upstream.destroy();
      }
      for (const socket of sockets) socket.destroy();
    },
    online() { offline = false; },
    log,
    async close() {
      for (const tunnel of tunnels) {
        tunnel.client.destroy();
        tunnel.upstream.destroy();
      }
      tunnels.clear();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
