// Graceful drain of one roomcast process under load (SPEC, "Graceful shutdown"): a thousand
// connected sockets are told to go and have their transports closed, acked messages survive
// the restart, an HTTP request in flight at SIGTERM still completes, and new Engine.IO
// sessions are refused while the drain runs.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, describe, it } from 'node:test';
import {
  PASSWORD, STOP_KILL_AFTER_MS,
  api, closeAllSockets, connect, createUser, join, login, nextDisconnect, nextEvent, readyStatus, show, sleep,
  startServer, uniqueName, uniqueRoom, within,
} from './harness.mjs';

const RECONNECTING_REASONS = ['transport close', 'transport error'];
// A process that honours SHUTDOWN_TIMEOUT_SECS has exited by then (signal delivery, process
// teardown and the test's own event loop get the extra seconds).
const EXIT_SLACK_MS = 3_000;
// Lets one address open a thousand connections at once.
const MANY_CONNECTIONS_ENV = {
  CONNECTION_RATE_PER_IP: '100000',
  CONNECTION_BURST_PER_IP: '100000',
  MAX_CONNECTIONS: '20000',
};
// The sender's messages are paced by their acks only.
const UNLIMITED_MESSAGES_ENV = { MESSAGE_RATE_PER_SEC: '100000', MESSAGE_RATE_BURST: '100000' };

