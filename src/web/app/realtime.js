// The live side of a session: the socket's events wired to the views, the resume handshake,
// reconnects (after a drain, a network loss, a refusal) and the status they show.
import { RoomStream } from '../room_stream.js';
import {
  createSocket, reconnectAfter, reconnectNow, send, watchTransport,
} from './connection.js';
import { onMessage, onNotification, onPresence } from './messages.js';
import { roomRestored, sendJoin } from './rooms.js';
import { stillLoggedIn } from './session.js';
import { refreshRooms, renderJoined } from './sidebar.js';
import { state, ui } from './state.js';
import { setConnection, setTransport } from './status.js';
import { onTyping, renderTyping } from './typing.js';

const RESUME_TIMEOUT_MS = 10000;

export function connectSocket() {
  const stream = new RoomStream({
    deliver: (_room, message) => onMessage(message),
    requestResume: (room, last) => {
      if (state.socket === socket) send(socket, 'resume', { rooms: { [room]: last } });
    },
  });
  // Every (re)connect names the rooms this page has and the last seq it shows of each, so
  // any instance can put it back in them and replay what it missed.
  const socket = createSocket(() => {
    const resume = stream.resumeState();
    state.resumed = new Set(Object.keys(resume));
    return { resume };
  });
  state.socket = socket;
  state.stream = stream;
  const mine = (fn) => (...args) => {
    if (state.socket === socket) fn(...args);
  };

  socket.on('connect', mine(onConnect));
  socket.on('disconnect', mine(onDisconnect));
  socket.on('connect_error', mine(onConnectError));
  socket.io.on('reconnect_attempt', mine((attempt) => {
    state.reconnectAttempt = attempt;
    setConnection(state.connection === 'draining' ? 'draining' : 'reconnecting');
  }));
  watchTransport(socket, mine(setTransport));
  socket.on('message', mine((message) => {
    if (state.rooms.has(message?.room)) stream.receive(message);
  }));
  socket.on('resume:messages', mine((batch) => stream.replayed(batch)));
  socket.on('resume:done', mine((done) => {
    stream.done(done);
    roomRestored(done?.room, done?.members);
  }));
  socket.on('resume:reload', mine((reload) => {
    stream.reload(reload);
    // Too much was missed: reload the room's history (a join of a room one is in answers
    // with the latest page), then go on live.
    const room = state.rooms.get(reload?.room);
    if (room) sendJoin(room, { rejoin: true });
  }));
  socket.on('resume:error', mine((data) => {
    if (typeof data?.room === 'string') {
      stream.failed(data.room);
      roomRestored(data.room);
      return;
    }
    // The whole resume was refused: join the rooms the ordinary way.
    for (const room of state.rooms.values()) sendJoin(room, { rejoin: true });
  }));
  socket.on('presence', mine(onPresence));
  socket.on('typing', mine(onTyping));
  socket.on('notification', mine(onNotification));
  socket.on('server:draining', mine((data) => {
    // The server closes this transport shortly; the client then reconnects by itself,
    // through the load balancer, to another instance.
    reconnectAfter(socket, Number(data?.reconnect_after_ms));
    setConnection('draining');
  }));

  setConnection('connecting');
  socket.connect();
}

function onConnect() {
  const reconnect = state.everConnected;
  state.everConnected = true;
  state.reconnectAttempt = 0;
  setConnection('connected');
  // Rooms in the resume handshake are rejoined by the server (`resume:done` follows); the
  // others (never joined yet) are joined now.
  for (const room of state.rooms.values()) {
    if (!state.resumed.has(room.name)) sendJoin(room, { rejoin: reconnect });
  }
  if (state.resumed.size) {
    // A resume whose answer got lost must not leave a room stuck: join it the ordinary way.
    const socket = state.socket;
    setTimeout(() => {
      if (state.socket !== socket || !socket.connected) return;
      for (const room of state.rooms.values()) {
        if (state.resumed.has(room.name) && room.status === 'joining') sendJoin(room, { rejoin: true });
      }
    }, RESUME_TIMEOUT_MS);
  }
  if (reconnect) {
    // The HTTP side may now be served by another instance too.
    stillLoggedIn();
    refreshRooms();
  }
}

function onDisconnect(reason) {
  for (const room of state.rooms.values()) {
    room.typers.clear();
    if (room.status === 'joined') room.status = 'joining';
  }
  renderTyping();
  renderJoined();
  if (reason === 'io client disconnect') return;
  if (reason === 'io server disconnect') {
    // Kicked on purpose, e.g. a logout elsewhere; the client does not reconnect by itself
    // then. Only come back if still logged in.
    setConnection('reconnecting');
    stillLoggedIn().then((ok) => {
      if (ok && state.socket) setTimeout(() => state.socket?.connect(), 1000);
    });
    return;
  }
  if (state.connection !== 'draining') setConnection('reconnecting');
}

function onConnectError(err) {
  const socket = state.socket;
  if (socket && !socket.active) {
    // The server refused the CONNECT (the client does not retry that by itself): with a
    // session cookie it no longer accepts, or while the instance drains.
    setConnection('reconnecting');
    const retry = (ms) => setTimeout(() => {
      if (state.socket === socket && !socket.active) socket.connect();
    }, ms);
    if (err?.message === 'unauthorized') {
      // Logged in per HTTP but refused: retry slowly rather than spin.
      stillLoggedIn().then((ok) => { if (ok) retry(3000); });
    } else {
      retry(1000 + Math.random() * 1000);
    }
    return;
  }
  // A failed attempt after a drain means the move is taking longer: say so plainly.
  setConnection(state.everConnected ? 'reconnecting' : 'connecting');
}

export function initRealtime() {
  ui.bannerRetry.addEventListener('click', () => {
    if (state.socket) reconnectNow(state.socket);
  });
  window.addEventListener('offline', () => {
    if (state.me) setConnection('offline');
  });
  window.addEventListener('online', () => {
    if (!state.me || !state.socket) return;
    if (state.socket.connected) setConnection('connected');
    else {
      setConnection('reconnecting');
      reconnectNow(state.socket);
    }
  });
}
