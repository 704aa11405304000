// Connection state recovery across a real cluster, seen from official socket.io-clients that
// apply the documented client rule (RoomStream). Run by tests/it/recovery.rs against
// instances it started; every count is checked at the application level: what the stream
// delivered must be exactly the room's seqs, each once, in order, matching the senders' acks.
//
// Usage: URLS=http://web-1,http://web-2,http://web-3 SCENARIO=<name> node recovery/scenario.mjs
//   missed         a client goes offline, 200 messages are sent from the other instances, it
//                  comes back on another instance: exactly those 200 in order, then live
//   during_replay  the same, three times, while senders keep writing through the replays
//   window         RECOVERY_WINDOW_SECS=2, RECOVERY_MAX_MESSAGES=50: past the window or over
//                  the count the client gets `resume:reload`; a bad resume gets `resume:error`
//   drain          clients on web-1 (WebSocket and long-polling) while senders on the others
//                  keep writing; prints READY, the caller sends SIGTERM to web-1; all clients
//                  recover on the others
// Prints `RESULT <json>` and exits 0, or prints the failure and exits 1.
import { io } from 'socket.io-client';
import { createUser, emitAck, nextEvent, sleep, uniqueRoom, show, closeAllSockets, until } from '../harness.mjs';
import { recoveringClient, assertExactRun } from './client.mjs';

const URLS = (process.env.URLS || '').split(',').filter(Boolean);
const SCENARIO = process.env.SCENARIO;
const clients = [];

const fail = (message) => { throw new Error(message); };


/** A logged-in user connected to instance `i` and in `room`; `say` returns the message ack. */
async function sender(i, room, label) {
  const user = await createUser(URLS[i], label);
  const socket = await user.connect('websocket', { timeoutMs: 15_000 });
  const ack = await emitAck(socket, 'join', { room }, 15_000);
  if (!ack?.ok) fail(`${label} could not join: ${show(ack)}`);
  return {
    async say(text) {
      const reply = await emitAck(socket, 'message', { room, text }, 15_000);
      if (!reply?.ok) fail(`${label} could not send: ${show(reply)}`);
      if (!Number.isInteger(reply.seq)) fail(`message ack without seq: ${show(reply)}`);
      return reply;
    },
    close: () => socket.close(),
  };
}

/** A recovering client of a new user, connected to instance `i` and in `room`. */
async function receiver(i, room, name, transport = 'websocket') {
  const user = await createUser(URLS[i], name);
  const client = recoveringClient({ urls: URLS, start: i, cookie: user.cookie, name, transport });
  clients.push(client);
  await client.connected();
  const ack = await client.join(room);
  return { user, client, baseline: ack.seq };
}

/** Sends `n` messages alternating between `senders`, one after the other; returns the acks. */
async function sendSequentially(senders, n, tag) {
  const acks = [];
  for (let k = 0; k < n; k++) acks.push(await senders[k % senders.length].say(`${tag} ${k}`));
  return acks;
}

