// roomcast browser app. Plain ES module, no build step.
// Every user-supplied string reaches the DOM through textContent or text nodes only.

import { io } from '/assets/socketio.js';
import { RoomStream } from '/assets/room_stream.js';

const ROOM_RE = /^[a-z0-9_-]{1,64}$/;
const USERNAME_RE = /^[a-zA-Z0-9_.-]{3,32}$/;
const PAGE_SIZE = 50;
const MAX_TEXT = 4096;
const TYPING_TTL_MS = 3000;
const TYPING_THROTTLE_MS = 2000;
const ROOMS_REFRESH_MS = 10000;
const RESUME_TIMEOUT_MS = 10000;
const GROUP_WINDOW_MS = 5 * 60 * 1000;
const STICK_THRESHOLD_PX = 48;
const MAX_TOASTS = 4;

const $ = (id) => document.getElementById(id);

const ui = {
  app: $('app'),
  loadingView: $('loading-view'),
  authView: $('auth-view'),
  authForm: $('auth-form'),
  username: $('username'),
  password: $('password'),
  remember: $('remember'),
  authError: $('auth-error'),
  chatView: $('chat-view'),
  account: $('account'),
  accountAvatar: $('account-avatar'),
  accountName: $('account-name'),
  logoutBtn: $('logout-btn'),
  status: $('status'),
  statusText: $('status-text'),
  instanceId: $('instance-id'),
  banner: $('banner'),
  bannerText: $('banner-text'),
  bannerRetry: $('banner-retry'),
  joinForm: $('join-form'),
  roomInput: $('room-input'),
  joinError: $('join-error'),
  joinedList: $('joined-list'),
  joinedEmpty: $('joined-empty'),
  roomList: $('room-list'),
  roomsEmpty: $('rooms-empty'),
  noRoom: $('no-room'),
  roomHeader: $('room-header'),
  roomTitle: $('room-title'),
  roomMembers: $('room-members'),
  backBtn: $('back-btn'),
  leaveBtn: $('leave-btn'),
  scroller: $('scroller'),
  historyTop: $('history-top'),
  messages: $('messages'),
  jumpBtn: $('jump-btn'),
  typing: $('typing'),
  composer: $('composer'),
  messageInput: $('message-input'),
  privacy: $('privacy'),
  privacySlotAuth: $('privacy-slot-auth'),
  privacySlotChat: $('privacy-slot-chat'),
  analyticsSwitch: $('analytics-switch'),
  analyticsNote: $('analytics-note'),
  toasts: $('toasts'),
};

const state = {
  me: null,
  socket: null,
  // Exactly-once, in-order message delivery per room across reconnects (see room_stream.js).
  stream: null,
  // Rooms the current connection's handshake asked to resume.
  resumed: new Set(),
  everConnected: false,
  connection: 'idle', // idle | connecting | connected | reconnecting | draining | offline
  reconnectAttempt: 0,
  rooms: new Map(), // joined (or joining) rooms by name
  active: null,
  directory: [],
  roomsTimer: null,
  typingTimer: null,
  bannerTimer: null,
  authBusy: false,
};

/* ---------- small DOM helpers ---------- */

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

function hashHue(text) {
  let hash = 0;
  for (const ch of String(text)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash % 360;
}

function initials(name) {
  const parts = String(name).split(/[._-]+/).filter(Boolean);
  const first = [...(parts[0] ?? '?')][0] ?? '?';
  const second = parts.length > 1 ? [...parts[1]][0] : '';
  return (first + second).toUpperCase();
}

function paintAvatar(node, name) {
  node.textContent = initials(name);
  node.style.setProperty('--hue', hashHue(name));
}

function avatar(name, extraClass = '') {
  const node = h('span', { class: `avatar ${extraClass}`.trim(), 'aria-hidden': 'true' });
  paintAvatar(node, name);
  return node;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'long', day: 'numeric' });
const dayYearFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'long', day: 'numeric' });

function toDate(ts) {
  const d = new Date(typeof ts === 'number' || /^\d+$/.test(String(ts)) ? Number(ts) : ts);
  return Number.isNaN(d.getTime()) ? new Date() : d;
}

function dayKey(ts) {
  const d = toDate(ts);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

function dayLabel(ts) {
  const d = toDate(ts);
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (dayKey(d) === dayKey(today)) return 'Today';
  if (dayKey(d) === dayKey(yesterday)) return 'Yesterday';
  return d.getFullYear() === today.getFullYear() ? dayFmt.format(d) : dayYearFmt.format(d);
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

/** Text with http(s) links made clickable, built from text nodes and anchors only. */
function richText(text) {
  const frag = document.createDocumentFragment();
  const re = /\bhttps?:\/\/[^\s<>"']+/gi;
  let last = 0;
  for (const match of text.matchAll(re)) {
    let url = match[0];
    const trail = url.match(/[.,!?;:)\]}]+$/);
    if (trail) url = url.slice(0, -trail[0].length);
    if (match.index > last) frag.append(text.slice(last, match.index));
    frag.append(h('a', { href: url, target: '_blank', rel: 'noopener noreferrer nofollow', text: url }));
    last = match.index + url.length;
  }
  if (last < text.length) frag.append(text.slice(last));
  return frag;
}

/* ---------- HTTP ---------- */

class ApiError extends Error {
  constructor(status, code, message, instance) {
    super(message);
    this.status = status;
    this.code = code;
    this.instance = instance;
  }
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  const init = { method, credentials: 'same-origin', headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network', "Can't reach the server.", null);
  }
  const instance = res.headers.get('X-Instance-Id');
  let data = null;
  if (res.status !== 204) {
    const text = await res.text().catch(() => '');
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
  }
  if (!res.ok) {
    const err = data?.error ?? {};
    throw new ApiError(res.status, err.code || `http_${res.status}`, err.message || res.statusText, instance);
  }
  return { data, status: res.status, instance };
}

