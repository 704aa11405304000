// End-to-end tests of a roomcast cluster: several instances sharing Redis and one database,
// driven through the HTTP API and the official socket.io-client.
//
// The suite does not start servers. It needs:
//   ROOMCAST_URLS  comma-separated base URLs of (at least) three running instances A, B, C
//   ADMIN_TOKEN    the admin bearer token they were started with
//   ROOMCAST_INSTANCE_IDS  optional, comma-separated instance ids of those URLs
//                          (default web-1, web-2, web-3, ...)
// Without ROOMCAST_URLS the whole suite is skipped.
import assert from 'node:assert/strict';
import { afterEach, before, describe, it } from 'node:test';
import {
  EVENT_TIMEOUT_MS, PASSWORD, TEST_TIMEOUT_MS,
  api, closeAllSockets, collectEvents, connect, emitAck, errorCode, join, login, nextDisconnect,
  register, say, show, sleep, uniqueName, uniqueRoom,
} from '../harness.mjs';

const URLS = (process.env.ROOMCAST_URLS ?? '').split(',').map((u) => u.trim().replace(/\/+$/, '')).filter(Boolean);
const ADMIN_TOKEN = process.env.ADMIN_TOKEN ?? '';
const EXPECTED_IDS = process.env.ROOMCAST_INSTANCE_IDS
  ? process.env.ROOMCAST_INSTANCE_IDS.split(',').map((s) => s.trim())
  : URLS.map((_, i) => `web-${i + 1}`);

const SKIP = URLS.length === 0
  ? 'ROOMCAST_URLS is not set: the cluster suite needs three running instances (see tests/js/README.md)'
  : false;

const [A, B, C] = [0, 1, 2];
const NAMES = ['A', 'B', 'C'];
// After the first copy of an event arrives, keep counting this long to catch duplicates.
const DUPLICATE_WINDOW_MS = 1_000;
// Presence is coalesced to at most one event per room per second.
const PRESENCE_WAIT_MS = 3_000;
// Cross-instance state (presence after a disconnect) may take a moment to settle.
const SETTLE_WAIT_MS = 3_000;
const DEFAULT_RATE_PER_SEC = 20;
const DEFAULT_RATE_BURST = 40;

const label = (i) => `${NAMES[i]} (${URLS[i]})`;
const inRoom = (room) => (payload) => payload && payload.room === room;

/** Register a fresh user on `registerAt`, log in on `loginAt`; the cookie works on every instance. */
async function clusterUser(prefix, { registerAt = A, loginAt = registerAt } = {}) {
  const username = uniqueName(prefix);
  const user = await register(URLS[registerAt], username, PASSWORD);
  const cookie = await login(URLS[loginAt], username, PASSWORD);
  return {
    id: user.id,
    username,
    cookie,
    api: (i, apiPath, opts = {}) => api(URLS[i], apiPath, { cookie, ...opts }),
    connect: (i, transport = 'websocket', opts = {}) => connect(URLS[i], cookie, { transport, ...opts }),
    /** Another login of the same user (a second device): a new, separate session cookie. */
    loginAgain: (i) => login(URLS[i], username, PASSWORD),
  };
}

/** Poll fn() until check(value) holds; returns the last value either way. */
async function pollUntil(fn, check, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let value = await fn();
  while (!check(value) && Date.now() < deadline) {
    await sleep(100);
    value = await fn();
  }
  return value;
}

/** The room's entry in GET /api/rooms on instance i (or undefined), plus the raw response. */
async function roomEntry(user, i, room) {
  const res = await user.api(i, '/api/rooms');
  assert.equal(res.status, 200, `GET /api/rooms on ${label(i)}: expected 200, got ${res.status} ${res.text}`);
  assert.ok(Array.isArray(res.json?.rooms), `GET /api/rooms on ${label(i)}: expected {rooms:[...]}, got ${res.text}`);
  return { entry: res.json.rooms.find((r) => r.name === room), res };
}

/** Wait until every collector has at least `n` matching events, then keep collecting for the duplicate window. */
async function untilEachHas(collectors, n, predicate, timeoutMs, what) {
  await Promise.all(collectors.map(({ name, col }) => col.until(
    (events) => events.filter(predicate).length >= n, timeoutMs, `${what} on ${name}`,
  )));
  await sleep(DUPLICATE_WINDOW_MS);
}

