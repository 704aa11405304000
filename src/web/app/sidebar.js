// The sidebar: the rooms one is in, and the directory of all rooms with member counts.
import { api } from './api.js';
import { renderRoomHeader } from './conversation.js';
import { h, plural } from './dom.js';
import { activate, requestJoin } from './rooms.js';
import { sessionEnded } from './session.js';
import { ROOM_RE, state, ui } from './state.js';
import { updateTitle } from './views.js';

export async function refreshRooms() {
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

export function updateDirectoryCount(name, members) {
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

export function renderJoined() {
  const items = [...state.rooms.values()].map((room) => roomButton(room.name, room.members, {
    active: room.name === state.active,
    unread: room.unread,
    pending: room.status !== 'joined',
  }));
  ui.joinedList.replaceChildren(...items);
  ui.joinedEmpty.hidden = items.length > 0;
  updateTitle();
}

export function renderDirectory() {
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

export function initSidebar() {
  ui.joinedList.addEventListener('click', onRoomListClick);
  ui.roomList.addEventListener('click', onRoomListClick);
}