const FRIENDLY = {
  network: "Can't reach the server. Check your connection and try again.",
  username_taken: 'That username is already taken. Try another one.',
  invalid_username: 'Usernames are 3–32 characters: letters, numbers, “.”, “-” or “_”.',
  invalid_password: 'Passwords need between 8 and 128 characters.',
  invalid_credentials: "That username and password don't match. Try again.",
  rate_limited: "You're sending messages too fast. Wait a moment and try again.",
  invalid_room: 'Room names use lowercase letters, numbers, “-” and “_” (up to 64).',
  invalid_text: 'Messages must be between 1 and 4096 characters.',
  invalid_payload: 'The server could not understand that request.',
  not_in_room: "You're not in that room anymore.",
  unavailable: 'The server is busy right now. Please try again in a moment.',
  internal: 'Something went wrong on the server. Please try again.',
  unauthorized: 'Your session has ended. Please log in again.',
  forbidden_origin: 'This request was blocked because it came from another site.',
  timeout: "The server didn't answer in time. Please try again.",
  not_connected: "You're not connected right now. We'll reconnect automatically.",
  disconnected: 'The connection dropped before the server answered. Please try again.',
};

function friendly(err, fallback = 'Something went wrong. Please try again.') {
  const code = err?.code;
  if (code && FRIENDLY[code]) return FRIENDLY[code];
  if (err?.status >= 500) return 'The server had a problem. Please try again in a moment.';
  if (!err?.message) return fallback;
  return fallback ? `${fallback} (${err.message})` : err.message;
}

function ackError(ack) {
  const e = ack?.error ?? {};
  const err = new Error(e.message || 'request failed');
  err.code = e.code || 'internal';
  return err;
}

/* ---------- toasts ---------- */

function toast(text, { kind = 'info', title = null, timeout = 6000 } = {}) {
  // Repeated identical toasts (e.g. rate limiting) refresh instead of piling up.
  for (const existing of ui.toasts.children) {
    if (existing.dataset.text === text && existing.dataset.kind === kind) {
      existing.restart?.();
      existing.classList.remove('bump');
      void existing.offsetWidth;
      existing.classList.add('bump');
      return existing;
    }
  }
  while (ui.toasts.children.length >= MAX_TOASTS) ui.toasts.firstElementChild.remove();

  const close = h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss' }, h('span', { 'aria-hidden': 'true', text: '×' }));
  const node = h('div', {
    class: `toast toast-${kind}`,
    role: kind === 'error' ? 'alert' : 'status',
    dataset: { text, kind },
  },
  h('span', { class: 'toast-icon', 'aria-hidden': 'true' }),
  h('div', { class: 'toast-body' },
    title ? h('p', { class: 'toast-title', text: title }) : null,
    h('p', { class: 'toast-text', text })),
  close);

  let timer = null;
  const dismiss = () => {
    clearTimeout(timer);
    node.classList.add('leaving');
    setTimeout(() => node.remove(), 180);
  };
  node.restart = () => {
    clearTimeout(timer);
    if (timeout) timer = setTimeout(dismiss, timeout);
  };
  node.addEventListener('mouseenter', () => clearTimeout(timer));
  node.addEventListener('mouseleave', node.restart);
  node.addEventListener('focusin', () => clearTimeout(timer));
  close.addEventListener('click', dismiss);
  ui.toasts.append(node);
  node.restart();
  return node;
}

const toastError = (text) => toast(text, { kind: 'error', timeout: 7000 });

/* ---------- views ---------- */

function showView(view) {
  ui.app.dataset.view = view;
  ui.loadingView.hidden = view !== 'loading';
  ui.authView.hidden = view !== 'auth';
  ui.chatView.hidden = view !== 'chat';
  ui.account.hidden = view !== 'chat';
  const slot = view === 'chat' ? ui.privacySlotChat : ui.privacySlotAuth;
  if (ui.privacy.parentElement !== slot) slot.append(ui.privacy);
}

function setInstance(id) {
  if (id) {
    ui.instanceId.textContent = id;
    ui.status.title = `This page was served by instance ${id}`;
  }
}

function setPane(pane) {
  ui.chatView.dataset.pane = pane;
}

/* ---------- connection status and banner ---------- */

function setConnection(next) {
  const prev = state.connection;
  state.connection = next;
  if (!navigator.onLine && next !== 'idle' && next !== 'connected') state.connection = 'offline';
  renderConnection(prev);
}

function renderConnection(prev) {
  const c = state.connection;
  ui.status.dataset.state = c;
  ui.statusText.textContent = {
    idle: 'Not connected',
    connecting: 'Connecting…',
    connected: 'Live',
    reconnecting: 'Reconnecting…',
    draining: 'Switching server…',
    offline: 'Offline',
  }[c];

  clearTimeout(state.bannerTimer);
  ui.bannerRetry.hidden = true;
  let text = null;
  let kind = 'warn';
  if (c === 'offline') {
    text = "You're offline. We'll reconnect as soon as your network is back.";
    kind = 'error';
  } else if (c === 'draining') {
    text = 'This server is draining for a restart — moving you to another instance…';
  } else if (c === 'reconnecting') {
    const lead = state.everConnected ? 'Connection lost.' : "Can't reach the server.";
    text = state.reconnectAttempt > 1
      ? `${lead} Reconnecting… (attempt ${state.reconnectAttempt})`
      : `${lead} Reconnecting…`;
    ui.bannerRetry.hidden = false;
  } else if (c === 'connected' && prev === 'offline') {
    text = "You're back online.";
    kind = 'ok';
    state.bannerTimer = setTimeout(() => { ui.banner.hidden = true; }, 2500);
  } else if (c === 'connected' && prev && prev !== 'connected' && prev !== 'connecting' && prev !== 'idle') {
    text = 'Reconnected. You are back in your rooms.';
    kind = 'ok';
    state.bannerTimer = setTimeout(() => { ui.banner.hidden = true; }, 2500);
  }
  if (text) {
    ui.banner.dataset.kind = kind;
    ui.bannerText.textContent = text;
    ui.banner.hidden = false;
  } else {
    ui.banner.hidden = true;
  }
}

/* ---------- analytics ---------- */

