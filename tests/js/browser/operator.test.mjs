// The operator view (/admin) in a real Chromium against a cluster of three roomcast instances
// sharing one Redis and one SQLite file. The page reaches the cluster through a proxy that
// prefers web-1; the drained instance's users are played by recovering socket.io clients that
// a load balancer would move to the next instance (tests/js/recovery/client.mjs).
//
// The story an operator lives: the page shows all three instances live, the operator drains
// web-2 from the page, its row turns draining and then disappears, and web-2's users carry on
// on the other instances with every message of their room, none twice.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  connect, createUser, emitAck, randomHex, show, startServer, uniqueRoom,
} from '../harness.mjs';
import { assertExactRun, recoveringClient } from '../recovery/client.mjs';
import { startProxy } from './proxy.mjs';
import {
  artifactPath, cleanUp, launchChromium, openPerson, serverLogTails, startRedis, waitUntil, within,
} from './support.mjs';

const ADMIN_TOKEN = `ops-${randomHex(16)}`;
const INSTANCES = ['web-1', 'web-2', 'web-3'];
const MESSAGES = 40;
const UI_TIMEOUT_MS = 15_000;

describe('operator view on a three-instance cluster', { timeout: 180_000 }, () => {
  let redis = null;
  let dataDir = null;
  let browser = null;
  let proxy = null;
  const servers = {};
  const clients = [];

  before(async () => {
    browser = await launchChromium();
    redis = await startRedis();
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'roomcast-operator-'));
    const shared = {
      REDIS_URL: redis.url,
      SESSION_SECRET: randomHex(24),
      SESSION_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
      DATABASE_URL: `sqlite://${path.join(dataDir, 'db.sqlite')}`,
      ADMIN_TOKEN,
      SHUTDOWN_TIMEOUT_SECS: '10',
      MESSAGE_RATE_PER_SEC: '1000',
      MESSAGE_RATE_BURST: '1000',
      PORT: '0',
    };
    // One after the other: each applies migrations to the same SQLite file.
    for (const id of INSTANCES) {
      servers[id] = await startServer({ env: { ...shared, INSTANCE_ID: id }, dataDir });
    }
    proxy = await startProxy({
      backends: INSTANCES.map((name) => ({ name, url: servers[name].url })),
      prefer: 'web-1',
    });
  });

  after(async () => {
    const steps = [
      ...clients.map((client) => () => client.close()),
      () => browser?.close(),
      () => proxy?.close(),
      ...Object.values(servers).map((server) => () => server.stop()),
      () => redis?.stop(),
      () => dataDir && rm(dataDir, { recursive: true, force: true }),
    ];
    await cleanUp(steps);
  });

  /** Each instance row's id and state as the page shows them. */
  const rowsOf = (page) => page.locator('#instances tbody tr').evaluateAll(
    (rows) => rows.map((row) => ({ id: row.dataset.instance, state: row.dataset.state })),
  );

  it('shows every instance live, drains one from the page, and its users lose nothing', async () => {
    const operator = await openPerson(browser, proxy.url, { name: 'operator' });
    const { page } = operator;
    try {
      await page.goto('/admin');
      // A wrong token is refused with a message, and nothing is shown.
      await page.getByLabel('Admin token').fill('not-the-token');
      await page.getByRole('button', { name: 'Connect' }).click();
      await page.getByRole('alert').filter({ hasText: 'refused' }).waitFor({ timeout: UI_TIMEOUT_MS });
      assert.equal(await page.locator('#live').isHidden(), true, 'nothing is shown without the token');

      await page.getByLabel('Admin token').fill(ADMIN_TOKEN);
      await page.getByRole('button', { name: 'Connect' }).click();
      await waitUntil(() => rowsOf(page), (rows) => show(rows) === show(INSTANCES.map((id) => ({ id, state: 'ready' }))), {
        what: 'instance rows', expected: 'web-1, web-2, web-3 all ready', timeoutMs: UI_TIMEOUT_MS,
      });
      assert.match(await page.getByRole('status').first().textContent(), /served by web-1/);

      // Two users on web-2 in one room (their balancer would send them to web-3 next), and
      // a sender on web-1 that keeps talking through the drain.
      const room = uniqueRoom('ops');
      const sender = await createUser(servers['web-1'].url, 'sender');
      const senderSocket = await connect(servers['web-1'].url, sender.cookie);
      assert.equal((await emitAck(senderSocket, 'join', { room }))?.ok, true);
      const urls = ['web-2', 'web-3', 'web-1'].map((id) => servers[id].url);
      const moved = [];
      for (const name of ['carol', 'dave']) {
        const user = await createUser(servers['web-2'].url, name);
        const client = recoveringClient({ urls, start: 0, cookie: user.cookie, name });
        clients.push(client);
        await client.connected();
        const ack = await client.join(room);
        assert.equal(ack.seq, 0, `${name} joins an empty room`);
        moved.push(client);
      }
      // The room shows up among the busiest rooms with its three members.
      await page.locator(`#rooms tr[data-room="${room}"]`).filter({ hasText: '3' })
        .waitFor({ timeout: UI_TIMEOUT_MS });

      // Record every state web-2's row shows, so a short-lived "draining" is not missed.
      await page.evaluate(() => {
        window.web2States = [];
        const note = () => {
          const row = document.querySelector('#instances tr[data-instance="web-2"]');
          const state = row ? row.dataset.state : 'gone';
          if (window.web2States.at(-1) !== state) window.web2States.push(state);
        };
        new MutationObserver(note).observe(document.querySelector('#instances tbody'), { childList: true, subtree: true, attributes: true });
        note();
      });

      const send = async (from, to) => {
        for (let i = from; i <= to; i += 1) {
          const ack = await emitAck(senderSocket, 'message', { room, text: `m${i}` }, 10_000);
          assert.equal(ack?.ok, true, `message ${i} acked: ${show(ack)}`);
          if (i === 10) {
            // Drain web-2 from the page while messages keep coming: arm, then confirm.
            await page.getByRole('button', { name: 'Drain web-2', exact: true }).click();
            await page.getByRole('button', { name: 'Confirm drain of web-2', exact: true }).click();
          }
        }
      };
      // The first half goes out while web-2 drains, the second once its users have moved.
      const half = MESSAGES / 2;
      await send(1, half);
      const exit = await within(30_000, 'web-2 exits after the drain', servers['web-2'].exited);
      for (const client of moved) {
        await waitUntil(async () => client.socket.connected && client.stats.connects.length, (n) => n >= 2, {
          what: `${client.name} reconnected`, expected: 'a second connection', timeoutMs: UI_TIMEOUT_MS,
        });
        assert.notEqual(client.stats.connects.at(-1), servers['web-2'].url, `${client.name} moved off web-2`);
      }
      await send(half + 1, MESSAGES);
      await waitUntil(() => rowsOf(page), (rows) => show(rows.map((r) => r.id)) === show(['web-1', 'web-3']), {
        what: 'instance rows after the drain', expected: 'web-1 and web-3 only', timeoutMs: UI_TIMEOUT_MS,
      });
      const states = await page.evaluate(() => window.web2States);
      assert.deepEqual(states, ['ready', 'draining', 'gone'], `web-2's row: ${show(states)}`);
      assert.equal(exit.code, 0, 'web-2 exits 0 after an operator drain');

      // Every moved user has every message exactly once, in order, on another instance.
      for (const client of moved) {
        await waitUntil(async () => client.delivered(room).length, (n) => n >= MESSAGES, {
          what: `${client.name}'s messages`, expected: `${MESSAGES}`, timeoutMs: UI_TIMEOUT_MS,
        });
        assertExactRun(client.name, client.delivered(room), 0, MESSAGES);
      }
      assert.deepEqual(operator.pageErrors, [], 'no uncaught errors on the page');
      await page.screenshot({ path: artifactPath('operator-after-drain.png'), fullPage: true });
    } catch (err) {
      await page.screenshot({ path: artifactPath('operator-failure.png'), fullPage: true }).catch(() => {});
      err.message += `\n${serverLogTails(servers, 30)}`;
      throw err;
    }
  });
});
