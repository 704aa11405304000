// The recovery client rule (src/web/room_stream.js) on its own: the orders and repeats in
// which a reconnecting client can receive a room's messages, and what it must deliver.
// The cluster scenarios in recovery/ exercise it against real servers; this pins down the
// cases a real run produces only by chance (a live message ahead of the replay, a lost
// broadcast).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RoomStream } from '../../src/web/room_stream.js';
import { sleep } from './harness.mjs';

const msg = (seq, room = 'lobby') => ({ id: seq * 7, seq, room, text: `m${seq}` });

function stream(holeTimeoutMs = 50) {
  const delivered = [];
  const resumes = [];
  const s = new RoomStream({
    deliver: (room, m) => delivered.push(`${room}:${m.seq}`),
    requestResume: (room, last) => resumes.push(`${room}:${last}`),
    holeTimeoutMs,
  });
  return { s, delivered, resumes };
}

describe('room stream (the recovery client rule)', () => {
  it('delivers replayed and live messages once, in seq order, whatever the arrival order', () => {
    const { s, delivered } = stream();
    s.baseline('lobby', 3);
    s.receive(msg(6)); // live, ahead of the replay
    s.replayed({ room: 'lobby', messages: [msg(4), msg(5), msg(6)] });
    s.receive(msg(5)); // live duplicate of a replayed one
    s.done({ room: 'lobby', seq: 6 });
    s.receive(msg(8)); // across instances, 8 may overtake 7
    s.receive(msg(7));
    s.receive(msg(2)); // already in history
    assert.deepEqual(delivered, ['lobby:4', 'lobby:5', 'lobby:6', 'lobby:7', 'lobby:8']);
    assert.deepEqual(s.resumeState(), { lobby: 8 });
  });

  it('holds live messages until the join ack gives the baseline', () => {
    const { s, delivered } = stream();
    s.receive(msg(11));
    s.receive(msg(10));
    assert.deepEqual(delivered, [], 'nothing before the baseline');
    assert.deepEqual(s.resumeState(), {}, 'a room without a baseline is not resumed');
    s.baseline('lobby', 10); // history covers up to 10
    assert.deepEqual(delivered, ['lobby:11']);
  });

  it('asks for a replay when a hole is not filled in time, or when done is ahead', async () => {
    const { s, delivered, resumes } = stream(30);
    s.baseline('lobby', 1);
    s.receive(msg(3)); // 2 was lost
    await sleep(80);
    assert.ok(resumes.includes('lobby:1'), `expected a resume from seq 1, got ${resumes}`);
    s.replayed({ room: 'lobby', messages: [msg(2), msg(3)] });
    assert.deepEqual(delivered, ['lobby:2', 'lobby:3']);
    const before = resumes.length;
    s.done({ room: 'lobby', seq: 5 }); // the server sent up to 5; 4 and 5 never came
    assert.deepEqual(resumes.slice(before), ['lobby:3']);
  });

  it('after a reload continues from the reload seq and forgets rooms that were left', () => {
    const { s, delivered } = stream();
    s.baseline('lobby', 1);
    s.baseline('other', 0);
    s.reload({ room: 'lobby', seq: 900 });
    s.receive(msg(2));
    s.receive(msg(901));
    assert.deepEqual(delivered, ['lobby:901']);
    s.forget('other');
    assert.deepEqual(s.resumeState(), { lobby: 901 });
  });
});
