// The conversation pane of the active room: header, message list (grouped by author and
// day), loading earlier history while scrolling up, and keeping the reader's place.
import { api, friendly } from './api.js';
import { autosize } from './composer.js';
import {
  avatar, dayKey, dayLabel, fullFmt, h, hashHue, plural, richText, timeFmt, toDate,
} from './dom.js';
import { addMessages, historyFor } from './messages.js';
import { sessionEnded } from './session.js';
import { PAGE_SIZE, state, ui } from './state.js';
import { toastError } from './toast.js';
import { renderTyping } from './typing.js';
import { updateTitle } from './views.js';

const GROUP_WINDOW_MS = 5 * 60 * 1000;
const STICK_THRESHOLD_PX = 48;

export function renderActive() {
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

export function renderRoomHeader() {
  const room = state.rooms.get(state.active);
  if (!room) return;
  ui.roomTitle.replaceChildren(h('span', { class: 'room-hash', 'aria-hidden': 'true', text: '#' }), room.name);
  if (room.status !== 'joined' && !room.everJoined) ui.roomMembers.textContent = 'Joining…';
  else if (typeof room.members === 'number') ui.roomMembers.textContent = `${plural(room.members, 'member', 'members')} here`;
  else ui.roomMembers.textContent = '';
}

export function renderHistoryTop(room) {
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

/** A message's instance became known (a broadcast after the ack's copy): show it. */
export function refreshInstanceChip(room, msg) {
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
export function paint(room, result, { keepBottom = false } = {}) {
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

/** If the first page does not fill the screen, fetch more so scrolling up is possible. */
export function fillViewport(room) {
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

export function initConversation() {
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
}
