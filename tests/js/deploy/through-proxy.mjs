// The official socket.io-client through a reverse proxy (the repository's nginx.conf or
// haproxy.cfg in front of a cluster), over each way a browser connects: WebSocket only,
// long-polling only, and long-polling upgraded to WebSocket (the client's default).
//
// For each: two users register and log in through the proxy, join a room and exchange
// messages; the 20 messages of one sender must all arrive, in order, stamped by one instance
// (a polling session that hopped instances would fail with "Session ID unknown").
// `withCredentials: true` gives the client a cookie jar, as a browser has, for a proxy that
// pins clients with a cookie (HAProxy's SERVERID).
//
// Usage: PROXY_URL=http://127.0.0.1:8080 node deploy/through-proxy.mjs
// Prints `RESULT <json>` and exits 0, or prints the failure and exits 1.
import { io } from 'socket.io-client';
import { createUser, join, say, nextEvent, collectEvents, uniqueRoom, show } from '../harness.mjs';

const PROXY_URL = process.env.PROXY_URL;
if (!PROXY_URL) {
  console.error('PROXY_URL must be set');
  process.exit(2);
}
const MESSAGES = 20;
const WAIT_MS = 10_000;
const sockets = [];

/** Connects like a browser behind the proxy; resolves on 'connect'. */
function connectThrough(cookie, transports) {
  const socket = io(PROXY_URL, {
    transports,
    extraHeaders: { cookie },
    withCredentials: true,
    reconnection: false,
    forceNew: true,
    timeout: WAIT_MS,
  });
  sockets.push(socket);
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (err) => reject(new Error(`connect over ${transports}: ${err.message}`)));
  });
}

async function waitForUpgrade(socket) {
  const deadline = Date.now() + WAIT_MS;
  while (socket.io.engine.transport.name !== 'websocket') {
    if (Date.now() > deadline) {
      throw new Error(`expected the polling session to upgrade to websocket within ${WAIT_MS} ms, still ${socket.io.engine.transport.name}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function exchange(mode, transports) {
  const alice = await createUser(PROXY_URL, 'proxy');
  const bob = await createUser(PROXY_URL, 'proxy');
  const a = await connectThrough(alice.cookie, transports);
  const b = await connectThrough(bob.cookie, transports);
  const room = uniqueRoom('proxy');
  await join(a, room);
  await join(b, room);
  if (mode === 'upgrade') {
    await waitForUpgrade(a);
    await waitForUpgrade(b);
  }

  const received = collectEvents(b, 'message');
  for (let i = 0; i < MESSAGES; i += 1) {
    await say(a, room, `${mode} ${i}`);
  }
  const fromAlice = (events) => events.filter((m) => m.room === room && m.user?.username === alice.username);
  await received.until((events) => fromAlice(events).length >= MESSAGES, WAIT_MS, `${MESSAGES} messages from alice`);
  const texts = fromAlice(received.events).map((m) => m.text);
  const expected = Array.from({ length: MESSAGES }, (_, i) => `${mode} ${i}`);
  if (show(texts) !== show(expected)) {
    throw new Error(`${mode}: expected alice's messages in order ${show(expected)}, got ${show(texts)}`);
  }
  const aliceInstances = [...new Set(fromAlice(received.events).map((m) => m.instance_id))];
  if (aliceInstances.length !== 1 || !aliceInstances[0]) {
    throw new Error(`${mode}: expected every message of one socket stamped by one instance, got ${show(aliceInstances)}`);
  }

  const reply = nextEvent(a, 'message', (m) => m.room === room && m.text === `${mode} reply`, WAIT_MS);
  await say(b, room, `${mode} reply`);
  const echoed = await reply;
  return {
    mode,
    transport: a.io.engine.transport.name,
    alice_instance: aliceInstances[0],
    bob_instance: echoed.instance_id,
  };
}

try {
  const results = [];
  results.push(await exchange('websocket', ['websocket']));
  results.push(await exchange('polling', ['polling']));
  results.push(await exchange('upgrade', ['polling', 'websocket']));
  console.log(`RESULT ${JSON.stringify(results)}`);
  for (const socket of sockets) socket.close();
  process.exit(0);
} catch (err) {
  console.error(`through ${PROXY_URL}: ${err && err.stack ? err.stack : err}`);
  for (const socket of sockets) socket.close();
  process.exit(1);
}
