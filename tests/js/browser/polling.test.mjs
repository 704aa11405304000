// The browser app where WebSocket is blocked: P reaches the two-instance cluster through a
// proxy that refuses every WebSocket upgrade (as some corporate proxies and networks do), so
// the official socket.io-client stays on HTTP long-polling. P chats with Q (on WebSocket
// through an ordinary proxy), and when P's instance drains, P's page moves to the other
// instance over long-polling again, with nothing lost or doubled.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { randomHex, show, uniqueName, uniqueRoom } from '../harness.mjs';
import {
  UI_TIMEOUT_MS, connectionState, controls, joinRoom, openSignIn, screenshot, startCluster,
  submitAuth, transportOf, visibleMessageTexts, waitForMessage, waitLive,
} from './app_steps.mjs';
import { startProxy } from './proxy.mjs';
import {
  cleanUp, launchChromium, openPerson, serverLogTails, textOf, waitUntil, within,
} from './support.mjs';

const WIDE = { width: 1280, height: 800 };
const SHUTDOWN_TIMEOUT_SECS = 10;

describe('browser app with WebSocket blocked', { timeout: 180_000 }, () => {
  let cluster = null;
  let browser = null;
  const servers = {};
  const proxies = [];
  const people = [];
  let p = null; // behind the proxy that blocks WebSocket
  let q = null;
  let proxyP = null;
  let room = null;

  const withLogs = async (body) => {
    try {
      await body();
    } catch (err) {
      const requests = proxyP ? proxyP.log.slice(-30).map((r) => `${r.kind} ${r.method ?? ''} ${r.path} -> ${r.backend} ${r.status}`) : [];
      err.message += `\n--- P's proxy, last requests ---\n${requests.join('\n')}\n${serverLogTails(servers)}`;
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

  const proxyFor = async (prefer, options = {}) => {
    const proxy = await startProxy({
      backends: ['web-1', 'web-2'].map((name) => ({ name, url: servers[name].url })),
      prefer,
      ...options,
    });
    proxies.push(proxy);
    return proxy;
  };

  const person = async (proxy, name) => {
    const one = await openPerson(browser, proxy.url, { viewport: WIDE, name });
    people.push(one);
    return one;
  };

  /** The backend of the newest Engine.IO session opened through `proxy`. */
  const newestSession = (proxy) => [...proxy.sessions().values()].at(-1) ?? null;

  const send = async (who, text) => {
    await controls(who.page).message.fill(text);
    await controls(who.page).message.press('Enter');
  };

  it('over long-polling only, P logs in, joins a room and chats with Q', { timeout: 60_000 }, () => withLogs(async () => {
    proxyP = await proxyFor('web-1', { blockWebSocket: true });
    const proxyQ = await proxyFor('web-2');
    p = await person(proxyP, 'P');
    q = await person(proxyQ, 'Q');
    p.username = uniqueName('polly');
    q.username = uniqueName('quinn');
    room = uniqueRoom('polling');

    await Promise.all([openSignIn(p), openSignIn(q)]);
    await Promise.all([submitAuth(p, p.username, 'register'), submitAuth(q, q.username, 'register')]);
    await Promise.all([waitLive(p), waitLive(q)]);
    await joinRoom(p, room);
    await joinRoom(q, room);

    // The client tried to upgrade, was refused, and stayed on long-polling, on web-1.
    await waitUntil(() => proxyP.log.filter((r) => r.kind === 'upgrade').map((r) => r.status),
      (statuses) => statuses.length >= 1 && statuses.every((s) => s === 403),
      { what: 'P\'s WebSocket upgrades', expected: 'at least one, each refused with 403', timeoutMs: UI_TIMEOUT_MS });
    assert.deepEqual(proxyP.tunnels(), [], 'P\'s proxy: expected no WebSocket tunnel');
    assert.equal(newestSession(proxyP), 'web-1', 'P\'s Engine.IO session: expected on web-1');
    assert.equal(await connectionState(p.page), 'connected', 'P\'s page: expected connected after the refused upgrade');
    assert.equal(await transportOf(p.page), 'polling', 'P\'s page: expected the polling transport');
    assert.equal(await textOf(p.page.locator('#status-text')), 'Live (long-polling)', 'P\'s status text');
    await waitUntil(() => transportOf(q.page), (t) => t === 'websocket',
      { what: 'Q\'s transport', expected: '"websocket" (Q\'s proxy lets WebSocket through)' });
    await waitUntil(() => textOf(q.page.locator('#room-members')), (t) => t === '2 members here',
      { what: 'Q sees P in the room', expected: '"2 members here"', timeoutMs: UI_TIMEOUT_MS });

    // Typing, and messages both ways.
    await controls(p.page).message.click();
    await controls(p.page).message.pressSequentially('hel');
    await waitUntil(() => textOf(q.page.locator('#typing .typing-text')), (t) => t === `${p.username} is typing…`,
      { what: 'Q sees P typing', expected: show(`${p.username} is typing…`), timeoutMs: UI_TIMEOUT_MS });
    const hello = `hello over polling ${randomHex(3)}`;
    await send(p, hello);
    await waitForMessage(q, { text: hello, author: p.username, via: 'web-1' });
    await waitForMessage(p, { text: hello, author: p.username, via: 'web-1' });
    const reply = `hi P, over WebSocket ${randomHex(3)}`;
    await send(q, reply);
    await waitForMessage(p, { text: reply, author: q.username, via: 'web-2' });

    const polls = proxyP.log.filter((r) => r.kind === 'http' && r.path.startsWith('/socket.io/') && r.status === 200);
    assert.ok(polls.some((r) => r.method === 'POST') && polls.some((r) => r.method === 'GET'),
      `P's proxy: expected long-polling GETs and POSTs answered 200, got ${show(polls.slice(-5))}`);
    await screenshot(p, 'polling-1-chat-P.png');
    assert.deepEqual([...p.pageErrors, ...q.pageErrors], [], 'expected no uncaught page errors');
    p.ready = true;
  }));

  it('draining P\'s instance moves P\'s page to the other one, still over long-polling, with nothing lost',
    { timeout: 60_000 }, () => withLogs(async () => {
      if (!p?.ready) throw new Error('precondition: the first story (P chatting over long-polling) did not complete');
      await p.page.evaluate(() => {
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
      // Q writes while P is being moved: P must get each of these once, in order.
      const tag = randomHex(3);
      const during = Array.from({ length: 5 }, (_, i) => `during the drain ${tag} ${i}`);
      for (const text of during) {
        await send(q, text);
        await waitForMessage(q, { text, author: q.username, via: 'web-2' });
      }

      await waitUntil(
        async () => ({ state: await connectionState(p.page), transport: await transportOf(p.page), session: newestSession(proxyP) }),
        (s) => s.state === 'connected' && s.transport === 'polling' && s.session === 'web-2',
        { what: 'P\'s page after the drain', expected: 'connected over long-polling, its session on web-2', timeoutMs: 20_000 },
      );
      const seen = await p.page.evaluate(() => window.bannerSeen);
      assert.ok(seen.some((t) => /draining/i.test(t)),
        `P's banner during the drain: expected a text mentioning "draining", got ${show(seen)}`);
      await waitUntil(
        async () => (await visibleMessageTexts(p.page)).filter((t) => t.startsWith(`during the drain ${tag} `)),
        (texts) => texts.length === during.length,
        { what: 'P\'s conversation after the drain', expected: `the ${during.length} messages Q sent meanwhile`, timeoutMs: UI_TIMEOUT_MS },
      );
      const texts = (await visibleMessageTexts(p.page)).filter((t) => t.startsWith(`during the drain ${tag} `));
      assert.deepEqual(texts, during, 'P: expected every message sent during the drain once, in order');

      const after = `after the drain, over polling ${randomHex(3)}`;
      await send(p, after);
      await waitForMessage(p, { text: after, author: p.username, via: 'web-2', labelShown: true });
      await waitForMessage(q, { text: after, author: p.username, via: 'web-2' });
      for (const who of [p, q]) {
        const all = await visibleMessageTexts(who.page);
        assert.equal(all.filter((t) => t === after).length, 1, `${who.name}: expected ${show(after)} once, got ${show(all)}`);
      }
      assert.deepEqual(proxyP.tunnels(), [], 'P\'s proxy: expected no WebSocket tunnel after the move either');
      await screenshot(p, 'polling-2-after-drain-P.png');

      const exit = await within((SHUTDOWN_TIMEOUT_SECS + 5) * 1000, 'web-1 exit after SIGTERM', web1.exited);
      assert.deepEqual(exit, { code: 0, signal: null }, 'web-1 after SIGTERM: expected exit code 0');
      assert.deepEqual([...p.pageErrors, ...q.pageErrors], [], 'expected no uncaught page errors');
    }));
});
