// The HTTP API client and the one table of error texts a person reads.

export class ApiError extends Error {
  constructor(status, code, message, instance) {
    super(message);
    this.status = status;
    this.code = code;
    this.instance = instance;
  }
}

/** A JSON request on the page's origin; rejects with ApiError (`status` 0 when unreachable). */
export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  const init = { method, credentials: 'same-origin', headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network', "Can't reach the server.", null);
  }
  const instance = res.headers.get('X-Instance-Id');
  let data = null;
  if (res.status !== 204) {
    const text = await res.text().catch(() => '');
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
  }
  if (!res.ok) {
    const err = data?.error ?? {};
    throw new ApiError(res.status, err.code || `http_${res.status}`, err.message || res.statusText, instance);
  }
  return { data, status: res.status, instance };
}

export const FRIENDLY = {
  network: "Can't reach the server. Check your connection and try again.",
  username_taken: 'That username is already taken. Try another one.',
  invalid_username: 'Usernames are 3–32 characters: letters, numbers, “.”, “-” or “_”.',
  invalid_password: 'Passwords need between 8 and 128 characters.',
  invalid_credentials: "That username and password don't match. Try again.",
  rate_limited: "You're sending messages too fast. Wait a moment and try again.",
  invalid_room: 'Room names use lowercase letters, numbers, “-” and “_” (up to 64).',
  invalid_text: 'Messages must be between 1 and 4096 characters.',
  invalid_payload: 'The server could not understand that request.',
  not_in_room: "You're not in that room anymore.",
  unavailable: 'The server is busy right now. Please try again in a moment.',
  internal: 'Something went wrong on the server. Please try again.',
  unauthorized: 'Your session has ended. Please log in again.',
  forbidden_origin: 'This request was blocked because it came from another site.',
  timeout: "The server didn't answer in time. Please try again.",
  not_connected: "You're not connected right now. We'll reconnect automatically.",
  disconnected: 'The connection dropped before the server answered. Please try again.',
};

export function friendly(err, fallback = 'Something went wrong. Please try again.') {
  const code = err?.code;
  if (code && FRIENDLY[code]) return FRIENDLY[code];
  if (err?.status >= 500) return 'The server had a problem. Please try again in a moment.';
  if (!err?.message) return fallback;
  return fallback ? `${fallback} (${err.message})` : err.message;
}

/** The error of an `{ok: false, error: {code, message}}` ack. */
export function ackError(ack) {
  const e = ack?.error ?? {};
  const err = new Error(e.message || 'request failed');
  err.code = e.code || 'internal';
  return err;
}
