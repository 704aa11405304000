// Floods one roomcast instance (ROOMCAST_URL) with client events through the official
// socket.io-client and prints one JSON line describing what came back, for
// tests/it/event_limits.rs to judge. LIMITS_SCENARIO selects what is sent:
//   events    typing, join and resume floods from one user while another user's messages
//             must still reach a third user;
//   rooms     joins until the per-socket room cap answers, then a leave frees a place;
//   in_flight a burst of messages emitted without waiting for acks.
import { createUser, emitAck, closeAllSockets, collectEvents, uniqueRoom, show } from '../harness.mjs';

const url = process.env.ROOMCAST_URL;
const scenario = process.env.LIMITS_SCENARIO;
const ACK_MS = 20_000;
const print = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);

/** Counts acks by outcome: `ok`, an error code, or `no_ack` when none came in time. */
function tally(acks) {
  const counts = {};
  for (const ack of acks) {
    const key = ack === undefined ? 'no_ack' : ack.ok ? 'ok' : ack.error.code;
    counts[key] = (counts[key] || 0) + 1;
  }
  return counts;
}

/** Emits `count` events at once and waits for every ack (undefined when none came). */
function burst(socket, event, count, payload) {
  return Promise.all(Array.from({ length: count }, (_, i) =>
    emitAck(socket, event, payload(i), ACK_MS).catch(() => undefined)));
}

async function events() {
  const room = uniqueRoom('flood');
  const [attacker, speaker, listener] = await Promise.all(
    ['atk', 'spk', 'lst'].map((prefix) => createUser(url, prefix)));
  const [a, s, l] = await Promise.all([attacker, speaker, listener].map((u) => u.connect('websocket')));
  for (const socket of [a, s, l]) {
    const ack = await emitAck(socket, 'join', { room });
    if (!ack.ok) throw new Error(`join ${room}: ${show(ack)}`);
  }
  const heard = collectEvents(l, 'message');
  const typingSeen = collectEvents(l, 'typing');
  // The speaker talks while the attacker floods.
  const speaking = (async () => {
    const acks = [];
    for (let i = 0; i < 5; i += 1) {
      acks.push(await emitAck(s, 'message', { room, text: `hello ${i}` }, ACK_MS).catch(() => undefined));
    }
    return acks;
  })();
  const typing = await burst(a, 'typing', 300, () => ({ room }));
  const joins = await burst(a, 'join', 300, (i) => ({ room: `${room}-${i}` }));
  const resumes = await burst(a, 'resume', 100, () => ({ rooms: { [room]: 0 } }));
  const speakerAcks = await speaking;
  const sent = speakerAcks.filter((ack) => ack && ack.ok).length;
  const mine = (list) => list.filter((m) => m.user && m.user.id === speaker.id);
  const delivered = mine(await heard.until((list) => mine(list).length >= sent, 10_000,
    'the speaker\'s messages at the listener')).length;
  print({
    typing: tally(typing),
    join: tally(joins),
    resume: tally(resumes),
    typing_relayed: typingSeen.events.length,
    speaker_acks: tally(speakerAcks),
    speaker_delivered: delivered,
  });
}

async function rooms() {
  const user = await createUser(url, 'rooms');
  const socket = await user.connect('websocket');
  const base = uniqueRoom('cap');
  const acks = [];
  for (let i = 0; i < Number(process.env.JOINS || 51); i += 1) {
    acks.push(await emitAck(socket, 'join', { room: `${base}-${i}` }));
  }
  const again = await emitAck(socket, 'join', { room: `${base}-0` });
  const left = await emitAck(socket, 'leave', { room: `${base}-0` });
  const after = await emitAck(socket, 'join', { room: `${base}-last` });
  print({ joins: acks.map((ack) => (ack.ok ? 'ok' : ack.error.code)), again, left, after });
}

async function inFlight() {
  const user = await createUser(url, 'burst');
  const socket = await user.connect('websocket');
  const room = uniqueRoom('burst');
  await emitAck(socket, 'join', { room });
  const acks = await burst(socket, 'message', 300, (i) => ({ room, text: `m${i}` }));
  const ids = acks.filter((ack) => ack && ack.ok).map((ack) => ack.id);
  print({
    acks: tally(acks),
    messages: [...new Set(acks.filter((ack) => ack && !ack.ok).map((ack) => ack.error.message))],
    in_order: ids.every((id, i) => i === 0 || id > ids[i - 1]),
  });
}

try {
  if (scenario === 'events') await events();
  else if (scenario === 'rooms') await rooms();
  else if (scenario === 'in_flight') await inFlight();
  else throw new Error(`unknown LIMITS_SCENARIO ${scenario}`);
} catch (err) {
  print({ fatal: String(err && err.stack ? err.stack : err) });
  process.exitCode = 1;
} finally {
  closeAllSockets();
}
