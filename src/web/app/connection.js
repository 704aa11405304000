// The page's Socket.IO connection, on the official socket.io-client.
//
// The client connects to the page's own origin with the default transports: HTTP
// long-polling first, upgraded to WebSocket when the network lets it through, so a proxy
// that blocks WebSocket leaves a working (polling) connection. Reconnection, its backoff and
// buffering are the client's own; this module only adds what roomcast needs on top:
//   - the resume handshake: `auth` is asked again on every (re)connect, so the CONNECT packet
//     always names the rooms and the last seq the page has of each (see room_stream.js);
//   - the drain hint: `server:draining {reconnect_after_ms}` sets the first reconnect delay
//     (the client's randomisation spreads the clients out), and a successful connect puts
//     the normal backoff back;
//   - error codes the app's texts are keyed by (`not_connected`, `disconnected`, `timeout`);
//   - a reconnect that skips the pending backoff wait ("Retry now", the browser back online).
import { io } from 'socket.io-client';

/** First reconnect delay (ms); the client doubles it per failed attempt, with jitter. */
export const RECONNECT_DELAY_MS = 500;
/** Longest wait between two reconnect attempts (ms). */
export const RECONNECT_DELAY_MAX_MS = 10000;
/** How long an acknowledged emit may wait for its ack (ms). */
export const ACK_TIMEOUT_MS = 10000;
/** Longest drain hint honoured (ms): a wrong hint must not park the page. */
const MAX_HINT_MS = 30000;

function codedError(code, message) {
  const err = new Error(message);
  err.code = code;
  return err;
}

/**
 * A socket for the page's origin, not yet connecting (call `connect()`).
 * @param {() => object} auth the handshake's `auth` payload, asked on every (re)connect
 */
export function createSocket(auth) {
  const socket = io({
    autoConnect: false,
    // One manager per session: a new login never shares a connection with the last one.
    forceNew: true,
    ackTimeout: ACK_TIMEOUT_MS,
    reconnectionDelay: RECONNECT_DELAY_MS,
    reconnectionDelayMax: RECONNECT_DELAY_MAX_MS,
    randomizationFactor: 0.5,
    auth: (send) => send(auth()),
  });
  socket.on('connect', () => {
    // Back to the usual schedule after a drain hint.
    socket.io.reconnectionDelay(RECONNECT_DELAY_MS);
    socket.io.reconnectionDelayMax(RECONNECT_DELAY_MAX_MS);
  });
  return socket;
}

/** `server:draining`: wait about `ms` before the first reconnect instead of the usual delay. */
export function reconnectAfter(socket, ms) {
  const wait = Number.isFinite(ms) && ms >= 0 ? Math.min(ms, MAX_HINT_MS) : 1000;
  socket.io.reconnectionDelayMax(Math.max(RECONNECT_DELAY_MAX_MS, wait));
  socket.io.reconnectionDelay(wait);
}

/** Reconnect at once instead of after the pending backoff wait; nothing when connected. */
export function reconnectNow(socket) {
  if (socket.connected) return;
  // Closing the socket drops the manager's reconnect timer; connect() opens a new transport.
  socket.disconnect();
  socket.connect();
}

/** Emit when connected; returns false (the event is dropped) otherwise. */
export function send(socket, event, payload) {
  if (!socket?.connected) return false;
  socket.emit(event, payload);
  return true;
}

/**
 * Emit and resolve with the ack. Rejects with `code` `not_connected` (not sent),
 * `disconnected` (the connection dropped before the ack) or `timeout`.
 */
export async function request(socket, event, payload) {
  if (!socket?.connected) throw codedError('not_connected', 'not connected');
  try {
    return await socket.emitWithAck(event, payload);
  } catch (err) {
    // The client rejects both cases with a plain Error; the connection state tells them apart.
    throw codedError(socket.connected ? 'timeout' : 'disconnected', err?.message ?? 'no answer');
  }
}

/**
 * Calls `report(name)` with the transport in use (`polling`, `websocket`) on every open and
 * upgrade, and with null when the connection closes.
 */
export function watchTransport(socket, report) {
  socket.io.on('open', () => {
    const engine = socket.io.engine;
    report(engine.transport?.name ?? null);
    engine.on('upgrade', (transport) => report(transport?.name ?? null));
  });
  socket.io.on('close', () => report(null));
}