describe('roomcast cluster', { skip: SKIP, timeout: 20 * TEST_TIMEOUT_MS }, () => {
  const opts = { timeout: TEST_TIMEOUT_MS };

  before(async () => {
    assert.ok(URLS.length >= 3, `ROOMCAST_URLS: expected at least 3 instance URLs, got ${show(URLS)}`);
    assert.ok(ADMIN_TOKEN, 'ADMIN_TOKEN: expected the admin bearer token of the cluster, got nothing');
    // Every instance must be up and identify itself as expected before any story runs.
    for (let i = 0; i < 3; i += 1) {
      let res;
      try {
        res = await api(URLS[i], '/health/ready');
      } catch (err) {
        assert.fail(`GET /health/ready on ${label(i)}: expected 200, got no answer (${err.cause?.code ?? err.message})`);
      }
      assert.equal(res.status, 200, `GET /health/ready on ${label(i)}: expected 200, got ${res.status} ${res.text}`);
      assert.equal(res.headers.get('x-instance-id'), EXPECTED_IDS[i],
        `X-Instance-Id of ${label(i)}: expected ${show(EXPECTED_IDS[i])}, got ${show(res.headers.get('x-instance-id'))}`);
    }
  });

  afterEach(() => closeAllSockets());

  it('a session cookie from a login on A works on B and C, over HTTP and Socket.IO', opts, async () => {
    const user = await clusterUser('roam', { registerAt: C, loginAt: A });
    for (const i of [A, B, C]) {
      const res = await user.api(i, '/api/me');
      assert.equal(res.status, 200, `GET /api/me on ${label(i)} with the cookie from A: expected 200, got ${res.status} ${res.text}`);
      assert.deepEqual(res.json?.user, { id: user.id, username: user.username },
        `GET /api/me on ${label(i)}: expected user ${show({ id: user.id, username: user.username })}, got ${res.text}`);
      assert.equal(res.headers.get('x-instance-id'), EXPECTED_IDS[i],
        `GET /api/me on ${label(i)}: expected X-Instance-Id ${show(EXPECTED_IDS[i])}, got ${show(res.headers.get('x-instance-id'))}`);
    }
    for (const i of [A, B, C]) {
      let socket;
      try {
        socket = await user.connect(i, 'websocket');
      } catch (err) {
        assert.fail(`socket on ${label(i)} with the cookie from A: expected to connect, got ${err.message}`);
      }
      assert.ok(socket.connected, `socket on ${label(i)}: expected connected, got disconnected`);
      // The connection is really usable there, not merely accepted.
      const ack = await join(socket, uniqueRoom('roam'));
      assert.equal(ack.members, 1, `join on ${label(i)}: expected members 1 in a fresh room, got ${show(ack)}`);
    }
  });

  it('a message sent on A reaches B (polling) and C (websocket) exactly once each, and the sender once', opts, async () => {
    const [xa, yb, zc] = await Promise.all([clusterUser('send', { registerAt: A }), clusterUser('pollb', { registerAt: B }), clusterUser('wsc', { registerAt: C })]);
    const room = uniqueRoom('fanout');
    const sa = await xa.connect(A, 'websocket');
    const sb = await yb.connect(B, 'polling');
    const sc = await zc.connect(C, 'websocket');
    for (const s of [sa, sb, sc]) await join(s, room);

    const collectors = [['A/sender', sa], ['B/polling', sb], ['C/websocket', sc]]
      .map(([name, s]) => ({ name, col: collectEvents(s, 'message') }));
    const text = `hello across the cluster ${uniqueName('t')}`;
    const ack = await say(sa, room, text);
    assert.equal(typeof ack.id, 'number', `message ack: expected a numeric id, got ${show(ack)}`);
    const isIt = (m) => m && m.room === room && m.text === text;
    await untilEachHas(collectors, 1, isIt, EVENT_TIMEOUT_MS, 'the message');

    for (const { name, col } of collectors) {
      col.stop();
      const got = col.events.filter(isIt);
      assert.equal(got.length, 1, `${name}: expected the message exactly once within ${DUPLICATE_WINDOW_MS} ms of its arrival, got ${got.length}: ${show(got)}`);
      const [m] = got;
      assert.equal(m.id, ack.id, `${name}: expected message id ${ack.id} (from the ack), got ${show(m)}`);
      assert.equal(m.instance_id, EXPECTED_IDS[A], `${name}: expected instance_id ${show(EXPECTED_IDS[A])} (the sender's instance), got ${show(m.instance_id)}`);
      assert.deepEqual(m.user, { id: xa.id, username: xa.username }, `${name}: expected user ${show({ id: xa.id, username: xa.username })}, got ${show(m.user)}`);
      const others = col.events.filter((e) => !isIt(e));
      assert.deepEqual(others, [], `${name}: expected no other message events, got ${show(others)}`);
    }
  });

  it('30 messages from one socket on A arrive on C in order, with increasing ids, none missing or duplicated', opts, async () => {
    const COUNT = 30;
    const [xa, zc] = await Promise.all([clusterUser('burst', { registerAt: A }), clusterUser('recv', { registerAt: C })]);
    const room = uniqueRoom('order');
    const sa = await xa.connect(A, 'websocket');
    const sc = await zc.connect(C, 'websocket');
    await join(sa, room);
    await join(sc, room);

    const col = collectEvents(sc, 'message');
    const texts = Array.from({ length: COUNT }, (_, i) => `seq ${String(i).padStart(2, '0')}`);
    // Emit all of them back to back, without waiting for acks in between.
    const acks = await Promise.all(texts.map((text) => emitAck(sa, 'message', { room, text })));
    const bad = acks.map((ack, i) => [i, ack]).filter(([, ack]) => ack?.ok !== true);
    assert.deepEqual(bad, [], `message acks: expected all ${COUNT} to be {ok:true} (within the burst), got failures ${show(bad)}`);

    const mine = (m) => m && m.room === room;
    await col.until((events) => events.filter(mine).length >= COUNT, 2 * EVENT_TIMEOUT_MS, `${COUNT} messages`);
    await sleep(DUPLICATE_WINDOW_MS);
    col.stop();
    const got = col.events.filter(mine);
    assert.equal(got.length, COUNT, `C: expected exactly ${COUNT} messages, got ${got.length} (texts ${show(got.map((m) => m.text))})`);
    assert.deepEqual(got.map((m) => m.text), texts, 'C: expected the messages in send order (texts differ)');
    const ids = got.map((m) => m.id);
    for (let i = 1; i < ids.length; i += 1) {
      assert.ok(ids[i] > ids[i - 1], `C: expected strictly increasing ids, got ${show(ids)}`);
    }
    assert.deepEqual(ids, acks.map((a) => a.id), `C: expected the ids from the acks ${show(acks.map((a) => a.id))}, got ${show(ids)}`);
  });

  it('an admin emit on B to user:<id> reaches that user on all three instances exactly once, and nobody else', opts, async () => {
    const [target, bystander] = await Promise.all([clusterUser('target', { registerAt: B }), clusterUser('bystander', { registerAt: C })]);
    const sockets = [];
    for (const i of [A, B, C]) sockets.push([`target on ${label(i)}`, await target.connect(i, 'websocket')]);
    const others = [];
    for (const i of [A, B, C]) others.push([`bystander on ${label(i)}`, await bystander.connect(i, 'websocket')]);

    const collectors = sockets.map(([name, s]) => ({ name, col: collectEvents(s, 'notification') }));
    const otherCollectors = others.map(([name, s]) => ({ name, col: collectEvents(s, 'notification') }));
    const data = { title: 'cluster notice', nonce: uniqueName('n'), nested: { n: 1 } };
    const res = await api(URLS[B], '/api/admin/emit', {
      method: 'POST',
      body: { room: `user:${target.id}`, event: 'notification', data },
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    assert.equal(res.status, 202, `POST /api/admin/emit on ${label(B)}: expected 202, got ${res.status} ${res.text}`);

    const isIt = (d) => d && d.nonce === data.nonce;
    await untilEachHas(collectors, 1, isIt, EVENT_TIMEOUT_MS, 'the notification');
    for (const { col } of [...collectors, ...otherCollectors]) col.stop();
    for (const { name, col } of collectors) {
      assert.equal(col.events.length, 1, `${name}: expected the notification exactly once, got ${col.events.length}: ${show(col.events)}`);
      assert.deepEqual(col.events[0], data, `${name}: expected data ${show(data)}, got ${show(col.events[0])}`);
    }
    for (const { name, col } of otherCollectors) {
      assert.deepEqual(col.events, [], `${name}: expected no notification for another user, got ${show(col.events)}`);
    }
  });

  it('presence counts agree across instances, on join and after a disconnect', opts, async () => {
    const [x, y, z] = await Promise.all([clusterUser('px', { registerAt: A }), clusterUser('py', { registerAt: B }), clusterUser('pz', { registerAt: C })]);
    const room = uniqueRoom('presence');
    const sx = await x.connect(A, 'websocket');
    const sy = await y.connect(B, 'websocket');
    const sz = await z.connect(C, 'websocket');
    const members = [['X on A', sx], ['Y on B', sy], ['Z on C', sz]]
      .map(([name, s]) => ({ name, col: collectEvents(s, 'presence') }));

    const counts = [];
    for (const s of [sx, sy, sz]) counts.push((await join(s, room)).members);
    assert.deepEqual(counts, [1, 2, 3], `join acks of X (A), Y (B), Z (C): expected members 1,2,3, got ${show(counts)}`);

    for (const i of [A, B, C]) {
      const { entry, res } = await roomEntry(x, i, room);
      assert.equal(entry?.members, 3, `GET /api/rooms on ${label(i)}: expected room '${room}' with members 3, got ${show(entry)} (rooms: ${res.text.slice(0, 500)})`);
    }

    const three = (p) => inRoom(room)(p) && p.members === 3;
    await Promise.all(members.map(({ name, col }) => col.until((ev) => ev.some(three), PRESENCE_WAIT_MS, `presence {room, members:3} on ${name}`)));

    // Z leaves by disconnecting: the count drops to 2 everywhere.
    const xy = members.slice(0, 2);
    sz.close();
    const last = await pollUntil(() => roomEntry(x, A, room), ({ entry }) => entry?.members === 2, SETTLE_WAIT_MS);
    assert.equal(last.entry?.members, 2, `GET /api/rooms on ${label(A)} after Z (on C) disconnected: expected members 2, got ${show(last.entry)}`);
    const two = (p) => inRoom(room)(p) && p.members === 2;
    await Promise.all(xy.map(({ name, col }) => col.until((ev) => ev.some(two), PRESENCE_WAIT_MS, `presence {room, members:2} on ${name} after Z disconnected`)));
    for (const { col } of members) col.stop();
  });

  it('a user with two tabs on two instances counts once in members', opts, async () => {
    const [user, other] = await Promise.all([clusterUser('tabs', { registerAt: A }), clusterUser('other', { registerAt: C })]);
    const room = uniqueRoom('tabs');
    const tabA = await user.connect(A, 'websocket');
    const tabB = await user.connect(B, 'polling');
    const first = await join(tabA, room);
    const second = await join(tabB, room);
    assert.equal(first.members, 1, `join of tab 1 (on A): expected members 1, got ${show(first)}`);
    assert.equal(second.members, 1, `join of tab 2 (same user, on B): expected members still 1, got ${show(second)}`);
    for (const i of [A, B, C]) {
      const { entry } = await roomEntry(user, i, room);
      assert.equal(entry?.members, 1, `GET /api/rooms on ${label(i)} with one user in two tabs: expected members 1, got ${show(entry)}`);
    }
    // A second user still counts, so the 1 above was about distinct users.
    const so = await other.connect(C, 'websocket');
    const third = await join(so, room);
    assert.equal(third.members, 2, `join of another user (on C): expected members 2, got ${show(third)}`);

    // Closing one tab does not make the user leave: the other tab is still in the room.
    tabA.close();
    await sleep(1_500);
    for (const i of [A, C]) {
      const { entry } = await roomEntry(other, i, room);
      assert.equal(entry?.members, 2, `GET /api/rooms on ${label(i)} after the user closed one of two tabs: expected members 2, got ${show(entry)}`);
    }
  });

  it('history written through A is read through C', opts, async () => {
    const [writer, reader] = await Promise.all([clusterUser('writer', { registerAt: A }), clusterUser('reader', { registerAt: C })]);
    const room = uniqueRoom('history');
    const sa = await writer.connect(A, 'websocket');
    await join(sa, room);
    const texts = ['first', 'second', 'third'].map((t) => `${t} ${uniqueName('h')}`);
    const acks = [];
    for (const text of texts) acks.push(await say(sa, room, text));

    const res = await reader.api(C, `/api/rooms/${room}/messages`);
    assert.equal(res.status, 200, `GET /api/rooms/${room}/messages on ${label(C)}: expected 200, got ${res.status} ${res.text}`);
    const http = res.json?.messages;
    assert.ok(Array.isArray(http), `GET messages on ${label(C)}: expected {messages:[...]}, got ${res.text}`);
    assert.deepEqual(http.map((m) => m.text), [...texts].reverse(), `GET messages on ${label(C)}: expected texts newest first, got ${show(http.map((m) => m.text))}`);
    assert.deepEqual(http.map((m) => m.id), acks.map((a) => a.id).reverse(), `GET messages on ${label(C)}: expected ids ${show(acks.map((a) => a.id).reverse())}, got ${show(http.map((m) => m.id))}`);

    const sc = await reader.connect(C, 'websocket');
    const ack = await join(sc, room);
    assert.ok(Array.isArray(ack.history), `join ack on ${label(C)}: expected a history array, got ${show(ack)}`);
    assert.deepEqual(ack.history.map((m) => m.text), texts, `join ack history on ${label(C)}: expected texts oldest first, got ${show(ack.history.map((m) => m.text))}`);
    assert.deepEqual(ack.history.map((m) => m.id), acks.map((a) => a.id), `join ack history on ${label(C)}: expected ids ${show(acks.map((a) => a.id))}, got ${show(ack.history.map((m) => m.id))}`);
    for (const m of ack.history) {
      assert.deepEqual(m.user, { id: writer.id, username: writer.username }, `join ack history on ${label(C)}: expected user ${show({ id: writer.id, username: writer.username })}, got ${show(m)}`);
    }
  });

  it('logout on B disconnects the session\'s sockets on A and C and ends the session everywhere', opts, async () => {
    const [user, bystander] = await Promise.all([clusterUser('logout', { registerAt: A }), clusterUser('stay', { registerAt: B })]);
    const sa = await user.connect(A, 'websocket');
    const sc = await user.connect(C, 'polling');
    // Another session of the same user, and another user, are not logged out.
    const otherCookie = await user.loginAgain(C);
    const otherSession = await connect(URLS[C], otherCookie, { transport: 'websocket' });
    const sbystander = await bystander.connect(A, 'websocket');
    const unaffected = [['the same user\'s other session on C', otherSession], ['another user on A', sbystander]];
    const unexpected = [];
    for (const [name, s] of unaffected) s.on('disconnect', (reason) => unexpected.push(`${name}: ${reason}`));

    const gone = [['A (websocket)', nextDisconnect(sa)], ['C (polling)', nextDisconnect(sc)]];
    const res = await user.api(B, '/api/auth/logout', { method: 'POST' });
    assert.equal(res.status, 204, `POST /api/auth/logout on ${label(B)}: expected 204, got ${res.status} ${res.text}`);
    for (const [name, promise] of gone) {
      try {
        await promise;
      } catch (err) {
        assert.fail(`socket of the logged-out session on ${name}: expected 'disconnect' within ${EVENT_TIMEOUT_MS} ms, got ${err.message}`);
      }
    }

    const me = await user.api(A, '/api/me');
    assert.equal(me.status, 401, `GET /api/me on ${label(A)} with the logged-out cookie: expected 401, got ${me.status} ${me.text}`);
    assert.equal(errorCode({ ok: false, error: me.json?.error }), 'unauthorized', `GET /api/me on ${label(A)}: expected error code 'unauthorized', got ${me.text}`);

    await sleep(500);
    assert.deepEqual(unexpected, [], `expected no other socket to be disconnected by the logout, got ${show(unexpected)}`);
    for (const [name, s] of unaffected) assert.ok(s.connected, `${name}: expected still connected after the logout`);
    const still = await api(URLS[A], '/api/me', { cookie: otherCookie });
    assert.equal(still.status, 200, `GET /api/me on ${label(A)} with the same user's other session: expected 200, got ${still.status} ${still.text}`);
  });

  it('the message rate limit is cluster-wide', opts, async (t) => {
    const PER_SOCKET = 30;
    const user = await clusterUser('flood', { registerAt: A });
    const room = uniqueRoom('flood');
    const sockets = [];
    for (const i of [A, B, C]) {
      const s = await user.connect(i, 'websocket');
      await join(s, room);
      sockets.push(s);
    }
    const started = Date.now();
    const acks = await Promise.all(sockets.map((s, i) => Promise.all(
      Array.from({ length: PER_SOCKET }, (_, n) => emitAck(s, 'message', { room, text: `flood ${NAMES[i]} ${n}` }, 10_000)),
    )));
    const elapsedMs = Date.now() - started;
    const split = acks.map((list, i) => ({
      instance: NAMES[i],
      accepted: list.filter((a) => a?.ok === true).length,
      rate_limited: list.filter((a) => errorCode(a) === 'rate_limited').length,
    }));
    const accepted = split.reduce((n, s) => n + s.accepted, 0);
    const limited = split.reduce((n, s) => n + s.rate_limited, 0);
    const total = 3 * PER_SOCKET;
    t.diagnostic(`rate limit split over ${elapsedMs} ms: ${show(split)}; accepted ${accepted}, rate_limited ${limited} of ${total}`);

    const strange = acks.flat().filter((a) => a?.ok !== true && errorCode(a) !== 'rate_limited');
    assert.deepEqual(strange, [], `every ack: expected {ok:true} or a rate_limited error, got ${show(strange.slice(0, 5))}`);
    assert.ok(accepted > 0, `accepted messages: expected > 0, got ${accepted} (split ${show(split)})`);
    assert.ok(accepted < total, `accepted messages: expected < ${total} (a cluster-wide burst of ${DEFAULT_RATE_BURST}), got ${accepted} (split ${show(split)})`);
    // A per-user bucket shared by the cluster admits about burst + rate * elapsed; per-instance
    // buckets would admit everything (30 per socket is within each instance's burst).
    const allowance = DEFAULT_RATE_BURST + Math.ceil((DEFAULT_RATE_PER_SEC * elapsedMs) / 1000);
    assert.ok(limited >= 30, `rate_limited acks: expected at least 30 of ${total}, got ${limited} (split ${show(split)}, ${elapsedMs} ms)`);
    assert.ok(accepted <= allowance, `accepted messages: expected at most burst + rate x elapsed = ${allowance}, got ${accepted} (split ${show(split)})`);
  });

  it('an analytics opt-out on A is honoured on C', opts, async () => {
    const user = await clusterUser('optout', { registerAt: B, loginAt: A });
    const initial = await user.api(C, '/api/me');
    assert.equal(initial.json?.analytics_opted_out, false, `GET /api/me on ${label(C)} before the opt-out: expected analytics_opted_out false, got ${initial.status} ${initial.text}`);

    const res = await user.api(A, '/api/analytics/opt-out', { method: 'POST' });
    assert.equal(res.status, 204, `POST /api/analytics/opt-out on ${label(A)}: expected 204, got ${res.status} ${res.text}`);

    const me = await user.api(C, '/api/me');
    assert.equal(me.status, 200, `GET /api/me on ${label(C)}: expected 200, got ${me.status} ${me.text}`);
    assert.equal(me.json?.analytics_opted_out, true, `GET /api/me on ${label(C)} after the opt-out on A: expected analytics_opted_out true, got ${me.text}`);
    const status = await user.api(B, '/api/analytics/status');
    assert.deepEqual(status.json, { opted_out: true }, `GET /api/analytics/status on ${label(B)}: expected {opted_out:true}, got ${status.status} ${status.text}`);
    const event = await user.api(C, '/api/analytics/events', { method: 'POST', body: { name: 'page_view', props: { path: '/' } } });
    assert.equal(event.status, 204, `POST /api/analytics/events on ${label(C)} after the opt-out on A: expected 204 (dropped), got ${event.status} ${event.text}`);

    // The choice follows the user to a second device logged in on C.
    const phone = await user.loginAgain(C);
    const phoneMe = await api(URLS[C], '/api/me', { cookie: phone });
    assert.equal(phoneMe.json?.analytics_opted_out, true, `GET /api/me on ${label(C)} from a second device of the user: expected analytics_opted_out true, got ${phoneMe.status} ${phoneMe.text}`);
  });
});
