// What a person does in the browser app, as steps shared by the browser suites: the
// controls found by their accessible names, signing in, joining a room, and waiting for a
// message or a connection state (each wait bounded, with an "expected … got …" message).
// Also the two-instance cluster (one Redis, one SQLite file) the suites run against.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PASSWORD, randomHex, show, startServer } from '../harness.mjs';
import { artifactPath, startRedis, textOf, waitUntil } from './support.mjs';

export const UI_TIMEOUT_MS = 10_000;

/**
 * web-1 and web-2 sharing a fresh Redis and SQLite file, started one after the other (both
 * apply migrations to the same file). `stop()` stops whatever is still running.
 */
export async function startCluster({ shutdownTimeoutSecs }) {
  const redis = await startRedis();
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'roomcast-browser-'));
  const shared = {
    REDIS_URL: redis.url,
    SESSION_SECRET: randomHex(24),
    SESSION_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
    DATABASE_URL: `sqlite://${path.join(dataDir, 'db.sqlite')}`,
    SHUTDOWN_TIMEOUT_SECS: String(shutdownTimeoutSecs),
    PORT: '0',
  };
  const servers = {};
  for (const id of ['web-1', 'web-2']) {
    servers[id] = await startServer({ env: { ...shared, INSTANCE_ID: id }, dataDir });
  }
  return {
    servers,
    steps: () => [
      ...Object.values(servers).map((server) => () => server.stop()),
      () => redis.stop(),
      () => rm(dataDir, { recursive: true, force: true }),
    ],
  };
}

export const controls = (page) => ({
  username: page.getByLabel('Username', { exact: true }),
  password: page.getByLabel('Password', { exact: true }),
  login: page.getByRole('button', { name: 'Log in', exact: true }),
  register: page.getByRole('button', { name: 'Register', exact: true }),
  logout: page.getByRole('button', { name: 'Log out', exact: true }),
  room: page.getByLabel('Room', { exact: true }),
  join: page.getByRole('button', { name: 'Join', exact: true }),
  leave: page.getByRole('button', { name: 'Leave', exact: true }),
  message: page.getByLabel('Message', { exact: true }),
  send: page.getByRole('button', { name: 'Send', exact: true }),
  analytics: page.getByRole('switch', { name: 'Share anonymous analytics' }),
  conversation: page.getByRole('log', { name: 'Conversation' }),
});

export const connectionState = (page) => page.locator('#status').getAttribute('data-state');
/** The transport the page's connection uses now (`polling`, `websocket`), or null. */
export const transportOf = (page) => page.locator('#status').getAttribute('data-transport');
export const servedBy = (page) => textOf(page.locator('#instance-id'));

export const waitLive = (p, what = `${p.name}'s page is live`) => waitUntil(
  () => connectionState(p.page), (state) => state === 'connected',
  { what, expected: 'status data-state "connected"', timeoutMs: UI_TIMEOUT_MS },
);

/** Open the app and wait for the sign-in form. */
export const openSignIn = async (p) => {
  await p.page.goto('/');
  await controls(p.page).username.waitFor({ state: 'visible' });
};

/** Fill the sign-in form and press `button` ("Register" registers and logs in). */
export const submitAuth = async (p, username, button) => {
  const c = controls(p.page);
  await c.username.fill(username);
  await c.password.fill(PASSWORD);
  await c[button].click();
  await waitUntil(
    async () => ({ logout: await c.logout.isVisible(), error: await textOf(p.page.locator('#auth-error')) }),
    (s) => s.logout,
    { what: `${p.name}: ${button} as ${username}`, expected: 'the chat view with a "Log out" button', timeoutMs: UI_TIMEOUT_MS },
  );
  assert.equal(await textOf(p.page.locator('#account-name')), username,
    `${p.name}: expected the account name ${username} in the top bar`);
};

/** Join a room by name and wait for the join ack (the header shows a member count). */
export const joinRoom = async (p, name) => {
  const c = controls(p.page);
  await c.room.fill(name);
  await c.join.click();
  await waitUntil(
    async () => ({ title: await textOf(p.page.locator('#room-title')), members: await textOf(p.page.locator('#room-members')) }),
    (s) => s.title === `#${name}` && /^\d+ members? here$/.test(s.members ?? ''),
    { what: `${p.name}: join #${name}`, expected: `room header "#${name}" with "N member(s) here"`, timeoutMs: UI_TIMEOUT_MS },
  );
};

/**
 * The message list item whose text is exactly `text` (null when absent): {text, author, via,
 * labelShown}. `labelShown` tells whether the author/instance line of that item is on screen
 * (a message grouped under the previous one keeps it only for screen readers).
 */
export const findMessage = (page, text) => page.evaluate((wanted) => {
  const shown = (node) => {
    if (!node) return false;
    const r = node.getBoundingClientRect();
    return r.width > 2 && r.height > 2 && getComputedStyle(node).visibility !== 'hidden';
  };
  for (const li of document.querySelectorAll('#messages li.msg')) {
    const body = li.querySelector('.msg-text')?.textContent;
    if (body === wanted) {
      const meta = li.querySelector('.msg-meta');
      const via = li.querySelector('.via');
      return {
        text: body,
        author: li.querySelector('.author')?.textContent ?? null,
        via: via?.textContent ?? null,
        labelShown: shown(meta) && shown(via),
      };
    }
  }
  return null;
}, text);

/**
 * Wait until `p` shows the message `text` by `author`, stamped "via <via>"; with
 * `labelShown`, the author and instance label must be visible on that very message.
 */
export const waitForMessage = (p, { text, author, via, labelShown = false, timeoutMs = UI_TIMEOUT_MS }) => waitUntil(
  () => findMessage(p.page, text),
  (m) => m !== null && m.author === author && m.via === `via ${via}` && (!labelShown || m.labelShown),
  {
    what: `${p.name} sees ${show(text)}`,
    expected: show({ text, author, via: `via ${via}`, ...(labelShown ? { labelShown } : {}) }),
    timeoutMs,
  },
);

export const visibleMessageTexts = (page) => page.evaluate(
  () => [...document.querySelectorAll('#messages li.msg .msg-text')].map((node) => node.textContent),
);

// Finite animations (the banner sliding in) are fast-forwarded so the picture shows the end state.
export const screenshot = (p, file) => p.page.screenshot({ path: artifactPath(file), animations: 'disabled' });
