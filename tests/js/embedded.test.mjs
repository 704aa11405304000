// End-to-end tests of one embedded roomcast server, driven through the HTTP API and the
// official socket.io-client, repeated for the WebSocket and the HTTP long-polling transport.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import {
  ACK_TIMEOUT_MS, DEFAULT_RATE_BURST, EVENT_TIMEOUT_MS, HISTORY_LIMIT_MAX, MAX_TEXT, NO_PAYLOAD,
  PRESENCE_TIMEOUT_MS, QUIET_WINDOW_MS, SESSION_COOKIE, TEST_TIMEOUT_MS, TRANSPORTS,
  adminEmit, api, closeAllSockets, collectEvents, connect, connectExpectingError, createUser,
  emitAck, errorCode, join, login, nextDisconnect, nextEvent, randomHex, readyStatus, say, show,
  sleep, startServer, uniqueRoom,
} from './harness.mjs';

const MESSAGE_FIELDS = ['id', 'room', 'user', 'text', 'ts', 'instance_id'];
const pick = (obj, keys) => Object.fromEntries(keys.filter((k) => obj && k in obj).map((k) => [k, obj[k]]));
const userRef = (user) => ({ id: user.id, username: user.username });

function assertErrorAck(ack, code, what) {
  assert.equal(ack?.ok, false, `${what}: expected an error ack {ok:false, error:{code:'${code}'}}, got ${show(ack)}`);
  assert.equal(errorCode(ack), code, `${what}: expected error code '${code}', got ${show(ack)}`);
  assert.equal(typeof ack.error.message, 'string', `${what}: expected error.message to be a string, got ${show(ack)}`);
}

function assertStrictlyIncreasing(values, what) {
  for (let i = 1; i < values.length; i += 1) {
    assert.ok(values[i] > values[i - 1], `${what}: expected strictly increasing values, got ${show(values)}`);
  }
}

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  closeAllSockets();
  if (!server) return;
  const code = await server.stop();
  const lines = server.logs();
  const panics = server.panics();
  const problems = [];
  if (server.unexpectedExit()) problems.push(`expected the server to run until stopped, but it exited on its own: ${show(server.unexpectedExit())}`);
  if (panics.length) problems.push(`expected no panic in the server log, got ${panics.length}:\n${panics.join('\n')}`);
  if (code !== 0 && !server.unexpectedExit()) problems.push(`expected the server to exit 0 after SIGTERM, got ${show(server.exitInfo())}`);
  assert.deepEqual(problems, [], `${problems.join('\n')}\n--- last server log lines ---\n${lines.slice(-40).join('\n')}`);
});

