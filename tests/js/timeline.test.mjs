// timeline.js: events merged by id, newest first, filtered by service, trimmed, fetched older.
import { frames } from "./fakedom.js";

import assert from "node:assert/strict";
import { test } from "node:test";

import { h } from "../../src/heartwatch/web/static/dom.js";
import { describe, Timeline } from "../../src/heartwatch/web/static/timeline.js";

function timeline(fetchEvents = async () => []) {
  const parts = {
    list: h("ol"),
    empty: h("p"),
    filter: h("select"),
    older: h("button"),
  };
  return { parts, timeline: new Timeline(parts, fetchEvents) };
}

const ids = (list) => list.children.map((li) => li.dataset.id);

function event(id, at, service = "worker", extra = {}) {
  return { id, at, service, kind: "transition", previous: "running", state: "backoff", ...extra };
}

test("describe: one line per kind of event", () => {
  assert.equal(describe({ kind: "transition", previous: null, state: "running" }), "? → running");
  assert.equal(describe({ kind: "recovery", detail: { members: ["a", "b"] } }), "recovering a, b");
  assert.equal(describe({ kind: "recovery" }), "recovering the group");
  assert.equal(describe({ kind: "exit", detail: { pid: 7, returncode: 3 } }), "pid 7 exited with code 3");
  assert.equal(describe({ kind: "exit", detail: { returncode: -9 } }), "killed by signal 9");
  assert.equal(describe({ kind: "exit", reason: "stopped", detail: { returncode: 0 } }), "exited");
  assert.equal(describe({ kind: "exit" }), "exited");
  assert.equal(describe({ kind: "restart", detail: { pid: 12 } }), "restarted as pid 12");
  assert.equal(describe({ kind: "restart" }), "restarted");
  assert.equal(describe({ kind: "restart", detail: { pid: 5, cause: "requested" } }), "restarted as pid 5 (asked for)");
  assert.equal(describe({ kind: "restart", detail: { pid: 5, cause: "recovery" } }), "restarted as pid 5 (recovery)");
  assert.equal(describe({ kind: "note", state: "stopped", reason: "waiting for emulator" }), "still stopped");
  assert.equal(describe({ kind: "transition", previous: "stopped", state: "stopped" }), "still stopped");
  assert.equal(describe({ kind: "probe", detail: { probe: "readiness", passing: false } }), "readiness probe failing");
  assert.equal(describe({ kind: "probe", detail: { role: "liveness", passing: true } }), "liveness probe passing");
  assert.equal(describe({ kind: "probe" }), "probe");
  assert.equal(describe({ kind: "reload", detail: { added: ["a"] } }), "configuration reloaded");
  assert.equal(
    describe({ kind: "reload", detail: { needs_daemon_restart: ["server.http"] } }),
    "configuration reloaded; server.http need a daemon restart",
  );
  assert.equal(
    describe({ kind: "reload", detail: { problems: [{ path: "service[0].x", message: "bad" }] } }),
    "reload refused (1 problem): the old configuration stays",
  );
  assert.equal(describe({ kind: "reload" }), "configuration reloaded");
  assert.equal(describe({ kind: "alert", detail: { alert: "down", outcome: "sent" } }), "alert down (sent)");
  assert.equal(describe({ kind: "alert", detail: {} }), "alert ");
  assert.equal(describe({ kind: "daemon", reason: "heartwatch started" }), "heartwatch started");
  assert.equal(describe({ kind: "daemon" }), "the daemon");
  assert.equal(describe({ kind: "other", state: "x" }), "other: x");
  assert.equal(describe({ kind: "other" }), "other");
});

test("events merge by id and show newest first, in one render per frame", () => {
  const { parts, timeline: tl } = timeline();
  tl.receive([event(1, 10), event(2, 30)]);
  tl.receive([event(3, 20), event(2, 30, "worker", { state: "failed" })]);
  assert.equal(frames.queue.length, 1, "one frame asked for two batches");
  assert.equal(ids(parts.list).length, 0, "nothing rendered before the frame");
  frames.run();
  assert.deepEqual(ids(parts.list), ["2", "3", "1"]);
  assert.equal(tl.events.get(2).state, "failed");
  assert.equal(parts.empty.hidden, true);
  // Same time: the larger id is newer.
  tl.live(event(4, 30));
  frames.run();
  assert.deepEqual(ids(parts.list), ["4", "2", "3", "1"]);
});

test("a service filter keeps that service's events and the daemon's", () => {
  const { parts, timeline: tl } = timeline();
  tl.setServices(["a", "b"]);
  assert.deepEqual(
    parts.filter.options.map((o) => o.getAttribute("value")),
    ["", "a", "b"],
  );
  tl.receive([event(1, 1, "a"), event(2, 2, "b"), event(3, 3, null, { kind: "daemon" })]);
  frames.run();
  parts.filter.value = "a";
  tl.render();
  assert.deepEqual(ids(parts.list), ["3", "1"]);
  // The filter's service went away: back to all.
  tl.setServices(["b"]);
  assert.equal(parts.filter.value, "");
});

