// Shared helpers for the roomcast end-to-end tests: start/stop a server process,
// talk to the HTTP API with a per-user cookie, and drive Socket.IO clients.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { io } from 'socket.io-client';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, '..', '..');
export const SERVER_BIN = process.env.ROOMCAST_BIN
  ? path.resolve(process.env.ROOMCAST_BIN)
  : path.join(REPO_ROOT, 'target', 'debug', 'roomcast');

// Timeouts and contract constants shared by all tests.
export const READY_TIMEOUT_MS = 20_000;
export const STOP_KILL_AFTER_MS = 15_000;
export const EVENT_TIMEOUT_MS = 5_000;
export const ACK_TIMEOUT_MS = 5_000;
export const PRESENCE_TIMEOUT_MS = 2_500;
export const QUIET_WINDOW_MS = 750;
export const TEST_TIMEOUT_MS = 60_000;
export const TRANSPORTS = ['websocket', 'polling'];
export const PASSWORD = 'Corr3ct-Horse-Battery-Staple!';
export const SESSION_COOKIE = 'roomcast.sid';
export const MAX_TEXT = 4096;
export const HISTORY_LIMIT_MAX = 100;
export const DEFAULT_RATE_BURST = 40;

// Environment variables that configure the server; inherited values are dropped so
// that every test server starts in embedded mode with exactly the settings given here.
const SERVER_ENV_KEYS = [
  'HOST', 'PORT', 'INSTANCE_ID', 'REDIS_URL', 'REDIS_CLUSTER_NODES', 'USE_REDIS_SESSIONS', 'SESSION_ENCRYPTION_KEY',
  'SESSION_ENCRYPTION_KEYS_OLD', 'SESSION_SECRET', 'SESSION_TTL_SECS', 'SESSION_REMEMBER_TTL_SECS',
  'DATABASE_URL', 'SHUTDOWN_TIMEOUT_SECS', 'ADMIN_TOKEN', 'LOG_FORMAT', 'RUST_LOG', 'CORS_ORIGINS',
  'MESSAGE_RATE_PER_SEC', 'MESSAGE_RATE_BURST', 'MAX_CONNECTIONS', 'CONNECTION_RATE_PER_IP',
  'CONNECTION_BURST_PER_IP', 'HTTP_BODY_LIMIT_BYTES', 'SOCKETIO_MAX_PAYLOAD_BYTES', 'LOGIN_MAX_FAILURES',
  'LOGIN_WINDOW_SECS', 'LOGIN_MAX_FAILURES_PER_IP', 'TRUST_PROXY', 'TRUST_PROXY_HOPS', 'REGISTER_RATE_PER_MIN',
  'REGISTER_RATE_BURST', 'ROOM_EVENT_RATE_PER_SEC', 'ROOM_EVENT_RATE_BURST', 'TYPING_RATE_PER_SEC',
  'TYPING_RATE_BURST', 'MAX_ROOMS_PER_SOCKET', 'MAX_EVENTS_IN_FLIGHT_PER_SOCKET', 'METRICS_TOKEN',
];

// Servers still running when the test process exits (a failed or aborted test) are killed
// and their temp dirs removed, so nothing outlives the run.
const runningChildren = new Map(); // child -> temp dir to remove, or null when the caller owns it
process.on('exit', () => {
  for (const [child, dir] of runningChildren) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
    if (dir) {
      try { rmSync(dir, { recursive: true, force: true }); } catch { /* best effort */ }
    }
  }
});

