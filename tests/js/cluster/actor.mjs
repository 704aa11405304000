// A scriptable Socket.IO user for tests that control server processes from Rust: it logs in
// on ROOMCAST_URL, connects with the official client, then runs one command per stdin line and
// prints one JSON line per result. Commands: `join <room>`, `say <room> <text>`,
// `received <room>` (ids of the `message` events received for the room, in arrival order),
// `quit`.
// It prints {"ready":true,"user":{...}} once connected.
import readline from 'node:readline';
import { createUser, emitAck, closeAllSockets, show } from '../harness.mjs';

const url = process.env.ROOMCAST_URL;
const transport = process.env.TRANSPORT || 'websocket';
const print = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);

try {
  const user = await createUser(url, 'actor');
  const socket = await user.connect(transport);
  socket.on('disconnect', (reason) => print({ disconnected: reason }));
  const received = new Map();
  socket.on('message', (message) => {
    if (!received.has(message.room)) received.set(message.room, []);
    received.get(message.room).push(message.id);
  });
  print({ ready: true, user: { id: user.id, username: user.username } });
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    const [command, room, ...rest] = line.trim().split(' ');
    if (command === 'quit') break;
    try {
      if (command === 'join') print({ command, ack: await emitAck(socket, 'join', { room }, 10_000) });
      else if (command === 'say') print({ command, ack: await emitAck(socket, 'message', { room, text: rest.join(' ') }, 10_000) });
      else if (command === 'received') print({ command, ids: received.get(room) || [] });
      else print({ command, error: 'unknown command' });
    } catch (err) {
      print({ command, error: String(err && err.message ? err.message : err) });
    }
  }
} catch (err) {
  print({ fatal: show(String(err && err.stack ? err.stack : err)) });
  process.exitCode = 1;
}
closeAllSockets();
process.exit();
