// The ordered group commit of a room (src/realtime/room_sequencer.rs) seen from official
// socket.io-clients. Run by tests/it/sequencer.rs against instances it started; the Rust side
// injects faults between phases and answers `go` on stdin when the script waits for it.
//
// Usage: URLS=http://web-1,http://web-2 SCENARIO=<name> node sequencer/scenario.mjs
//   burst          SENDERS sockets spread over the instances each fire MESSAGES messages
//                  without waiting for acks; receivers on every instance. All acked, seqs
//                  gap-free, each sender's messages in send order, every receiver (applying
//                  the documented client rule) delivers the same sequence 1..n
//   store_failure  prints READY and waits for `go` (the database is down by then): every
//                  message gets an `unavailable` ack and none is broadcast; prints STORE_FAILED and
//                  waits for `go` (the database is back): the next messages take the next
//                  seqs, without a hole
//   drain          senders on web-1, a receiver on web-2; prints READY and waits for `go` (the
//                  room's store is blocked by then), fires the messages, prints SENT, and
//                  prints DISCONNECTED when web-1 (sent SIGTERM by the caller) closed the
//                  senders; then the receiver must get every message, each sender's in order
// Prints `RESULT <json>` and exits 0, or prints the failure and exits 1.
import readline from 'node:readline';
import { createUser, emitAck, sleep, uniqueRoom, show, closeAllSockets, errorCode, until } from '../harness.mjs';
import { recoveringClient, assertExactRun } from '../recovery/client.mjs';

const URLS = (process.env.URLS || '').split(',').filter(Boolean);
const SCENARIO = process.env.SCENARIO;
const SENDERS = Number(process.env.SENDERS || 4);
const MESSAGES = Number(process.env.MESSAGES || 100);
const WAIT_MS = 60_000;
const QUIET_MS = 1_500;
const clients = [];

const fail = (message) => { throw new Error(message); };
const lines = readline.createInterface({ input: process.stdin });
const stdin = lines[Symbol.asyncIterator]();
async function awaitGo() {
  const { value, done } = await stdin.next();
  if (done || value.trim() !== 'go') fail(`expected "go" on stdin, got ${show(value)}`);
}


/** A logged-in user on instance `i`, in `room`, recording the `message` events it gets. */
async function member(i, room, label) {
  const user = await createUser(URLS[i], label);
  const socket = await user.connect('websocket', { timeoutMs: 15_000 });
  const received = [];
  socket.on('message', (message) => { if (message.room === room) received.push(message); });
  const ack = await emitAck(socket, 'join', { room }, 15_000);
  if (!ack?.ok) fail(`${label} could not join: ${show(ack)}`);
  return { user, socket, received, label, baseline: ack.seq };
}

/** Emits `count` messages at once, without waiting between them; resolves with the acks. */
function fire(sender, room, count, timeoutMs = WAIT_MS) {
  const texts = Array.from({ length: count }, (_, k) => `${sender.label}#${k}`);
  const acks = texts.map((text) => sender.socket.timeout(timeoutMs).emitWithAck('message', { room, text })
    .catch((err) => fail(`${sender.label}: no ack for ${text} (${err.message})`)));
  return { texts, acks: Promise.all(acks) };
}

/** The texts of `label`'s messages among `messages`, in the order given. */
const textsOf = (messages, label) => messages.filter((m) => m.text.startsWith(`${label}#`)).map((m) => m.text);

/** Seqs must be strictly increasing within each origin instance (one sequencer publishes them). */
function assertOriginOrder(name, messages) {
  const last = new Map();
  for (const m of messages) {
    const previous = last.get(m.instance_id) ?? 0;
    if (m.seq <= previous) fail(`${name}: from ${m.instance_id} seq ${m.seq} arrived after ${previous}`);
    last.set(m.instance_id, m.seq);
  }
}

async function burst() {
  const room = uniqueRoom('burst');
  const receivers = [];
  for (let i = 0; i < URLS.length; i += 1) {
    const user = await createUser(URLS[i], `recv${i}`);
    const client = recoveringClient({ urls: URLS, start: i, cookie: user.cookie, name: `recv${i}` });
    clients.push(client);
    const raw = [];
    client.socket.on('message', (message) => { if (message.room === room) raw.push(message); });
    await client.connected();
    const ack = await client.join(room);
    if (ack.seq !== 0) fail(`a new room must start at seq 0, join ack said ${ack.seq}`);
    receivers.push({ client, raw });
  }
  const senders = [];
  for (let s = 0; s < SENDERS; s += 1) senders.push(await member(s % URLS.length, room, `s${s}`));
  const fired = senders.map((sender) => fire(sender, room, MESSAGES));
  const acks = await Promise.all(fired.map((f) => f.acks));
  const total = SENDERS * MESSAGES;
  const seqs = [];
  acks.forEach((list, s) => {
    const bad = list.find((a) => !a?.ok);
    if (bad) fail(`s${s}: error ack ${show(bad)}`);
    for (let k = 1; k < list.length; k += 1) {
      if (!(list[k].seq > list[k - 1].seq && list[k].id > list[k - 1].id)) {
        fail(`s${s}: message ${k} got seq ${list[k].seq} / id ${list[k].id} after seq ${list[k - 1].seq} / id ${list[k - 1].id}`);
      }
    }
    seqs.push(...list.map((a) => a.seq));
  });
  seqs.sort((a, b) => a - b);
  if (seqs.some((seq, k) => seq !== k + 1)) fail(`acked seqs are not 1..${total}: ${show(seqs).slice(0, 400)}`);
  const orders = [];
  for (const [r, { client, raw }] of receivers.entries()) {
    await until(() => client.delivered(room).length >= total, `recv${r} to deliver ${total} messages (has ${client.delivered(room).length})`);
    const delivered = client.delivered(room);
    assertExactRun(`recv${r}`, delivered, 0, total);
    if (raw.length !== total) fail(`recv${r}: ${raw.length} live messages, expected ${total}`);
    assertOriginOrder(`recv${r}`, raw);
    fired.forEach((f, s) => {
      const got = textsOf(raw, `s${s}`);
      if (show(got) !== show(f.texts)) fail(`recv${r}: s${s}'s messages out of send order: ${show(got).slice(0, 300)}`);
    });
    orders.push(delivered.map((m) => m.id).join(','));
  }
  if (new Set(orders).size !== 1) fail('receivers delivered different orders');
  return { room, total, instances: URLS.length, raw_out_of_seq: receivers.map(({ raw }) => raw.filter((m, k) => k > 0 && m.seq < raw[k - 1].seq).length) };
}

