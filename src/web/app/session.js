// A logged-in session: its start (rooms restored from localStorage, the socket opened), its
// end, and the check that it is still valid after the socket was refused or kicked.
import { setAnalyticsSwitch } from './analytics.js';
import { FRIENDLY, api } from './api.js';
import { showAuth } from './auth.js';
import { renderActive } from './conversation.js';
import { paintAvatar } from './dom.js';
import { connectSocket } from './realtime.js';
import { activate, newRoom } from './rooms.js';
import { refreshRooms, renderJoined } from './sidebar.js';
import { ROOM_RE, state, ui } from './state.js';
import { setConnection } from './status.js';
import { setInstance, setPane, showView } from './views.js';

const ROOMS_REFRESH_MS = 10000;

function storageKey() {
  return `roomcast.rooms.${state.me?.id}`;
}

/** Remember the joined rooms and the active one, so a reload puts the person back. */
export function saveRooms() {
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

export function startSession(user, optedOut) {
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

export function endSession() {
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

export function sessionEnded(message = FRIENDLY.unauthorized) {
  if (!state.me) return;
  endSession();
  showAuth(message, 'error');
}

/** Check the session after the socket was refused or kicked; resolves true when still logged in. */
export async function stillLoggedIn() {
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