let analyticsChain = Promise.resolve();
let analyticsNoteTimer = null;

function setAnalyticsSwitch(optedOut) {
  ui.analyticsSwitch.checked = !optedOut;
}

async function loadAnalyticsStatus() {
  try {
    const { data } = await api('GET', '/api/analytics/status');
    if (typeof data?.opted_out === 'boolean') setAnalyticsSwitch(data.opted_out);
  } catch {
    // Keep the default; the switch still works.
  }
}

function noteAnalytics(text) {
  clearTimeout(analyticsNoteTimer);
  ui.analyticsNote.textContent = text;
  analyticsNoteTimer = setTimeout(() => { ui.analyticsNote.textContent = ''; }, 2500);
}

ui.analyticsSwitch.addEventListener('change', () => {
  const share = ui.analyticsSwitch.checked;
  // Serialise requests so quick toggling ends in the state the person chose last.
  analyticsChain = analyticsChain.then(async () => {
    try {
      await api('POST', share ? '/api/analytics/opt-in' : '/api/analytics/opt-out');
      noteAnalytics('Saved');
    } catch (err) {
      if (ui.analyticsSwitch.checked === share) ui.analyticsSwitch.checked = !share;
      toastError(`Couldn't update your analytics choice. ${friendly(err, '')}`.trim());
    }
  });
});

function track(name, props = {}) {
  // Respect the choice locally too: nothing leaves the browser when opted out.
  if (!ui.analyticsSwitch.checked) return;
  api('POST', '/api/analytics/events', { name, props }).catch(() => {});
}

/* ---------- auth ---------- */

function authMessage(text, kind = 'error') {
  ui.authError.textContent = text;
  ui.authError.dataset.kind = kind;
}

ui.authForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  if (state.authBusy) return;
  const mode = event.submitter?.value === 'register' ? 'register' : 'login';
  const username = ui.username.value.trim();
  const password = ui.password.value;

  if (!username || !password) {
    authMessage('Enter a username and a password.');
    (username ? ui.password : ui.username).focus();
    return;
  }
  if (mode === 'register') {
    if (!USERNAME_RE.test(username)) {
      authMessage(FRIENDLY.invalid_username);
      ui.username.focus();
      return;
    }
    if (password.length < 8 || password.length > 128) {
      authMessage(FRIENDLY.invalid_password);
      ui.password.focus();
      return;
    }
  }

  state.authBusy = true;
  ui.authForm.setAttribute('aria-busy', 'true');
  authMessage(mode === 'register' ? 'Creating your account…' : 'Logging in…', 'info');
  try {
    if (mode === 'register') await api('POST', '/api/auth/register', { username, password });
    const body = { username, password };
    if (ui.remember.checked) body.remember = true;
    await api('POST', '/api/auth/login', body);
    const { data, instance } = await api('GET', '/api/me');
    setInstance(instance);
    ui.password.value = '';
    authMessage('', 'info');
    startSession(data.user, data.analytics_opted_out);
    track(mode === 'register' ? 'signed_up' : 'logged_in');
  } catch (err) {
    if (err.code === 'rate_limited') {
      authMessage('Too many attempts. Please wait a few minutes before trying again.');
    } else if (err.code === 'invalid_credentials' || (mode === 'login' && err.status === 401)) {
      authMessage(FRIENDLY.invalid_credentials);
    } else {
      authMessage(friendly(err));
    }
    (err.code === 'username_taken' || err.code === 'invalid_username' ? ui.username : ui.password).focus();
  } finally {
    state.authBusy = false;
    ui.authForm.removeAttribute('aria-busy');
  }
});

ui.logoutBtn.addEventListener('click', async () => {
  endSession();
  try {
    await api('POST', '/api/auth/logout');
  } catch (err) {
    if (err.status !== 401) toastError(`Logging out on the server failed. ${friendly(err, '')}`.trim());
  }
  showAuth("You've been logged out.", 'info');
  loadAnalyticsStatus();
});

function showAuth(message = '', kind = 'info') {
  showView('auth');
  authMessage(message, kind);
  document.title = 'roomcast';
  ui.username.focus();
}

/* ---------- session lifecycle ---------- */

function storageKey() {
  return `roomcast.rooms.${state.me?.id}`;
}

function saveRooms() {
  if (!state.me) return;
  try {
    localStorage.setItem(storageKey(), JSON.stringify({ rooms: [...state.rooms.keys()], active: state.active }));
  } catch {
    // Storage may be unavailable (private mode); rooms just won't be restored.
  }
}

function loadSavedRooms() {
  try {
    const saved = JSON.parse(localStorage.getItem(storageKey()) ?? 'null');
    if (!saved || !Array.isArray(saved.rooms)) return { rooms: [], active: null };
    return { rooms: saved.rooms.filter((r) => typeof r === 'string' && ROOM_RE.test(r)), active: saved.active };
  } catch {
    return { rooms: [], active: null };
  }
}

function startSession(user, optedOut) {
  state.me = user;
  setAnalyticsSwitch(Boolean(optedOut));
  ui.accountName.textContent = user.username;
  paintAvatar(ui.accountAvatar, user.username);
  showView('chat');

  const saved = loadSavedRooms();
  for (const name of saved.rooms) state.rooms.set(name, newRoom(name));
  const active = saved.active && state.rooms.has(saved.active) ? saved.active : saved.rooms[0] ?? null;
  activate(active, { focus: false });
  setPane(active ? 'chat' : 'list');
  renderJoined();
  (active ? ui.messageInput : ui.roomInput).focus();

  refreshRooms();
  state.roomsTimer = setInterval(() => {
    if (!document.hidden) refreshRooms();
  }, ROOMS_REFRESH_MS);
  connectSocket();
}

