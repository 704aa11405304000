// Probe used by the fault tests: does a message sent on the first instance reach a client on
// the second? Exits 0 when it does (within the timeout), 1 otherwise, printing what happened.
// Usage: ROOMCAST_URLS=http://a,http://b node cluster/crosstalk.mjs
import { createUser, join, say, nextEvent, closeAllSockets, uniqueRoom, show } from '../harness.mjs';

const [first, second] = (process.env.ROOMCAST_URLS || '').split(',');
if (!first || !second) {
  console.error('ROOMCAST_URLS must list two instances');
  process.exit(2);
}

try {
  const alice = await createUser(first, 'probe');
  const bob = await createUser(second, 'probe');
  const room = uniqueRoom('probe');
  const sender = await alice.connect('websocket');
  const receiver = await bob.connect('websocket');
  await join(sender, room);
  await join(receiver, room);
  const text = `crosstalk ${Date.now()}`;
  const arrival = nextEvent(receiver, 'message', (m) => m.text === text, 5_000);
  const ack = await say(sender, room, text);
  const message = await arrival;
  console.log(`delivered across instances: ack=${show(ack)} message=${show(message)}`);
  closeAllSockets();
  process.exit(0);
} catch (err) {
  console.error(`cross-instance delivery failed: ${err && err.stack ? err.stack : err}`);
  closeAllSockets();
  process.exit(1);
}
