-- Per-room sequence numbers for connection state recovery. Each room's messages are numbered
-- 1, 2, 3, … without holes: the number comes from the room's row in room_sequences, updated
-- in the same transaction as the message row, so it commits (or rolls back) with it and the
-- row lock serializes writers across instances. Portable between SQLite and PostgreSQL.

CREATE TABLE room_sequences (
    room TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

ALTER TABLE messages ADD COLUMN seq BIGINT;

-- Existing messages are numbered in id order (id order is each room's delivery order).
UPDATE messages SET seq = (
    SELECT COUNT(*) FROM messages AS earlier
    WHERE earlier.room = messages.room AND earlier.id <= messages.id
);

INSERT INTO room_sequences (room, value) SELECT room, MAX(seq) FROM messages GROUP BY room;

CREATE UNIQUE INDEX messages_room_seq ON messages (room, seq);