async function storeFailure() {
  const room = uniqueRoom('dbdown');
  const receiver = await member(URLS.length - 1, room, 'recv');
  const sender = await member(0, room, 'send');
  const first = await emitAck(sender.socket, 'message', { room, text: 'send#before' }, 15_000);
  if (!first?.ok || first.seq !== 1) fail(`first message: ${show(first)}`);
  await until(() => receiver.received.length === 1, 'the first message');
  console.log('READY');
  await awaitGo();
  const failing = fire(sender, room, 20, 30_000);
  const acks = await failing.acks;
  const ok = acks.filter((a) => a?.ok);
  if (ok.length) fail(`${ok.length} messages were acked ok with the database down: ${show(ok).slice(0, 300)}`);
  const codes = new Set(acks.map(errorCode));
  if (codes.size !== 1 || !codes.has('unavailable')) fail(`expected only unavailable acks, got ${show([...codes])}`);
  await sleep(QUIET_MS);
  if (receiver.received.length !== 1) fail(`unstored messages were broadcast: ${show(receiver.received.slice(1)).slice(0, 300)}`);
  console.log('STORE_FAILED');
  await awaitGo();
  // The breaker may still refuse for a moment after the database is back.
  let next;
  const deadline = Date.now() + WAIT_MS;
  do {
    next = await emitAck(sender.socket, 'message', { room, text: 'send#after' }, 15_000);
    if (!next?.ok) await sleep(200);
  } while (!next?.ok && Date.now() < deadline);
  if (!next?.ok) fail(`the room did not recover: ${show(next)}`);
  if (next.seq !== 2) fail(`a failed batch must not take seqs: the next message got seq ${next.seq}, expected 2`);
  const more = await fire(sender, room, 10).acks;
  if (more.some((a) => !a?.ok)) fail(`after recovery: ${show(more)}`);
  const seqs = more.map((a) => a.seq);
  if (show(seqs) !== show(Array.from({ length: 10 }, (_, k) => k + 3))) fail(`seqs after recovery: ${show(seqs)}`);
  await until(() => receiver.received.length === 12, 'the messages sent after recovery');
  return { room, failed: acks.length, after: seqs.length + 1 };
}

async function drain() {
  const room = uniqueRoom('drain');
  const receiver = await member(1, room, 'recv');
  const senders = [await member(0, room, 's0'), await member(0, room, 's1')];
  const closed = senders.map((s) => new Promise((resolve) => s.socket.on('disconnect', resolve)));
  console.log('READY');
  await awaitGo();
  const fired = senders.map((s) => { const f = fire(s, room, MESSAGES, WAIT_MS); f.acks.catch(() => {}); return f; });
  console.log('SENT');
  await Promise.all(closed);
  console.log('DISCONNECTED');
  const total = senders.length * MESSAGES;
  await until(() => receiver.received.length >= total, `web-2's member to get ${total} messages (has ${receiver.received.length})`);
  if (receiver.received.length !== total) fail(`expected ${total} messages, got ${receiver.received.length}`);
  fired.forEach((f, s) => {
    const got = textsOf(receiver.received, `s${s}`);
    if (show(got) !== show(f.texts)) fail(`s${s}'s messages out of send order: ${show(got).slice(0, 300)}`);
  });
  const seqs = receiver.received.map((m) => m.seq);
  if (seqs.some((seq, k) => seq !== k + 1)) fail(`seqs are not 1..${total} in order: ${show(seqs).slice(0, 300)}`);
  return { room, total };
}

const scenarios = { burst, store_failure: storeFailure, drain };
try {
  if (!scenarios[SCENARIO]) fail(`unknown SCENARIO ${show(SCENARIO)}`);
  if (URLS.length === 0) fail('URLS is empty');
  const result = await scenarios[SCENARIO]();
  console.log(`RESULT ${JSON.stringify(result)}`);
} catch (err) {
  console.error(`FAILED: ${err && err.stack ? err.stack : err}`);
  process.exitCode = 1;
}
for (const client of clients) client.close();
closeAllSockets();
lines.close();
process.exit();
