/**
 * A small Socket.IO v4 client for the roomcast browser app.
 *
 * Protocol subset (Engine.IO v4 + Socket.IO v5), WebSocket transport only:
 *   transport  ws(s)://<same origin>/socket.io/?EIO=4&transport=websocket, text frames only
 *   Engine.IO  0 open {sid, pingInterval, pingTimeout}   server -> client
 *              2 ping  -> answered with 3 pong (payload echoed)
 *              1 close, 6 noop; 4 carries one Socket.IO packet
 *              watchdog: no traffic for pingInterval + pingTimeout -> close and reconnect
 *   Socket.IO  (namespace "/" only, so no "/nsp," prefix is written)
 *              40[auth]     CONNECT sent once the transport is open, with the `auth` option's
 *                           object (or what the `auth` function returns at that moment);
 *                           40{sid} back = connected
 *              44{message}  CONNECT_ERROR -> "connect_error" event, no automatic retry
 *              42[ev,...]   EVENT;  42<id>[ev,...] expects an ACK
 *              43<id>[...]  ACK
 *              41           DISCONNECT (from us on disconnect(); from the server = kicked, no retry)
 * Binary packets (45/46) are not supported and are ignored.
 *
 * Reconnect: when the transport drops without disconnect() having been called, the
 * client reconnects with exponential backoff and jitter (capped at reconnectDelayMax).
 * A server hint (setReconnectHint) replaces the next delay, e.g. during a drain.
 *
 * Local events: "connect", "disconnect" (reason), "connect_error" (Error),
 * "reconnecting" ({attempt, delay}); everything else is a server event.
 */

const OPEN_TIMEOUT_MS = 20000;

export class Socket {
  #ws = null;
  #handlers = new Map();
  #acks = new Map();
  #nextAckId = 0;
  #wanted = false;
  #attempt = 0;
  #hint = null;
  #pingWindow = 0;
  #watchdog = null;
  #openTimer = null;
  #retryTimer = null;

  constructor(opts = {}) {
    this.path = opts.path ?? '/socket.io/';
    this.ackTimeout = opts.ackTimeout ?? 10000;
    this.reconnectDelay = opts.reconnectDelay ?? 500;
    this.reconnectDelayMax = opts.reconnectDelayMax ?? 10000;
    // An object, or a function called on every (re)connect, sent with CONNECT: how the
    // resume handshake tells the server what this client already has.
    this.auth = opts.auth ?? null;
    this.connected = false;
    this.id = null;
  }