export const randomHex = (bytes = 6) => randomBytes(bytes).toString('hex');
export const uniqueName = (prefix = 'u') => `${prefix}_${randomHex(6)}`;
export const uniqueRoom = (prefix = 'room') => `${prefix}-${randomHex(5)}`;
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
/** Polls `predicate` until it holds; fails naming `what` once `timeoutMs` has passed. */
export async function until(predicate, what, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}
/** Fail with `what` if `promise` has not settled within `ms`. */
export async function within(ms, what, promise) {
  let timer;
  try {
    return await Promise.race([
      promise,
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms); }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
export const show = (value) => {
  try { return JSON.stringify(value); } catch { return String(value); }
};

const LISTENING_RE = /listening addr=(\S+)/;
// Strip terminal colour codes before parsing log lines.
// eslint-disable-next-line no-control-regex
const stripAnsi = (line) => line.replace(/\x1b\[[0-9;]*m/g, '');

/**
 * Start a roomcast server in embedded mode on a free port with a fresh SQLite database.
 * Resolves once GET /health/ready answers 200.
 *
 * With `dataDir`, the server runs in that directory and keeps its SQLite database there
 * (`<dataDir>/db.sqlite`), so a later server given the same dataDir sees the same data. The
 * caller owns that directory: it is never removed here.
 */
export async function startServer({ env = {}, dataDir } = {}) {
  const ownsDir = !dataDir;
  const tmpDir = dataDir ?? await mkdtemp(path.join(os.tmpdir(), 'roomcast-js-'));
  const removeDir = () => (ownsDir ? rm(tmpDir, { recursive: true, force: true }) : Promise.resolve());
  const adminToken = `admin-${randomHex(16)}`;
  const instanceId = `js-${randomHex(4)}`;
  const baseEnv = { ...process.env };
  for (const key of SERVER_ENV_KEYS) delete baseEnv[key];
  const childEnv = {
    ...baseEnv,
    HOST: '127.0.0.1',
    PORT: '0',
    DATABASE_URL: `sqlite://${path.join(tmpDir, 'db.sqlite')}`,
    SESSION_SECRET: randomHex(24),
    ADMIN_TOKEN: adminToken,
    INSTANCE_ID: instanceId,
    RUST_LOG: 'info',
    // Below STOP_KILL_AFTER_MS, so a server that honours it is never killed.
    SHUTDOWN_TIMEOUT_SECS: '10',
    // Every suite registers its users from 127.0.0.1; suites that test the registration
    // limit set it themselves.
    REGISTER_RATE_PER_MIN: '100000',
    REGISTER_RATE_BURST: '100000',
    ...env,
  };

  const lines = [];
  const child = spawn(SERVER_BIN, [], { cwd: tmpDir, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  runningChildren.set(child, ownsDir ? tmpDir : null);

  let exitInfo = null;
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      exitInfo = { code, signal };
      runningChildren.delete(child);
      resolve(exitInfo);
    });
  });
  let spawnError = null;
  child.once('error', (err) => { spawnError = err; });

  let resolveAddr;
  const addrSeen = new Promise((resolve) => { resolveAddr = resolve; });
  for (const [stream, name] of [[child.stdout, 'stdout'], [child.stderr, 'stderr']]) {
    const rl = readline.createInterface({ input: stream });
    rl.on('line', (line) => {
      lines.push({ stream, name, line, at: Date.now() });
      const match = LISTENING_RE.exec(stripAnsi(line));
      if (match) resolveAddr(match[1]);
    });
  }

  const logs = () => lines.map((entry) => entry.line);
  const logText = () => logs().join('\n');
  // A Rust panic prints "thread '...' panicked at <location>:" and its message on the next line.
  const panics = () => {
    const all = logs();
    return all.flatMap((line, i) => (/panicked at/.test(line) ? [all.slice(i, i + 2).join(' | ')] : []));
  };
  const fail = async (reason) => {
    if (!exitInfo) {
      child.kill('SIGKILL');
      await exited;
    }
    await removeDir();
    throw new Error(`${reason}\n--- server log (${SERVER_BIN}) ---\n${logText()}`);
  };

  const deadline = Date.now() + READY_TIMEOUT_MS;
  let addrTimer;
  const addr = await Promise.race([
    addrSeen,
    exited.then(() => null),
    new Promise((resolve) => { addrTimer = setTimeout(() => resolve(null), READY_TIMEOUT_MS); }),
  ]);
  clearTimeout(addrTimer);
  if (spawnError) await fail(`could not start ${SERVER_BIN}: ${spawnError.message}`);
  if (!addr) {
    await fail(exitInfo
      ? `server exited (code ${exitInfo.code}, signal ${exitInfo.signal}) before logging "listening addr="`
      : `server did not log "listening addr=" within ${READY_TIMEOUT_MS} ms`);
  }
  const url = `http://${addr}`;

  let lastReady = 'no answer';
  for (;;) {
    if (exitInfo) await fail(`server exited (code ${exitInfo.code}, signal ${exitInfo.signal}) before it was ready`);
    try {
      const res = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(2_000) });
      lastReady = `${res.status} ${await res.text()}`;
      if (res.status === 200) break;
    } catch (err) {
      lastReady = err.message;
    }
    if (Date.now() > deadline) {
      await fail(`GET /health/ready was not 200 within ${READY_TIMEOUT_MS} ms (last: ${lastReady})`);
    }
    await sleep(100);
  }

  let stopped = null;
  // Set when the process ends before stop() was called: a crash, or a signal from elsewhere.
  let unexpectedExit = null;
  exited.then((info) => { if (!stopped) unexpectedExit = info; });
  const stop = () => {
    if (!stopped) {
      stopped = (async () => {
        if (!exitInfo) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => { if (!exitInfo) child.kill('SIGKILL'); }, STOP_KILL_AFTER_MS);
          await exited;
          clearTimeout(timer);
        }
        await removeDir();
        return exitInfo.code;
      })();
    }
    return stopped;
  };

  return {
    url,
    adminToken,
    instanceId,
    pid: child.pid,
    dataDir: tmpDir,
    logs,
    logText,
    panics,
    exited,
    exitInfo: () => exitInfo,
    unexpectedExit: () => unexpectedExit,
    stop,
  };
}

