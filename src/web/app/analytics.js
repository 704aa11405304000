// The "Share anonymous analytics" switch and the events the app reports while it is on.
import { api, friendly } from './api.js';
import { ui } from './state.js';
import { toastError } from './toast.js';

let analyticsChain = Promise.resolve();
let analyticsNoteTimer = null;

export function setAnalyticsSwitch(optedOut) {
  ui.analyticsSwitch.checked = !optedOut;
}

export async function loadAnalyticsStatus() {
  try {
    const { data } = await api('GET', '/api/analytics/status');
    if (typeof data?.opted_out === 'boolean') setAnalyticsSwitch(data.opted_out);
  } catch {
    // Keep the default; the switch still works.
  }
}

function noteAnalytics(text) {
  clearTimeout(analyticsNoteTimer);
  ui.analyticsNote.textContent = text;
  analyticsNoteTimer = setTimeout(() => { ui.analyticsNote.textContent = ''; }, 2500);
}

export function initAnalytics() {
  ui.analyticsSwitch.addEventListener('change', () => {
    const share = ui.analyticsSwitch.checked;
    // Serialise requests so quick toggling ends in the state the person chose last.
    analyticsChain = analyticsChain.then(async () => {
      try {
        await api('POST', share ? '/api/analytics/opt-in' : '/api/analytics/opt-out');
        noteAnalytics('Saved');
      } catch (err) {
        if (ui.analyticsSwitch.checked === share) ui.analyticsSwitch.checked = !share;
        toastError(`Couldn't update your analytics choice. ${friendly(err, '')}`.trim());
      }
    });
  });
}

export function track(name, props = {}) {
  // Respect the choice locally too: nothing leaves the browser when opted out.
  if (!ui.analyticsSwitch.checked) return;
  api('POST', '/api/analytics/events', { name, props }).catch(() => {});
}
