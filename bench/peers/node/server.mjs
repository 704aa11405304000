// The Node.js stack roomcast replaces, written the way most teams would: express with
// express-session + connect-redis (session records encrypted with AES-256-GCM, like
// roomcast's), socket.io 4 with @socket.io/redis-adapter, PostgreSQL through pg.
// Only the part of the roomcast SPEC that the benchmarks use: register, login, GET /api/me,
// Socket.IO connect authenticated by the session cookie, `join`, `message` (persisted, then
// broadcast, per-user rate limit in Redis), health, and a SIGTERM drain.
//
// Configuration (environment): PORT, INSTANCE_ID, REDIS_URL, DATABASE_URL, SESSION_SECRET,
// SESSION_ENCRYPTION_KEY (64 hex characters), MESSAGE_RATE_PER_SEC, SESSION_COOKIE_NAME.

import crypto from "node:crypto";
import http from "node:http";
import { promisify } from "node:util";

import express from "express";
import session from "express-session";
import RedisStore from "connect-redis";
import { createClient } from "redis";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import pg from "pg";

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) {
    console.error(`missing environment variable ${name}`);
    process.exit(2);
  }
  return value;
};

const port = Number(env("PORT", "3000"));
const instanceId = env("INSTANCE_ID", `node-${process.pid}`);
const rateLimit = Number(env("MESSAGE_RATE_PER_SEC", "20"));
const cookieName = env("SESSION_COOKIE_NAME", "peer.sid");
const key = Buffer.from(env("SESSION_ENCRYPTION_KEY"), "hex");
if (key.length !== 32) {
  console.error("SESSION_ENCRYPTION_KEY must be 64 hex characters");
  process.exit(2);
}

const scrypt = promisify(crypto.scrypt);
const log = (message) => console.log(`[${new Date().toISOString()}] [${instanceId}] ${message}`);

// --- storage ------------------------------------------------------------------------------
const db = new pg.Pool({ connectionString: env("DATABASE_URL"), max: 10 });
{
  const client = await db.connect();
  try {
    await client.query("BEGIN");
    await client.query("SELECT pg_advisory_xact_lock(4242)");
    await client.query(`CREATE TABLE IF NOT EXISTS users (
      id BIGSERIAL PRIMARY KEY, username TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,
      created_at BIGINT NOT NULL)`);
    await client.query(`CREATE TABLE IF NOT EXISTS messages (
      id BIGSERIAL PRIMARY KEY, room TEXT NOT NULL, user_id BIGINT NOT NULL REFERENCES users (id),
      username TEXT NOT NULL, body TEXT NOT NULL, instance_id TEXT NOT NULL, created_at BIGINT NOT NULL)`);
    await client.query("CREATE INDEX IF NOT EXISTS messages_room_id ON messages (room, id)");
    await client.query("COMMIT");
  } finally {
    client.release();
  }
}

const redisUrl = env("REDIS_URL");
const redis = createClient({ url: redisUrl });
const pub = redis.duplicate();
const sub = redis.duplicate();
await Promise.all([redis.connect(), pub.connect(), sub.connect()]);

// --- sessions: connect-redis with an encrypting serializer ---------------------------------
const serializer = {
  stringify(value) {
    const iv = crypto.randomBytes(12);
    const cipher = crypto.createCipheriv("aes-256-gcm", key, iv);
    const sealed = Buffer.concat([cipher.update(JSON.stringify(value), "utf8"), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), sealed]).toString("base64");
  },
  parse(text) {
    const raw = Buffer.from(text, "base64");
    const decipher = crypto.createDecipheriv("aes-256-gcm", key, raw.subarray(0, 12));
    decipher.setAuthTag(raw.subarray(12, 28));
    const plain = Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]);
    return JSON.parse(plain.toString("utf8"));
  },
};

const sessionMiddleware = session({
  name: cookieName,
  secret: env("SESSION_SECRET"),
  store: new RedisStore({ client: redis, prefix: "sess:", serializer }),
  resave: false,
  saveUninitialized: false,
  rolling: true,
  cookie: { httpOnly: true, sameSite: "lax", maxAge: 86400 * 1000 },
});

// --- HTTP ---------------------------------------------------------------------------------
const app = express();
app.disable("x-powered-by");
app.use((req, res, next) => {
  res.setHeader("X-Instance-Id", instanceId);
  next();
});
app.use(express.json({ limit: "64kb" }));
app.use(sessionMiddleware);

const apiError = (res, status, code, message) => res.status(status).json({ error: { code, message } });
const validCredentials = (body) =>
  typeof body?.username === "string" &&
  /^[a-zA-Z0-9_.-]{3,32}$/.test(body.username) &&
  typeof body?.password === "string" &&
  body.password.length >= 8 &&
  body.password.length <= 128;

async function hashPassword(password) {
  const salt = crypto.randomBytes(16);
  const hash = await scrypt(password, salt, 32);
  return `${salt.toString("hex")}:${hash.toString("hex")}`;
}

async function verifyPassword(password, stored) {
  const [salt, hash] = stored.split(":");
  const actual = await scrypt(password, Buffer.from(salt, "hex"), 32);
  return crypto.timingSafeEqual(actual, Buffer.from(hash, "hex"));
}

