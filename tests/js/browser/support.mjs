// Helpers for the browser tests: a throw-away Redis, the Chromium executable, bounded waits
// with "expected … got …" messages, and a browser context per user.
import { spawn } from 'node:child_process';
import { accessSync, constants as fsConstants, mkdirSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { sleep, show, within } from '../harness.mjs';

export { within };

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ARTIFACTS_DIR = path.resolve(HERE, '..', 'artifacts');

export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
];

const isExecutable = (file) => {
  try {
    accessSync(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
};

/** `CHROMIUM_PATH`, else the conventional /usr/bin/chromium, else `chromium` on PATH; null if none. */
export function chromiumPath() {
  if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH;
  if (isExecutable('/usr/bin/chromium')) return '/usr/bin/chromium';
  for (const dir of (process.env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    const candidate = path.join(dir, 'chromium');
    if (isExecutable(candidate)) return candidate;
  }
  return null;
}

/** Headless Chromium with `CHROMIUM_ARGS`; fails with how to install it when it is missing. */
export async function launchChromium() {
  const executablePath = chromiumPath();
  if (!executablePath) {
    throw new Error('Chromium not found: set CHROMIUM_PATH, or install it (Debian: apt-get install chromium)');
  }
  return chromium.launch({ executablePath, args: CHROMIUM_ARGS });
}

/** Runs every cleanup step, each within 20 s; a step that fails does not stop the others. */
export async function cleanUp(steps) {
  for (const step of steps) {
    try {
      await within(20_000, 'cleanup step', Promise.resolve(step()));
    } catch { /* keep cleaning up */ }
  }
}

/** The last `lines` lines of each server's log, to add to a failure so a server-side cause shows. */
export function serverLogTails(servers, lines = 40) {
  return Object.values(servers)
    .map((s) => `--- ${s.instanceId} log (last ${lines} lines) ---\n${s.logs().slice(-lines).join('\n')}`)
    .join('\n');
}

export function artifactPath(name) {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  return path.join(ARTIFACTS_DIR, name);
}


/**
 * Poll `probe` (async, returns the current value) until `accept(value)` holds.
 * On timeout: "<what>: expected <expected>, got <last value> (after N ms)".
 */
export async function waitUntil(probe, accept, { what, expected, timeoutMs = 10_000, intervalMs = 50 }) {
  const deadline = Date.now() + timeoutMs;
  let last;
  let lastError = null;
  for (;;) {
    try {
      last = await probe();
      lastError = null;
      if (accept(last)) return last;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const got = lastError ? `an error: ${lastError.message}` : show(last);
      throw new Error(`${what}: expected ${expected}, got ${got} (after ${timeoutMs} ms)`);
    }
    await sleep(intervalMs);
  }
}

/** The text of the first element matched by a locator, or null when there is none. */
export async function textOf(locator) {
  return (await locator.count()) ? (await locator.first().textContent())?.trim() ?? '' : null;
}

// ---------------------------------------------------------------- Redis

const runningRedis = new Map(); // child -> temp dir
process.on('exit', () => {
  for (const [child, dir] of runningRedis) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
    try { rmSync(dir, { recursive: true, force: true }); } catch { /* best effort */ }
  }
});

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

function ping(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let reply = '';
    const finish = (ok) => { socket.destroy(); resolve(ok); };
    socket.setTimeout(1_000, () => finish(false));
    socket.once('error', () => finish(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      if (reply.includes('\r\n')) finish(reply.startsWith('+PONG'));
    });
  });
}

/** Start a private redis-server (no persistence) on a free port; resolves once it answers PING. */
export async function startRedis({ timeoutMs = 10_000 } = {}) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'roomcast-redis-'));
  const port = await freePort();
  const output = [];
  const child = spawn('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir,
  ], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  runningRedis.set(child, dir);
  let exitInfo = null;
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => {
    exitInfo = { code, signal };
    runningRedis.delete(child);
    resolve();
  }));
  let spawnError = null;
  child.once('error', (err) => { spawnError = err; });
  child.stdout.on('data', (chunk) => output.push(chunk.toString()));
  child.stderr.on('data', (chunk) => output.push(chunk.toString()));

  const stop = async () => {
    if (!exitInfo) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => { if (!exitInfo) child.kill('SIGKILL'); }, 5_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + timeoutMs;
  while (!(await ping(port))) {
    if (spawnError || exitInfo || Date.now() > deadline) {
      await stop();
      const why = spawnError ? `could not run redis-server: ${spawnError.message}`
        : exitInfo ? `redis-server exited (${show(exitInfo)})` : `redis-server did not answer PING within ${timeoutMs} ms`;
      throw new Error(`${why}\n${output.join('')}`);
    }
    await sleep(50);
  }
  return { url: `redis://127.0.0.1:${port}`, port, stop };
}

// ---------------------------------------------------------------- browser pages

/**
 * A browser context and page for one person, whose requests go to `origin` (a proxy).
 * Dialogs (alert/confirm/prompt) are recorded and dismissed; uncaught page errors are recorded.
 */
export async function openPerson(browser, origin, { viewport = { width: 1280, height: 800 }, name = 'page' } = {}) {
  const context = await browser.newContext({ baseURL: origin, viewport });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  const dialogs = [];
  const pageErrors = [];
  page.on('dialog', (dialog) => {
    dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    dialog.dismiss().catch(() => {});
  });
  page.on('pageerror', (err) => pageErrors.push(err.message));
  return { name, context, page, dialogs, pageErrors };
}