// ---------------------------------------------------------------- HTTP

/** Call the HTTP API. Returns {status, headers, json, text}; json is null when the body is not JSON. */
export async function api(url, apiPath, { method = 'GET', body, cookie, headers = {}, timeoutMs = 10_000 } = {}) {
  const init = { method, headers: { ...headers }, signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' };
  if (cookie) init.headers.cookie = cookie;
  if (body !== undefined) {
    init.headers['content-type'] ??= 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const res = await fetch(`${url}${apiPath}`, init);
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  return { status: res.status, headers: res.headers, json, text };
}

/** Extract `roomcast.sid=<value>` from the set-cookie headers of a response, or null. */
export function sessionCookieFrom(headers) {
  const all = typeof headers.getSetCookie === 'function' ? headers.getSetCookie() : [headers.get('set-cookie') ?? ''];
  for (const header of all) {
    const pair = header.split(';')[0].trim();
    if (pair.startsWith(`${SESSION_COOKIE}=`)) return pair;
  }
  return null;
}

export async function register(url, username, password = PASSWORD) {
  const res = await api(url, '/api/auth/register', { method: 'POST', body: { username, password } });
  if (res.status !== 201) {
    throw new Error(`register ${username}: expected 201 {user}, got ${res.status} ${res.text}`);
  }
  return res.json.user;
}

/** Log in and return the session cookie string (`roomcast.sid=...`). */
export async function login(url, username, password = PASSWORD, { remember } = {}) {
  const body = { username, password };
  if (remember !== undefined) body.remember = remember;
  const res = await api(url, '/api/auth/login', { method: 'POST', body });
  if (res.status !== 200) {
    throw new Error(`login ${username}: expected 200 {user}, got ${res.status} ${res.text}`);
  }
  const cookie = sessionCookieFrom(res.headers);
  if (!cookie) {
    throw new Error(`login ${username}: expected a ${SESSION_COOKIE} set-cookie header, got ${show(res.headers.getSetCookie())}`);
  }
  return cookie;
}

/**
 * Register a fresh user and log in. The returned object is that user's cookie jar:
 * {id, username, password, cookie, api(path, opts), connect(transport, opts)}.
 */
export async function createUser(url, prefix = 'u') {
  const username = uniqueName(prefix);
  const user = await register(url, username, PASSWORD);
  const cookie = await login(url, username, PASSWORD);
  return {
    id: user.id,
    username,
    password: PASSWORD,
    cookie,
    api: (apiPath, opts = {}) => api(url, apiPath, { cookie, ...opts }),
    connect: (transport, opts = {}) => connect(url, cookie, { transport, ...opts }),
  };
}

export function adminEmit(server, body, token = server.adminToken) {
  const headers = token === null ? {} : { authorization: `Bearer ${token}` };
  return api(server.url, '/api/admin/emit', { method: 'POST', body, headers });
}

/** Poll GET /health/ready once and return its status code. */
export async function readyStatus(url) {
  const res = await api(url, '/health/ready');
  return res.status;
}

// ---------------------------------------------------------------- Socket.IO

const openSockets = new Set();

/**
 * Open a Socket.IO connection with the given cookie (or none). Resolves with the socket on
 * 'connect', rejects with the connect_error error otherwise.
 */
export function connect(url, cookie, { transport = 'websocket', timeoutMs = EVENT_TIMEOUT_MS } = {}) {
  const socket = io(url, {
    transports: [transport],
    extraHeaders: cookie ? { cookie } : {},
    reconnection: false,
    forceNew: true,
    timeout: timeoutMs,
  });
  openSockets.add(socket);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      socket.close();
      reject(new Error(`socket (${transport}) neither connected nor failed within ${timeoutMs} ms`));
    }, timeoutMs + 1_000);
    const onConnect = () => { cleanup(); resolve(socket); };
    const onError = (err) => { cleanup(); socket.close(); reject(err); };
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('connect', onConnect);
      socket.off('connect_error', onError);
    };
    socket.once('connect', onConnect);
    socket.once('connect_error', onError);
  });
}

