// Rendering of an `ops:snapshot` (see src/operator/live_view.rs) into the operator page.
// Pure DOM building with textContent only: ids, rooms and versions come from the cluster.

/** "3d 4h", "5h 12m", "7m 3s", "42s". */
export function formatUptime(secs) {
  const s = Math.max(0, Math.floor(secs));
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3_600);
  const m = Math.floor((s % 3_600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

/** `ready`, `draining` or `not ready`. */
export function stateOf(instance) {
  if (instance.draining) return 'draining';
  return instance.ready ? 'ready' : 'not ready';
}

function cell(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

/**
 * Renders the instances table. `onDrain(id)` is called when an operator confirms a drain:
 * the first click arms the button ("Confirm drain"), the second sends the command.
 */
export function renderInstances(tbody, snapshot, { onDrain }) {
  const armed = new Set([...tbody.querySelectorAll('button[data-armed="true"]')].map((b) => b.dataset.instance));
  const rows = snapshot.instances.map((instance) => {
    const tr = document.createElement('tr');
    tr.dataset.instance = instance.id;
    const state = stateOf(instance);
    tr.dataset.state = state;
    const id = cell(instance.id);
    if (instance.id === snapshot.served_by) {
      const self = document.createElement('span');
      self.className = 'ops-self';
      self.textContent = '(this page)';
      id.append(self);
    }
    const stateCell = document.createElement('td');
    const badge = document.createElement('span');
    badge.className = 'ops-state';
    badge.dataset.state = state;
    badge.textContent = state;
    stateCell.append(badge);
    const breakers = Object.entries(instance.breakers ?? {})
      .map(([dependency, breaker]) => `${dependency}: ${breaker}`)
      .join(', ');
    const action = document.createElement('td');
    if (!instance.draining) {
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'btn btn-small btn-danger';
      button.dataset.instance = instance.id;
      const arm = (on) => {
        button.dataset.armed = String(on);
        button.textContent = on ? 'Confirm drain' : 'Drain';
        button.setAttribute('aria-label', on ? `Confirm drain of ${instance.id}` : `Drain ${instance.id}`);
      };
      arm(armed.has(instance.id));
      button.addEventListener('click', () => {
        if (button.dataset.armed === 'true') {
          button.disabled = true;
          onDrain(instance.id);
        } else {
          arm(true);
        }
      });
      action.append(button);
    }
    tr.append(
      id,
      stateCell,
      cell(instance.version),
      cell(formatUptime(instance.uptime_secs)),
      cell(String(instance.sockets)),
      cell(instance.events_per_sec.toFixed(1)),
      cell(instance.messages_per_sec.toFixed(1)),
      cell(breakers),
      cell(instance.last_heartbeat_ms < 1_000 ? 'now' : `${Math.round(instance.last_heartbeat_ms / 1_000)} s ago`),
      action,
    );
    return tr;
  });
  tbody.replaceChildren(...rows);
}

/** Renders the busiest rooms; returns whether any room has members. */
export function renderRooms(tbody, snapshot) {
  const rows = snapshot.rooms.map((room) => {
    const tr = document.createElement('tr');
    tr.dataset.room = room.name;
    tr.append(cell(room.name), cell(String(room.members)));
    return tr;
  });
  tbody.replaceChildren(...rows);
  return rows.length > 0;
}