// eslint-disable-next-line no-control-regex
const stripAnsi = (line) => line.replace(/\x1b\[[0-9;]*m/g, '');
const DRAIN_COMPLETE_RE = /drain complete\b.*\bsockets=(\d+)/;

/** Describe at most `max` items of a list for an assertion message. */
const firstFew = (items, max = 5) => `${show(items.slice(0, max))}${items.length > max ? ` (and ${items.length - max} more)` : ''}`;


describe('graceful drain', { timeout: 180_000 }, () => {
  const servers = [];
  const dirs = [];

  const start = async (opts) => {
    const server = await startServer(opts);
    servers.push(server);
    return server;
  };
  const withLog = async (body) => {
    try {
      await body();
    } catch (err) {
      const logs = servers.map((s, i) => `--- server ${i + 1} log (${s.instanceId}) ---\n${s.logText()}`).join('\n');
      err.message += `\n${logs}`;
      throw err;
    }
  };

  afterEach(async () => {
    closeAllSockets();
    for (const server of servers.splice(0)) await server.stop();
  });
  after(async () => {
    closeAllSockets();
    for (const server of servers.splice(0)) await server.stop();
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  });

  it('a process with 1,000 connected sockets drains them all and exits 0 within the timeout, losing no acked message',
    { timeout: 120_000 }, () => withLog(async () => {
      const SHUTDOWN_TIMEOUT_SECS = 10;
      const USERS = 20;
      const SOCKETS_PER_USER = 50;
      const TOTAL = USERS * SOCKETS_PER_USER;
      const CONNECT_BATCH = 100;
      const ACKED_BEFORE_SIGNAL = 30;
      const SEND_ACK_TIMEOUT_MS = 2_000;
      const SAMPLE = 20;

      const dataDir = await mkdtemp(path.join(os.tmpdir(), 'roomcast-drain-'));
      dirs.push(dataDir);
      const server = await start({
        dataDir,
        env: { SHUTDOWN_TIMEOUT_SECS: String(SHUTDOWN_TIMEOUT_SECS), ...MANY_CONNECTIONS_ENV, ...UNLIMITED_MESSAGES_ENV },
      });
      const room = uniqueRoom('drain');
      const users = await Promise.all(Array.from({ length: USERS }, () => createUser(server.url, 'listener')));
      const senderUser = await createUser(server.url, 'sender');

      // Every listening socket records what it heard; the sample also keeps the message ids.
      const sampled = new Set(Array.from({ length: SAMPLE }, (_, k) => Math.floor((k * TOTAL) / SAMPLE) + (k % SOCKETS_PER_USER)));
      const clients = [];
      const connectOne = async (index) => {
        const user = users[Math.floor(index / SOCKETS_PER_USER)];
        const socket = await connect(server.url, user.cookie, { transport: 'websocket', timeoutMs: 10_000 });
        const client = { index, user: user.username, socket, timeline: [], messageIds: sampled.has(index) ? [] : null };
        socket.on('server:draining', (payload) => client.timeline.push(['server:draining', payload]));
        socket.on('disconnect', (reason) => client.timeline.push(['disconnect', reason]));
        if (client.messageIds) socket.on('message', (msg) => client.messageIds.push(msg?.id));
        clients[index] = client;
        await join(socket, room);
      };
      for (let first = 0; first < TOTAL; first += CONNECT_BATCH) {
        const batch = Array.from({ length: Math.min(CONNECT_BATCH, TOTAL - first) }, (_, k) => connectOne(first + k));
        await within(30_000, `connecting sockets ${first}..${first + batch.length - 1}`, Promise.all(batch));
      }
      assert.equal(clients.filter(Boolean).length, TOTAL, `expected ${TOTAL} joined sockets, got ${clients.filter(Boolean).length}`);

      const sender = await connect(server.url, senderUser.cookie, { transport: 'websocket', timeoutMs: 10_000 });
      await join(sender, room);
      let senderDisconnect = null;
      sender.on('disconnect', (reason) => { senderDisconnect = reason; });

      // The sender sends one message after another, each with an ack, until a send fails or the
      // socket is gone; SIGTERM goes out after ACKED_BEFORE_SIGNAL acks while the loop keeps going.
      const acked = []; // {id, text, beforeSignal}
      let signalAt = null;
      let loopEnd = null;
      let reachedThreshold;
      const threshold = new Promise((resolve) => { reachedThreshold = resolve; });
      const loop = (async () => {
        for (let i = 0; i < 100_000; i += 1) {
          if (!sender.connected) { loopEnd = `sender disconnected (${show(senderDisconnect)})`; break; }
          const text = `drain message ${i}`;
          let ack;
          try {
            ack = await sender.timeout(SEND_ACK_TIMEOUT_MS).emitWithAck('message', { room, text });
          } catch (err) {
            loopEnd = `no ack for message ${i} within ${SEND_ACK_TIMEOUT_MS} ms (${err.message})`;
            break;
          }
          if (!ack || ack.ok !== true || !Number.isInteger(ack.id)) { loopEnd = `message ${i} failed: ${show(ack)}`; break; }
          acked.push({ id: ack.id, text, beforeSignal: signalAt === null });
          if (acked.length === ACKED_BEFORE_SIGNAL) reachedThreshold();
          if (signalAt !== null && Date.now() - signalAt > STOP_KILL_AFTER_MS) { loopEnd = 'still sending long after SIGTERM'; break; }
        }
      })();
      await within(30_000, `${ACKED_BEFORE_SIGNAL} acked messages before the signal`,
        Promise.race([threshold, loop.then(() => { throw new Error(`the send loop ended before SIGTERM: ${loopEnd}`); })]));

      let exitAt = null;
      server.exited.then(() => { exitAt = Date.now(); });
      const disconnects = clients.map((c) => nextDisconnect(c.socket, (SHUTDOWN_TIMEOUT_SECS * 1_000) + EXIT_SLACK_MS + 2_000));
      signalAt = Date.now();
      const stopping = server.stop(); // SIGTERM now; SIGKILL only after STOP_KILL_AFTER_MS
      await within(STOP_KILL_AFTER_MS + 5_000, 'the send loop after SIGTERM', loop);
      const exitCode = await stopping;
      await Promise.allSettled(disconnects);

      const problems = [];
      const exitedAfterMs = exitAt - signalAt;
      if (exitCode !== 0) problems.push(`expected exit code 0 after SIGTERM, got ${show(server.exitInfo())}`);
      if (!(exitedAfterMs <= (SHUTDOWN_TIMEOUT_SECS * 1_000) + EXIT_SLACK_MS)) {
        problems.push(`expected the process to exit within ${SHUTDOWN_TIMEOUT_SECS} s + ${EXIT_SLACK_MS} ms of SIGTERM, got ${exitedAfterMs} ms`);
      }

      const noNotice = [];
      const noticeAfterDisconnect = [];
      const badPayload = [];
      const badReason = [];
      const notDisconnected = [];
      for (const client of clients) {
        const who = `socket ${client.index} (${client.user})`;
        const names = client.timeline.map(([name]) => name);
        const noticeAt = names.indexOf('server:draining');
        const disconnectAt = names.indexOf('disconnect');
        if (noticeAt < 0) noNotice.push(`${who}: ${show(client.timeline)}`);
        else if (disconnectAt >= 0 && disconnectAt < noticeAt) noticeAfterDisconnect.push(`${who}: ${show(client.timeline)}`);
        if (noticeAt >= 0) {
          const payload = client.timeline[noticeAt][1];
          if (!(payload && Number.isInteger(payload.reconnect_after_ms) && payload.reconnect_after_ms >= 0)) {
            badPayload.push(`${who}: ${show(payload)}`);
          }
        }
        if (disconnectAt < 0) notDisconnected.push(who);
        else if (!RECONNECTING_REASONS.includes(client.timeline[disconnectAt][1])) badReason.push(`${who}: ${show(client.timeline[disconnectAt][1])}`);
      }
      if (noNotice.length) problems.push(`expected all ${TOTAL} sockets to get server:draining, ${noNotice.length} got none, e.g. ${firstFew(noNotice)}`);
      if (noticeAfterDisconnect.length) {
        problems.push(`expected server:draining before the disconnect, ${noticeAfterDisconnect.length} sockets were disconnected first, e.g. ${firstFew(noticeAfterDisconnect)}`);
      }
      if (badPayload.length) problems.push(`expected server:draining {reconnect_after_ms: integer >= 0}, ${badPayload.length} sockets got otherwise, e.g. ${firstFew(badPayload)}`);
      if (notDisconnected.length) problems.push(`expected all ${TOTAL} sockets to be disconnected, ${notDisconnected.length} were not, e.g. ${firstFew(notDisconnected)}`);
      if (badReason.length) {
        problems.push(`expected disconnect reason ${show(RECONNECTING_REASONS)} (transport closed, so clients reconnect), ${badReason.length} sockets got otherwise, e.g. ${firstFew(badReason)}`);
      }

      const completeLines = server.logs().map(stripAnsi).filter((line) => DRAIN_COMPLETE_RE.test(line));
      const drained = completeLines.map((line) => Number(DRAIN_COMPLETE_RE.exec(line)[1]));
      if (!drained.some((n) => n >= TOTAL)) {
        problems.push(`expected a "drain complete sockets=<n>" log line with n >= ${TOTAL}, got ${completeLines.length ? show(completeLines) : 'none'}`);
      }
      const panics = server.panics();
      if (panics.length) problems.push(`expected no panic during the drain, got:\n${panics.join('\n')}`);
      assert.deepEqual(problems, [], `drain of ${TOTAL} sockets (${acked.length} acked messages, loop ended: ${loopEnd}):\n${problems.join('\n')}`);

      // Every listening socket in the sample heard every message acked before the signal.
      const ackedBefore = acked.filter((a) => a.beforeSignal).map((a) => a.id);
      assert.ok(ackedBefore.length >= ACKED_BEFORE_SIGNAL, `expected >= ${ACKED_BEFORE_SIGNAL} messages acked before SIGTERM, got ${ackedBefore.length}`);
      const deafSockets = [...sampled].flatMap((index) => {
        const heard = new Set(clients[index].messageIds);
        const missing = ackedBefore.filter((id) => !heard.has(id));
        return missing.length ? [`socket ${index}: missing ${missing.length} of ${ackedBefore.length}, e.g. ids ${firstFew(missing)}`] : [];
      });
      assert.deepEqual(deafSockets, [],
        `expected each of ${sampled.size} sampled sockets to receive every message acked before SIGTERM (${ackedBefore.length}), got:\n${deafSockets.join('\n')}`);

      // A new process on the same database has every acked message.
      const again = await start({ dataDir, env: { SHUTDOWN_TIMEOUT_SECS: String(SHUTDOWN_TIMEOUT_SECS) } });
      const cookie = await login(again.url, users[0].username, PASSWORD);
      const stored = new Map();
      let before = null;
      for (let page = 0; page < 1_000; page += 1) {
        const query = before === null ? '?limit=100' : `?limit=100&before=${before}`;
        const res = await api(again.url, `/api/rooms/${room}/messages${query}`, { cookie });
        assert.equal(res.status, 200, `GET /api/rooms/${room}/messages${query} after the restart: expected 200 {messages}, got ${res.status} ${res.text}`);
        const { messages } = res.json ?? {};
        assert.ok(Array.isArray(messages), `expected {messages: [...]}, got ${res.text.slice(0, 300)}`);
        for (const msg of messages) stored.set(msg.id, msg.text);
        if (messages.length < 100) break;
        const oldest = messages[messages.length - 1].id;
        assert.ok(before === null || oldest < before, `expected pages to go back in time (before=${before}), got oldest id ${oldest}`);
        before = oldest;
      }
      const lost = acked.filter((a) => !stored.has(a.id));
      const altered = acked.filter((a) => stored.has(a.id) && stored.get(a.id) !== a.text);
      assert.deepEqual(lost.map((a) => a.id), [],
        `expected every acked message (${acked.length}, ${ackedBefore.length} before SIGTERM) to be stored after the restart, ${lost.length} are missing: ${firstFew(lost, 10)}`);
      assert.deepEqual(altered.map((a) => a.id), [],
        `expected stored texts to match the sent ones, got ${firstFew(altered.map((a) => ({ id: a.id, sent: a.text, stored: stored.get(a.id) })))}`);
    }));

  it('an HTTP request in flight at SIGTERM completes', { timeout: 30_000 }, () => withLog(async () => {
    // A short timeout makes the notice (timeout / 10) end before the rest of the body is sent,
    // so the listener has already stopped accepting while this request is still in flight.
    const SHUTDOWN_TIMEOUT_SECS = 2;
    const REST_AFTER_MS = 300;
    const server = await start({ env: { SHUTDOWN_TIMEOUT_SECS: String(SHUTDOWN_TIMEOUT_SECS) } });
    const { hostname, port } = new URL(server.url);
    const username = uniqueName('inflight');
    const body = Buffer.from(JSON.stringify({ username, password: PASSWORD }));
    const head = 'POST /api/auth/register HTTP/1.1\r\n'
      + `Host: ${hostname}:${port}\r\n`
      + 'Content-Type: application/json\r\n'
      + `Content-Length: ${body.length}\r\n`
      + '\r\n';

    const conn = net.connect({ host: hostname, port: Number(port) });
    try {
      await within(5_000, 'TCP connect', once(conn, 'connect'));
      let received = Buffer.alloc(0);
      let closed = false;
      conn.on('data', (chunk) => { received = Buffer.concat([received, chunk]); });
      conn.on('close', () => { closed = true; });
      conn.on('error', () => { /* reported through the missing response */ });
      const split = Math.floor(body.length / 2);
      conn.write(Buffer.concat([Buffer.from(head), body.subarray(0, split)]));
      await sleep(100); // the server has read the head and waits for the body

      let exitAt = null;
      server.exited.then(() => { exitAt = Date.now(); });
      const signalAt = Date.now();
      const stopping = server.stop();
      await sleep(REST_AFTER_MS);
      const stillRunning = server.exitInfo() === null;
      conn.write(body.subarray(split));

      // Read one complete response: head, then Content-Length bytes of body.
      const deadline = Date.now() + 10_000;
      let response = null;
      while (Date.now() < deadline) {
        const text = received.toString('latin1');
        const end = text.indexOf('\r\n\r\n');
        if (end >= 0) {
          const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, end))?.[1] ?? NaN);
          if (Number.isInteger(length) && received.length >= end + 4 + length) {
            response = { head: text.slice(0, end), body: received.subarray(end + 4, end + 4 + length).toString('utf8') };
            break;
          }
        }
        if (closed) break;
        await sleep(20);
      }
      assert.ok(stillRunning, `expected the process to still be running ${REST_AFTER_MS} ms after SIGTERM with a request in flight, it exited: ${show(server.exitInfo())}`);
      assert.ok(response, `expected a complete HTTP response to the in-flight POST /api/auth/register, got ${show(received.toString('latin1'))} (connection ${closed ? 'closed' : 'open'})`);
      const statusLine = response.head.split('\r\n')[0];
      assert.match(statusLine, /^HTTP\/1\.1 201 /, `expected "HTTP/1.1 201 Created" for the in-flight register, got ${show(statusLine)} ${response.body}`);
      const json = JSON.parse(response.body);
      assert.equal(json?.user?.username, username, `expected {user:{username:${show(username)}}}, got ${response.body}`);

      const code = await stopping;
      assert.equal(code, 0, `expected exit code 0 after SIGTERM, got ${show(server.exitInfo())}`);
      assert.ok(exitAt - signalAt <= (SHUTDOWN_TIMEOUT_SECS * 1_000) + EXIT_SLACK_MS,
        `expected the process to exit within ${SHUTDOWN_TIMEOUT_SECS} s + ${EXIT_SLACK_MS} ms of SIGTERM, got ${exitAt - signalAt} ms`);
      const complete = server.logs().map(stripAnsi).filter((line) => /drain complete/.test(line));
      assert.ok(complete.some((line) => /http_finished=true/.test(line)),
        `expected "drain complete ... http_finished=true" in the log, got ${complete.length ? show(complete) : 'no drain complete line'}`);
    } finally {
      conn.destroy();
    }
  }));

  it('new sessions are refused while draining, existing ones are told to go', { timeout: 30_000 }, () => withLog(async () => {
    const SHUTDOWN_TIMEOUT_SECS = 10;
    const server = await start({ env: { SHUTDOWN_TIMEOUT_SECS: String(SHUTDOWN_TIMEOUT_SECS) } });
    const user = await createUser(server.url, 'draining');
    const socket = await user.connect('websocket');
    await join(socket, uniqueRoom('draining'));
    const notice = nextEvent(socket, 'server:draining', () => true, 5_000);
    const disconnected = nextDisconnect(socket, (SHUTDOWN_TIMEOUT_SECS * 1_000) + EXIT_SLACK_MS);

    const stopping = server.stop();
    // The notice proves the drain has begun; the transport is closed only after a further
    // notice period, so the process is still serving.
    const payload = await notice;
    assert.ok(payload && Number.isInteger(payload.reconnect_after_ms) && payload.reconnect_after_ms >= 0,
      `expected server:draining {reconnect_after_ms: integer >= 0}, got ${show(payload)}`);
    const res = await api(server.url, '/socket.io/?EIO=4&transport=polling', { timeoutMs: 3_000 });
    const ready = await readyStatus(server.url).catch((err) => `no answer (${err.cause?.code ?? err.message})`);
    assert.equal(server.exitInfo(), null, 'expected the process to still run right after server:draining');
    assert.equal(res.status, 503, `expected a new Engine.IO session (GET /socket.io/?EIO=4&transport=polling) to get 503 while draining, got ${res.status} ${res.text.slice(0, 300)}`);
    assert.ok(typeof res.json?.error?.code === 'string' && typeof res.json?.error?.message === 'string',
      `expected a JSON error body {"error":{"code","message"}} with the 503, got ${show(res.headers.get('content-type'))} ${res.text.slice(0, 300)}`);
    assert.equal(ready, 503, `expected GET /health/ready to be 503 while draining, got ${show(ready)}`);

    const reason = await disconnected;
    assert.ok(RECONNECTING_REASONS.includes(reason), `expected disconnect reason ${show(RECONNECTING_REASONS)}, got ${show(reason)}`);
    const code = await stopping;
    assert.equal(code, 0, `expected exit code 0 after SIGTERM, got ${show(server.exitInfo())}`);
  }));
});
