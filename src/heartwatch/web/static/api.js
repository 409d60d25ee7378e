// The daemon's API as the page uses it: fetch with the token, websocket URLs, errors, backoff.
// The contract is docs/api.md.

const TOKEN_KEY = "heartwatch.token";

/** What the page knows about its credentials; `scope` is "none", "read" or "control". */
export const auth = {
  token: localStorage.getItem(TOKEN_KEY) || "",
  required: false,
  scope: "control",
};

export function storeToken(token) {
  auth.token = token;
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

/** An error answer ({code, message}), or `unreachable` (status 0) when nothing answered. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  describe() {
    return `${this.message} (${this.code})`;
  }
}

let onUnauthorized = null;

/** Called on every 401: the page asks for a token again. */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

/** GET (or `method`) a JSON endpoint, with `body` sent as JSON; throws ApiError. */
export async function api(path, { method = "GET", body = undefined } = {}) {
  const headers = { Accept: "application/json" };
  if (auth.token) headers.Authorization = `Bearer ${auth.token}`;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "unreachable", "the daemon did not answer");
  }
  if (!response.ok) {
    let body = {};
    try {
      body = await response.json();
    } catch {
      // not JSON: a proxy's page, say; the status tells enough
    }
    const error = new ApiError(
      response.status,
      typeof body.code === "string" ? body.code : `http_${response.status}`,
      typeof body.message === "string" ? body.message : response.statusText || "request failed",
    );
    if (response.status === 401 && onUnauthorized) onUnauthorized(error);
    throw error;
  }
  return response.json();
}

/** A websocket URL on this page's host; the token goes in the query (browsers send no headers). */
export function wsUrl(path, params = {}) {
  const url = new URL(path, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  for (const [name, value] of Object.entries(params)) {
    if (value !== "" && value != null) url.searchParams.set(name, String(value));
  }
  if (auth.token) url.searchParams.set("token", auth.token);
  return url.href;
}

/** Reconnection delays: doubling from `initialMs` up to `maxMs`, with ±20 % jitter so that many
 * open tabs do not all knock at once when the daemon comes back. */
export class Backoff {
  constructor(initialMs = 500, maxMs = 10000) {
    this.initialMs = initialMs;
    this.maxMs = maxMs;
    this.currentMs = initialMs;
  }

  next() {
    const delay = this.currentMs * (0.8 + Math.random() * 0.4);
    this.currentMs = Math.min(this.maxMs, this.currentMs * 2);
    return Math.round(delay);
  }

  reset() {
    this.currentMs = this.initialMs;
  }
}