for (const transport of TRANSPORTS) {
  describe(`embedded server over ${transport}`, { timeout: 10 * TEST_TIMEOUT_MS }, () => {
    const opts = { timeout: TEST_TIMEOUT_MS };

    afterEach(() => closeAllSockets());

    /** Two fresh users, each with a connected socket, both joined to a fresh room. */
    async function twoUsersInRoom() {
      const [alice, bob] = await Promise.all([createUser(server.url, 'alice'), createUser(server.url, 'bob')]);
      const room = uniqueRoom();
      const sa = await alice.connect(transport);
      const sb = await bob.connect(transport);
      await join(sa, room);
      await join(sb, room);
      return { room, alice, bob, sa, sb };
    }

    it('refuses a connection without a valid logged-in session cookie', opts, async () => {
      const cases = [['no cookie', undefined], ['a garbage cookie', `${SESSION_COOKIE}=garbage-${randomHex()}`]];
      const user = await createUser(server.url, 'tamper');
      const value = user.cookie.slice(SESSION_COOKIE.length + 1);
      for (const at of [0, Math.floor(value.length / 2)]) {
        const tampered = value.slice(0, at) + (value[at] === 'x' ? 'y' : 'x') + value.slice(at + 1);
        cases.push([`a cookie tampered at character ${at}`, `${SESSION_COOKIE}=${tampered}`]);
      }
      for (const [what, cookie] of cases) {
        const err = await connectExpectingError(server.url, cookie, { transport });
        assert.equal(err.message, 'unauthorized',
          `connect with ${what}: expected connect_error "unauthorized", got ${show(err.message)} (${show(err.data ?? err.description ?? null)})`);
      }
      // The untouched cookie still works, so the refusals above were about the cookie.
      const socket = await user.connect(transport);
      assert.ok(socket.connected, 'connect with the valid cookie: expected a connected socket');
    });

    it('lets a logged-in user join a room', opts, async () => {
      const user = await createUser(server.url);
      const room = uniqueRoom();
      const socket = await user.connect(transport);
      const ack = await emitAck(socket, 'join', { room });
      assert.equal(ack?.ok, true, `join ack: expected ok:true, got ${show(ack)}`);
      assert.equal(ack.room, room, `join ack: expected room '${room}', got ${show(ack)}`);
      assert.ok(Number.isInteger(ack.members) && ack.members >= 1, `join ack: expected members >= 1, got ${show(ack.members)}`);
      assert.ok(Array.isArray(ack.history), `join ack: expected a history array, got ${show(ack.history)}`);
      assert.equal(ack.history.length, 0, `join ack of a fresh room: expected empty history, got ${show(ack.history)}`);

      const rooms = await user.api('/api/rooms');
      assert.equal(rooms.status, 200, `GET /api/rooms: expected 200, got ${rooms.status} ${rooms.text}`);
      const entry = rooms.json?.rooms?.find((r) => r.name === room);
      assert.ok(entry, `GET /api/rooms: expected room '${room}' to be listed, got ${rooms.text}`);
      assert.equal(entry.members, 1, `GET /api/rooms: expected members 1 for '${room}', got ${show(entry)}`);
    });

    it('acks a message and delivers it exactly once to the sender and to the other member', opts, async () => {
      const { room, alice, sa, sb } = await twoUsersInRoom();
      const gotA = collectEvents(sa, 'message');
      const gotB = collectEvents(sb, 'message');
      const text = `hello from ${alice.username} ${randomHex()}`;
      const ack = await emitAck(sa, 'message', { room, text });
      assert.equal(ack?.ok, true, `message ack: expected ok:true, got ${show(ack)}`);
      assert.ok(Number.isInteger(ack.id), `message ack: expected an integer id, got ${show(ack)}`);
      assert.equal(typeof ack.ts, 'number', `message ack: expected a numeric ts, got ${show(ack)}`);
      assert.ok(Math.abs(ack.ts - Date.now()) < 10 * 60_000, `message ack: expected ts in ms since epoch near now, got ${ack.ts}`);

      const expected = { id: ack.id, room, user: userRef(alice), text, ts: ack.ts, instance_id: server.instanceId };
      for (const [who, got] of [['sender', gotA], ['other member', gotB]]) {
        await got.until((evs) => evs.some((m) => m?.id === ack.id), EVENT_TIMEOUT_MS, `the ${who}'s copy of message ${ack.id}`);
      }
      await sleep(QUIET_WINDOW_MS);
      for (const [who, got] of [['sender', gotA], ['other member', gotB]]) {
        const copies = got.events.filter((m) => m?.id === ack.id);
        assert.equal(copies.length, 1, `${who}: expected exactly one 'message' event for id ${ack.id}, got ${copies.length}: ${show(got.events)}`);
        assert.deepEqual(pick(copies[0], MESSAGE_FIELDS), expected, `${who}: 'message' event payload`);
        assert.equal(got.events.length, 1, `${who}: expected no other 'message' events, got ${show(got.events)}`);
      }
    });

    it('delivers messages from one socket in send order with increasing ids', opts, async () => {
      const { room, sa, sb } = await twoUsersInRoom();
      const count = 20;
      const gotB = collectEvents(sb, 'message');
      const texts = Array.from({ length: count }, (_, i) => `order-${String(i).padStart(2, '0')}-${randomHex(3)}`);
      const acks = await Promise.all(texts.map((text) => emitAck(sa, 'message', { room, text })));
      const failed = acks.filter((ack) => ack?.ok !== true);
      assert.deepEqual(failed, [], `expected all ${count} message acks to be ok`);
      assertStrictlyIncreasing(acks.map((a) => a.id), 'ack ids in send order');

      await gotB.until((evs) => evs.filter((m) => m?.room === room).length >= count, EVENT_TIMEOUT_MS, `${count} messages`);
      const received = gotB.events.filter((m) => m?.room === room);
      assert.deepEqual(received.map((m) => m.text), texts, 'other member: expected messages in send order');
      assert.deepEqual(received.map((m) => m.id), acks.map((a) => a.id), 'other member: expected the acked ids in send order');
      assertStrictlyIncreasing(received.map((m) => m.id), 'received ids');
    });

    it('applies join, message and leave sent back to back, without waiting for acks, in send order', opts, async () => {
      const user = await createUser(server.url, 'eager');
      const socket = await user.connect(transport);
      const rounds = 12;
      const rooms = Array.from({ length: rounds }, () => uniqueRoom('eager'));
      const pending = rooms.map((room) => [
        emitAck(socket, 'join', { room }),
        emitAck(socket, 'message', { room, text: `right after joining ${room}` }),
        emitAck(socket, 'leave', { room }),
      ]);
      const acks = await Promise.all(pending.map((events) => Promise.all(events)));
      acks.forEach(([joined, sent, left], i) => {
        assert.equal(joined?.ok, true, `join ${rooms[i]}: expected ok:true, got ${show(joined)}`);
        assert.equal(sent?.ok, true, `message sent right after join ${rooms[i]}: expected ok:true (the join applies first), got ${show(sent)}`);
        assert.equal(left?.ok, true, `leave ${rooms[i]}: expected ok:true, got ${show(left)}`);
        assert.equal(left.members, 0, `leave ${rooms[i]}: expected 0 members after the only member left, got ${show(left)}`);
      });
    });

    it('answers bad input with the documented error acks', opts, async () => {
      const user = await createUser(server.url);
      const room = uniqueRoom();
      const notJoined = uniqueRoom('elsewhere');
      const socket = await user.connect(transport);
      await join(socket, room);

      const cases = [
        ['join', { room: 'Bad Room!' }, 'invalid_room'],
        ['join', { room: 'user:1' }, 'invalid_room'],
        ['join', { room: 'a'.repeat(65) }, 'invalid_room'],
        ['join', { room: 42 }, 'invalid_payload'],
        ['join', 'a string', 'invalid_payload'],
        ['join', NO_PAYLOAD, 'invalid_payload'],
        ['join', {}, 'invalid_payload'],
        ['message', { room, text: 'x'.repeat(5000) }, 'invalid_text'],
        ['message', { room, text: 'x'.repeat(MAX_TEXT + 1) }, 'invalid_text'],
        ['message', { room, text: '' }, 'invalid_text'],
        ['message', { room: 42, text: 'hi' }, 'invalid_payload'],
        ['message', { room, text: 42 }, 'invalid_payload'],
        ['message', { room }, 'invalid_payload'],
        ['message', 'a string', 'invalid_payload'],
        ['message', NO_PAYLOAD, 'invalid_payload'],
        ['message', { room: notJoined, text: 'hi' }, 'not_in_room'],
        ['leave', { room: 42 }, 'invalid_payload'],
        [`no-such-event-${randomHex(3)}`, { room }, 'unknown_event'],
      ];
      const mismatches = [];
      for (const [event, payload, code] of cases) {
        const label = `${event} ${payload === NO_PAYLOAD ? '(no payload)' : show(payload).slice(0, 60)}`;
        try {
          const ack = await emitAck(socket, event, payload);
          if (ack?.ok !== false || errorCode(ack) !== code || typeof ack.error?.message !== 'string') {
            mismatches.push(`${label}: expected {ok:false, error:{code:'${code}', message}}, got ${show(ack)}`);
          }
        } catch (err) {
          mismatches.push(`${label}: expected error ack '${code}', got ${err.message}`);
        }
      }
      assert.deepEqual(mismatches, [], `error acks:\n${mismatches.join('\n')}`);

      assert.ok(socket.connected, 'after error acks: expected the socket to stay connected');
      const edge = await emitAck(socket, 'message', { room, text: 'y'.repeat(MAX_TEXT) });
      assert.equal(edge?.ok, true, `message of exactly ${MAX_TEXT} chars: expected ok:true, got ${show(edge)}`);
    });

    it('serves history in the join ack (oldest first) and over HTTP (newest first, paged)', opts, async () => {
      const [alice, bob] = await Promise.all([createUser(server.url, 'alice'), createUser(server.url, 'bob')]);
      const room = uniqueRoom('hist');
      const sa = await alice.connect(transport);
      await join(sa, room);
      const texts = Array.from({ length: 5 }, (_, i) => `history ${i} ${randomHex(3)}`);
      const sent = [];
      for (const text of texts) sent.push({ text, ...(await say(sa, room, text)) });
      const ids = sent.map((m) => m.id);

      const sb = await bob.connect(transport);
      const ack = await join(sb, room);
      assert.ok(Array.isArray(ack.history), `join ack: expected a history array, got ${show(ack)}`);
      assert.deepEqual(ack.history.map((m) => m.text), texts, 'join-ack history: expected the sent texts, oldest first');
      assert.deepEqual(ack.history.map((m) => m.id), ids, 'join-ack history: expected the acked ids, oldest first');
      assert.deepEqual(pick(ack.history[0], ['room', 'user']), { room, user: userRef(alice) }, 'join-ack history entry');

      const page = (query) => bob.api(`/api/rooms/${room}/messages${query}`);
      const all = await page('');
      assert.equal(all.status, 200, `GET messages: expected 200, got ${all.status} ${all.text}`);
      assert.equal(all.headers.get('x-instance-id'), server.instanceId, 'GET messages: expected X-Instance-Id header');
      assert.ok(Array.isArray(all.json?.messages), `GET messages: expected {messages:[...]}, got ${all.text}`);
      assert.deepEqual(all.json.messages.map((m) => m.id), [...ids].reverse(), 'GET messages: expected the ids newest first');
      assert.deepEqual(all.json.messages.map((m) => m.text), [...texts].reverse(), 'GET messages: expected the texts newest first');
      assert.deepEqual(pick(all.json.messages[0], ['room', 'user', 'ts']), { room, user: userRef(alice), ts: sent[4].ts },
        'GET messages: newest entry');

      const newest2 = await page('?limit=2');
      assert.deepEqual(newest2.json?.messages?.map((m) => m.id), [ids[4], ids[3]], `?limit=2: expected the two newest, got ${newest2.text}`);
      const older2 = await page(`?before=${ids[3]}&limit=2`);
      assert.deepEqual(older2.json?.messages?.map((m) => m.id), [ids[2], ids[1]], `?before=${ids[3]}&limit=2: got ${older2.text}`);
      const oldest = await page(`?before=${ids[1]}`);
      assert.deepEqual(oldest.json?.messages?.map((m) => m.id), [ids[0]], `?before=${ids[1]}: got ${oldest.text}`);
      const none = await page(`?before=${ids[0]}`);
      assert.deepEqual(none.json?.messages, [], `?before=${ids[0]}: expected no messages, got ${none.text}`);

      const tooMany = await page(`?limit=${HISTORY_LIMIT_MAX + 1}`);
      const clamped = tooMany.status === 200 && Array.isArray(tooMany.json?.messages) && tooMany.json.messages.length <= HISTORY_LIMIT_MAX;
      const rejected = tooMany.status === 400 && tooMany.json?.error?.code === 'invalid_request';
      assert.ok(rejected || clamped,
        `?limit=${HISTORY_LIMIT_MAX + 1}: expected 400 invalid_request (or a clamped 200), got ${tooMany.status} ${tooMany.text}`);
      const bad = await page('?limit=abc');
      assert.equal(bad.status, 400, `?limit=abc: expected 400, got ${bad.status} ${bad.text}`);

      const anonymous = await api(server.url, `/api/rooms/${room}/messages`);
      assert.equal(anonymous.status, 401, `GET messages without a session: expected 401, got ${anonymous.status} ${anonymous.text}`);
    });

    it('tells members about presence changes on first join and last leave', opts, async () => {
      const [alice, bob] = await Promise.all([createUser(server.url, 'alice'), createUser(server.url, 'bob')]);
      const room = uniqueRoom('presence');
      const sa = await alice.connect(transport);
      const first = await join(sa, room);
      assert.equal(first.members, 1, `first join ack: expected members 1, got ${show(first)}`);

      const two = nextEvent(sa, 'presence', (p) => p?.room === room && p.members === 2, PRESENCE_TIMEOUT_MS);
      const sb = await bob.connect(transport);
      const second = await join(sb, room);
      assert.equal(second.members, 2, `second join ack: expected members 2, got ${show(second)}`);
      assert.deepEqual(await two, { room, members: 2 }, 'presence after the second user joined');

      const one = nextEvent(sa, 'presence', (p) => p?.room === room && p.members === 1, PRESENCE_TIMEOUT_MS);
      const left = await emitAck(sb, 'leave', { room });
      assert.deepEqual(pick(left, ['ok', 'room', 'members']), { ok: true, room, members: 1 }, `leave ack: got ${show(left)}`);
      assert.deepEqual(await one, { room, members: 1 }, 'presence after the second user left');
    });

    it('relays typing to the other members but not back to the sender', opts, async () => {
      const { room, alice, sa, sb } = await twoUsersInRoom();
      const echoed = collectEvents(sa, 'typing');
      const seen = nextEvent(sb, 'typing', (t) => t?.room === room, EVENT_TIMEOUT_MS);
      // typing is volatile: it may be dropped while a transport is busy, so repeat it until seen.
      let received = null;
      seen.then((t) => { received = t; }, () => {});
      const deadline = Date.now() + EVENT_TIMEOUT_MS;
      while (!received && Date.now() < deadline) {
        const ack = await emitAck(sa, 'typing', { room });
        assert.equal(ack?.ok, true, `typing ack: expected {ok:true}, got ${show(ack)}`);
        await Promise.race([seen.catch(() => {}), sleep(250)]);
      }
      const typing = await seen;
      assert.deepEqual(pick(typing, ['room', 'user']), { room, user: userRef(alice) }, 'typing event at the other member');
      await sleep(QUIET_WINDOW_MS);
      assert.deepEqual(echoed.events, [], 'sender: expected no typing event of its own');
    });

    it('delivers admin emits to every socket of the target user and checks the token', opts, async () => {
      const [target, bystander] = await Promise.all([createUser(server.url, 'target'), createUser(server.url, 'other')]);
      const tab1 = await target.connect(transport);
      const tab2 = await target.connect(transport);
      const other = await bystander.connect(transport);
      const strayOther = collectEvents(other, 'notification');

      const data = { message: 'hi', nonce: randomHex() };
      const waits = [tab1, tab2].map((s) => nextEvent(s, 'notification', (d) => d?.nonce === data.nonce));
      const res = await adminEmit(server, { room: `user:${target.id}`, event: 'notification', data });
      assert.ok(res.status >= 200 && res.status < 300, `admin emit: expected 2xx, got ${res.status} ${res.text}`);
      const [got1, got2] = await Promise.all(waits);
      assert.deepEqual(got1, data, 'first socket of the user: notification data');
      assert.deepEqual(got2, data, 'second socket of the user: notification data');

      const stray = [collectEvents(tab1, 'notification'), collectEvents(tab2, 'notification')];
      for (const [what, token] of [['a wrong token', `wrong-${randomHex()}`], ['no token', null]]) {
        const denied = await adminEmit(server, { room: `user:${target.id}`, event: 'notification', data: { nonce: 'denied' } }, token);
        assert.equal(denied.status, 401, `admin emit with ${what}: expected 401, got ${denied.status} ${denied.text}`);
        assert.equal(denied.json?.error?.code, 'unauthorized', `admin emit with ${what}: expected error code 'unauthorized', got ${denied.text}`);
      }

      const room = uniqueRoom('announce');
      await join(other, room);
      const announced = nextEvent(other, 'announcement', (d) => d?.room === room);
      const roomEmit = await adminEmit(server, { room, event: 'announcement', data: { room, text: 'maintenance' } });
      assert.ok(roomEmit.status >= 200 && roomEmit.status < 300, `admin emit to a room: expected 2xx, got ${roomEmit.status} ${roomEmit.text}`);
      assert.deepEqual(await announced, { room, text: 'maintenance' }, 'admin emit to a room: event data at a member');

      await sleep(QUIET_WINDOW_MS);
      assert.deepEqual(strayOther.events, [], 'another user: expected no notification meant for the target user');
      assert.deepEqual(stray.flatMap((c) => c.events), [], 'target user: expected nothing from the unauthorized emits');
    });

    it('rate-limits a flooding user without affecting others', opts, async () => {
      const { room, bob, sa, sb } = await twoUsersInRoom();
      const total = 100;
      const acks = await Promise.all(Array.from({ length: total }, (_, i) =>
        emitAck(sa, 'message', { room, text: `flood ${i}` }, 3 * ACK_TIMEOUT_MS)));
      const ok = acks.filter((a) => a?.ok === true).length;
      const limited = acks.filter((a) => errorCode(a) === 'rate_limited');
      const other = acks.filter((a) => a?.ok !== true && errorCode(a) !== 'rate_limited');
      assert.deepEqual(other, [], 'flood: expected every ack to be ok or rate_limited');
      assert.ok(limited.length > 0, `flood of ${total}: expected some rate_limited acks, got ${ok} ok and none limited`);
      assert.ok(ok >= DEFAULT_RATE_BURST, `flood of ${total}: expected at least the burst (${DEFAULT_RATE_BURST}) accepted, got ${ok}`);
      assert.equal(typeof limited[0].error.message, 'string', `rate_limited ack: expected an error message, got ${show(limited[0])}`);

      const text = `unaffected ${randomHex()}`;
      const seenByFlooder = nextEvent(sa, 'message', (m) => m?.text === text);
      const ack = await emitAck(sb, 'message', { room, text });
      assert.equal(ack?.ok, true, `${bob.username} after the flood: expected ok:true, got ${show(ack)}`);
      await seenByFlooder;
    });

    it('disconnects the sockets of a session when it logs out, and only those', opts, async () => {
      const user = await createUser(server.url, 'leaver');
      const secondCookie = await login(server.url, user.username, user.password);
      assert.notEqual(secondCookie, user.cookie, 'a second login: expected a different session cookie');
      const s1 = await user.connect(transport);
      const s2 = await connect(server.url, secondCookie, { transport });
      const gone = nextDisconnect(s1);

      const res = await user.api('/api/auth/logout', { method: 'POST' });
      assert.equal(res.status, 204, `logout: expected 204, got ${res.status} ${res.text}`);
      const reason = await gone;
      assert.equal(typeof reason, 'string', `logout: expected the socket to be disconnected, got ${show(reason)}`);

      assert.ok(s2.connected, 'the other session\'s socket: expected it to stay connected');
      await join(s2, uniqueRoom('still'));
      const me = await user.api('/api/me');
      assert.equal(me.status, 401, `GET /api/me with the logged-out cookie: expected 401, got ${me.status} ${me.text}`);
      const err = await connectExpectingError(server.url, user.cookie, { transport });
      assert.equal(err.message, 'unauthorized', `connect with the logged-out cookie: expected "unauthorized", got ${show(err.message)}`);
      const stillMe = await api(server.url, '/api/me', { cookie: secondCookie });
      assert.equal(stillMe.status, 200, `GET /api/me with the other session: expected 200, got ${stillMe.status} ${stillMe.text}`);
    });

    it('stays ready and usable after bad input', opts, async () => {
      const abuser = await createUser(server.url, 'abuser');
      const bad = await abuser.connect(transport);
      const badRoom = uniqueRoom('abuse');
      await join(bad, badRoom);
      const dropped = nextDisconnect(bad, EVENT_TIMEOUT_MS).then((reason) => ({ disconnected: reason }));
      const answered = emitAck(bad, 'message', { room: badRoom, text: 'z'.repeat(2_000_000) }).then((ack) => ({ ack }), (err) => ({ err }));
      const outcome = await Promise.race([answered, dropped.catch((err) => ({ err }))]);
      const acceptable = outcome.disconnected
        || ['invalid_text', 'invalid_payload'].includes(errorCode(outcome.ack));
      assert.ok(acceptable, `oversized payload: expected an error ack or a disconnect, got ${show(outcome.ack ?? outcome.err?.message)}`);

      assert.equal(await readyStatus(server.url), 200, 'GET /health/ready after bad input: expected 200');
      const { room, alice, sa, sb } = await twoUsersInRoom();
      const text = `still alive ${randomHex()}`;
      const atB = nextEvent(sb, 'message', (m) => m?.text === text);
      const ack = await say(sa, room, text);
      const msg = await atB;
      assert.deepEqual(pick(msg, ['id', 'room', 'user', 'text']), { id: ack.id, room, user: userRef(alice), text },
        'a fresh client after bad input: message at the other member');
    });
  });
}
