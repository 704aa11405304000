// The sign-in view: log in, register, log out.
import { loadAnalyticsStatus, track } from './analytics.js';
import { FRIENDLY, api, friendly } from './api.js';
import { endSession, startSession } from './session.js';
import { state, ui } from './state.js';
import { toastError } from './toast.js';
import { setInstance, showView } from './views.js';

const USERNAME_RE = /^[a-zA-Z0-9_.-]{3,32}$/;

function authMessage(text, kind = 'error') {
  ui.authError.textContent = text;
  ui.authError.dataset.kind = kind;
}

export function showAuth(message = '', kind = 'info') {
  showView('auth');
  authMessage(message, kind);
  document.title = 'roomcast';
  ui.username.focus();
}

async function submit(event) {
  event.preventDefault();
  if (state.authBusy) return;
  const mode = event.submitter?.value === 'register' ? 'register' : 'login';
  const username = ui.username.value.trim();
  const password = ui.password.value;

  if (!username || !password) {
    authMessage('Enter a username and a password.');
    (username ? ui.password : ui.username).focus();
    return;
  }
  if (mode === 'register') {
    if (!USERNAME_RE.test(username)) {
      authMessage(FRIENDLY.invalid_username);
      ui.username.focus();
      return;
    }
    if (password.length < 8 || password.length > 128) {
      authMessage(FRIENDLY.invalid_password);
      ui.password.focus();
      return;
    }
  }

  state.authBusy = true;
  ui.authForm.setAttribute('aria-busy', 'true');
  authMessage(mode === 'register' ? 'Creating your account…' : 'Logging in…', 'info');
  try {
    if (mode === 'register') await api('POST', '/api/auth/register', { username, password });
    const body = { username, password };
    if (ui.remember.checked) body.remember = true;
    await api('POST', '/api/auth/login', body);
    const { data, instance } = await api('GET', '/api/me');
    setInstance(instance);
    ui.password.value = '';
    authMessage('', 'info');
    startSession(data.user, data.analytics_opted_out);
    track(mode === 'register' ? 'signed_up' : 'logged_in');
  } catch (err) {
    if (err.code === 'rate_limited') {
      authMessage('Too many attempts. Please wait a few minutes before trying again.');
    } else if (err.code === 'invalid_credentials' || (mode === 'login' && err.status === 401)) {
      authMessage(FRIENDLY.invalid_credentials);
    } else {
      authMessage(friendly(err));
    }
    (err.code === 'username_taken' || err.code === 'invalid_username' ? ui.username : ui.password).focus();
  } finally {
    state.authBusy = false;
    ui.authForm.removeAttribute('aria-busy');
  }
}

async function logout() {
  endSession();
  try {
    await api('POST', '/api/auth/logout');
  } catch (err) {
    if (err.status !== 401) toastError(`Logging out on the server failed. ${friendly(err, '')}`.trim());
  }
  showAuth("You've been logged out.", 'info');
  loadAnalyticsStatus();
}

export function initAuth() {
  ui.authForm.addEventListener('submit', submit);
  ui.logoutBtn.addEventListener('click', logout);
}
