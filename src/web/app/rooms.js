// Rooms one is in: joining (the form, the directory), rejoining after a reconnect, leaving,
// and which one is active.
import { track } from './analytics.js';
import { ackError, friendly } from './api.js';
import { request } from './connection.js';
import {
  fillViewport, paint, renderActive, renderHistoryTop, renderRoomHeader,
} from './conversation.js';
import { addMessages, historyFor } from './messages.js';
import { saveRooms } from './session.js';
import { refreshRooms, renderDirectory, renderJoined, updateDirectoryCount } from './sidebar.js';
import { PAGE_SIZE, ROOM_RE, state, ui } from './state.js';
import { toast, toastError } from './toast.js';
import { setPane } from './views.js';

export function newRoom(name) {
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

export function setJoinError(text) {
  ui.joinError.textContent = text ?? '';
  if (text) ui.roomInput.setAttribute('aria-invalid', 'true');
  else ui.roomInput.removeAttribute('aria-invalid');
}

export function requestJoin(name) {
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

export async function sendJoin(room, { rejoin }) {
  const socket = state.socket;
  if (!socket?.connected) return;
  room.status = 'joining';
  renderJoined();
  let ack;
  try {
    ack = await request(socket, 'join', { room: room.name });
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
export function roomRestored(name, members) {
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

function leaveActive() {
  const name = state.active;
  if (!name) return;
  const socket = state.socket;
  if (socket?.connected) {
    request(socket, 'leave', { room: name }).then((ack) => {
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
}

export function dropRoom(name) {
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

export function activate(name, { focus = true } = {}) {
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

export function initRooms() {
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
  ui.leaveBtn.addEventListener('click', leaveActive);
  ui.backBtn.addEventListener('click', () => {
    setPane('list');
    const current = ui.joinedList.querySelector('[aria-current="true"]');
    (current ?? ui.roomInput).focus();
  });
}