/** Senders that write concurrently until stopped; `acks` collects every acknowledged message. */
function keepSending(senders, pauseMs) {
  const acks = [];
  let running = true;
  const loops = senders.map(async (s, n) => {
    let k = 0;
    while (running) {
      acks.push(await s.say(`steady ${n}.${k++}`));
      if (pauseMs) await sleep(pauseMs);
    }
  });
  return {
    acks,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

const doneFor = (client, room, after = 0) => client.stats.dones.filter((d) => d.room === room).length > after;

async function missed() {
  const room = uniqueRoom('missed');
  const { client, baseline } = await receiver(0, room, 'offline');
  const senders = [await sender(1, room, 'web2sender'), await sender(2, room, 'web3sender')];
  client.disconnect();
  const acks = await sendSequentially(senders, 200, 'missed');
  await client.reconnectTo(1);
  await until(() => doneFor(client, room), 'resume:done');
  await until(() => client.delivered(room).length >= 200, '200 recovered messages');
  const recovered = client.delivered(room).slice();
  assertExactRun('recovered', recovered, baseline, baseline + 200);
  const ids = recovered.map((m) => m.id);
  if (show(ids) !== show(acks.map((a) => a.id))) fail(`recovered ids differ from the acked ids: ${show(ids).slice(0, 300)}`);
  if (client.stats.raw_replayed !== 200) fail(`expected 200 replayed messages, got ${client.stats.raw_replayed}`);
  // The room was restored with the socket: it may send without joining again.
  const own = await emitAck(client.socket, 'message', { room, text: 'back' }, 15_000);
  if (!own?.ok) fail(`sending to the restored room failed: ${show(own)}`);
  const live = await sendSequentially(senders, 20, 'live');
  const last = live.at(-1).seq;
  await until(() => client.stream.last(room) >= last, 'live messages after the replay');
  await sleep(300);
  assertExactRun('everything', client.delivered(room), baseline, last);
  // A `resume` event on the live socket replays again (what the hole rule asks for); the
  // stream drops what it already has.
  const replayedBefore = client.stats.raw_replayed;
  const again = await emitAck(client.socket, 'resume', { rooms: { [room]: last - 5 } }, 15_000);
  if (!again?.ok || again.rooms !== 1) fail(`resume event: ${show(again)}`);
  await until(() => client.stats.dones.length === 2, 'resume:done after the resume event');
  if (client.stats.raw_replayed - replayedBefore !== 5) fail(`expected 5 replayed again, got ${client.stats.raw_replayed - replayedBefore}`);
  assertExactRun('after a second replay', client.delivered(room), baseline, last);
  const bad = await emitAck(client.socket, 'resume', { rooms: [room] }, 15_000);
  if (bad?.ok !== false || bad.error?.code !== 'invalid_payload') fail(`a bad resume event: ${show(bad)}`);
  return {
    missed: acks.length,
    replayed: replayedBefore,
    replayed_on_request: client.stats.raw_replayed - replayedBefore,
    delivered: client.delivered(room).length,
    live_after: client.delivered(room).length - 200,
    connects: client.stats.connects,
    done: client.stats.dones,
  };
}

async function duringReplay() {
  const room = uniqueRoom('busy');
  const { client, baseline } = await receiver(0, room, 'busy');
  const senders = [await sender(1, room, 'web2steady'), await sender(2, room, 'web3steady')];
  const steady = keepSending(senders, 2);
  const rounds = [];
  for (let round = 0; round < 3; round++) {
    client.disconnect();
    const before = steady.acks.length;
    await until(() => steady.acks.length >= before + 200, '200 messages while offline');
    const dones = client.stats.dones.length;
    const live = client.stats.raw_live;
    const target = (round + 1) % URLS.length;
    await client.reconnectTo(target);
    await until(() => client.stats.dones.length > dones, `resume:done in round ${round}`);
    rounds.push({
      instance: URLS[target],
      missed_at_least: 200,
      live_during_replay: client.stats.raw_live - live,
      done: client.stats.dones.at(-1),
    });
    // Some live traffic after the replay before the next round.
    const after = steady.acks.length;
    await until(() => steady.acks.length >= after + 50, 'live traffic after the replay');
  }
  await steady.stop();
  const head = Math.max(...steady.acks.map((a) => a.seq));
  if (steady.acks.length !== head - baseline) fail(`expected ${head - baseline} acks, got ${steady.acks.length}`);
  await until(() => client.stream.last(room) >= head, `every message up to seq ${head}`);
  await sleep(300);
  assertExactRun('busy room', client.delivered(room), baseline, head);
  const received = client.stats.raw_live + client.stats.raw_replayed;
  return {
    rounds,
    sent: steady.acks.length,
    delivered: client.delivered(room).length,
    received,
    duplicates_dropped: received - client.delivered(room).length,
    resume_requests: client.stats.resume_requests,
  };
}

async function window() {
  const room = uniqueRoom('late');
  const { client, baseline } = await receiver(0, room, 'late');
  const s = await sender(1, room, 'web2late');
  // Past RECOVERY_WINDOW_SECS (2 s): the first missed message is too old.
  client.disconnect();
  const old = await s.say('while away');
  await sleep(3_000);
  await client.reconnectTo(1);
  await until(() => client.stats.reloads.length === 1, 'resume:reload after the window');
  const expired = client.stats.reloads[0];
  if (expired.room !== room || expired.reason !== 'expired' || expired.seq !== old.seq) fail(`unexpected reload ${show(expired)}`);
  if (client.stats.dones.length !== 0 || client.stats.raw_replayed !== 0) fail(`nothing may be replayed past the window: ${show(client.stats)}`);
  // Still in the room: live messages after the reload's seq arrive, and it may send.
  const next = await s.say('after the reload');
  await until(() => client.stream.last(room) === next.seq, 'a live message after the reload');
  const own = await emitAck(client.socket, 'message', { room, text: 'still here' }, 15_000);
  if (!own?.ok) fail(`the room was not restored after the reload: ${show(own)}`);
  await until(() => client.stream.last(room) === own.seq, 'own message');

  // More missed than RECOVERY_MAX_MESSAGES (50).
  client.disconnect();
  const burst = await sendSequentially([s], 51, 'burst');
  await client.reconnectTo(0);
  await until(() => client.stats.reloads.length === 2, 'resume:reload for too many messages');
  const tooMany = client.stats.reloads[1];
  if (tooMany.reason !== 'too_many' || tooMany.seq !== burst.at(-1).seq) fail(`unexpected reload ${show(tooMany)}`);

  // A malformed resume: the connection stays up, the client is told why.
  const user = await createUser(URLS[0], 'badresume');
  const bad = io(URLS[0], {
    transports: ['websocket'], extraHeaders: { cookie: user.cookie }, forceNew: true, reconnection: false,
    auth: { resume: { 'Not A Room': 1 } },
  });
  const error = await nextEvent(bad, 'resume:error', () => true, 15_000);
  if (!bad.connected || error?.error?.code !== 'invalid_room') fail(`expected resume:error invalid_room on a live socket, got ${show(error)}`);
  bad.close();
  return { baseline, expired, too_many: tooMany, invalid: error };
}

async function drain() {
  const room = uniqueRoom('drain');
  const receivers = [];
  // Half over WebSocket, half over long-polling, as browsers behind some proxies are.
  for (let n = 0; n < 6; n++) {
    const transport = n % 2 === 0 ? 'websocket' : 'polling';
    receivers.push(await receiver(0, room, `drained${n}${transport[0]}`, transport));
  }
  const senders = [await sender(1, room, 'web2drain'), await sender(2, room, 'web3drain')];
  const steady = keepSending(senders, 20);
  await until(() => steady.acks.length >= 20, 'traffic before the drain');
  console.log('READY');
  // Every client must move, recover, and then see live traffic again.
  await until(
    () => receivers.every(({ client }) => client.stats.connects.length >= 2 && doneFor(client, room)),
    'every client reconnected to another instance and recovered',
  );
  const moved = steady.acks.length;
  await until(() => steady.acks.length >= moved + 40, 'traffic after the move');
  await steady.stop();
  const head = Math.max(...steady.acks.map((a) => a.seq));
  if (steady.acks.length !== head) fail(`expected ${head} acks in a fresh room, got ${steady.acks.length}`);
  const report = {};
  for (const { client, baseline } of receivers) {
    await until(() => client.stream.last(room) >= head, `${client.name} reaching seq ${head}`);
    await sleep(100);
    assertExactRun(client.name, client.delivered(room), baseline, head);
    report[client.name] = {
      connects: client.stats.connects,
      delivered: client.delivered(room).length,
      replayed: client.stats.raw_replayed,
      duplicates_dropped: client.stats.raw_live + client.stats.raw_replayed - client.delivered(room).length,
    };
  }
  return { sent: steady.acks.length, head, clients: report };
}

const SCENARIOS = { missed, during_replay: duringReplay, window, drain };

try {
  if (URLS.length < 2 || !SCENARIOS[SCENARIO]) fail('set URLS (two or more) and SCENARIO');
  const result = await SCENARIOS[SCENARIO]();
  console.log(`RESULT ${JSON.stringify(result)}`);
  process.exitCode = 0;
} catch (err) {
  console.log(`FAILED ${err && err.stack ? err.stack : err}`);
  for (const c of clients) console.log(`${c.name}: ${show(c.stats).slice(0, 2000)}`);
  process.exitCode = 1;
}
for (const c of clients) c.close();
closeAllSockets();
process.exit();
