-- Portable between SQLite and PostgreSQL: BIGINT ids allocated through the counters table
-- (no SERIAL/AUTOINCREMENT), BIGINT epoch-millisecond timestamps, BIGINT 0/1 flags.

CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

INSERT INTO counters (name, value) VALUES ('users', 0);
INSERT INTO counters (name, value) VALUES ('messages', 0);

CREATE TABLE users (
    id BIGINT PRIMARY KEY,
    username TEXT NOT NULL,
    username_key TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    analytics_opted_out BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE messages (
    id BIGINT PRIMARY KEY,
    room TEXT NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users (id),
    username TEXT NOT NULL,
    body TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX messages_room_id ON messages (room, id);

CREATE TABLE analytics_events (
    event_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    props TEXT NOT NULL,
    user_id BIGINT,
    anonymous_id TEXT,
    instance_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX analytics_events_created_at ON analytics_events (created_at);