function endSession() {
  if (state.socket) {
    state.socket.disconnect();
    state.socket = null;
  }
  state.stream = null;
  state.resumed = new Set();
  clearInterval(state.roomsTimer);
  clearInterval(state.typingTimer);
  state.roomsTimer = state.typingTimer = null;
  state.me = null;
  state.rooms.clear();
  state.active = null;
  state.directory = [];
  state.everConnected = false;
  state.reconnectAttempt = 0;
  setConnection('idle');
  ui.messages.replaceChildren();
  ui.joinedList.replaceChildren();
  ui.roomList.replaceChildren();
  ui.toasts.replaceChildren();
  renderActive();
}

function sessionEnded(message = FRIENDLY.unauthorized) {
  if (!state.me) return;
  endSession();
  showAuth(message, 'error');
}

/** Check the session after the socket was refused or kicked; resolves true when still logged in. */
async function stillLoggedIn() {
  try {
    const { instance } = await api('GET', '/api/me');
    setInstance(instance);
    return true;
  } catch (err) {
    setInstance(err.instance);
    if (err.status === 401) {
      sessionEnded();
      return false;
    }
    return true;
  }
}

/* ---------- socket ---------- */

function connectSocket() {
  const stream = new RoomStream({
    deliver: (_room, message) => onMessage(message),
    requestResume: (room, last) => {
      if (state.socket === socket && socket.connected) socket.emit('resume', { rooms: { [room]: last } });
    },
  });
  const socket = io({
    autoConnect: false,
    ackTimeout: 10000,
    // Every (re)connect names the rooms this page has and the last seq it shows of each, so
    // any instance can put it back in them and replay what it missed.
    auth: () => {
      const resume = stream.resumeState();
      state.resumed = new Set(Object.keys(resume));
      return { resume };
    },
  });
  state.socket = socket;
  state.stream = stream;
  const mine = (fn) => (...args) => {
    if (state.socket === socket) fn(...args);
  };

  socket.on('connect', mine(onConnect));
  socket.on('disconnect', mine(onDisconnect));
  socket.on('connect_error', mine(onConnectError));
  socket.on('reconnecting', mine(({ attempt }) => {
    state.reconnectAttempt = attempt;
    setConnection(state.connection === 'draining' ? 'draining' : 'reconnecting');
  }));
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
    const wait = Number(data?.reconnect_after_ms);
    socket.setReconnectHint(Number.isFinite(wait) ? wait : 1000);
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
    // Kicked on purpose, e.g. a logout elsewhere. Only come back if still logged in.
    setConnection('reconnecting');
    stillLoggedIn().then((ok) => {
      if (ok && state.socket) setTimeout(() => state.socket?.connect(), 1000);
    });
    return;
  }
  if (state.connection !== 'draining') setConnection('reconnecting');
}

function onConnectError(err) {
  if (err.message === 'unauthorized') {
    stillLoggedIn().then((ok) => {
      // Logged in per HTTP but refused: retry slowly rather than spin.
      if (ok && state.socket) {
        setConnection('reconnecting');
        setTimeout(() => state.socket?.connect(), 3000);
      }
    });
    return;
  }
  // A failed attempt after a drain means the move is taking longer: say so plainly.
  setConnection(state.everConnected ? 'reconnecting' : 'connecting');
}

ui.bannerRetry.addEventListener('click', () => {
  const socket = state.socket;
  if (!socket || socket.connected) return;
  socket.reconnectNow();
  socket.connect();
});

window.addEventListener('offline', () => {
  if (state.me) setConnection('offline');
});
window.addEventListener('online', () => {
  if (!state.me || !state.socket) return;
  if (state.socket.connected) setConnection('connected');
  else {
    setConnection('reconnecting');
    state.socket.reconnectNow();
  }
});

/* ---------- rooms ---------- */

function newRoom(name) {
  return {
    name,
    status: 'joining', // joining | joined
    members: null,
    messages: [], // sorted by id, oldest first
    byId: new Map(),
    nodes: new Map(), // message id -> rendered <li>, only for the active room
    hasMore: false,
    loadingOlder: false,
    loaded: false,
    unread: 0,
    typers: new Map(),
    lastTypingSent: 0,
    draft: '',
    stick: true,
    scrollFromBottom: 0,
    everJoined: false,
  };
}

function roomValidationMessage(value) {
  if (!value) return 'Type a room name to join, for example “general”.';
  if (value.length > 64) return 'Room names can be at most 64 characters.';
  if (ROOM_RE.test(value)) return null;
  const suggestion = value.toLowerCase().replace(/[^a-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 64);
  const base = 'Room names can only use lowercase letters, numbers, “-” and “_”.';
  return suggestion && ROOM_RE.test(suggestion) ? `${base} Try “${suggestion}”.` : base;
}

function setJoinError(text) {
  ui.joinError.textContent = text ?? '';
  if (text) ui.roomInput.setAttribute('aria-invalid', 'true');
  else ui.roomInput.removeAttribute('aria-invalid');
}

ui.joinForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const value = ui.roomInput.value.trim();
  const problem = roomValidationMessage(value);
  if (problem) {
    setJoinError(problem);
    ui.roomInput.focus();
    return;
  }
  setJoinError(null);
  ui.roomInput.value = '';
  requestJoin(value);
});

ui.roomInput.addEventListener('input', () => {
  if (ui.joinError.textContent) setJoinError(null);
});

function requestJoin(name) {
  let room = state.rooms.get(name);
  if (!room) {
    room = newRoom(name);
    state.rooms.set(name, room);
    if (state.socket?.connected) sendJoin(room, { rejoin: false });
    else toast(`You'll join #${name} as soon as the connection is back.`);
  }
  activate(name);
  renderJoined();
  renderDirectory();
}

