/**
 * The client half of connection state recovery: turns what the server sends for a room
 * (live `message`s, `resume:messages` replays, join-ack histories) into a stream in which
 * every message is delivered exactly once, in `seq` order.
 *
 * Every room message has a per-room `seq`: 1, 2, 3, … without holes. The rule, per room:
 *   - `last` is the highest seq delivered (or covered by loaded history); unknown until the
 *     room's baseline arrives (a join ack's `seq`, or a `resume:reload`'s `seq`).
 *   - A message with seq <= last is a duplicate: dropped.
 *   - A message with seq > last is held, and held messages are delivered while the next one
 *     (last + 1) is there. So replayed and live messages may arrive in any mix and order.
 *   - `resume:done {room, seq}`: the server has now sent everything up to seq; if last is
 *     still below it, or if a later seq waits for a missing one for `holeTimeoutMs`, the
 *     client asks again with a `resume` event carrying its `last`.
 *   - `resume:reload {room, seq}`: too much was missed; history up to seq is to be reloaded
 *     by the app, and the stream continues after seq.
 * The handshake names the rooms and their `last`: `auth: {resume: stream.resumeState()}`.
 *
 * Plain ES module with no dependencies: the browser app imports it, and so do the tests, so
 * both run exactly this rule.
 */

export const HOLE_TIMEOUT_MS = 3000;

export class RoomStream {
  #rooms = new Map();
  #deliver;
  #requestResume;
  #holeTimeoutMs;

  /**
   * @param {object} options
   * @param {(room: string, message: object) => void} options.deliver called once per seq, in order
   * @param {(room: string, last: number) => void} options.requestResume ask the server to
   *   replay the room after `last` (emit `resume {rooms: {[room]: last}}`)
   * @param {number} [options.holeTimeoutMs] how long a missing seq may be awaited
   */
  constructor({ deliver, requestResume, holeTimeoutMs = HOLE_TIMEOUT_MS }) {
    this.#deliver = deliver;
    this.#requestResume = requestResume;
    this.#holeTimeoutMs = holeTimeoutMs;
  }

  #room(name) {
    let room = this.#rooms.get(name);
    if (!room) {
      room = { last: null, pending: new Map(), timer: null };
      this.#rooms.set(name, room);
    }
    return room;
  }

  /** `{room: last}` for every room with a known baseline: the handshake's `auth.resume`. */
  resumeState() {
    const state = {};
    for (const [name, room] of this.#rooms) {
      if (room.last !== null) state[name] = room.last;
    }
    return state;
  }

  /** The last seq delivered in `room`, or null before its baseline. */
  last(name) {
    return this.#rooms.get(name)?.last ?? null;
  }

  /** Everything up to `seq` is covered by history the app loaded (join ack, reload). */
  baseline(name, seq) {
    if (!Number.isInteger(seq)) return;
    const room = this.#room(name);
    room.last = room.last === null ? seq : Math.max(room.last, seq);
    this.#flush(name, room);
  }

  /** A live `message` or one replayed message. */
  receive(message) {
    if (!message || typeof message.room !== 'string') return;
    if (!Number.isInteger(message.seq)) {
      // Not part of the sequence (an older server): nothing to order it by.
      this.#deliver(message.room, message);
      return;
    }
    const room = this.#room(message.room);
    if (room.last !== null && message.seq <= room.last) return;
    room.pending.set(message.seq, message);
    this.#flush(message.room, room);
  }

  /** `resume:messages {room, messages}`. */
  replayed(batch) {
    if (!batch || !Array.isArray(batch.messages)) return;
    for (const message of batch.messages) this.receive(message);
  }

  /** `resume:done {room, seq}`. */
  done({ room: name, seq } = {}) {
    const room = this.#rooms.get(name);
    if (!room || !Number.isInteger(seq)) return;
    if (room.last === null) room.last = 0;
    this.#flush(name, room);
    if (room.last < seq) this.#requestResume(name, room.last);
  }

  /** `resume:reload {room, seq}`: the app reloads history; the stream goes on after seq. */
  reload({ room: name, seq } = {}) {
    if (typeof name !== 'string' || !Number.isInteger(seq)) return;
    const room = this.#room(name);
    room.last = seq;
    this.#flush(name, room);
  }

  /** `resume:error {room, error}` for one room: try again after the hole timeout. */
  failed(name) {
    const room = this.#rooms.get(name);
    if (!room) return;
    setTimeout(() => {
      if (this.#rooms.get(name) === room && room.last !== null) this.#requestResume(name, room.last);
    }, this.#holeTimeoutMs);
  }

  /** The app left the room: forget it. */
  forget(name) {
    const room = this.#rooms.get(name);
    if (room?.timer) clearTimeout(room.timer);
    this.#rooms.delete(name);
  }

  #flush(name, room) {
    if (room.last === null) return;
    for (const seq of room.pending.keys()) {
      if (seq <= room.last) room.pending.delete(seq);
    }
    while (room.pending.has(room.last + 1)) {
      const message = room.pending.get(room.last + 1);
      room.pending.delete(room.last + 1);
      room.last += 1;
      this.#deliver(name, message);
    }
    this.#watchHole(name, room);
  }

  /** While a later seq waits for a missing one, ask for a replay every holeTimeoutMs. */
  #watchHole(name, room) {
    if (room.pending.size === 0) {
      if (room.timer) clearTimeout(room.timer);
      room.timer = null;
      return;
    }
    if (room.timer) return;
    room.timer = setTimeout(() => {
      room.timer = null;
      if (this.#rooms.get(name) !== room || room.pending.size === 0) return;
      this.#requestResume(name, room.last);
      this.#watchHole(name, room);
    }, this.#holeTimeoutMs);
  }
}