  on(event, fn) {
    if (!this.#handlers.has(event)) this.#handlers.set(event, new Set());
    this.#handlers.get(event).add(fn);
    return this;
  }

  off(event, fn) {
    this.#handlers.get(event)?.delete(fn);
    return this;
  }

  /** Start connecting (or keep trying) until disconnect() is called. */
  connect() {
    this.#wanted = true;
    if (!this.#ws && !this.#retryTimer) this.#open();
    return this;
  }

  /** Skip the pending backoff wait, e.g. when the browser comes back online. */
  reconnectNow() {
    if (!this.#wanted || this.#ws) return;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#open();
  }

  /** Use this delay (ms) for the next reconnect instead of the backoff schedule. */
  setReconnectHint(ms) {
    if (Number.isFinite(ms) && ms >= 0) this.#hint = Math.min(ms, 30000);
  }

  disconnect() {
    this.#wanted = false;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    if (this.connected) this.#send('41');
    this.#teardown('io client disconnect');
    return this;
  }

  /** Fire-and-forget emit. Dropped (returns false) while disconnected, like a volatile emit. */
  emit(event, ...args) {
    if (!this.connected) return false;
    return this.#send('42' + JSON.stringify([event, ...args]));
  }

  /** Emit and resolve with the first ack argument; rejects on timeout or disconnect. */
  emitWithAck(event, ...args) {
    return this.#request(this.ackTimeout, event, args);
  }

  timeout(ms) {
    return { emitWithAck: (event, ...args) => this.#request(ms, event, args) };
  }

  #request(ms, event, args) {
    return new Promise((resolve, reject) => {
      if (!this.connected) return reject(socketError('not_connected', 'not connected'));
      const id = this.#nextAckId++;
      const timer = setTimeout(() => {
        this.#acks.delete(id);
        reject(socketError('timeout', 'operation has timed out'));
      }, ms);
      this.#acks.set(id, {
        resolve: (res) => { clearTimeout(timer); resolve(res[0]); },
        reject: (err) => { clearTimeout(timer); reject(err); },
      });
      this.#send('42' + id + JSON.stringify([event, ...args]));
    });
  }

  #emitLocal(event, ...args) {
    for (const fn of [...(this.#handlers.get(event) ?? [])]) {
      try {
        fn(...args);
      } catch (err) {
        // One faulty handler must not break the protocol loop.
        setTimeout(() => { throw err; });
      }
    }
  }

  #send(text) {
    if (this.#ws?.readyState !== WebSocket.OPEN) return false;
    this.#ws.send(text);
    return true;
  }

  #open() {
    this.#retryTimer = null;
    const url = new URL(this.path, location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.search = '?EIO=4&transport=websocket';
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (err) {
      this.#emitLocal('connect_error', socketError('transport_error', err.message));
      this.#scheduleReconnect();
      return;
    }
    this.#ws = ws;
    ws.onmessage = (e) => {
      if (ws === this.#ws && typeof e.data === 'string') this.#onFrame(e.data);
    };
    ws.onclose = () => {
      if (ws === this.#ws) this.#onTransportClose(this.connected ? 'transport close' : 'transport error');
    };
    // A failed handshake never produces the open packet; do not wait forever.
    this.#openTimer = setTimeout(() => {
      if (ws === this.#ws) this.#onTransportClose('timeout');
    }, OPEN_TIMEOUT_MS);
  }

  #armWatchdog() {
    if (!this.#pingWindow) return;
    clearTimeout(this.#watchdog);
    this.#watchdog = setTimeout(() => this.#onTransportClose('ping timeout'), this.#pingWindow);
  }

  #onFrame(frame) {
    // Any traffic proves the link is alive.
    this.#armWatchdog();
    switch (frame[0]) {
      case '0': {
        const open = parseJson(frame.slice(1)) ?? {};
        this.#pingWindow = (Number(open.pingInterval) || 25000) + (Number(open.pingTimeout) || 20000);
        this.#armWatchdog();
        const auth = typeof this.auth === 'function' ? this.auth() : this.auth;
        this.#send(auth ? `40${JSON.stringify(auth)}` : '40');
        break;
      }
      case '2':
        this.#send('3' + frame.slice(1));
        break;
      case '1':
        this.#onTransportClose('transport close');
        break;
      case '4':
        this.#onPacket(frame.slice(1));
        break;
      default:
        break; // 3 pong and 6 noop need nothing
    }
  }

  #onPacket(str) {
    const type = str[0];
    let i = 1;
    if (str[i] === '/') {
      const comma = str.indexOf(',', i);
      const nsp = comma === -1 ? str.slice(i) : str.slice(i, comma);
      if (nsp !== '/') return;
      i = comma === -1 ? str.length : comma + 1;
    }
    const start = i;
    while (i < str.length && str[i] >= '0' && str[i] <= '9') i++;
    const id = i > start ? Number(str.slice(start, i)) : null;
    const data = i < str.length ? parseJson(str.slice(i)) : undefined;

    switch (type) {
      case '0':
        clearTimeout(this.#openTimer);
        this.connected = true;
        this.id = data?.sid ?? null;
        this.#attempt = 0;
        this.#emitLocal('connect');
        break;
      case '1':
        // The server ended this session on purpose: retrying would be refused or unwanted.
        this.#wanted = false;
        this.#teardown('io server disconnect');
        break;
      case '2':
        if (!Array.isArray(data) || typeof data[0] !== 'string') return;
        if (id !== null) {
          let answered = false;
          data.push((...res) => {
            if (answered) return;
            answered = true;
            this.#send('43' + id + JSON.stringify(res));
          });
        }
        this.#emitLocal(...data);
        break;
      case '3': {
        const ack = this.#acks.get(id);
        if (!ack) return;
        this.#acks.delete(id);
        ack.resolve(Array.isArray(data) ? data : [data]);
        break;
      }
      case '4': {
        const err = socketError('connect_error', data?.message ?? 'connection refused');
        err.data = data?.data;
        // Like the official client: a refused namespace is not retried automatically.
        this.#wanted = false;
        this.#teardown('connect error');
        this.#emitLocal('connect_error', err);
        break;
      }
      default:
        break;
    }
  }

  #onTransportClose(reason) {
    const wasConnected = this.connected;
    this.#teardown(reason);
    if (!wasConnected && this.#wanted) {
      this.#emitLocal('connect_error', socketError('transport_error', 'could not connect (' + reason + ')'));
    }
    if (this.#wanted) this.#scheduleReconnect();
  }

  #teardown(reason) {
    clearTimeout(this.#watchdog);
    clearTimeout(this.#openTimer);
    this.#pingWindow = 0;
    const ws = this.#ws;
    this.#ws = null;
    if (ws) {
      ws.onmessage = ws.onclose = null;
      if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close();
    }
    const pending = [...this.#acks.values()];
    this.#acks.clear();
    for (const ack of pending) ack.reject(socketError('disconnected', 'disconnected'));
    if (this.connected) {
      this.connected = false;
      this.id = null;
      this.#emitLocal('disconnect', reason);
    }
  }

  #scheduleReconnect() {
    if (this.#retryTimer) return;
    let delay;
    if (this.#hint !== null) {
      delay = this.#hint + Math.random() * 250;
      this.#hint = null;
    } else {
      // "Equal jitter": half the backoff fixed, half random, so clients spread out.
      const base = Math.min(this.reconnectDelayMax, this.reconnectDelay * 2 ** this.#attempt);
      delay = base / 2 + Math.random() * (base / 2);
    }
    this.#attempt++;
    this.#retryTimer = setTimeout(() => this.#open(), delay);
    this.#emitLocal('reconnecting', { attempt: this.#attempt, delay });
  }
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function socketError(code, message) {
  const err = new Error(message);
  err.code = code;
  return err;
}

/** Create a socket for the page's own origin and start connecting unless autoConnect is false. */
export function io(opts = {}) {
  const socket = new Socket(opts);
  if (opts.autoConnect !== false) socket.connect();
  return socket;
}
