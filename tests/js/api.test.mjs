// api.js: the token, error answers, websocket URLs and the reconnection backoff.
import "./fakedom.js";

import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import {
  api,
  ApiError,
  auth,
  Backoff,
  setUnauthorizedHandler,
  storeToken,
  wsUrl,
} from "../../src/heartwatch/web/static/api.js";

const realFetch = globalThis.fetch;
const realRandom = Math.random;

afterEach(() => {
  globalThis.fetch = realFetch;
  Math.random = realRandom;
  storeToken("");
  setUnauthorizedHandler(null);
  globalThis.location = { href: "http://127.0.0.1:8080/", protocol: "http:" };
});

/** A fetch that answers `status` with `body` (JSON unless a string) and records the request. */
function answering(status, body, statusText = "") {
  const calls = [];
  globalThis.fetch = async (path, init) => {
    calls.push({ path, init });
    return {
      ok: status >= 200 && status < 300,
      status,
      statusText,
      json: async () => (typeof body === "string" ? JSON.parse(body) : body),
    };
  };
  return calls;
}

test("storeToken keeps the token in localStorage, and forgets it when empty", () => {
  storeToken("abc");
  assert.equal(auth.token, "abc");
  assert.equal(localStorage.getItem("heartwatch.token"), "abc");
  storeToken("");
  assert.equal(auth.token, "");
  assert.equal(localStorage.getItem("heartwatch.token"), null);
});

test("api sends the token as a bearer header and returns the JSON", async () => {
  const calls = answering(200, { services: [] });
  storeToken("s3cret");
  assert.deepEqual(await api("/api/v1/services"), { services: [] });
  assert.equal(calls[0].path, "/api/v1/services");
  assert.equal(calls[0].init.method, "GET");
  assert.equal(calls[0].init.headers.Authorization, "Bearer s3cret");
  assert.equal(calls[0].init.cache, "no-store");
});

test("api without a token sends no Authorization header", async () => {
  const calls = answering(200, {});
  await api("/x", { method: "POST" });
  assert.equal(calls[0].init.method, "POST");
  assert.equal("Authorization" in calls[0].init.headers, false);
});

test("an error answer becomes an ApiError with the daemon's code and message", async () => {
  answering(409, { code: "not_running", message: "worker is not running" });
  const error = await api("/x").then(
    () => null,
    (e) => e,
  );
  assert.ok(error instanceof ApiError);
  assert.equal(error.status, 409);
  assert.equal(error.describe(), "worker is not running (not_running)");
});

test("an error answer that is not JSON keeps the status", async () => {
  answering(502, "<html>bad gateway</html>", "Bad Gateway");
  await assert.rejects(api("/x"), { status: 502, code: "http_502", message: "Bad Gateway" });
  answering(500, "not json");
  await assert.rejects(api("/x"), { code: "http_500", message: "request failed" });
});

test("nothing answering is status 0, 'unreachable'", async () => {
  globalThis.fetch = async () => {
    throw new TypeError("Failed to fetch");
  };
  await assert.rejects(api("/x"), { status: 0, code: "unreachable" });
});

test("a 401 calls the unauthorized handler, then still throws", async () => {
  const seen = [];
  setUnauthorizedHandler((error) => seen.push(error.code));
  answering(401, { code: "token_required", message: "a token is needed" });
  await assert.rejects(api("/x"), { status: 401 });
  assert.deepEqual(seen, ["token_required"]);
  answering(403, { code: "read_only", message: "read-only token" });
  await assert.rejects(api("/x"), { status: 403 });
  assert.deepEqual(seen, ["token_required"]);
});

test("wsUrl: same host, ws or wss, params without empty ones, the token in the query", () => {
  const url = new URL(wsUrl("/ws/logs", { path: "/var/log/a b.log", grep: "", lines: 500 }));
  assert.equal(url.protocol, "ws:");
  assert.equal(url.host, "127.0.0.1:8080");
  assert.equal(url.pathname, "/ws/logs");
  assert.equal(url.searchParams.get("path"), "/var/log/a b.log");
  assert.equal(url.searchParams.get("lines"), "500");
  assert.equal(url.searchParams.has("grep"), false);
  assert.equal(url.searchParams.has("token"), false);

  globalThis.location = { href: "https://example.org/hw/", protocol: "https:" };
  storeToken("t&k");
  const secure = new URL(wsUrl("ws/events", { skip: null }));
  assert.equal(secure.protocol, "wss:");
  assert.equal(secure.pathname, "/hw/ws/events"); // relative to the page, as a proxy serves it
  assert.equal(secure.searchParams.get("token"), "t&k");
  assert.equal(secure.searchParams.has("skip"), false);
});

test("Backoff doubles up to its bound with at most 20 % jitter, and resets", () => {
  Math.random = () => 0.5; // no jitter
  const backoff = new Backoff(100, 1000);
  assert.deepEqual(
    Array.from({ length: 6 }, () => backoff.next()),
    [100, 200, 400, 800, 1000, 1000],
  );
  backoff.reset();
  assert.equal(backoff.next(), 100);
  Math.random = () => 0;
  assert.equal(new Backoff(100, 1000).next(), 80);
  Math.random = () => 0.999999;
  assert.equal(new Backoff(100, 1000).next(), 120);
});
