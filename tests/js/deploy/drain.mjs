// A drain behind the proxy, seen from the clients: N official socket.io-clients (half
// WebSocket, half long-polling, all with reconnection on, as in a browser) are connected
// through the proxy to one instance, while a steady sender on another instance keeps writing
// to their room. The caller sends SIGTERM to that instance once this script prints `READY`.
//
// Expected: every client gets `server:draining`, loses its transport, reconnects through the
// proxy to another instance by itself, rejoins the room and receives live messages again; the
// sender never gets an error; every acknowledged message (the sender's and the drained
// clients') is stored: it is in GET /api/rooms/{room}/messages.
//
// Usage: PROXY_URL=http://proxy SENDER_URL=http://other-instance DRAINING_ID=web-2 \
//        node deploy/drain.mjs
// Prints `READY`, later `RESULT <json>` and exits 0, or prints the failure and exits 1.
import { io } from 'socket.io-client';
import { createUser, join, say, nextEvent, sleep, uniqueRoom, show, until } from '../harness.mjs';

const { PROXY_URL, SENDER_URL, DRAINING_ID } = process.env;
if (!PROXY_URL || !SENDER_URL || !DRAINING_ID) {
  console.error('PROXY_URL, SENDER_URL and DRAINING_ID must be set');
  process.exit(2);
}
const CLIENTS = Number(process.env.CLIENTS || 6);
const WAIT_MS = 10_000;
// From SIGTERM until every client is back in the room (the drain spreads disconnections over
// at most half of SHUTDOWN_TIMEOUT_SECS; reconnection backs off up to 1 s).
const MOVE_TIMEOUT_MS = 30_000;
// The sender's pace: well under the per-user rate limit (20/s).
const SEND_EVERY_MS = 100;
const CLIENT_SEND_EVERY_MS = 300;
// The sender goes on this long after every client is back.
const AFTER_MS = 2_000;

const sockets = [];
const fail = (message) => { throw new Error(message); };


/** One drained client: a user, a socket that rejoins the room on every (re)connect. */
function drainedClient(user, index, room) {
  const transport = index % 2 === 0 ? 'websocket' : 'polling';
  const socket = io(PROXY_URL, {
    transports: [transport],
    extraHeaders: { cookie: user.cookie },
    withCredentials: true,
    forceNew: true,
    timeout: WAIT_MS,
    reconnection: true,
    reconnectionDelay: 200,
    reconnectionDelayMax: 1_000,
    randomizationFactor: 0.5,
  });
  sockets.push(socket);
  const state = {
    name: `client ${index} (${transport}, ${user.username})`,
    user,
    socket,
    connects: 0,
    joined: 0,
    draining: [],
    disconnects: [],
    connectErrors: [],
    joinErrors: [],
    acked: [],
  };
  socket.on('connect', async () => {
    state.connects += 1;
    const attempt = state.connects;
    try {
      await join(socket, room);
      state.joined = attempt;
    } catch (err) {
      state.joinErrors.push(`${attempt}: ${err.message}`);
    }
  });
  socket.on('server:draining', (payload) => state.draining.push(payload));
  socket.on('disconnect', (reason) => state.disconnects.push(reason));
  socket.on('connect_error', (err) => state.connectErrors.push(err.message));
  return state;
}

/** The instance a socket's messages are stamped with: send one and read its echo. */
async function instanceOf(socket, room, text) {
  const echo = nextEvent(socket, 'message', (m) => m.room === room && m.text === text, WAIT_MS);
  await say(socket, room, text);
  return (await echo).instance_id;
}

/** Every message id of the room, through the proxy, newest first, page by page. */
async function history(user, room) {
  const ids = new Set();
  let before = '';
  for (let page = 0; page < 100; page += 1) {
    const res = await user.api(`/api/rooms/${room}/messages?limit=100${before}`);
    if (res.status !== 200) fail(`GET history: expected 200, got ${res.status} ${res.text}`);
    const messages = res.json.messages;
    if (messages.length === 0) break;
    for (const m of messages) ids.add(m.id);
    before = `&before=${messages[messages.length - 1].id}`;
  }
  return ids;
}

