// The composer: typing a message (Enter sends, Shift+Enter breaks the line), the typing
// signal, and sending with its ack.
import { FRIENDLY, ackError, friendly } from './api.js';
import { request, send } from './connection.js';
import { onMessage } from './messages.js';
import { sendJoin } from './rooms.js';
import { state, ui } from './state.js';
import { toastError } from './toast.js';

const MAX_TEXT = 4096;
const TYPING_THROTTLE_MS = 2000;

/** Grow the composer with its text, up to a limit. */
export function autosize() {
  const input = ui.messageInput;
  input.style.height = 'auto';
  input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
}

async function submit(event) {
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
    const ack = await request(socket, 'message', { room: room.name, text });
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
}

export function initComposer() {
  ui.messageInput.addEventListener('input', () => {
    autosize();
    const room = state.rooms.get(state.active);
    if (!room || !ui.messageInput.value) return;
    const now = Date.now();
    if (now - room.lastTypingSent >= TYPING_THROTTLE_MS && room.status === 'joined') {
      room.lastTypingSent = now;
      send(state.socket, 'typing', { room: room.name });
    }
  });
  ui.messageInput.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      ui.composer.requestSubmit();
    }
  });
  ui.composer.addEventListener('submit', submit);
}
