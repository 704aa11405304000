// The connection status in the top bar and the banner under it.
import { state, ui } from './state.js';

const LABELS = {
  idle: 'Not connected',
  connecting: 'Connecting…',
  connected: 'Live',
  reconnecting: 'Reconnecting…',
  draining: 'Switching server…',
  offline: 'Offline',
};

export function setConnection(next) {
  const prev = state.connection;
  state.connection = next;
  if (!navigator.onLine && next !== 'idle' && next !== 'connected') state.connection = 'offline';
  renderConnection(prev);
}

/**
 * The transport the connection uses now (`polling` or `websocket`), or null when there is
 * none: shown as a hint (a network that blocks WebSocket keeps the page on long-polling).
 */
export function setTransport(name) {
  if (name) ui.status.dataset.transport = name;
  else delete ui.status.dataset.transport;
  renderStatusText();
}

function renderStatusText() {
  const c = state.connection;
  ui.status.dataset.state = c;
  const polling = c === 'connected' && ui.status.dataset.transport === 'polling';
  ui.statusText.textContent = polling ? 'Live (long-polling)' : LABELS[c];
}

function renderConnection(prev) {
  const c = state.connection;
  renderStatusText();

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