/** Expect the connection to be refused; resolves with the connect_error error. */
export async function connectExpectingError(url, cookie, opts) {
  let socket;
  try {
    socket = await connect(url, cookie, opts);
  } catch (err) {
    return err;
  }
  const { id } = socket;
  socket.close();
  throw new Error(`expected connect_error, but the socket connected (id ${id}, cookie ${show(cookie)})`);
}

/** Close every socket opened through connect(). */
export function closeAllSockets() {
  for (const socket of openSockets) socket.close();
  openSockets.clear();
}

/** Sentinel for emitAck: send the event with no payload at all, only the ack callback. */
export const NO_PAYLOAD = Symbol('no payload');

export async function emitAck(socket, event, payload, timeoutMs = ACK_TIMEOUT_MS) {
  const args = payload === NO_PAYLOAD ? [] : [payload];
  try {
    return await socket.timeout(timeoutMs).emitWithAck(event, ...args);
  } catch (err) {
    throw new Error(`no ack for '${event}' ${payload === NO_PAYLOAD ? '(no payload)' : show(payload).slice(0, 200)} within ${timeoutMs} ms (${err.message})`);
  }
}

// Waiters are usually created before the action that triggers the event and awaited after
// it; if they fail in between, the failure is reported where they are awaited, not as an
// unhandled rejection.
const handledLater = (promise) => {
  promise.catch(() => {});
  return promise;
};

/**
 * Wait for the next `name` event (whose first argument matches predicate). The returned
 * promise has cancel(), which stops waiting and resolves it with undefined.
 */
export function nextEvent(socket, name, predicate = () => true, timeoutMs = EVENT_TIMEOUT_MS) {
  let cancel;
  const promise = handledLater(new Promise((resolve, reject) => {
    const seen = [];
    const finish = (settle, value) => {
      clearTimeout(timer);
      socket.off(name, handler);
      settle(value);
    };
    const handler = (...args) => {
      seen.push(args[0]);
      if (predicate(...args)) finish(resolve, args[0]);
    };
    const timer = setTimeout(() => finish(reject, new Error(`timed out after ${timeoutMs} ms waiting for '${name}'` +
      (seen.length ? `; got only non-matching ${show(seen).slice(0, 500)}` : '; none received'))), timeoutMs);
    cancel = () => finish(resolve, undefined);
    socket.on(name, handler);
  }));
  promise.cancel = cancel;
  return promise;
}

/** Record every `name` event (first argument) until stop() is called. */
export function collectEvents(socket, name) {
  const events = [];
  const handler = (payload) => events.push(payload);
  socket.on(name, handler);
  return {
    events,
    stop: () => socket.off(name, handler),
    /** Wait until predicate(events) holds, failing after timeoutMs. */
    async until(predicate, timeoutMs = EVENT_TIMEOUT_MS, what = 'condition') {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(events)) {
        if (Date.now() > deadline) {
          throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} on '${name}'; got ${events.length} event(s): ${show(events).slice(0, 800)}`);
        }
        await sleep(20);
      }
      return events;
    },
  };
}

/** Wait for the socket's 'disconnect' event; resolves with the reason. */
export function nextDisconnect(socket, timeoutMs = EVENT_TIMEOUT_MS) {
  return handledLater(new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off('disconnect', handler);
      reject(new Error(`socket was not disconnected within ${timeoutMs} ms`));
    }, timeoutMs);
    const handler = (reason) => { clearTimeout(timer); resolve(reason); };
    socket.once('disconnect', handler);
  }));
}

/** Join a room and assert the ack is ok; returns the ack. */
export async function join(socket, room) {
  const ack = await emitAck(socket, 'join', { room });
  if (!ack || ack.ok !== true) throw new Error(`join '${room}': expected {ok:true,...}, got ${show(ack)}`);
  return ack;
}

/** Send a message and assert the ack is ok; returns the ack. */
export async function say(socket, room, text) {
  const ack = await emitAck(socket, 'message', { room, text });
  if (!ack || ack.ok !== true) throw new Error(`message to '${room}': expected {ok:true,id,ts}, got ${show(ack)}`);
  return ack;
}

/** Describe an error ack's code for assertion messages. */
export const errorCode = (ack) => (ack && ack.ok === false && ack.error ? ack.error.code : undefined);
