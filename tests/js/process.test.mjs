// Process-level behaviour of one roomcast server: graceful shutdown on SIGTERM and log format.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import {
  STOP_KILL_AFTER_MS, TEST_TIMEOUT_MS, TRANSPORTS,
  closeAllSockets, createUser, join, nextDisconnect, nextEvent, readyStatus, show, startServer, uniqueRoom,
} from './harness.mjs';

const SHUTDOWN_TIMEOUT_SECS = 10;
const DRAIN_WAIT_MS = STOP_KILL_AFTER_MS;
const RECONNECTING_REASONS = ['transport close', 'transport error'];
const LEVELS = 'TRACE|DEBUG|INFO|WARN|ERROR';
const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('graceful shutdown', { timeout: 2 * TEST_TIMEOUT_MS }, () => {
  let server;

  after(async () => {
    closeAllSockets();
    if (server) await server.stop();
  });

  it('drains connected clients on SIGTERM, closes their transports and exits 0 with well-formed logs', async () => {
    try {
      await drainScenario();
    } catch (err) {
      err.message += `\n--- server log ---\n${server?.logText() ?? '(not started)'}`;
      throw err;
    }
  });

  async function drainScenario() {
    server = await startServer({ env: { SHUTDOWN_TIMEOUT_SECS: String(SHUTDOWN_TIMEOUT_SECS) } });
    const user = await createUser(server.url, 'drain');
    const room = uniqueRoom('drain');

    const clients = [];
    for (const transport of TRANSPORTS) {
      const socket = await user.connect(transport);
      await join(socket, room);
      const timeline = [];
      socket.on('server:draining', (payload) => timeline.push(['server:draining', payload]));
      socket.on('disconnect', (reason) => timeline.push(['disconnect', reason]));
      clients.push({
        transport,
        timeline,
        draining: nextEvent(socket, 'server:draining', () => true, DRAIN_WAIT_MS),
        disconnected: nextDisconnect(socket, DRAIN_WAIT_MS),
      });
    }

    const sigtermAt = server.logs().length;
    const exitCode = server.stop();
    const problems = [];

    // While the first client is being drained, the instance must no longer report ready.
    const firstDraining = await Promise.any(clients.map((c) => c.draining)).catch(() => null);
    if (firstDraining) {
      let ready;
      try {
        ready = await readyStatus(server.url);
      } catch (err) {
        ready = `no answer (${err.cause?.code ?? err.message})`;
      }
      if (ready === 200) problems.push('GET /health/ready while draining: expected 503 or a refused connection, got 200');
    }

    for (const client of clients) {
      // A client hears nothing after its disconnect, so the timeline is complete once it settles.
      const [disconnected] = await Promise.allSettled([client.disconnected]);
      const who = `${client.transport} client`;
      const notice = client.timeline.find(([name]) => name === 'server:draining');
      const payload = notice?.[1];
      if (!notice) {
        problems.push(`${who}: expected a server:draining event, got none (events: ${show(client.timeline)})`);
      } else if (!(payload && Number.isInteger(payload.reconnect_after_ms) && payload.reconnect_after_ms >= 0)) {
        problems.push(`${who}: expected server:draining {reconnect_after_ms: integer >= 0}, got ${show(payload)}`);
      }
      if (disconnected.status === 'rejected') {
        problems.push(`${who}: expected to be disconnected, ${disconnected.reason.message}`);
      } else if (!RECONNECTING_REASONS.includes(disconnected.value)) {
        problems.push(`${who}: expected disconnect reason ${show(RECONNECTING_REASONS)} (transport closed, so the client would reconnect), got ${show(disconnected.value)}`);
      }
      const order = client.timeline.map(([name]) => name);
      if (show(order) !== show(['server:draining', 'disconnect'])) {
        problems.push(`${who}: expected server:draining, then disconnect; got ${show(client.timeline)}`);
      }
    }

    for (const client of clients) client.draining.cancel();

    const code = await exitCode;
    if (code !== 0) problems.push(`expected exit code 0 after SIGTERM, got ${show(server.exitInfo())}`);
    const panics = server.panics();
    if (panics.length) problems.push(`expected no panic during the drain, got:\n${panics.join('\n')}`);
    assert.deepEqual(problems, [], `graceful shutdown:\n${problems.join('\n')}`);

    const lines = server.logs().filter((line) => line.trim() !== '');
    const format = new RegExp(`^\\[\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z\\] \\[(${LEVELS})\\] \\[${escapeRe(server.instanceId)}\\] \\S`);
    const malformed = lines.filter((line) => !format.test(line));
    assert.deepEqual(malformed.slice(0, 10), [],
      `expected every log line to start with "[<RFC3339 UTC ms>] [LEVEL] [${server.instanceId}] ", ${malformed.length} of ${lines.length} do not`);
    const coloured = lines.filter((line) => line.includes('\u001b'));
    assert.deepEqual(coloured.slice(0, 5), [], `expected plain text logs without terminal escape codes, ${coloured.length} lines have them`);
    assert.ok(lines.some((line) => /listening addr=/.test(line)), 'expected a "listening addr=" log line');
    const afterSignal = server.logs().slice(sigtermAt);
    assert.ok(afterSignal.some((line) => /drain/i.test(line)),
      `expected the shutdown to log what it drained, got:\n${afterSignal.join('\n')}`);
  }
});
