// The operator view: connects to the `/admin` namespace with the admin token and renders
// every pushed `ops:snapshot`; actions go through the admin API with the same token.
//
// The token lives in sessionStorage (this tab only, gone when it closes). When the instance
// serving the page drains, the server closes the namespace: the page reconnects by itself and
// the load balancer hands it to another instance.
import { io } from 'socket.io-client';
import { renderInstances, renderRooms } from './view.js';

const TOKEN_KEY = 'roomcast.adminToken';
const $ = (id) => document.getElementById(id);

let socket = null;

function setStatus(text) {
  $('ops-status').textContent = text;
}

function showLocked(message) {
  $('ops').dataset.view = 'locked';
  $('token-form').hidden = false;
  $('live').hidden = true;
  $('token-error').hidden = !message;
  $('token-error').textContent = message ?? '';
}

async function adminPost(path) {
  const token = sessionStorage.getItem(TOKEN_KEY) ?? '';
  const res = await fetch(path, { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body?.error?.message ?? `HTTP ${res.status}`);
  return body;
}

function render(snapshot) {
  $('ops').dataset.view = 'live';
  $('token-form').hidden = true;
  $('live').hidden = false;
  const count = snapshot.instances.length;
  $('instance-count').textContent = `(${count}, ${snapshot.cluster_sockets} sockets)`;
  renderInstances($('instances').tBodies[0], snapshot, {
    onDrain: (id) => {
      adminPost(`/api/admin/instances/${encodeURIComponent(id)}/drain`)
        .then(() => setStatus(`Drain of ${id} requested`))
        .catch((err) => setStatus(`Drain of ${id} failed: ${err.message}`));
    },
  });
  $('rooms-empty').hidden = renderRooms($('rooms').tBodies[0], snapshot);
  const at = new Date(snapshot.at).toLocaleTimeString();
  setStatus(`Live · served by ${snapshot.served_by} · updated ${at}`);
}

function connect(token) {
  socket?.close();
  socket = io('/admin', {
    auth: { token },
    reconnectionDelay: 500,
    reconnectionDelayMax: 3_000,
  });
  socket.on('ops:snapshot', render);
  socket.on('connect_error', (err) => {
    if (err?.message === 'unauthorized') {
      socket.close();
      sessionStorage.removeItem(TOKEN_KEY);
      showLocked('That token was refused.');
    } else {
      setStatus('Reconnecting…');
    }
  });
  socket.on('disconnect', (reason) => {
    setStatus('Reconnecting…');
    // A drain closes the namespace from the server side, which the client does not retry
    // by itself.
    if (reason === 'io server disconnect') setTimeout(() => socket.connect(), 500);
  });
}

$('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const token = $('token-input').value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $('token-input').value = '';
  setStatus('Connecting…');
  connect(token);
});

$('disconnect-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const id = $('user-id-input').value.trim();
  adminPost(`/api/admin/users/${encodeURIComponent(id)}/disconnect`)
    .then(() => { $('disconnect-result').textContent = `User ${id} was disconnected everywhere.`; })
    .catch((err) => { $('disconnect-result').textContent = `Could not disconnect user ${id}: ${err.message}`; });
});

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) {
  setStatus('Connecting…');
  connect(saved);
} else {
  showLocked();
}
