// roomcast browser app: the entry point of the bundle (scripts/build-web). Each view or
// component is one module of this folder; this one wires their listeners and boots the page.
//
// Modules import each other in a circle (a view re-renders its neighbours), so none does
// work while it is being evaluated: listeners are attached by the init* functions below,
// once every module is loaded.
import { initAnalytics, loadAnalyticsStatus } from './analytics.js';
import { friendly, api } from './api.js';
import { initAuth, showAuth } from './auth.js';
import { initComposer } from './composer.js';
import { initConversation } from './conversation.js';
import { initRealtime } from './realtime.js';
import { initRooms, setJoinError } from './rooms.js';
import { startSession } from './session.js';
import { initSidebar, refreshRooms, renderJoined } from './sidebar.js';
import { state, ui } from './state.js';
import { setInstance } from './views.js';

function initPage() {
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
}

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

initAnalytics();
initAuth();
initRooms();
initSidebar();
initConversation();
initComposer();
initRealtime();
initPage();
boot();
