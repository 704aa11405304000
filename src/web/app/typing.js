// "… is typing" under the conversation: who typed in the last few seconds.
import { h } from './dom.js';
import { state, ui } from './state.js';

const TYPING_TTL_MS = 3000;

export function onTyping(data) {
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

export function renderTyping() {
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
