// The embedded browser app in a real Chromium (playwright-core), against a cluster of two
// roomcast instances (web-1, web-2) sharing one Redis and one SQLite file. Each browser
// context reaches the cluster through its own small reverse proxy (./proxy.mjs) that prefers
// one instance and falls through to the other when the preferred one refuses or answers 503,
// the way a load balancer treats a draining instance.
//
// Elements are found by their accessible names, as a person (or a screen reader) finds them.
// Screenshots go to tests/js/artifacts/ (not committed).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  createUser, emitAck, randomHex, show, uniqueName, uniqueRoom,
} from '../harness.mjs';
import {
  UI_TIMEOUT_MS, connectionState, controls, joinRoom, openSignIn, screenshot, servedBy,
  startCluster, submitAuth, visibleMessageTexts, waitForMessage, waitLive,
} from './app_steps.mjs';
import { startProxy } from './proxy.mjs';
import {
  cleanUp, launchChromium, openPerson, serverLogTails, textOf, waitUntil, within,
} from './support.mjs';

const WIDE = { width: 1280, height: 800 };
const NARROW = { width: 375, height: 800 };
const SHUTDOWN_TIMEOUT_SECS = 10;
const XSS_TEXT = '<img src=x onerror=alert(1)>';

describe('browser app on a two-instance cluster', { timeout: 240_000 }, () => {
  let cluster = null;
  let browser = null;
  const servers = {}; // instance id -> server
  const proxies = [];
  const people = [];
  // Shared by the stories below, which build on each other: A and B are set up by the first.
  let a = null;
  let b = null;
  let proxyA = null;
  let proxyB = null;
  let room = null;

  const requireChat = () => {
    if (!a?.ready || !b?.ready) throw new Error('precondition: the first story (A and B chatting in one room) did not complete');
  };

  /** Add the tail of every server log to a failure, so a server-side cause is visible. */
  const withLogs = async (body) => {
    try {
      await body();
    } catch (err) {
      err.message += `\n${serverLogTails(servers)}`;
      throw err;
    }
  };

  before(async () => {
    browser = await launchChromium();
    cluster = await startCluster({ shutdownTimeoutSecs: SHUTDOWN_TIMEOUT_SECS });
    Object.assign(servers, cluster.servers);
  });

  after(async () => {
    const steps = [
      ...people.map((person) => () => person.context.close()),
      () => browser?.close(),
      ...proxies.map((proxy) => () => proxy.close()),
      ...(cluster?.steps() ?? []),
    ];
    await cleanUp(steps);
  });

  /** A proxy (one per browser context) preferring `prefer`, falling back to the other instance. */
  const proxyFor = async (prefer) => {
    const proxy = await startProxy({
      backends: ['web-1', 'web-2'].map((name) => ({ name, url: servers[name].url })),
      prefer,
    });
    proxies.push(proxy);
    return proxy;
  };

  const person = async (proxy, viewport, name) => {
    const p = await openPerson(browser, proxy.url, { viewport, name });
    people.push(p);
    return p;
  };

  // ------------------------------------------------------------ page steps

  /** Reload `p`'s page through `proxy` preferring web-1, and wait until it is back in the room there. */
  const reloadOnWeb1 = async (p, proxy, before) => {
    proxy.prefer('web-1');
    await p.page.reload();
    await controls(p.page).logout.waitFor({ state: 'visible' });
    await waitLive(p, `${p.name} reconnected after the reload`);
    await waitUntil(() => proxy.tunnels(), (t) => t.length === 1 && t[0] === 'web-1',
      { what: `${p.name}'s WebSocket before the ${before}`, expected: 'one tunnel to web-1' });
    await waitUntil(() => textOf(p.page.locator('#room-title')), (t) => t === `#${room}`,
      { what: `${p.name}'s room after the reload`, expected: show(`#${room}`) });
  };

  // ------------------------------------------------------------ stories

  it('two people on two instances register, log in, join one room, see typing, messages and presence',
    { timeout: 60_000 }, () => withLogs(async () => {
      proxyA = await proxyFor('web-1');
      proxyB = await proxyFor('web-2');
      a = await person(proxyA, WIDE, 'A');
      b = await person(proxyB, WIDE, 'B');
      a.username = uniqueName('alice');
      b.username = uniqueName('bob');
      room = uniqueRoom('browser');

      await Promise.all([openSignIn(a), openSignIn(b)]);
      assert.equal(await servedBy(a.page), 'web-1', 'A\'s page: expected "served by web-1"');
      assert.equal(await servedBy(b.page), 'web-2', 'B\'s page: expected "served by web-2"');

      // A registers, logs out and logs in again; B registers (which logs in).
      await Promise.all([submitAuth(a, a.username, 'register'), submitAuth(b, b.username, 'register')]);
      await controls(a.page).logout.click();
      await controls(a.page).login.waitFor({ state: 'visible' });
      await submitAuth(a, a.username, 'login');
      await Promise.all([waitLive(a), waitLive(b)]);

      await joinRoom(a, room);
      await joinRoom(b, room);
      await waitUntil(() => textOf(b.page.locator('#room-members')), (t) => t === '2 members here',
        { what: 'B sees A in the room', expected: '"2 members here"', timeoutMs: UI_TIMEOUT_MS });
      await waitUntil(() => textOf(a.page.locator('#room-members')), (t) => t === '2 members here',
        { what: 'A sees B arrive (presence event)', expected: '"2 members here"', timeoutMs: UI_TIMEOUT_MS });
      for (const [who, proxy, id] of [['A', proxyA, 'web-1'], ['B', proxyB, 'web-2']]) {
        await waitUntil(() => proxy.tunnels(), (t) => t.length === 1 && t[0] === id,
          { what: `${who}'s WebSocket`, expected: `one tunnel to ${id}` });
      }

      // A types: B sees the typing indicator.
      const hello = `hello from A ${randomHex(3)}`;
      const ca = controls(a.page);
      await ca.message.click();
      await ca.message.pressSequentially(hello.slice(0, 5));
      await waitUntil(() => textOf(b.page.locator('#typing .typing-text')), (t) => t === `${a.username} is typing…`,
        { what: 'B sees A typing', expected: show(`${a.username} is typing…`), timeoutMs: UI_TIMEOUT_MS });

      // A sends with Enter: B sees it, accepted by web-1; A's own copy too.
      await ca.message.fill(hello);
      await ca.message.press('Enter');
      await waitForMessage(b, { text: hello, author: a.username, via: 'web-1', labelShown: true });
      await waitForMessage(a, { text: hello, author: a.username, via: 'web-1', labelShown: true });
      assert.equal(await ca.message.inputValue(), '', 'A\'s composer: expected empty after sending');
      await waitUntil(() => textOf(b.page.locator('#typing .typing-text')), (t) => !t,
        { what: 'B\'s typing indicator after A\'s message', expected: 'cleared', timeoutMs: UI_TIMEOUT_MS });

      // B replies (Send button): A sees it, accepted by web-2.
      const reply = `hi A, B here ${randomHex(3)}`;
      await controls(b.page).message.fill(reply);
      await controls(b.page).send.click();
      await waitForMessage(a, { text: reply, author: b.username, via: 'web-2', labelShown: true });
      await waitForMessage(b, { text: reply, author: b.username, via: 'web-2', labelShown: true });

      await screenshot(a, '1-chat-A-web-1.png');
      await screenshot(b, '1-chat-B-web-2.png');
      assert.deepEqual([...a.dialogs, ...b.dialogs], [], 'expected no dialogs');
      assert.deepEqual([...a.pageErrors, ...b.pageErrors], [], 'expected no uncaught page errors');
      a.ready = true;
      b.ready = true;
    }));

  it('a message that looks like HTML is shown as text and never runs', { timeout: 30_000 }, () => withLogs(async () => {
    requireChat();
    await controls(a.page).message.fill(XSS_TEXT);
    await controls(a.page).message.press('Enter');
    await waitForMessage(b, { text: XSS_TEXT, author: a.username, via: 'web-1' });
    await waitForMessage(a, { text: XSS_TEXT, author: a.username, via: 'web-1' });
    for (const p of [a, b]) {
      const images = await p.page.locator('#messages img').count();
      assert.equal(images, 0, `${p.name}'s message list: expected no <img> element, got ${images}`);
      const xImages = await p.page.locator('img[src="x"]').count();
      assert.equal(xImages, 0, `${p.name}'s page: expected no img[src="x"], got ${xImages}`);
      const shown = await controls(p.page).conversation.getByText(XSS_TEXT, { exact: true }).count();
      assert.equal(shown, 1, `${p.name}: expected the literal text ${show(XSS_TEXT)} once in the conversation, got ${shown}`);
    }
    // Give an injected onerror handler time to fire, had there been one.
    await a.page.waitForTimeout(300);
    assert.deepEqual(a.dialogs, [], 'A: expected no dialog');
    assert.deepEqual(b.dialogs, [], 'B: expected no dialog');
    await screenshot(b, '2-xss-B.png');
  }));

  it('the analytics choice made on one instance holds on the other after a reload', { timeout: 30_000 },
    () => withLogs(async () => {
      requireChat();
      const sw = controls(a.page).analytics;
      assert.equal(await sw.isChecked(), true, 'A\'s "Share anonymous analytics": expected on before the change');
      const optOut = a.page.waitForResponse((r) => new URL(r.url()).pathname === '/api/analytics/opt-out');
      await sw.click();
      const res = await optOut;
      assert.equal(res.status(), 204, `POST /api/analytics/opt-out: expected 204, got ${res.status()}`);
      assert.equal(res.headers()['x-instance-id'], 'web-1', 'opt-out: expected to be served by web-1');
      assert.equal(await sw.isChecked(), false, 'A\'s switch: expected off after the click');

      // The load balancer now sends A to web-2 (same origin, same cookie).
      proxyA.prefer('web-2');
      const me = a.page.waitForResponse((r) => new URL(r.url()).pathname === '/api/me');
      await a.page.reload();
      const meRes = await me;
      assert.equal(meRes.status(), 200, `GET /api/me after the reload: expected 200 (still logged in), got ${meRes.status()}`);
      assert.equal(meRes.headers()['x-instance-id'], 'web-2', 'GET /api/me after the reload: expected web-2');
      await controls(a.page).logout.waitFor({ state: 'visible' });
      await waitUntil(() => servedBy(a.page), (id) => id === 'web-2',
        { what: 'A\'s status after the reload', expected: '"served by web-2"' });
      await waitLive(a, 'A reconnected after the reload');
      assert.equal(await controls(a.page).analytics.isChecked(), false,
        'A\'s "Share anonymous analytics" after the reload on web-2: expected off');

      const status = await a.page.evaluate(async () => {
        const r = await fetch('/api/analytics/status', { credentials: 'same-origin' });
        return { status: r.status, instance: r.headers.get('x-instance-id'), body: await r.json() };
      });
      assert.deepEqual(status, { status: 200, instance: 'web-2', body: { opted_out: true } },
        'GET /api/analytics/status on web-2: expected 200 {opted_out: true}');
      await screenshot(a, '3-analytics-off-A-web-2.png');
    }));

  it('after losing the network, A\'s page back on the other instance shows every message it missed, once, in order', { timeout: 60_000 },
    () => withLogs(async () => {
      requireChat();
      await reloadOnWeb1(a, proxyA, 'loss');

      // Two more users write more than a page of history (50) while A is away, from web-2
      // (two, so that neither goes over the per-user burst).
      const writers = [];
      for (const name of ['away1', 'away2']) {
        const user = await createUser(servers['web-2'].url, name);
        const socket = await user.connect('websocket', { timeoutMs: UI_TIMEOUT_MS });
        const joined = await emitAck(socket, 'join', { room }, UI_TIMEOUT_MS);
        assert.equal(joined?.ok, true, `${name}'s join: ${show(joined)}`);
        writers.push(socket);
      }
      proxyA.offline();
      await waitUntil(() => connectionState(a.page), (state) => state !== 'connected',
        { what: 'A\'s page after the network loss', expected: 'not "connected"', timeoutMs: UI_TIMEOUT_MS });
      const tag = randomHex(3);
      const missed = Array.from({ length: 80 }, (_, i) => `missed ${tag} ${i}`);
      for (const [i, text] of missed.entries()) {
        const ack = await emitAck(writers[i % 2], 'message', { room, text }, UI_TIMEOUT_MS);
        assert.equal(ack?.ok, true, `sending ${show(text)}: ${show(ack)}`);
      }
      for (const socket of writers) socket.close();
      proxyA.prefer('web-2');
      proxyA.online();

      await waitUntil(
        async () => ({ state: await connectionState(a.page), tunnels: proxyA.tunnels() }),
        (s) => s.state === 'connected' && s.tunnels.length === 1 && s.tunnels[0] === 'web-2',
        { what: 'A\'s page back online', expected: 'connected, over one WebSocket to web-2', timeoutMs: 30_000 },
      );
      await waitUntil(
        async () => (await visibleMessageTexts(a.page)).filter((t) => t.startsWith(`missed ${tag} `)),
        (texts) => texts.length === missed.length,
        { what: 'A\'s conversation after the loss', expected: `the ${missed.length} missed messages`, timeoutMs: UI_TIMEOUT_MS },
      );
      const texts = (await visibleMessageTexts(a.page)).filter((t) => t.startsWith(`missed ${tag} `));
      assert.deepEqual(texts, missed, 'A: expected every missed message once, in order, with no hole');
      await screenshot(a, '4-recovered-after-loss-A.png');
      assert.deepEqual([...a.pageErrors, ...b.pageErrors], [], 'expected no uncaught page errors');
    }));

  it('draining web-1 moves A\'s page to web-2 with a banner, and A keeps chatting with B', { timeout: 45_000 },
    () => withLogs(async () => {
      requireChat();
      // Put A back on web-1 (a reload through the proxy, which prefers web-1 again).
      await reloadOnWeb1(a, proxyA, 'drain');
      const before = `before the drain ${randomHex(3)}`;
      await controls(a.page).message.fill(before);
      await controls(a.page).message.press('Enter');
      await waitForMessage(b, { text: before, author: a.username, via: 'web-1' });

      // Record every banner text the page shows from now on.
      await a.page.evaluate(() => {
        window.bannerSeen = [];
        const banner = document.getElementById('banner');
        const record = () => {
          const text = banner.textContent.trim();
          if (!banner.hidden && text && window.bannerSeen.at(-1) !== text) window.bannerSeen.push(text);
        };
        new MutationObserver(record).observe(banner, { attributes: true, childList: true, subtree: true, characterData: true });
      });

      const web1 = servers['web-1'];
      process.kill(web1.pid, 'SIGTERM');

      const banner = a.page.locator('#banner');
      await waitUntil(
        async () => ({ visible: await banner.isVisible(), text: await textOf(banner) }),
        (s) => s.visible && /draining|reconnect/i.test(s.text ?? ''),
        { what: 'A\'s banner after SIGTERM to web-1', expected: 'a visible banner mentioning "draining" or "reconnect"', timeoutMs: 8_000, intervalMs: 20 },
      );
      await screenshot(a, '4-drain-banner-A.png');

      await waitUntil(
        async () => ({ state: await connectionState(a.page), tunnels: proxyA.tunnels() }),
        (s) => s.state === 'connected' && s.tunnels.length === 1 && s.tunnels[0] === 'web-2',
        { what: 'A\'s page after the drain', expected: 'connected, over one WebSocket to web-2', timeoutMs: 15_000 },
      );
      const seen = await a.page.evaluate(() => window.bannerSeen);
      assert.ok(seen.some((t) => /draining/i.test(t)),
        `A's banner during the drain: expected a text mentioning "draining", got ${show(seen)}`);

      // A's next message is accepted by web-2 and reaches B. It follows A's own messages from
      // web-1, so its "via web-2" label must be visible rather than grouped under "via web-1".
      const afterDrain = `after the drain ${randomHex(3)}`;
      await controls(a.page).message.fill(afterDrain);
      await controls(a.page).send.click();
      await waitForMessage(a, { text: afterDrain, author: a.username, via: 'web-2', labelShown: true });
      await waitForMessage(b, { text: afterDrain, author: a.username, via: 'web-2', labelShown: true });
      await screenshot(a, '4-drain-recovered-A.png');
      await screenshot(b, '4-drain-B.png');

      // Nothing was lost or duplicated on either page.
      for (const p of [a, b]) {
        const texts = await visibleMessageTexts(p.page);
        const count = (t) => texts.filter((x) => x === t).length;
        assert.deepEqual([count(before), count(afterDrain)], [1, 1],
          `${p.name}: expected the messages before and after the drain once each, got ${show(texts)}`);
      }

      const exit = await within((SHUTDOWN_TIMEOUT_SECS + 5) * 1000, 'web-1 exit after SIGTERM', web1.exited);
      assert.deepEqual(exit, { code: 0, signal: null }, 'web-1 after SIGTERM: expected exit code 0');
      assert.deepEqual([...a.pageErrors, ...b.pageErrors], [], 'expected no uncaught page errors');
    }));

  it('on a 375 px wide screen one can log in and chat without horizontal scrolling', { timeout: 30_000 },
    () => withLogs(async () => {
      const proxy = await proxyFor('web-2');
      const c = await person(proxy, NARROW, 'C');
      const noSideScroll = async (where) => {
        const widths = await c.page.evaluate(() => ({
          scroll: document.documentElement.scrollWidth,
          body: document.body.scrollWidth,
        }));
        assert.ok(widths.scroll <= NARROW.width && widths.body <= NARROW.width,
          `${where}: expected document width <= ${NARROW.width}px, got ${show(widths)}`);
      };
      const inView = async (locator, what) => {
        const box = await locator.boundingBox();
        assert.ok(box && box.x >= 0 && box.x + box.width <= NARROW.width + 0.5,
          `${what}: expected inside the ${NARROW.width}px viewport, got ${show(box)}`);
      };

      const username = uniqueName('carol');
      const narrowRoom = uniqueRoom('narrow');
      await openSignIn(c);
      await noSideScroll('sign-in form');
      await inView(controls(c.page).register, '"Register" button');
      await submitAuth(c, username, 'register');
      await waitLive(c);
      await noSideScroll('room list');
      await joinRoom(c, narrowRoom);
      const text = `hello from a phone ${randomHex(3)} — a long line that has to wrap on a narrow screen without widening the page`;
      await controls(c.page).message.fill(text);
      await inView(controls(c.page).send, '"Send" button');
      await controls(c.page).send.click();
      await waitForMessage(c, { text, author: username, via: 'web-2' });
      await noSideScroll('conversation');
      await inView(controls(c.page).leave, '"Leave" button');
      await screenshot(c, '5-narrow-375.png');
      assert.deepEqual(c.dialogs, [], 'expected no dialogs');
      assert.deepEqual(c.pageErrors, [], 'expected no uncaught page errors');
    }));
});