try {
  const room = uniqueRoom('drain');
  const users = await Promise.all(Array.from({ length: CLIENTS }, () => createUser(PROXY_URL, 'drain')));
  const clients = users.map((user, i) => drainedClient(user, i, room));
  await until(() => clients.every((c) => c.joined === 1), 'every client to connect and join', WAIT_MS);
  for (const [i, c] of clients.entries()) {
    const instance = await instanceOf(c.socket, room, `hello ${i}`);
    if (instance !== DRAINING_ID) {
      fail(`${c.name}: expected to be served by ${DRAINING_ID} through the proxy, got ${instance}`);
    }
  }

  // The steady sender, connected straight to an instance that stays up.
  const senderUser = await createUser(SENDER_URL, 'sender');
  const sender = io(SENDER_URL, {
    transports: ['websocket'],
    extraHeaders: { cookie: senderUser.cookie },
    forceNew: true,
    reconnection: false,
    timeout: WAIT_MS,
  });
  sockets.push(sender);
  await new Promise((resolve, reject) => {
    sender.once('connect', resolve);
    sender.once('connect_error', reject);
  });
  await join(sender, room);
  const senderInstance = await instanceOf(sender, room, 'sender here');
  if (senderInstance === DRAINING_ID) fail(`the sender must not be on ${DRAINING_ID}`);

  const sent = { acked: [], failed: [], duringDrain: 0 };
  let sending = true;
  let draining = false;
  const senderLoop = (async () => {
    for (let n = 0; sending; n += 1) {
      const started = Date.now();
      try {
        const ack = await sender.timeout(5_000).emitWithAck('message', { room, text: `steady ${n}` });
        if (ack && ack.ok === true) {
          sent.acked.push(ack.id);
          if (draining) sent.duringDrain += 1;
        } else {
          sent.failed.push(`steady ${n}: ${show(ack)}`);
        }
      } catch (err) {
        sent.failed.push(`steady ${n}: ${err.message}`);
      }
      await sleep(Math.max(0, SEND_EVERY_MS - (Date.now() - started)));
    }
  })();
  // The drained clients write too, whenever connected; only acknowledged messages count.
  const clientLoops = clients.map((c, i) => (async () => {
    for (let n = 0; sending; n += 1) {
      if (c.socket.connected) {
        try {
          const ack = await c.socket.timeout(3_000).emitWithAck('message', { room, text: `client ${i} ${n}` });
          if (ack && ack.ok === true) c.acked.push(ack.id);
        } catch {
          // a message whose ack was lost with the transport is not acknowledged: not counted
        }
      }
      await sleep(CLIENT_SEND_EVERY_MS);
    }
  })());
  await sleep(500);

  console.log('READY');
  draining = true;
  const moved = () => clients.every((c) => c.draining.length > 0 && c.connects >= 2 && c.joined === c.connects);
  try {
    await until(moved, 'every client to get server:draining, reconnect and rejoin', MOVE_TIMEOUT_MS);
  } catch (err) {
    fail(`${err.message}; clients: ${show(clients.map((c) => ({
      name: c.name, draining: c.draining.length, connects: c.connects, joined: c.joined,
      disconnects: c.disconnects, connect_errors: c.connectErrors.slice(-3), join_errors: c.joinErrors,
    })))}`);
  }
  draining = false;

  // Back in the room on another instance, receiving live messages again.
  const after = {};
  for (const [i, c] of clients.entries()) {
    const live = nextEvent(c.socket, 'message', (m) => m.room === room && m.user?.username === senderUser.username, WAIT_MS);
    const instance = await instanceOf(c.socket, room, `back ${i}`);
    if (instance === DRAINING_ID) fail(`${c.name}: still served by ${DRAINING_ID} after the drain`);
    after[c.name] = instance;
    try {
      await live;
    } catch (err) {
      fail(`${c.name}: no live message from the sender after rejoining on ${instance}: ${err.message}`);
    }
  }

  await sleep(AFTER_MS);
  sending = false;
  await senderLoop;
  await Promise.all(clientLoops);

  if (sent.failed.length > 0) {
    fail(`the sender on ${senderInstance} must not see errors while ${DRAINING_ID} drains, got ${sent.failed.length}: ${show(sent.failed.slice(0, 5))}`);
  }
  if (sent.duringDrain === 0) fail('no message was acknowledged during the drain: the test did not overlap it');
  const stored = await history(users[0], room);
  const acked = [...sent.acked, ...clients.flatMap((c) => c.acked)];
  const lost = acked.filter((id) => !stored.has(id));
  if (lost.length > 0) {
    fail(`expected every acknowledged message in the history, ${lost.length} of ${acked.length} missing: ${show(lost.slice(0, 20))}`);
  }

  console.log(`RESULT ${JSON.stringify({
    sender_instance: senderInstance,
    sender_acked: sent.acked.length,
    sender_acked_during_drain: sent.duringDrain,
    clients_acked: clients.reduce((n, c) => n + c.acked.length, 0),
    stored: stored.size,
    after,
    draining_payloads: clients.map((c) => c.draining[0]),
    disconnect_reasons: clients.map((c) => c.disconnects),
  })}`);
  for (const socket of sockets) socket.close();
  process.exit(0);
} catch (err) {
  console.error(`drain through ${PROXY_URL}: ${err && err.stack ? err.stack : err}`);
  for (const socket of sockets) socket.close();
  process.exit(1);
}