test("a [[service]] with instances is offered as name@*: all its instances, fetched with all", async () => {
  const asked = [];
  const { parts, timeline: tl } = timeline(async (service, limit) => {
    asked.push([service, limit]);
    return [];
  });
  tl.setServices(["emulator@0", "emulator@1", "broker"], ["emulator"]);
  assert.deepEqual(
    parts.filter.options.map((o) => [o.getAttribute("value"), o.textContent]),
    [
      ["", "all services"],
      ["emulator@*", "emulator (all instances)"],
      ["emulator@0", "emulator@0"],
      ["emulator@1", "emulator@1"],
      ["broker", "broker"],
    ],
  );
  tl.receive([
    event(1, 1, "emulator@0"),
    event(2, 2, "broker"),
    event(3, 3, "emulator@1"),
    event(4, 4, "emulator", { kind: "reload" }),
    event(5, 5, "emulatorx@1"),
  ]);
  frames.run();
  parts.filter.value = "emulator@*";
  tl.render();
  assert.deepEqual(ids(parts.list), ["4", "3", "1"]);
  await tl.loadOlder();
  assert.deepEqual(asked, [["", 105]], "the history has no group filter: everyone's events");
  frames.run();
});

test("no more than 2000 events are kept, trimmed in batches, the oldest first", () => {
  const { timeline: tl } = timeline();
  tl.receive(Array.from({ length: 2200 }, (_, i) => event(i, i)));
  assert.equal(tl.events.size, 2200, "within the slack: not trimmed yet");
  tl.receive([event(5000, 5000)]);
  assert.equal(tl.events.size, 2000);
  assert.ok(tl.events.has(5000) && !tl.events.has(200) && tl.events.has(201));
  frames.run();
});

test("older events: fetched with a limit, and the button goes when nothing more is there", async () => {
  const asked = [];
  const { parts, timeline: tl } = timeline(async (service, limit) => {
    asked.push([service, limit]);
    return limit <= 100 ? Array.from({ length: 100 }, (_, i) => event(i, i)) : [event(500, 500)];
  });
  await tl.loadOlder();
  assert.deepEqual(asked, [["", 100]]);
  assert.equal(parts.older.hidden, false, "a full page: there may be more");
  assert.equal(parts.older.disabled, false);
  await tl.loadOlder();
  assert.deepEqual(asked[1], ["", 200]);
  assert.equal(parts.older.hidden, true, "fewer than asked: that was all");
  assert.equal(parts.list.children.length, 101);
  frames.run();
});

test("no history (fetch answers null): the older button is hidden for good", async () => {
  const { parts, timeline: tl } = timeline(async () => null);
  await tl.loadOlder();
  assert.equal(tl.historyMissing, true);
  assert.equal(parts.older.hidden, true);
  frames.run();
});

test("a snapshot holding fewer than it could is complete: no older button", () => {
  const { parts, timeline: tl } = timeline();
  tl.receive([event(1, 1)], { complete: true });
  frames.run();
  assert.equal(parts.older.hidden, true);
});

test("eventItem: a recovery links to its picture on the history page, over a window holding it", async () => {
  const { eventItem } = await import("../../src/heartwatch/web/static/timeline.js");
  const now = 1_780_000_000;
  const recovery = (age) => ({
    id: 7, at: now - age, kind: "recovery", service: "col/lector", reason: "killed by SIGKILL",
    state: null, previous: null, detail: { members: ["emulator", "col/lector"] },
  });
  const href = (event) => eventItem(event, now).querySelector("a").getAttribute("href");
  assert.equal(href(recovery(60)), "/history?window=1h&recovery=7&service=col%2Flector#recovery-7");
  assert.match(href(recovery(3 * 3600)), /^\/history\?window=24h&/);
  assert.match(href(recovery(2 * 86_400)), /^\/history\?window=7d&/);
  assert.match(href(recovery(10 * 86_400)), /^\/history\?window=30d&/);
  // Without a service, the first member's history.
  assert.match(href({ ...recovery(60), service: null }), /service=emulator#/);
  // Other events carry no link.
  assert.equal(eventItem(event(1, now), now).querySelector("a"), null);
});

test("the history link follows the filter: a service's history, else the overview", () => {
  const history = h("a", { href: "/history" });
  const parts = { list: h("ol"), empty: h("p"), filter: h("select"), older: h("button"), history };
  const t = new Timeline(parts, async () => []);
  t.setServices(["col lector", "farm@0", "farm@1"], ["farm"]);
  t.render();
  assert.equal(history.getAttribute("href"), "/history");
  parts.filter.value = "col lector";
  t.render();
  assert.equal(history.getAttribute("href"), "/history?service=col%20lector");
  parts.filter.value = "farm@*";
  t.render();
  assert.equal(history.getAttribute("href"), "/history");
  parts.filter.value = "farm@1";
  t.render();
  assert.equal(history.getAttribute("href"), "/history?service=farm%401");
});