async function sendJoin(room, { rejoin }) {
  const socket = state.socket;
  if (!socket?.connected) return;
  room.status = 'joining';
  renderJoined();
  let ack;
  try {
    ack = await socket.emitWithAck('join', { room: room.name });
  } catch (err) {
    // Dropped connections are retried on the next connect.
    if (err.code !== 'disconnected' && err.code !== 'not_connected' && state.rooms.get(room.name) === room) {
      toastError(`Couldn't join #${room.name}. ${friendly(err, '')}`.trim());
    }
    return;
  }
  if (state.rooms.get(room.name) !== room || state.socket !== socket) return;
  if (!ack?.ok) {
    const err = ackError(ack);
    if (!room.everJoined) {
      dropRoom(room.name);
      setJoinError(`Couldn't join #${room.name}: ${friendly(err)}`);
    } else {
      toastError(`Couldn't rejoin #${room.name}. ${friendly(err)}`);
    }
    return;
  }
  room.status = 'joined';
  state.stream?.baseline(room.name, ack.seq);
  if (typeof ack.members === 'number') room.members = ack.members;
  const firstJoin = !room.everJoined;
  room.everJoined = true;
  mergeHistory(room, historyFor(room, ack.history));
  updateDirectoryCount(room.name, room.members);
  saveRooms();
  renderJoined();
  renderDirectory();
  if (room.name === state.active) renderRoomHeader();
  if (firstJoin && !rejoin) track('room_joined', { room: room.name });
}

/** A resumed room is back: the server rejoined it and replayed what was missed. */
function roomRestored(name, members) {
  const room = state.rooms.get(name);
  if (!room) return;
  if (typeof members === 'number') {
    room.members = members;
    updateDirectoryCount(name, members);
  }
  room.status = 'joined';
  renderJoined();
  renderDirectory();
  if (room.name === state.active) renderRoomHeader();
}

/** Merge a join-ack history (oldest first) without duplicating messages already shown. */
function mergeHistory(room, history) {
  const newest = room.messages.at(-1);
  if (!room.loaded || !newest) {
    room.hasMore = history.length >= PAGE_SIZE;
  } else if (history.length >= PAGE_SIZE && history[0].id > newest.id) {
    // More than a page was missed while away: start over from the latest page.
    room.messages = [];
    room.byId.clear();
    room.hasMore = true;
  }
  room.loaded = true;
  const result = addMessages(room, history);
  if (room.name === state.active) {
    if (result.mode === 'none') renderHistoryTop(room);
    else paint(room, result);
    fillViewport(room);
  }
}

ui.leaveBtn.addEventListener('click', () => {
  const name = state.active;
  if (!name) return;
  const socket = state.socket;
  if (socket?.connected) {
    socket.emitWithAck('leave', { room: name }).then((ack) => {
      if (ack && ack.ok === false && ack.error?.code !== 'not_in_room') toastError(`Leaving #${name} failed on the server. ${friendly(ackError(ack))}`);
    }).catch(() => {});
  }
  const order = [...state.rooms.keys()];
  const index = order.indexOf(name);
  dropRoom(name);
  const next = order[index + 1] ?? order[index - 1] ?? null;
  activate(next && state.rooms.has(next) ? next : null);
  if (!state.active) {
    setPane('list');
    ui.roomInput.focus();
  }
  track('room_left', { room: name });
  refreshRooms();
});

function dropRoom(name) {
  state.rooms.delete(name);
  state.stream?.forget(name);
  if (state.active === name) {
    state.active = null;
    renderActive();
    setPane('list');
  }
  saveRooms();
  renderJoined();
  renderDirectory();
}

function activate(name, { focus = true } = {}) {
  const prev = state.rooms.get(state.active);
  if (prev && prev.name !== name) {
    prev.draft = ui.messageInput.value;
    prev.scrollFromBottom = ui.scroller.scrollHeight - ui.scroller.scrollTop;
  }
  state.active = name && state.rooms.has(name) ? name : null;
  const room = state.rooms.get(state.active);
  if (room) {
    room.unread = 0;
    setPane('chat');
  }
  renderActive();
  renderJoined();
  saveRooms();
  if (room && focus) ui.messageInput.focus();
}

/* ---------- directory (all rooms) ---------- */

async function refreshRooms() {
  if (!state.me) return;
  try {
    const { data } = await api('GET', '/api/rooms');
    const rooms = Array.isArray(data?.rooms) ? data.rooms : [];
    state.directory = rooms
      .filter((r) => r && typeof r.name === 'string')
      .map((r) => ({ name: r.name, members: Number(r.members) || 0, last: r.last_message_at ?? null }));
    for (const entry of state.directory) {
      const room = state.rooms.get(entry.name);
      if (room && room.status === 'joined') room.members = entry.members;
    }
    renderDirectory();
    renderJoined();
    renderRoomHeader();
  } catch (err) {
    if (err.status === 401) sessionEnded();
    // Otherwise keep showing the last known list; the next refresh may work.
  }
}

function updateDirectoryCount(name, members) {
  if (typeof members !== 'number') return;
  const entry = state.directory.find((r) => r.name === name);
  if (entry) entry.members = members;
  else state.directory.push({ name, members, last: null });
}

function roomButton(name, members, { active = false, unread = 0, joined = false, pending = false } = {}) {
  const count = typeof members === 'number' ? members : null;
  const described = [
    count === null ? null : plural(count, 'member', 'members'),
    unread ? `${unread} unread` : null,
    joined ? "you're a member" : null,
  ].filter(Boolean).join(', ');
  const btn = h('button', {
    type: 'button',
    class: `room-item${active ? ' active' : ''}${pending ? ' pending' : ''}`,
    'aria-current': active ? 'true' : null,
    dataset: { room: name },
  },
  h('span', { class: 'room-hash', 'aria-hidden': 'true', text: '#' }),
  h('span', { class: 'room-name', text: name }),
  described ? h('span', { class: 'visually-hidden', text: `, ${described}` }) : null,
  unread ? h('span', { class: 'badge badge-unread', 'aria-hidden': 'true', text: unread > 99 ? '99+' : String(unread) }) : null,
  count !== null ? h('span', { class: 'room-count', 'aria-hidden': 'true' }, h('span', { class: 'people-icon' }), String(count)) : null);
  return h('li', null, btn);
}

function renderJoined() {
  const items = [...state.rooms.values()].map((room) => roomButton(room.name, room.members, {
    active: room.name === state.active,
    unread: room.unread,
    pending: room.status !== 'joined',
  }));
  ui.joinedList.replaceChildren(...items);
  ui.joinedEmpty.hidden = items.length > 0;
  updateTitle();
}

