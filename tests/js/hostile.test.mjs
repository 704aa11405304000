// Hostile and broken clients against one embedded roomcast server (SPEC: "Bad input … gets an
// error ack or a disconnect, never a panic, and never affects other sockets"). Every bad
// client must get an error ack, a close of its own connection or a clear 4xx, never a hang;
// afterwards the server is still ready, a fresh good client still connects, joins and
// messages, the good clients that were connected all along were not disturbed, and the
// server log shows no panic.
//
// Raw Engine.IO v4 / Socket.IO v5 frames are sent with `ws` (WebSocket) and `fetch`
// (long-polling) where the official client would refuse to produce them.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, afterEach, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import {
  ACK_TIMEOUT_MS, EVENT_TIMEOUT_MS, QUIET_WINDOW_MS, SESSION_COOKIE, TEST_TIMEOUT_MS, TRANSPORTS,
  adminEmit, api, closeAllSockets, collectEvents, connect, connectExpectingError, createUser, emitAck,
  errorCode, join, login, nextDisconnect, nextEvent, randomHex, readyStatus, say, sessionCookieFrom, show,
  sleep, startServer, uniqueRoom,
} from './harness.mjs';

const WS_PATH = '/socket.io/?EIO=4&transport=websocket';
const POLLING_PATH = '/socket.io/?EIO=4&transport=polling';
// The server's limits (SPEC defaults; see also socketioxide's configuration in the server).
const MAX_PAYLOAD = 65_536;
const CONNECT_TIMEOUT_MS = 10_000;
const BINARY_COMPLETION_TIMEOUT_MS = 5_000;
// Bounded waits for the raw clients: an answer or a close must come well within these.
const RAW_TIMEOUT_MS = 3_000;
const CONNECT_TIMEOUT_BOUND_MS = CONNECT_TIMEOUT_MS + 5_000;
// SESSION_TTL_SECS of the second server; its sessions are left idle for EXPIRY_WAIT_MS.
const SHORT_TTL_SECS = 2;
const EXPIRY_WAIT_MS = SHORT_TTL_SECS * 1_000 + 1_500;

const ERROR_ACK_CODES = [
  'invalid_payload', 'invalid_room', 'invalid_text', 'not_in_room', 'rate_limited', 'unavailable', 'unknown_event', 'internal',
];

/** Whether `ack` is a well-formed error ack {ok:false, error:{code, message}} (with one of `codes`). */
const isErrorAck = (ack, codes = ERROR_ACK_CODES) => ack?.ok === false && codes.includes(errorCode(ack))
  && typeof ack.error.message === 'string';

/** A JSON text of `depth` nested arrays (`[[[…]]]`) or objects (`{"a":{"a":…}}`). */
const nestedJson = (depth, kind = 'array') => (kind === 'array'
  ? `${'['.repeat(depth)}${']'.repeat(depth)}`
  : `${'{"a":'.repeat(depth)}0${'}'.repeat(depth)}`);

/** The Socket.IO placeholder of binary attachment `num`. */
const placeholder = (num) => ({ _placeholder: true, num });

// ---------------------------------------------------------------- raw Engine.IO over WebSocket

const rawSockets = new Set();

/**
 * A raw Engine.IO v4 WebSocket client. It answers the server's pings and records every other
 * packet (text as string, binary as Buffer); waitFor() reads them in order.
 */
class RawSocket {
  constructor(url, cookie) {
    this.received = [];
    this.cursor = 0;
    this.closeInfo = null;
    this.error = null;
    this.ws = new WebSocket(`${url.replace(/^http/, 'ws')}${WS_PATH}`, {
      headers: cookie ? { cookie } : {},
      handshakeTimeout: RAW_TIMEOUT_MS,
      perMessageDeflate: false,
    });
    this.ws.on('message', (data, isBinary) => {
      const packet = isBinary ? Buffer.from(data) : data.toString();
      if (packet === '2') {
        this.send('3');
        return;
      }
      this.received.push(packet);
    });
    this.ws.on('error', (err) => { this.error = err; });
    this.closed = new Promise((resolve) => {
      this.ws.once('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        resolve(this.closeInfo);
      });
    });
    rawSockets.add(this);
  }

  /** Open a connection and wait for the Engine.IO open packet; returns the socket. */
  static async open(url, cookie) {
    const raw = new RawSocket(url, cookie);
    const got = await raw.waitFor((p) => typeof p === 'string' && p.startsWith('0{'), 'the Engine.IO open packet');
    if (!got.packet) throw new Error(`raw WebSocket: expected the Engine.IO open packet, got ${raw.describe()}`);
    raw.handshake = JSON.parse(got.packet.slice(1));
    return raw;
  }

  /** Open a connection and complete the Socket.IO CONNECT to `/`. */
  static async connected(url, cookie) {
    const raw = await RawSocket.open(url, cookie);
    raw.send('40');
    const got = await raw.waitFor((p) => typeof p === 'string' && /^4[04]/.test(p), 'the CONNECT answer');
    if (!got.packet?.startsWith('40{')) throw new Error(`raw WebSocket CONNECT: expected 40{sid}, got ${raw.describe()}`);
    return raw;
  }

  get isOpen() { return this.ws.readyState === WebSocket.OPEN; }

  /** Send a text frame (string), a binary frame (Buffer) or `{data, binary}`; ignored once closed. */
  send(frame) {
    if (!this.isOpen) return;
    if (typeof frame === 'string') this.ws.send(frame);
    else if (Buffer.isBuffer(frame)) this.ws.send(frame, { binary: true });
    else this.ws.send(frame.data, { binary: frame.binary });
  }

  /**
   * The next packet matching predicate ({packet}), or {closed} when the connection closes
   * first. Fails when neither happens within timeoutMs: the server hung.
   */
  async waitFor(predicate, what, timeoutMs = RAW_TIMEOUT_MS) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.cursor < this.received.length) {
        const packet = this.received[this.cursor];
        this.cursor += 1;
        if (predicate(packet)) return { packet };
      }
      if (this.closeInfo) return { closed: this.closeInfo };
      if (Date.now() > deadline) {
        throw new Error(`raw WebSocket: neither ${what} nor a close within ${timeoutMs} ms; ${this.describe()}`);
      }
      await sleep(10);
    }
  }

  /** Wait for the close of the connection; fails after timeoutMs. */
  async waitClosed(what, timeoutMs = RAW_TIMEOUT_MS) {
    let timer;
    const timeout = new Promise((resolve) => { timer = setTimeout(() => resolve(null), timeoutMs); });
    const info = await Promise.race([this.closed, timeout]);
    clearTimeout(timer);
    if (!info) throw new Error(`${what}: expected the server to close the connection within ${timeoutMs} ms; ${this.describe()}`);
    return info;
  }

  describe() {
    const packets = this.received.map((p) => (Buffer.isBuffer(p) ? `<binary ${p.length} bytes>` : p.slice(0, 120)));
    const state = this.closeInfo ? `closed ${show(this.closeInfo)}` : `open (readyState ${this.ws.readyState})`;
    return `received ${show(packets)}; ${state}${this.error ? `; error ${this.error.message}` : ''}`;
  }

  close() {
    this.ws.terminate();
    rawSockets.delete(this);
  }
}

