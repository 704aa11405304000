// A recovering client for the connection state recovery tests: the official socket.io-client
// plus the browser app's own RoomStream (src/web/room_stream.js), so the tests count exactly
// what the documented client rule delivers.
//
// It plays a user behind a load balancer: it is given every instance's URL and connects to
// the one it is told; on each automatic reconnection attempt it moves on to the next URL, as
// a balancer sends a client whose instance is gone to another one. Each (re)connect sends the
// resume handshake `auth: {resume: {<room>: <last seq>}}`.
import { io } from 'socket.io-client';
import { RoomStream } from '../../../src/web/room_stream.js';
import { emitAck, nextEvent, show } from '../harness.mjs';

const WAIT_MS = 15_000;

/**
 * @param {object} options
 * @param {string[]} options.urls every instance, in rotation order
 * @param {number} options.start index of the first instance
 * @param {string} options.cookie session cookie
 * @param {string} [options.name] label in failures
 * @param {string} [options.transport] `websocket` or `polling`
 */
export function recoveringClient({ urls, start = 0, cookie, name = 'client', transport = 'websocket' }) {
  let index = start;
  const delivered = new Map(); // room -> messages delivered by the stream, in order
  const stats = {
    raw_live: 0, // `message` events received
    raw_replayed: 0, // messages received in `resume:messages`
    dones: [], // `resume:done` payloads
    reloads: [], // `resume:reload` payloads
    errors: [], // `resume:error` payloads
    resume_requests: 0, // `resume` events the hole rule sent
    connects: [], // instance ids connected to, in order
  };
  let socket;
  const stream = new RoomStream({
    deliver: (room, message) => {
      if (!delivered.has(room)) delivered.set(room, []);
      delivered.get(room).push(message);
    },
    requestResume: (room, last) => {
      stats.resume_requests += 1;
      socket.emit('resume', { rooms: { [room]: last } });
    },
  });
  socket = io(urls[index], {
    transports: [transport],
    extraHeaders: { cookie },
    forceNew: true,
    timeout: WAIT_MS,
    reconnection: true,
    reconnectionDelay: 200,
    reconnectionDelayMax: 1_000,
    randomizationFactor: 0.5,
    auth: (cb) => cb({ resume: stream.resumeState() }),
  });
  socket.io.on('reconnect_attempt', () => {
    index = (index + 1) % urls.length;
    socket.io.uri = urls[index];
  });
  socket.on('connect', () => stats.connects.push(urls[index]));
  socket.on('message', (message) => {
    stats.raw_live += 1;
    stream.receive(message);
  });
  socket.on('resume:messages', (batch) => {
    stats.raw_replayed += batch?.messages?.length ?? 0;
    stream.replayed(batch);
  });
  socket.on('resume:done', (done) => {
    stats.dones.push(done);
    stream.done(done);
  });
  socket.on('resume:reload', (reload) => {
    stats.reloads.push(reload);
    stream.reload(reload);
  });
  socket.on('resume:error', (error) => {
    stats.errors.push(error);
    if (error?.room) stream.failed(error.room);
  });

  return {
    name,
    socket,
    stream,
    stats,
    delivered: (room) => delivered.get(room) ?? [],
    /** The URL the client is (or will be) connected to. */
    url: () => urls[index],
    connected: () => new Promise((resolve, reject) => {
      if (socket.connected) return resolve();
      const timer = setTimeout(() => reject(new Error(`${name} did not connect within ${WAIT_MS} ms`)), WAIT_MS);
      socket.once('connect', () => { clearTimeout(timer); resolve(); });
    }),
    /** Joins `room` and takes the join ack's `seq` as the room's baseline. */
    async join(room) {
      const ack = await emitAck(socket, 'join', { room }, WAIT_MS);
      if (!ack?.ok) throw new Error(`${name} could not join ${room}: ${show(ack)}`);
      stream.baseline(room, ack.seq);
      return ack;
    },
    /** Goes offline (the client's own disconnect, so no automatic reconnection). */
    disconnect() {
      socket.disconnect();
    },
    /** Comes back on instance `i` with the resume handshake. */
    async reconnectTo(i) {
      index = i;
      socket.io.uri = urls[index];
      const done = socket.connected ? Promise.resolve() : nextEvent(socket, 'connect', () => true, WAIT_MS);
      socket.connect();
      await done;
    },
    close() {
      socket.close();
    },
  };
}

/** Fails unless `messages` are exactly seqs from+1 … to, in order, each once. */
export function assertExactRun(name, messages, from, to) {
  const seqs = messages.map((m) => m.seq);
  const expected = Array.from({ length: to - from }, (_, i) => from + 1 + i);
  if (seqs.length !== expected.length || seqs.some((s, i) => s !== expected[i])) {
    throw new Error(`${name}: expected seqs ${from + 1}..${to} (${expected.length}) exactly once in order, got ${seqs.length}: ${show(seqs).slice(0, 600)}`);
  }
}