function renderDirectory() {
  const rooms = [...state.directory].sort((a, b) => a.name.localeCompare(b.name));
  const items = rooms.map((r) => roomButton(r.name, r.members, { joined: state.rooms.has(r.name) }));
  ui.roomList.replaceChildren(...items);
  ui.roomsEmpty.hidden = items.length > 0;
}

function onRoomListClick(event) {
  const btn = event.target.closest('button[data-room]');
  if (!btn) return;
  const name = btn.dataset.room;
  if (state.rooms.has(name)) activate(name);
  else if (ROOM_RE.test(name)) requestJoin(name);
}
ui.joinedList.addEventListener('click', onRoomListClick);
ui.roomList.addEventListener('click', onRoomListClick);

ui.backBtn.addEventListener('click', () => {
  setPane('list');
  const current = ui.joinedList.querySelector('[aria-current="true"]');
  (current ?? ui.roomInput).focus();
});

/* ---------- messages ---------- */

function validMessage(m) {
  return Boolean(m && typeof m === 'object'
    && Number.isFinite(Number(m.id))
    && typeof m.text === 'string'
    && m.user && typeof m.user.username === 'string');
}

/** History items belong to the room they were requested for, even if they omit `room`. */
function historyFor(room, list) {
  return (Array.isArray(list) ? list : []).filter(validMessage).map((m) => ({ ...m, room: room.name }));
}

/**
 * Add messages to a room, keeping id order and skipping known ids.
 * Returns how the visible list must change: nothing, an append of the tail, or a full repaint.
 */
function addMessages(room, list) {
  const fresh = [];
  for (const raw of list) {
    const id = Number(raw.id);
    const known = room.byId.get(id);
    if (known) {
      if (!known.instance_id && raw.instance_id) {
        known.instance_id = raw.instance_id;
        refreshInstanceChip(room, known);
      }
      continue;
    }
    const msg = { ...raw, id };
    room.byId.set(id, msg);
    fresh.push(msg);
  }
  if (!fresh.length) return { mode: 'none', added: [] };
  fresh.sort((a, b) => a.id - b.id);
  const newest = room.messages.at(-1);
  if (!newest || fresh[0].id > newest.id) {
    const wasEmpty = room.messages.length === 0;
    room.messages.push(...fresh);
    return { mode: wasEmpty ? 'full' : 'append', added: fresh };
  }
  room.messages.push(...fresh);
  room.messages.sort((a, b) => a.id - b.id);
  return { mode: 'full', added: fresh };
}

function onMessage(raw) {
  if (!validMessage(raw) || typeof raw.room !== 'string') return;
  const room = state.rooms.get(raw.room);
  if (!room) return;
  const fromMe = state.me && raw.user.id === state.me.id;
  if (room.typers.delete(raw.user.id)) renderTyping();
  const result = addMessages(room, [raw]);
  if (result.mode === 'none') return;
  const visible = room.name === state.active && !document.hidden && ui.chatView.dataset.pane === 'chat';
  if (room.name === state.active) {
    if (fromMe) room.stick = true;
    paint(room, result);
  }
  if (!fromMe && !visible) {
    room.unread++;
    renderJoined();
  }
}

function onPresence(data) {
  if (!data || typeof data.room !== 'string' || typeof data.members !== 'number') return;
  const room = state.rooms.get(data.room);
  if (room) room.members = data.members;
  updateDirectoryCount(data.room, data.members);
  renderDirectory();
  renderJoined();
  if (data.room === state.active) renderRoomHeader();
}

function onNotification(data) {
  let text;
  if (typeof data === 'string') text = data;
  else if (data && typeof data === 'object' && (data.message ?? data.text) !== undefined) text = String(data.message ?? data.text);
  else text = JSON.stringify(data ?? null);
  if (text.length > 500) text = `${text.slice(0, 500)}…`;
  const title = data && typeof data === 'object' && typeof data.title === 'string' ? data.title : 'Notification';
  toast(text, { title, kind: 'note', timeout: 8000 });
}

/* ---------- rendering the active room ---------- */

function renderActive() {
  const room = state.rooms.get(state.active);
  ui.noRoom.hidden = Boolean(room);
  ui.roomHeader.hidden = !room;
  ui.scroller.hidden = !room;
  ui.composer.hidden = !room;
  ui.typing.hidden = !room;
  ui.jumpBtn.hidden = true;
  if (!room) {
    ui.messages.replaceChildren();
    ui.historyTop.replaceChildren();
    ui.messageInput.value = '';
    updateTitle();
    return;
  }
  renderRoomHeader();
  ui.messageInput.value = room.draft;
  ui.messageInput.placeholder = `Message #${room.name}`;
  autosize();
  repaint(room);
  if (room.stick) scrollToBottom();
  else ui.scroller.scrollTop = ui.scroller.scrollHeight - room.scrollFromBottom;
  renderTyping();
  fillViewport(room);
  updateTitle();
}

function renderRoomHeader() {
  const room = state.rooms.get(state.active);
  if (!room) return;
  ui.roomTitle.replaceChildren(h('span', { class: 'room-hash', 'aria-hidden': 'true', text: '#' }), room.name);
  if (room.status !== 'joined' && !room.everJoined) ui.roomMembers.textContent = 'Joining…';
  else if (typeof room.members === 'number') ui.roomMembers.textContent = `${plural(room.members, 'member', 'members')} here`;
  else ui.roomMembers.textContent = '';
}

