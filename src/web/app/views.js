// Which top-level view is shown (loading, sign-in, chat) and which pane on narrow screens.
import { state, ui } from './state.js';

export function showView(view) {
  ui.app.dataset.view = view;
  ui.loadingView.hidden = view !== 'loading';
  ui.authView.hidden = view !== 'auth';
  ui.chatView.hidden = view !== 'chat';
  ui.account.hidden = view !== 'chat';
  const slot = view === 'chat' ? ui.privacySlotChat : ui.privacySlotAuth;
  if (ui.privacy.parentElement !== slot) slot.append(ui.privacy);
}

/** The instance that served the last HTTP answer, shown in the top bar. */
export function setInstance(id) {
  if (id) {
    ui.instanceId.textContent = id;
    ui.status.title = `This page was served by instance ${id}`;
  }
}

/** On narrow screens only one pane shows: the room list or the conversation. */
export function setPane(pane) {
  ui.chatView.dataset.pane = pane;
}

/** The tab title: the active room and the unread count over all rooms. */
export function updateTitle() {
  const unread = [...state.rooms.values()].reduce((n, r) => n + r.unread, 0);
  const base = state.active ? `#${state.active} · roomcast` : 'roomcast';
  document.title = unread ? `(${unread}) ${base}` : base;
}