function closeRawSockets() {
  for (const raw of rawSockets) raw.close();
  rawSockets.clear();
}

let ackIds = 100;
/**
 * Send EVENT `[event, ...args]` with a fresh ack id as raw text; resolves with {ack} (the
 * first ack argument) or {closed}.
 */
async function rawEmit(raw, packetText, what, timeoutMs = RAW_TIMEOUT_MS) {
  ackIds += 1;
  const id = ackIds;
  raw.send(packetText(id));
  const got = await raw.waitFor((p) => typeof p === 'string' && p.startsWith(`43${id}[`), `the ack of ${what}`, timeoutMs);
  return got.packet ? { ack: JSON.parse(got.packet.slice(`43${id}`.length))[0] } : got;
}

/** `42<id>["join",{"room":…}]` as raw text: a join probe that must be acked ok on a working socket. */
const joinPacket = (room) => (id) => `42${id}${JSON.stringify(['join', { room }])}`;

/**
 * After garbage on `raw`: the server either closed the connection, or it still works. For a
 * connection that had not sent CONNECT yet, CONNECT must then succeed; for a connected one a
 * join must be acked ok. Returns 'closed' or 'working'.
 */
async function closedOrWorking(raw, stage, what) {
  if (stage === 'before') {
    raw.send('40');
    const got = await raw.waitFor((p) => typeof p === 'string' && /^4[04]/.test(p) && !p.startsWith('44/'), `the CONNECT answer after ${what}`);
    if (got.closed) return 'closed';
    assert.ok(got.packet.startsWith('40{'), `${what}, then CONNECT: expected 40{sid} (or a close), got ${raw.describe()}`);
  }
  const room = uniqueRoom('probe');
  const probe = await rawEmit(raw, joinPacket(room), `a join after ${what}`);
  // An Engine.IO close packet (`1`) from the server means it closed the session; a probe that
  // raced ahead of the close on the wire may still have been answered.
  if (probe.closed || raw.received.includes('1')) return 'closed';
  assert.equal(probe.ack?.ok, true, `${what}, then join: expected {ok:true} (or a close), got ${show(probe.ack)}`);
  return 'working';
}

// ---------------------------------------------------------------- raw long-polling