function renderHistoryTop(room) {
  if (room.loadingOlder) {
    ui.historyTop.replaceChildren(h('p', { class: 'history-note' }, h('span', { class: 'spinner spinner-sm', 'aria-hidden': 'true' }), ' Loading earlier messages…'));
  } else if (room.hasMore) {
    const btn = h('button', { type: 'button', class: 'btn btn-small btn-ghost', text: 'Load earlier messages' });
    btn.addEventListener('click', () => loadOlder(room));
    ui.historyTop.replaceChildren(btn);
  } else if (room.loaded) {
    ui.historyTop.replaceChildren(h('div', { class: 'room-start' },
      h('span', { class: 'room-start-icon', 'aria-hidden': 'true', text: '#' }),
      h('p', { class: 'room-start-title', text: `This is the start of #${room.name}` }),
      h('p', { class: 'muted', text: room.messages.length ? 'Every message since the room was created is below.' : 'No messages yet. Say hello!' })));
  } else {
    ui.historyTop.replaceChildren(h('p', { class: 'history-note' }, h('span', { class: 'spinner spinner-sm', 'aria-hidden': 'true' }), ' Loading messages…'));
  }
}

function messageNode(room, msg, prev) {
  const mine = state.me && msg.user.id === state.me.id;
  // A message from another instance starts a new group, so its "via" label stays visible.
  const cont = prev && prev.user.id === msg.user.id
    && (prev.instance_id ?? null) === (msg.instance_id ?? null)
    && dayKey(prev.ts) === dayKey(msg.ts)
    && toDate(msg.ts) - toDate(prev.ts) < GROUP_WINDOW_MS;
  const date = toDate(msg.ts);
  const time = h('time', { datetime: date.toISOString(), title: fullFmt.format(date), text: timeFmt.format(date) });
  const via = h('span', { class: 'via' });
  fillInstanceChip(via, msg.instance_id);
  const li = h('li', {
    class: `msg${cont ? ' cont' : ''}${mine ? ' mine' : ''}`,
    dataset: { id: msg.id, time: timeFmt.format(date) },
  },
  cont ? h('span', { class: 'avatar-gap', 'aria-hidden': 'true' }) : avatar(msg.user.username),
  h('div', { class: 'msg-body' },
    h('div', { class: 'msg-meta' },
      h('span', { class: 'author', text: msg.user.username }),
      mine ? h('span', { class: 'you-tag', text: 'you' }) : null,
      time,
      via),
    h('p', { class: 'msg-text' }, richText(msg.text))));
  room.nodes.set(msg.id, li);
  return li;
}

function fillInstanceChip(node, instance) {
  if (instance) {
    node.replaceChildren(h('span', { class: 'via-dot', 'aria-hidden': 'true' }), `via ${instance}`);
    node.style.setProperty('--hue', hashHue(instance));
    node.title = `Delivered by instance ${instance}`;
    node.hidden = false;
  } else {
    node.replaceChildren();
    node.hidden = true;
  }
}

function refreshInstanceChip(room, msg) {
  const via = room.nodes.get(msg.id)?.querySelector('.via');
  if (via) fillInstanceChip(via, msg.instance_id);
}

function daySeparator(ts) {
  return h('li', { class: 'day-sep', role: 'separator' }, h('span', { text: dayLabel(ts) }));
}

function buildNodes(room, list, prev) {
  const frag = document.createDocumentFragment();
  for (const msg of list) {
    if (!prev || dayKey(prev.ts) !== dayKey(msg.ts)) frag.append(daySeparator(msg.ts));
    frag.append(messageNode(room, msg, prev));
    prev = msg;
  }
  return frag;
}

function repaint(room) {
  room.nodes.clear();
  ui.messages.replaceChildren(buildNodes(room, room.messages, null));
  renderHistoryTop(room);
}

/**
 * Apply an addMessages() result to the visible list, keeping the reader's place:
 * pinned to the bottom when they are there, otherwise the same content stays in view
 * (`keepBottom` is for content added above, e.g. older history).
 */
function paint(room, result, { keepBottom = false } = {}) {
  if (result.mode === 'none') return;
  const el = ui.scroller;
  const fromBottom = el.scrollHeight - el.scrollTop;
  const top = el.scrollTop;
  if (result.mode === 'append') {
    const prev = room.messages[room.messages.length - result.added.length - 1];
    ui.messages.append(buildNodes(room, result.added, prev));
  } else {
    repaint(room);
  }
  if (room.stick) {
    scrollToBottom();
  } else if (keepBottom) {
    el.scrollTop = el.scrollHeight - fromBottom;
  } else {
    el.scrollTop = top;
    ui.jumpBtn.hidden = false;
  }
}

function scrollToBottom() {
  ui.scroller.scrollTop = ui.scroller.scrollHeight;
}

function atBottom() {
  const el = ui.scroller;
  return el.scrollHeight - el.scrollTop - el.clientHeight <= STICK_THRESHOLD_PX;
}

ui.scroller.addEventListener('scroll', () => {
  const room = state.rooms.get(state.active);
  if (!room) return;
  room.stick = atBottom();
  if (room.stick) ui.jumpBtn.hidden = true;
  if (ui.scroller.scrollTop < 120) loadOlder(room);
}, { passive: true });

ui.jumpBtn.addEventListener('click', () => {
  const room = state.rooms.get(state.active);
  if (room) room.stick = true;
  scrollToBottom();
  ui.jumpBtn.hidden = true;
  ui.messageInput.focus();
});

// Keep the newest message in view when the pane resizes (composer growth, keyboard, rotation).
new ResizeObserver(() => {
  const room = state.rooms.get(state.active);
  if (room?.stick) scrollToBottom();
}).observe(ui.scroller);

/** If the first page does not fill the screen, fetch more so scrolling up is possible. */
function fillViewport(room) {
  requestAnimationFrame(() => {
    if (room.name !== state.active || !room.hasMore || room.loadingOlder) return;
    if (ui.scroller.scrollHeight <= ui.scroller.clientHeight + 4) loadOlder(room);
  });
}

