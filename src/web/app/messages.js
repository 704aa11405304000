// Room events from the server: messages (already put in order by the RoomStream), presence
// counts and notifications, applied to the rooms' state and the views.
import { paint, refreshInstanceChip, renderRoomHeader } from './conversation.js';
import { renderDirectory, renderJoined, updateDirectoryCount } from './sidebar.js';
import { state, ui } from './state.js';
import { toast } from './toast.js';
import { renderTyping } from './typing.js';

export function validMessage(m) {
  return Boolean(m && typeof m === 'object'
    && Number.isFinite(Number(m.id))
    && typeof m.text === 'string'
    && m.user && typeof m.user.username === 'string');
}

/** History items belong to the room they were requested for, even if they omit `room`. */
export function historyFor(room, list) {
  return (Array.isArray(list) ? list : []).filter(validMessage).map((m) => ({ ...m, room: room.name }));
}

/**
 * Add messages to a room, keeping id order and skipping known ids.
 * Returns how the visible list must change: nothing, an append of the tail, or a full repaint.
 */
export function addMessages(room, list) {
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

export function onMessage(raw) {
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

export function onPresence(data) {
  if (!data || typeof data.room !== 'string' || typeof data.members !== 'number') return;
  const room = state.rooms.get(data.room);
  if (room) room.members = data.members;
  updateDirectoryCount(data.room, data.members);
  renderDirectory();
  renderJoined();
  if (data.room === state.active) renderRoomHeader();
}

export function onNotification(data) {
  let text;
  if (typeof data === 'string') text = data;
  else if (data && typeof data === 'object' && (data.message ?? data.text) !== undefined) text = String(data.message ?? data.text);
  else text = JSON.stringify(data ?? null);
  if (text.length > 500) text = `${text.slice(0, 500)}…`;
  const title = data && typeof data === 'object' && typeof data.title === 'string' ? data.title : 'Notification';
  toast(text, { title, kind: 'note', timeout: 8000 });
}