app.post("/api/auth/register", async (req, res, next) => {
  try {
    if (!validCredentials(req.body)) return apiError(res, 400, "invalid_request", "bad username or password");
    const hash = await hashPassword(req.body.password);
    const result = await db.query(
      "INSERT INTO users (username, password_hash, created_at) VALUES ($1, $2, $3) ON CONFLICT (username) DO NOTHING RETURNING id",
      [req.body.username, hash, Date.now()],
    );
    if (result.rowCount === 0) return apiError(res, 409, "conflict", "username taken");
    res.status(201).json({ user: { id: Number(result.rows[0].id), username: req.body.username } });
  } catch (err) {
    next(err);
  }
});

app.post("/api/auth/login", async (req, res, next) => {
  try {
    if (!validCredentials(req.body)) return apiError(res, 400, "invalid_request", "bad username or password");
    const result = await db.query("SELECT id, username, password_hash FROM users WHERE username = $1", [
      req.body.username,
    ]);
    const row = result.rows[0];
    if (!row || !(await verifyPassword(req.body.password, row.password_hash))) {
      return apiError(res, 401, "unauthorized", "wrong username or password");
    }
    req.session.regenerate((err) => {
      if (err) return next(err);
      req.session.user = { id: Number(row.id), username: row.username };
      req.session.save((saveErr) => {
        if (saveErr) return next(saveErr);
        res.json({ user: req.session.user });
      });
    });
  } catch (err) {
    next(err);
  }
});

app.get("/api/me", (req, res) => {
  if (!req.session.user) return apiError(res, 401, "unauthorized", "not logged in");
  res.json({ user: req.session.user, analytics_opted_out: false });
});

app.get(["/health/live", "/healthz"], (req, res) => res.json({ status: "ok" }));
let draining = false;
app.get(["/health/ready", "/readyz"], (req, res) =>
  draining ? apiError(res, 503, "unavailable", "draining") : res.json({ status: "ok" }),
);
app.get("/health", (req, res) => res.json({ status: "ok", instance_id: instanceId, draining }));

app.use((err, req, res, next) => {
  log(`error ${err.stack ?? err}`);
  apiError(res, 500, "internal", "internal error");
});

// --- Socket.IO ------------------------------------------------------------------------------
const server = http.createServer(app);
const io = new Server(server, { adapter: createAdapter(pub, sub), maxHttpBufferSize: 65536 });
io.engine.use(sessionMiddleware);
io.use((socket, next) => {
  const user = socket.request.session?.user;
  if (!user) return next(new Error("unauthorized"));
  socket.data.user = user;
  next();
});

const ROOM = /^[a-z0-9_-]{1,64}$/;
const fail = (ack, code, message) => typeof ack === "function" && ack({ ok: false, error: { code, message } });

io.on("connection", (socket) => {
  const user = socket.data.user;
  socket.join(`user:${user.id}`);

  socket.on("join", async (payload, ack) => {
    try {
      const room = payload?.room;
      if (typeof room !== "string" || !ROOM.test(room)) return fail(ack, "invalid_room", "bad room name");
      socket.join(room);
      const [, members] = await redis.multi().sAdd(`room:${room}:members`, String(user.id)).sCard(`room:${room}:members`).exec();
      const history = await db.query(
        "SELECT id, user_id, username, body, instance_id, created_at FROM messages WHERE room = $1 ORDER BY id DESC LIMIT 50",
        [room],
      );
      const messages = history.rows.reverse().map((row) => ({
        id: Number(row.id),
        room,
        user: { id: Number(row.user_id), username: row.username },
        text: row.body,
        ts: Number(row.created_at),
        instance_id: row.instance_id,
      }));
      if (typeof ack === "function") ack({ ok: true, room, members: Number(members), history: messages });
    } catch (err) {
      log(`join failed ${err}`);
      fail(ack, "internal", "internal error");
    }
  });

  socket.on("message", async (payload, ack) => {
    try {
      const room = payload?.room;
      const text = payload?.text;
      if (typeof room !== "string" || !ROOM.test(room)) return fail(ack, "invalid_room", "bad room name");
      if (typeof text !== "string" || text.length < 1 || text.length > 4096) {
        return fail(ack, "invalid_text", "text must be 1-4096 characters");
      }
      if (!socket.rooms.has(room)) return fail(ack, "not_in_room", "join the room first");
      const window = `rate:${user.id}:${Math.floor(Date.now() / 1000)}`;
      const [count] = await redis.multi().incr(window).expire(window, 2).exec();
      if (Number(count) > rateLimit) return fail(ack, "rate_limited", "slow down");
      const ts = Date.now();
      const result = await db.query(
        "INSERT INTO messages (room, user_id, username, body, instance_id, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        [room, user.id, user.username, text, instanceId, ts],
      );
      const id = Number(result.rows[0].id);
      io.to(room).emit("message", { id, room, user, text, ts, instance_id: instanceId });
      if (typeof ack === "function") ack({ ok: true, id, ts });
    } catch (err) {
      log(`message failed ${err}`);
      fail(ack, "internal", "internal error");
    }
  });
});

// --- lifecycle -------------------------------------------------------------------------------
server.listen(port, "127.0.0.1", () => log(`listening addr=127.0.0.1:${port}`));

let stopping = false;
process.on("SIGTERM", () => {
  if (stopping) process.exit(130);
  stopping = true;
  draining = true;
  const sockets = io.of("/").sockets.size;
  const started = Date.now();
  // io.close() disconnects every socket and closes the HTTP server.
  io.close(async () => {
    await Promise.allSettled([db.end(), redis.quit(), pub.quit(), sub.quit()]);
    log(`drain complete sockets=${sockets} elapsed_ms=${Date.now() - started}`);
    process.exit(0);
  });
  setTimeout(() => process.exit(0), 10_000).unref();
});