async function loadOlder(room) {
  if (!room.hasMore || room.loadingOlder || !room.messages.length) return;
  room.loadingOlder = true;
  if (room.name === state.active) {
    const el = ui.scroller;
    const fromBottom = el.scrollHeight - el.scrollTop;
    renderHistoryTop(room);
    el.scrollTop = el.scrollHeight - fromBottom;
  }
  const oldest = room.messages[0].id;
  let list = null;
  try {
    const { data } = await api('GET', `/api/rooms/${encodeURIComponent(room.name)}/messages?before=${oldest}&limit=${PAGE_SIZE}`);
    list = historyFor(room, data?.messages).reverse();
  } catch (err) {
    if (err.status === 401) {
      sessionEnded();
      return;
    }
    toastError(`Couldn't load earlier messages. ${friendly(err, '')}`.trim());
  }
  room.loadingOlder = false;
  if (list) {
    if (list.length < PAGE_SIZE) room.hasMore = false;
    const result = addMessages(room, list);
    if (room.name === state.active) {
      if (result.mode === 'none') {
        const el = ui.scroller;
        const fromBottom = el.scrollHeight - el.scrollTop;
        renderHistoryTop(room);
        el.scrollTop = el.scrollHeight - fromBottom;
      } else {
        paint(room, { mode: 'full', added: result.added }, { keepBottom: true });
      }
      fillViewport(room);
    }
  } else if (room.name === state.active) {
    renderHistoryTop(room);
  }
}

/* ---------- composer ---------- */

function autosize() {
  const input = ui.messageInput;
  input.style.height = 'auto';
  input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
}

ui.messageInput.addEventListener('input', () => {
  autosize();
  const room = state.rooms.get(state.active);
  if (!room || !ui.messageInput.value) return;
  const now = Date.now();
  if (now - room.lastTypingSent >= TYPING_THROTTLE_MS && room.status === 'joined') {
    room.lastTypingSent = now;
    state.socket?.emit('typing', { room: room.name });
  }
});

ui.messageInput.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
    event.preventDefault();
    ui.composer.requestSubmit();
  }
});

ui.composer.addEventListener('submit', async (event) => {
  event.preventDefault();
  const room = state.rooms.get(state.active);
  if (!room) return;
  const text = ui.messageInput.value;
  if (!text.trim()) return;
  const length = [...text].length;
  if (length > MAX_TEXT) {
    toastError(`That message is ${length} characters long; the limit is ${MAX_TEXT}. Try splitting it up.`);
    return;
  }
  const socket = state.socket;
  if (!socket?.connected) {
    toastError(FRIENDLY.not_connected);
    return;
  }
  ui.messageInput.value = '';
  room.draft = '';
  room.lastTypingSent = 0;
  autosize();
  room.stick = true;

  try {
    const ack = await socket.emitWithAck('message', { room: room.name, text });
    if (!ack?.ok) throw ackError(ack);
    // The broadcast normally arrives first; this covers a lost broadcast.
    if (state.rooms.get(room.name) === room && !room.byId.has(Number(ack.id)) && Number.isFinite(Number(ack.id))) {
      onMessage({ id: Number(ack.id), room: room.name, user: state.me, text, ts: ack.ts ?? Date.now(), instance_id: null });
    }
  } catch (err) {
    // Give the text back so nothing the person typed is lost.
    if (state.active === room.name && !ui.messageInput.value) {
      ui.messageInput.value = text;
      autosize();
    } else if (!room.draft) {
      room.draft = text;
    }
    toastError(friendly(err, "Your message wasn't sent."));
    if (err.code === 'not_in_room') sendJoin(room, { rejoin: true });
  }
});

/* ---------- typing indicators ---------- */

function onTyping(data) {
  if (!data || typeof data.room !== 'string' || !data.user || typeof data.user.username !== 'string') return;
  if (state.me && data.user.id === state.me.id) return;
  const room = state.rooms.get(data.room);
  if (!room) return;
  room.typers.set(data.user.id ?? data.user.username, { name: data.user.username, until: Date.now() + TYPING_TTL_MS });
  if (data.room === state.active) renderTyping();
  if (!state.typingTimer) state.typingTimer = setInterval(sweepTypers, 500);
}

function sweepTypers() {
  const now = Date.now();
  let any = false;
  for (const room of state.rooms.values()) {
    for (const [id, t] of room.typers) {
      if (t.until <= now) {
        room.typers.delete(id);
        if (room.name === state.active) any = true;
      }
    }
  }
  if (any) renderTyping();
  if ([...state.rooms.values()].every((r) => r.typers.size === 0)) {
    clearInterval(state.typingTimer);
    state.typingTimer = null;
  }
}

function renderTyping() {
  const room = state.rooms.get(state.active);
  const names = room ? [...room.typers.values()].map((t) => t.name) : [];
  if (!names.length) {
    ui.typing.replaceChildren();
    return;
  }
  let text;
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length === 3) text = `${names[0]}, ${names[1]} and ${names[2]} are typing…`;
  else text = `${names[0]}, ${names[1]} and ${names.length - 2} others are typing…`;
  ui.typing.replaceChildren(
    h('span', { class: 'typing-dots', 'aria-hidden': 'true' }, h('i'), h('i'), h('i')),
    h('span', { class: 'typing-text', text }));
}

/* ---------- page title, visibility, keyboard ---------- */

function updateTitle() {
  const unread = [...state.rooms.values()].reduce((n, r) => n + r.unread, 0);
  const base = state.active ? `#${state.active} · roomcast` : 'roomcast';
  document.title = unread ? `(${unread}) ${base}` : base;
}

document.addEventListener('visibilitychange', () => {
  if (document.hidden || !state.me) return;
  const room = state.rooms.get(state.active);
  if (room && room.unread && ui.chatView.dataset.pane === 'chat') {
    room.unread = 0;
    renderJoined();
  }
  refreshRooms();
});

document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && ui.app.dataset.view === 'chat' && document.activeElement === ui.roomInput) {
    setJoinError(null);
    ui.roomInput.value = '';
  }
});

/* ---------- boot ---------- */

async function boot() {
  if (!navigator.onLine) state.connection = 'offline';
  loadAnalyticsStatus();
  try {
    const { data, instance } = await api('GET', '/api/me');
    setInstance(instance);
    startSession(data.user, data.analytics_opted_out);
  } catch (err) {
    setInstance(err.instance);
    if (err.status === 401) showAuth();
    else showAuth(friendly(err, "Couldn't check whether you're logged in."), 'error');
  }
}

boot();