/** One Engine.IO polling request; answers {status, text, headers}. Fails after timeoutMs: the server hung. */
async function poll(url, query, { method = 'GET', body, cookie, timeoutMs = RAW_TIMEOUT_MS } = {}) {
  const headers = cookie ? { cookie } : {};
  if (body !== undefined) headers['content-type'] = 'text/plain;charset=UTF-8';
  try {
    const res = await fetch(`${url}/socket.io/?${query}`, { method, body, headers, signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.status, text: await res.text(), headers: res.headers };
  } catch (err) {
    throw new Error(`${method} /socket.io/?${query}: no answer within ${timeoutMs} ms (${err.message})`);
  }
}

/**
 * Polling handshake and CONNECT; returns the Engine.IO sid of a connected polling session
 * with nothing left to read (a ping that came with the CONNECT answer is answered).
 */
async function pollingSession(url, cookie) {
  const query = POLLING_PATH.split('?')[1];
  const open = await poll(url, query, { cookie });
  assert.equal(open.status, 200, `polling handshake: expected 200, got ${open.status} ${open.text}`);
  const { sid } = JSON.parse(open.text.slice(1));
  const sent = await poll(url, `${query}&sid=${sid}`, { method: 'POST', body: '40', cookie });
  assert.equal(sent.status, 200, `polling CONNECT: expected 200, got ${sent.status} ${sent.text}`);
  const seen = [];
  while (!seen.some((p) => p.startsWith('40{'))) {
    const answer = await poll(url, `${query}&sid=${sid}`, { cookie });
    assert.equal(answer.status, 200, `polling CONNECT: expected 200 and a 40{sid} packet, got ${answer.status} ${show(answer.text)} after ${show(seen)}`);
    seen.push(...answer.text.split('\x1e'));
  }
  if (seen.includes('2')) await poll(url, `${query}&sid=${sid}`, { method: 'POST', body: '3', cookie });
  return sid;
}

// ---------------------------------------------------------------- the official client

/** Emit with an ack; resolves {ack} or {disconnected: reason}, fails when neither comes in time. */
async function ackOrDisconnect(socket, event, payload, timeoutMs = ACK_TIMEOUT_MS) {
  if (!socket.connected) return { disconnected: 'already disconnected' };
  const dropped = nextDisconnect(socket, timeoutMs).then((reason) => ({ disconnected: reason }));
  const answered = socket.timeout(timeoutMs).emitWithAck(event, payload).then((ack) => ({ ack }), () => null);
  const outcome = await Promise.race([answered.then((r) => r ?? dropped), dropped]).catch(() => null);
  if (!outcome) {
    throw new Error(`'${event}' ${show(payload).slice(0, 100)}: expected an error ack or a disconnect within ${timeoutMs} ms, got neither`);
  }
  return outcome;
}

// ---------------------------------------------------------------- the test server

let server;
const extraServers = [];

before(async () => {
  server = await startServer();
});

afterEach(() => {
  closeRawSockets();
  closeAllSockets();
});

after(async () => {
  closeRawSockets();
  closeAllSockets();
  const problems = [];
  for (const [what, srv] of [['the server', server], ...extraServers.map((s) => ['the second server', s])]) {
    if (!srv) continue;
    const code = await srv.stop();
    const panics = srv.panics();
    if (srv.unexpectedExit()) problems.push(`${what}: expected it to run until stopped, but it exited on its own: ${show(srv.unexpectedExit())}`);
    if (panics.length) problems.push(`${what}: expected no panic in the log, got ${panics.length}:\n${panics.join('\n')}`);
    if (code !== 0 && !srv.unexpectedExit()) problems.push(`${what}: expected exit 0 after SIGTERM, got ${show(srv.exitInfo())}`);
    if (problems.length) problems.push(`--- last log lines of ${what} ---\n${srv.logs().slice(-40).join('\n')}`);
  }
  assert.deepEqual(problems, [], problems.join('\n'));
});

/** Add the server log to a failure. */
async function withLog(body) {
  try {
    await body();
  } catch (err) {
    const log = `\n--- server log (last 60 lines) ---\n${server?.logs().slice(-60).join('\n') ?? '(not started)'}`;
    try {
      err.message += log;
    } catch {
      throw new Error(`${err?.message ?? err}${log}`, { cause: err });
    }
    throw err;
  }
}

/** Two fresh users connected over `transport` and joined to a fresh room. */
async function goodPair(transport = 'websocket', prefix = 'good') {
  const [alice, bob] = await Promise.all([createUser(server.url, `${prefix}a`), createUser(server.url, `${prefix}b`)]);
  const room = uniqueRoom(prefix);
  const sa = await alice.connect(transport);
  const sb = await bob.connect(transport);
  await join(sa, room);
  await join(sb, room);
  return { alice, bob, room, sa, sb };
}

/** A message from `from` reaches `to` (both joined to `room`). */
async function assertDelivers(from, to, room, what) {
  const text = `${what} ${randomHex()}`;
  const arrived = nextEvent(to, 'message', (m) => m?.text === text);
  await say(from, room, text);
  const msg = await arrived;
  assert.equal(msg.room, room, `${what}: message event at the other member: got ${show(msg)}`);
}

/**
 * The server still serves: ready, no panic so far, a fresh good client over `transport`
 * connects, joins and messages, and the `bystanders` (sockets connected all along, with
 * their disconnect recorders) were not disturbed.
 */
async function assertServerUsable(what, { transport = 'websocket', bystanders } = {}) {
  assert.equal(await readyStatus(server.url), 200, `${what}: expected GET /health/ready 200 afterwards`);
  assert.equal(server.unexpectedExit(), null, `${what}: expected the server to keep running`);
  assert.deepEqual(server.panics(), [], `${what}: expected no panic in the server log`);
  const fresh = await goodPair(transport, 'after');
  await assertDelivers(fresh.sa, fresh.sb, fresh.room, `${what}: a fresh client afterwards`);
  if (bystanders) {
    assert.deepEqual(bystanders.drops.flatMap((d) => d.events), [], `${what}: expected the good clients connected all along to stay connected`);
    assert.ok(bystanders.sa.connected && bystanders.sb.connected, `${what}: expected the good clients connected all along to stay connected`);
    await assertDelivers(bystanders.sa, bystanders.sb, bystanders.room, `${what}: a good client connected all along`);
    await assertDelivers(bystanders.sb, bystanders.sa, bystanders.room, `${what}: a good client connected all along`);
  }
}

/** Good clients connected before the abuse, with a record of any disconnect. */
async function bystanders(transport = 'websocket') {
  const pair = await goodPair(transport, 'by');
  return { ...pair, drops: [collectEvents(pair.sa, 'disconnect'), collectEvents(pair.sb, 'disconnect')] };
}

describe('hostile clients', { timeout: 2 * TEST_TIMEOUT_MS }, () => {
  const opts = { timeout: TEST_TIMEOUT_MS };

  it('raw WebSocket garbage before and after CONNECT only costs the sender its connection', opts, (t) => withLog(async () => {
    const good = await bystanders();
    const stray = collectEvents(good.sa, 'message');
    const abuser = await createUser(server.url, 'abuser');

    const garbage = [
      ['non-Engine.IO text "hello"', 'hello'],
      ['an unknown Engine.IO packet type "9"', '9'],
      ['an empty text frame', ''],
      ['a Socket.IO packet with invalid JSON', '42[not json'],
      ['an unknown Socket.IO packet type', '49["join",{}]'],
      ['a Socket.IO packet for an unknown namespace without CONNECT', '42/nope,["join",{"room":"x"}]'],
      ['an unsolicited ack', '437[{"ok":true}]'],
      ['a binary frame of random bytes', randomBytes(64)],
      ['invalid UTF-8 in a text frame', { data: Buffer.from([0x34, 0x32, 0x5b, 0xff, 0xfe, 0xc3, 0x28, 0x5d]), binary: false }],
      ['an Engine.IO message of nested JSON 30,000 deep', `42${nestedJson(30_000)}`],
    ];
    const outcomes = [];
    for (const stage of ['before', 'after']) {
      for (const [what, frame] of garbage) {
        const label = `${what} ${stage} CONNECT`;
        const raw = stage === 'before'
          ? await RawSocket.open(server.url, abuser.cookie)
          : await RawSocket.connected(server.url, abuser.cookie);
        raw.send(frame);
        outcomes.push(`${label}: ${await closedOrWorking(raw, stage, label)}`);
        raw.close();
      }
    }

    // CONNECT to a namespace that does not exist: a connect error for it, or a close.
    for (const stage of ['before', 'after']) {
      const label = `CONNECT to the unknown namespace /nope ${stage} CONNECT to /`;
      const raw = stage === 'before'
        ? await RawSocket.open(server.url, abuser.cookie)
        : await RawSocket.connected(server.url, abuser.cookie);
      raw.send('40/nope,');
      const got = await raw.waitFor((p) => typeof p === 'string' && p.startsWith('4') && p.includes('/nope,'), `the answer to ${label}`);
      if (got.packet) {
        assert.ok(got.packet.startsWith('44/nope,'), `${label}: expected a CONNECT_ERROR 44/nope,{…} (or a close), got ${show(got.packet)}`);
      }
      outcomes.push(`${label}: ${got.closed ? 'closed' : await closedOrWorking(raw, stage, label)}`);
      raw.close();
    }

    // An EVENT before CONNECT must not be handled: no ok ack, and the room is not joined.
    {
      const label = 'a join EVENT before CONNECT';
      const raw = await RawSocket.open(server.url, abuser.cookie);
      const room = uniqueRoom('sneak');
      const sneaked = await rawEmit(raw, joinPacket(room), label, QUIET_WINDOW_MS).catch(() => ({ ignored: true }));
      assert.ok(!sneaked.ack, `${label}: expected no ack (the socket is not connected), got ${show(sneaked.ack)}`);
      outcomes.push(`${label}: ${sneaked.closed ? 'closed' : await closedOrWorking(raw, 'before', label)}`);
      raw.close();
      const rooms = await good.alice.api('/api/rooms');
      assert.ok(!rooms.json?.rooms?.some((r) => r.name === room && r.members > 0),
        `${label}: expected the room not to be joined, got ${rooms.text}`);
    }

    // A WebSocket message over maxPayload closes that connection.
    for (const stage of ['before', 'after']) {
      const label = `a 100 KB WebSocket message ${stage} CONNECT`;
      const raw = stage === 'before'
        ? await RawSocket.open(server.url, abuser.cookie)
        : await RawSocket.connected(server.url, abuser.cookie);
      assert.equal(raw.handshake.maxPayload, MAX_PAYLOAD, `Engine.IO open packet: expected maxPayload ${MAX_PAYLOAD}, got ${show(raw.handshake)}`);
      raw.send(`42${JSON.stringify(['message', { room: good.room, text: 'z'.repeat(100_000) }])}`);
      const got = await raw.waitFor((p) => typeof p === 'string' && p.startsWith('4'), `an answer to ${label}`);
      assert.ok(got.closed, `${label}: expected the server to close the connection, got ${raw.describe()}`);
      outcomes.push(`${label}: closed ${show(got.closed)}`);
      raw.close();
    }

    // Nothing of the above reached the good clients' room.
    await sleep(QUIET_WINDOW_MS);
    stray.stop();
    assert.deepEqual(stray.events, [], 'the good clients\' room: expected no message from the garbage');
    await assertServerUsable('after raw WebSocket garbage', { bystanders: good });
    // Closed or still working are both fine; the outcomes are reported for information.
    for (const line of outcomes) t.diagnostic(line);
  }));

  it('raw long-polling garbage gets 4xx answers, never a 5xx or a hang', opts, (t) => withLog(async () => {
    const good = await bystanders('polling');
    const abuser = await createUser(server.url, 'poller');
    const { cookie } = abuser;
    const query = POLLING_PATH.split('?')[1];
    const problems = [];
    const expect4xx = (what, res) => {
      t.diagnostic(`${what}: ${res.status} ${res.text.slice(0, 100)}`);
      if (res.status < 400 || res.status > 499) problems.push(`${what}: expected a 4xx, got ${res.status} ${res.text.slice(0, 200)}`);
      if (res.headers.get('x-instance-id') !== server.instanceId) {
        problems.push(`${what}: expected X-Instance-Id ${server.instanceId}, got ${show(res.headers.get('x-instance-id'))}`);
      }
    };

    // Requests that are wrong on their own.
    const bogusSid = `bogus${randomHex(6)}`;
    const standalone = [
      ['POST with an unknown sid', `${query}&sid=${bogusSid}`, { method: 'POST', body: '40' }],
      ['GET with an unknown sid', `${query}&sid=${bogusSid}`, {}],
      ['handshake with EIO=99', 'EIO=99&transport=polling', {}],
      ['handshake with EIO=3', 'EIO=3&transport=polling', {}],
      ['handshake without EIO', 'transport=polling', {}],
      ['handshake with transport=bogus', 'EIO=4&transport=bogus', {}],
      ['handshake without transport', 'EIO=4', {}],
      ['a WebSocket handshake without the Upgrade headers', 'EIO=4&transport=websocket', {}],
      ['handshake with PUT', query, { method: 'PUT', body: '40' }],
      ['POST without a sid', query, { method: 'POST', body: '40' }],
    ];
    for (const [what, q, init] of standalone) expect4xx(what, await poll(server.url, q, { cookie, ...init }));

    // Bodies that are wrong for a live session: refused with a 4xx (or, for malformed packets,
    // accepted and ignored by a session that keeps working), and every answer comes at once.
    const bodies = [
      ['a body of malformed packets', 'hello\x1e9\x1e42[not json'],
      ['a body of invalid base64 binary', 'b@@@not base64@@@'],
      ['a body with invalid UTF-8', Buffer.from([0x34, 0x32, 0x5b, 0xff, 0xfe, 0x5d])],
      ['a body over the limits (100 KB)', `42${JSON.stringify(['message', { room: good.room, text: 'z'.repeat(100_000) }])}`, { must4xx: true }],
    ];
    for (const [what, body, { must4xx = false } = {}] of bodies) {
      const sid = await pollingSession(server.url, cookie);
      const res = await poll(server.url, `${query}&sid=${sid}`, { method: 'POST', body, cookie });
      if (res.status !== 200 || must4xx) {
        expect4xx(`POST ${what}`, res);
        continue;
      }
      t.diagnostic(`POST ${what}: 200 (accepted)`);
      const next = await poll(server.url, `${query}&sid=${sid}`, { method: 'POST', body: '421["join",{"room":"probe"}]', cookie });
      const answer = next.status === 200 ? await poll(server.url, `${query}&sid=${sid}`, { cookie }) : next;
      const working = answer.status === 200 && answer.text.split('\x1e').some((p) => p.startsWith('431[{"') && p.includes('"ok":true'));
      const closed = (answer.status >= 400 && answer.status < 500) || (answer.status === 200 && answer.text.split('\x1e').includes('1'));
      if (!working && !closed) {
        problems.push(`POST ${what} was accepted; then a join: expected its ok ack or a closed session, got ${answer.status} ${show(answer.text.slice(0, 200))}`);
      }
    }

    // Two concurrent long-polls on one session: the second is refused, the first returns at once.
    {
      const sid = await pollingSession(server.url, cookie);
      const longPoll = () => {
        const pending = { settled: false };
        pending.result = poll(server.url, `${query}&sid=${sid}`, { cookie, timeoutMs: EVENT_TIMEOUT_MS })
          .then((r) => r, (err) => ({ status: 0, text: err.message, headers: new Headers() }))
          .finally(() => { pending.settled = true; });
        return pending;
      };
      // A first long-poll that is still waiting (one that got a packet at once, e.g. a ping, is repeated).
      let first = longPoll();
      await sleep(200);
      for (let attempt = 0; first.settled && attempt < 3; attempt += 1) {
        const got = await first.result;
        if (got.status !== 200) break;
        if (got.text.split('\x1e').includes('2')) await poll(server.url, `${query}&sid=${sid}`, { method: 'POST', body: '3', cookie });
        first = longPoll();
        await sleep(200);
      }
      if (first.settled) assert.fail(`a long-poll GET with nothing to read: expected it to wait, got ${show(await first.result)}`);
      const second = await poll(server.url, `${query}&sid=${sid}`, { cookie });
      expect4xx('a second concurrent GET on one session', second);
      const firstRes = await first.result;
      t.diagnostic(`the first of two concurrent GETs: ${firstRes.status} ${show(firstRes.text)}`);
      if (firstRes.status === 0 || firstRes.status >= 500) {
        problems.push(`the first of two concurrent GETs: expected an answer within ${EVENT_TIMEOUT_MS} ms, got ${firstRes.status} ${firstRes.text}`);
      }
    }

    assert.deepEqual(problems, [], problems.join('\n'));
    await assertServerUsable('after raw polling garbage', { transport: 'polling', bystanders: good });
  }));

  for (const transport of TRANSPORTS) {
    it(`the official client over ${transport}: nested and binary payloads get error acks or a disconnect`, opts, (t) => withLog(async () => {
      const good = await bystanders(transport);
      const abuser = await createUser(server.url, 'binary');
      const room = uniqueRoom('bin');
      let socket = await abuser.connect(transport);
      await join(socket, room);
      const reconnect = async () => {
        if (socket.connected) return;
        socket = await abuser.connect(transport);
        await join(socket, room);
      };

      // The official client cannot serialise 10,000 levels (its own stack); the raw cases below do.
      let nested = [];
      for (let i = 0; i < 2_000; i += 1) nested = [nested];
      const cases = [
        ['join with a room nested 2,000 arrays deep', 'join', { room: nested }],
        ['message with a binary text', 'message', { room, text: Buffer.from('x') }],
        ['join with a binary room', 'join', { room: Buffer.from(room) }],
      ];
      for (const [what, event, payload] of cases) {
        await reconnect();
        const outcome = await ackOrDisconnect(socket, event, payload);
        t.diagnostic(`${what}: ${show(outcome).slice(0, 160)}`);
        assert.ok(outcome.disconnected || isErrorAck(outcome.ack, ['invalid_payload', 'invalid_room', 'invalid_text']),
          `${what}: expected an invalid_payload/invalid_room/invalid_text ack or a disconnect, got ${show(outcome)}`);
      }

      // More binary attachments than the server takes (1): that socket is closed.
      await reconnect();
      const dropped = nextDisconnect(socket, EVENT_TIMEOUT_MS);
      const acks = [];
      const buffers = Array.from({ length: 5 }, (_, i) => Buffer.from([i, 0xff, 0x00]));
      socket.emit('message', { room, text: 'five attachments', attachments: buffers }, (ack) => acks.push(ack));
      const reason = await dropped;
      assert.equal(typeof reason, 'string', 'five binary attachments: expected the socket to be disconnected');
      assert.deepEqual(acks, [], 'five binary attachments: expected no ack');

      await assertServerUsable(`after binary abuse over ${transport}`, { transport, bystanders: good });
    }));
  }

  it('raw Socket.IO packets: deep nesting, non-string event names and broken binary packets', opts, (t) => withLog(async () => {
    const good = await bystanders();
    const abuser = await createUser(server.url, 'rawsio');
    const problems = [];

    // A binary attachment that never comes in time: the late attachment closes the socket.
    // Runs alongside the other cases (it has to wait for the completion timeout).
    const late = (async () => {
      const raw = await RawSocket.connected(server.url, abuser.cookie);
      raw.send(`451-${(ackIds += 1)}${JSON.stringify(['join', { room: placeholder(0) }])}`);
      await sleep(BINARY_COMPLETION_TIMEOUT_MS + 500);
      raw.send(Buffer.from('late'));
      const got = await raw.waitFor((p) => typeof p === 'string' && p.startsWith('43'), 'an answer to the late attachment');
      if (!got.closed) problems.push(`a binary attachment ${BINARY_COMPLETION_TIMEOUT_MS + 500} ms late: expected a close, got ${raw.describe()}`);
      raw.close();
    })();

    // Packets with an ack id that the server must answer with an error ack or a close (never
    // silence: the client waits for that ack). `okToo`: an ok ack is fine as well.
    const ackCases = [
      ['join with a room nested 10,000 arrays deep', (id) => `42${id}["join",{"room":${nestedJson(10_000)}}]`],
      ['join with a room nested 10,000 objects deep', (id) => `42${id}["join",{"room":${nestedJson(10_000, 'object')}}]`],
      ['join with 10,000 nested arrays as a second argument', (id) => `42${id}["join",{"room":"ok"},${nestedJson(10_000)}]`, { okToo: true }],
      ['join with a duplicate room key', (id) => `42${id}["join",{"room":"fine","room":"fine"}]`, { okToo: true }],
      ['a number as event name', (id) => `42${id}[42,{}]`],
      ['null as event name', (id) => `42${id}[null,{}]`],
      ['an array as event name', (id) => `42${id}[["join"],{"room":"x"}]`],
      ['an object as event name', (id) => `42${id}[{"join":1},{"room":"x"}]`],
      ['an empty event array', (id) => `42${id}[]`],
      ['an event that is an object', (id) => `42${id}{"event":"join"}`],
      ['an event that is a string', (id) => `42${id}"join"`],
      ['a top level nested 10,000 arrays deep', (id) => `42${id}${nestedJson(10_000)}`],
      ['one complete binary attachment as room', (id) => `451-${id}${JSON.stringify(['join', { room: placeholder(0) }])}`, { attachments: [Buffer.from('room')] }],
      ['a placeholder pointing past the attachments', (id) => `451-${id}${JSON.stringify(['join', { room: placeholder(7) }])}`, { attachments: [Buffer.from('room')] }],
      ['a placeholder with a negative index', (id) => `451-${id}${JSON.stringify(['join', { room: placeholder(-1) }])}`, { attachments: [Buffer.from('room')] }],
      ['a binary event announcing 0 attachments', (id) => `450-${id}${JSON.stringify(['join', { room: placeholder(0) }])}`],
    ];
    for (const [what, packetText, { okToo = false, attachments = [] } = {}] of ackCases) {
      const raw = await RawSocket.connected(server.url, abuser.cookie);
      const sent = rawEmit(raw, packetText, what);
      for (const attachment of attachments) raw.send(attachment);
      const outcome = await sent.catch((err) => ({ hung: err.message }));
      t.diagnostic(`${what}: ${outcome.closed ? 'closed' : show(outcome.ack ?? outcome.hung).slice(0, 160)}`);
      if (outcome.hung) problems.push(`${what}: ${outcome.hung}`);
      else if (outcome.ack && !isErrorAck(outcome.ack) && !(okToo && outcome.ack.ok === true)) {
        problems.push(`${what}: expected an error ack or a close, got the ack ${show(outcome.ack)}`);
      }
      raw.close();
    }

    // Packets that cannot be acked: the server closes the connection or ignores them, and
    // then still answers.
    const ignoredCases = [
      ['an ack id beyond 64 bits', ['4299999999999999999999999["join",{"room":"x"}]']],
      ['a binary ack the server never asked for', [`461-${(ackIds += 1)}${JSON.stringify([placeholder(0)])}`, Buffer.from('ack')]],
      ['an ack the server never asked for', [`43${(ackIds += 1)}[{"ok":true}]`]],
      ['a DISCONNECT for an unknown namespace', ['41/nope,']],
    ];
    for (const [what, frames] of ignoredCases) {
      const raw = await RawSocket.connected(server.url, abuser.cookie);
      for (const frame of frames) raw.send(frame);
      const outcome = await closedOrWorking(raw, 'after', what).catch((err) => `hung: ${err.message}`);
      t.diagnostic(`${what}: ${outcome}`);
      if (!['closed', 'working'].includes(outcome)) problems.push(`${what}: expected a close or a working socket, got ${outcome}`);
      raw.close();
    }

    // Broken binary packets: the server closes that socket.
    const closeCases = [
      ['a binary event with 2 attachments (limit 1)', [`452-${(ackIds += 1)}${JSON.stringify(['join', { room: placeholder(0) }, placeholder(1)])}`, Buffer.from('a'), Buffer.from('b')]],
      ['a binary event with 1,000 attachments announced', [`451000-${(ackIds += 1)}${JSON.stringify(['join', { room: placeholder(0) }])}`]],
      ['a partial binary event followed by a text packet', [`451-${(ackIds += 1)}${JSON.stringify(['join', { room: placeholder(0) }])}`, '42["join",{"room":"x"}]']],
      ['an attachment larger than maxPayload for a binary event', [`451-${(ackIds += 1)}${JSON.stringify(['join', { room: placeholder(0) }])}`, randomBytes(MAX_PAYLOAD + 1024)]],
    ];
    for (const [what, frames] of closeCases) {
      const raw = await RawSocket.connected(server.url, abuser.cookie);
      for (const frame of frames) raw.send(frame);
      const outcome = await closedOrWorking(raw, 'after', what).catch((err) => `hung: ${err.message}`);
      t.diagnostic(`${what}: ${outcome}`);
      if (outcome !== 'closed') problems.push(`${what}: expected the server to close the connection, got ${outcome}; ${raw.describe()}`);
      raw.close();
    }

    await late;
    assert.deepEqual(problems, [], problems.join('\n'));
    await assertServerUsable('after raw Socket.IO abuse', { bystanders: good });
  }));

  it('refuses expired, foreign and misnamed session cookies', opts, () => withLog(async () => {
    const other = await startServer({ env: { SESSION_TTL_SECS: String(SHORT_TTL_SECS) } });
    extraServers.push(other);
    const good = await bystanders();

    // A session of the second server (another SESSION_SECRET) is refused here, while it
    // works there.
    const visitor = await createUser(other.url, 'visitor');
    const there = await api(other.url, '/api/me', { cookie: visitor.cookie });
    assert.equal(there.status, 200, `GET /api/me on its own server: expected 200, got ${there.status} ${there.text}`);
    const foreignErr = await connectExpectingError(server.url, visitor.cookie);
    assert.equal(foreignErr.message, 'unauthorized', `connect with another server's cookie: expected "unauthorized", got ${show(foreignErr.message)}`);
    const foreignMe = await api(server.url, '/api/me', { cookie: visitor.cookie });
    assert.equal(foreignMe.status, 401, `GET /api/me with another server's cookie: expected 401, got ${foreignMe.status} ${foreignMe.text}`);
    const rawForeign = await RawSocket.open(server.url, visitor.cookie);
    rawForeign.send('40');
    const foreignAnswer = await rawForeign.waitFor((p) => typeof p === 'string' && /^4[04]/.test(p), 'the CONNECT answer');
    assert.ok(foreignAnswer.closed || /^44\{.*"unauthorized"/.test(foreignAnswer.packet),
      `raw CONNECT with another server's cookie: expected 44{"message":"unauthorized"} (or a close), got ${rawForeign.describe()}`);
    rawForeign.close();

    // This server's valid value under other names, a value without its signature, and the
    // cookie of an anonymous (not logged-in) session are refused.
    const user = await createUser(server.url, 'cookies');
    const value = user.cookie.slice(SESSION_COOKIE.length + 1);
    const anonymous = await api(server.url, '/api/analytics/opt-out', { method: 'POST' });
    const anonymousCookie = sessionCookieFrom(anonymous.headers);
    assert.ok(anonymous.status === 204 && anonymousCookie,
      `anonymous POST /api/analytics/opt-out: expected 204 with a session cookie, got ${anonymous.status} ${show(anonymous.headers.getSetCookie())}`);
    const cookies = [
      ['the session value under the name "sid"', `sid=${value}`],
      ['the session value under the name "roomcast_sid"', `roomcast_sid=${value}`],
      ['the session value under the name "ROOMCAST.SID"', `ROOMCAST.SID=${value}`],
      ['the session value without its signature', `${SESSION_COOKIE}=${value.slice(44)}`],
      ['the session value\'s signature only', `${SESSION_COOKIE}=${value.slice(0, 44)}`],
      ['the other server\'s session value', `${SESSION_COOKIE}=${visitor.cookie.slice(SESSION_COOKIE.length + 1)}`],
      ['an empty session cookie', `${SESSION_COOKIE}=`],
      ['a 4 KB session cookie', `${SESSION_COOKIE}=${'A'.repeat(4096)}`],
      ['the cookie of an anonymous (not logged-in) session', anonymousCookie],
    ];
    for (const [what, cookie] of cookies) {
      for (const transport of TRANSPORTS) {
        const err = await connectExpectingError(server.url, cookie, { transport });
        assert.equal(err.message, 'unauthorized', `connect over ${transport} with ${what}: expected "unauthorized", got ${show(err.message)}`);
      }
      const me = await api(server.url, '/api/me', { cookie });
      assert.equal(me.status, 401, `GET /api/me with ${what}: expected 401, got ${me.status} ${me.text}`);
    }
    const mine = await user.connect('websocket');
    assert.ok(mine.connected, 'the untouched cookie: expected it to connect');

    // A session idle for longer than SESSION_TTL_SECS is refused, on Socket.IO and HTTP.
    await sleep(EXPIRY_WAIT_MS);
    for (const transport of TRANSPORTS) {
      const err = await connectExpectingError(other.url, visitor.cookie, { transport });
      assert.equal(err.message, 'unauthorized',
        `connect over ${transport} with a session idle for ${EXPIRY_WAIT_MS} ms (TTL ${SHORT_TTL_SECS} s): expected "unauthorized", got ${show(err.message)}`);
    }
    const expiredMe = await api(other.url, '/api/me', { cookie: visitor.cookie });
    assert.equal(expiredMe.status, 401, `GET /api/me with an expired session: expected 401, got ${expiredMe.status} ${expiredMe.text}`);
    // Logging in again works, so the refusal was about the expiry.
    const again = await login(other.url, visitor.username, visitor.password);
    const fresh = await connect(other.url, again);
    assert.ok(fresh.connected, 'a fresh login after the expiry: expected it to connect');
    assert.deepEqual(other.panics(), [], 'the second server: expected no panic');

    await assertServerUsable('after bad cookies', { bystanders: good });
  }));

  it('keeps a user out of another user\'s private room', opts, () => withLog(async () => {
    const [victim, intruder] = await Promise.all([createUser(server.url, 'victim'), createUser(server.url, 'intruder')]);
    const sv = await victim.connect('websocket');
    const si = await intruder.connect('websocket');
    const rawIntruder = await RawSocket.connected(server.url, intruder.cookie);
    const victimRoom = `user:${victim.id}`;
    const atVictim = { message: collectEvents(sv, 'message'), typing: collectEvents(sv, 'typing') };
    const atIntruder = collectEvents(si, 'notification');

    const attempts = [
      ['join', { room: victimRoom }, ['invalid_room']],
      ['join', { room: `User:${victim.id}` }, ['invalid_room']],
      ['join', { room: ` ${victimRoom}` }, ['invalid_room']],
      ['join', { room: `${victimRoom}\u0000` }, ['invalid_room']],
      ['join', { room: [victimRoom] }, ['invalid_payload']],
      ['message', { room: victimRoom, text: 'let me in' }, ['invalid_room', 'not_in_room']],
      ['typing', { room: victimRoom }, ['invalid_room', 'not_in_room']],
      ['leave', { room: `user:${intruder.id}` }, ['invalid_room', 'not_in_room']],
    ];
    for (const [event, payload, codes] of attempts) {
      const ack = await emitAck(si, event, payload);
      assert.ok(isErrorAck(ack, codes), `${event} ${show(payload)}: expected an error ack ${codes.join('/')}, got ${show(ack)}`);
    }
    const dupKey = await rawEmit(rawIntruder, (id) => `42${id}["join",{"room":"lobby","room":"${victimRoom}"}]`, 'a join with a duplicate room key');
    assert.ok(dupKey.closed || isErrorAck(dupKey.ack, ['invalid_payload', 'invalid_room']),
      `join with a duplicate room key ending in ${victimRoom}: expected an error ack or a close, got ${show(dupKey)}`);
    assert.ok(si.connected, 'the intruder\'s socket: expected it to stay connected after error acks');

    // An admin notification for the victim reaches the victim only.
    const data = { message: 'for your eyes only', nonce: randomHex() };
    const delivered = nextEvent(sv, 'notification', (d) => d?.nonce === data.nonce);
    const res = await adminEmit(server, { room: victimRoom, event: 'notification', data });
    assert.ok(res.status >= 200 && res.status < 300, `admin emit: expected 2xx, got ${res.status} ${res.text}`);
    assert.deepEqual(await delivered, data, 'admin notification at the victim');
    await sleep(QUIET_WINDOW_MS);
    assert.deepEqual(atIntruder.events, [], 'the intruder: expected no notification meant for the victim');
    const rawLeak = rawIntruder.received.filter((p) => typeof p === 'string' && p.includes(data.nonce));
    assert.deepEqual(rawLeak, [], 'the intruder\'s raw socket: expected no notification meant for the victim');
    assert.deepEqual(atVictim.message.events, [], 'the victim: expected no message from the intruder');
    assert.deepEqual(atVictim.typing.events, [], 'the victim: expected no typing from the intruder');

    await assertServerUsable('after private-room intrusion');
  }));

  it('closes a WebSocket that never sends CONNECT, and forgets a polling session that never does', opts, () => withLog(async () => {
    const good = await bystanders();
    const lurker = await createUser(server.url, 'lurker');
    const query = POLLING_PATH.split('?')[1];

    const started = Date.now();
    const raw = await RawSocket.open(server.url, lurker.cookie);
    const open = await poll(server.url, query, { cookie: lurker.cookie });
    assert.equal(open.status, 200, `polling handshake: expected 200, got ${open.status} ${open.text}`);
    const { sid } = JSON.parse(open.text.slice(1));

    const closed = await raw.waitClosed(`a WebSocket without CONNECT (CONNECT timeout ${CONNECT_TIMEOUT_MS} ms)`, CONNECT_TIMEOUT_BOUND_MS);
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= CONNECT_TIMEOUT_MS / 2,
      `a WebSocket without CONNECT: expected it to be kept for about ${CONNECT_TIMEOUT_MS} ms, closed after ${elapsed} ms (${show(closed)}; ${raw.describe()})`);
    assert.ok(!raw.received.some((p) => typeof p === 'string' && p.startsWith('4')),
      `a WebSocket without CONNECT: expected no Socket.IO packet, got ${raw.describe()}`);

    // By now the polling session without CONNECT is gone too: a request for it is refused at once.
    await sleep(500);
    const stale = await poll(server.url, `${query}&sid=${sid}`, { cookie: lurker.cookie });
    const closePacket = stale.status === 200 && stale.text.split('\x1e').includes('1');
    assert.ok((stale.status >= 400 && stale.status < 500) || closePacket,
      `GET on a polling session that never sent CONNECT, after ${Date.now() - started} ms: expected a 4xx or a close packet, got ${stale.status} ${show(stale.text)}`);

    await assertServerUsable('after clients that never sent CONNECT', { bystanders: good });
  }));
});
