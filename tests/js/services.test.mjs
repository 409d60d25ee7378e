// services.js: rows built and updated from statuses, ages that tick locally, rates, sparklines,
// and the summary line.
import "./fakedom.js";

import assert from "node:assert/strict";
import { test } from "node:test";

import { h } from "../../src/heartwatch/web/static/dom.js";
import {
  heartbeatText,
  isTrouble,
  resourcesText,
  ServiceTable,
  sparkline,
  summarize,
} from "../../src/heartwatch/web/static/services.js";

function table() {
  const controls = [];
  const handlers = {
    onSelect: () => {},
    onControl: (name, verb, _button, group) =>
      controls.push(group === undefined ? [name, verb] : [name, verb, group]),
  };
  const tbody = h("tbody");
  const empty = h("p");
  return { tbody, empty, controls, table: new ServiceTable(tbody, empty, handlers) };
}

function status(name, extra = {}) {
  return {
    name,
    state: "running",
    reason: "started",
    since_age: 5,
    uptime: 5,
    pid: 100,
    restarts: 0,
    watch_only: false,
    last_heartbeat_age: 1,
    heartbeat_timeout: 10,
    data: {},
    ...extra,
  };
}

const cellText = (row, label) =>
  row.element.children.find((td) => td.getAttribute("data-label") === label).textContent;

test("a snapshot orders rows as sent, reuses them, and drops the services gone", () => {
  const { tbody, empty, table: t } = table();
  t.snapshot([status("a"), status("b"), status("c")], 0);
  const rowA = t.rows.get("a").element;
  assert.deepEqual(t.names(), ["a", "b", "c"]);
  assert.deepEqual(
    tbody.children.map((tr) => tr.dataset.service),
    ["a", "b", "c"],
  );
  assert.equal(empty.hidden, true);
  t.snapshot([status("c"), status("a")], 1);
  assert.deepEqual(
    tbody.children.map((tr) => tr.dataset.service),
    ["c", "a"],
  );
  assert.equal(t.rows.get("a").element, rowA, "the row is reused, not rebuilt");
  assert.equal(t.get("b"), null);
  t.snapshot([], 2);
  assert.equal(empty.hidden, false);
});

test("a status fills the row: state, pid, restarts, reason, and the buttons that apply", () => {
  const { table: t } = table();
  t.status(status("w", { pid: null, state: "failed", restarts: 1234, last_exit: "exit code 1" }), 0);
  const row = t.rows.get("w");
  assert.equal(row.element.dataset.state, "failed");
  assert.equal(row.pill.textContent, "failed");
  assert.equal(row.pid.textContent, "–");
  assert.equal(row.restarts.textContent, (1234).toLocaleString());
  assert.equal(row.exit.textContent, "last exit: exit code 1");
  assert.deepEqual(
    ["restart", "stop", "start"].map((verb) => row.buttons[verb].hidden),
    [true, true, false],
  );
  t.status(status("w"), 1);
  assert.equal(row.pid.textContent, "100");
  assert.deepEqual(
    ["restart", "stop", "start"].map((verb) => row.buttons[verb].hidden),
    [false, false, true],
  );
});

test("ages tick from when the status arrived; a pulse makes the heartbeat fresh again", () => {
  const { table: t } = table();
  t.status(status("w", { last_heartbeat_age: 2, since_age: 60, uptime: 60 }), 100);
  const row = t.rows.get("w");
  assert.equal(row.beat.textContent, "2 s");
  t.tick(107.5);
  assert.equal(row.beat.textContent, "9 s");
  assert.equal(row.since.textContent, "for 67.5 s");
  assert.equal(cellText(row, "Uptime"), "67.5 s");
  assert.equal(row.beat.classList.contains("late"), false);
  t.tick(113);
  assert.equal(row.beat.classList.contains("late"), true, "past its 10 s timeout");
  t.pulse([{ name: "w", last_heartbeat_age: 0 }, { name: "unknown" }], 113);
  assert.equal(row.beat.textContent, "<1 s");
  assert.equal(row.beat.classList.contains("late"), false);
  t.status(status("never", { last_heartbeat_age: null }), 0);
  assert.equal(t.rows.get("never").beat.textContent, "none yet");
});

test("the heartbeat cell: nothing while there is no run, 'not expected' for a silent service", () => {
  const { table: t } = table();
  const stopped = { state: "stopped", pid: null, uptime: null, last_heartbeat_age: 40 };
  t.status(status("s", stopped), 0);
  const row = t.rows.get("s");
  assert.equal(row.beat.textContent, "–", "a stopped service's old age is no silence");
  t.tick(100);
  assert.equal(row.beat.classList.contains("late"), false);
  const silent = { last_heartbeat_age: null, heartbeat_timeout: null, heartbeat_expected: false };
  t.status(status("emulator", silent), 0);
  assert.equal(t.rows.get("emulator").beat.textContent, "not expected");
  assert.equal(t.rows.get("emulator").beat.classList.contains("quiet"), true);
  // Without the field (an older daemon): no timeout and nothing ever heard says the same.
  t.status(status("old", { last_heartbeat_age: null, heartbeat_timeout: null }), 0);
  assert.equal(t.rows.get("old").beat.textContent, "not expected");
  // A silent-by-design service that beats anyway shows its age.
  t.status(status("emulator", { ...silent, last_heartbeat_age: 3 }), 0);
  assert.equal(t.rows.get("emulator").beat.textContent, "3 s");
});

test("restarts are recoveries; those people asked for are counted apart", () => {
  const { table: t } = table();
  t.status(status("w", { restarts: 2, restarts_requested: 0 }), 0);
  const row = t.rows.get("w");
  assert.equal(row.restartCount.textContent, "2");
  assert.equal(row.restartsAsked.hidden, true);
  t.status(status("w", { restarts: 2, restarts_requested: 3 }), 1);
  assert.equal(row.restartsAsked.hidden, false);
  assert.equal(row.restartsAsked.textContent, "+3 asked");
});

test("other helpers' fields: probes, ready, CPU and memory, autostart; absent, nothing shows", () => {
  const { table: t } = table();
  t.status(status("plain"), 0);
  const plain = t.rows.get("plain");
  assert.equal(plain.probes.hidden, true);
  assert.equal(plain.notReady.hidden, true);
  assert.equal(plain.resources.hidden, true);
  assert.equal(plain.manualTag.hidden, true);
  const probes = {
    liveness: { passing: false, reason: "probe `adb` exited 1: error: device offline", consecutive_failures: 3, consecutive_successes: 0, last_run_age: 2 },
    readiness: { passing: true, reason: null, consecutive_failures: 0, consecutive_successes: 4, last_run_age: 1 },
  };
  t.status(status("emu", { probes, ready: false, cpu_percent: 99.4, rss_bytes: 2254857830 }), 0);
  const emu = t.rows.get("emu");
  assert.deepEqual(
    emu.probes.children.map((li) => li.textContent),
    ["readiness passing", "liveness failing (3×): probe `adb` exited 1: error: device offline"],
  );
  assert.equal(emu.probes.children[1].dataset.passing, "false");
  assert.equal(emu.notReady.hidden, false, "running but not ready");
  assert.equal(emu.resources.textContent, "CPU 99 % · 2.1 GB");
  t.status(status("manual", { state: "stopped", pid: null, uptime: null, autostart: false }), 0);
  assert.equal(t.rows.get("manual").manualTag.hidden, false);
  t.status(status("starting", { state: "starting", ready: false }), 0);
  assert.equal(t.rows.get("starting").notReady.hidden, true, "not ready yet is no news");
});

test("instances sit together under their [[service]]'s row, which sums them up", () => {
  const { tbody, controls, table: t } = table();
  const of = (name, index, extra = {}) =>
    status(`${name}@${index}`, { instance_of: name, instance: index, ...extra });
  t.snapshot(
    [of("emulator", 0), of("emulator", 1), status("broker"), of("collector", 0), of("collector", 1, { state: "backoff" })],
    0,
  );
  const order = () => tbody.children.map((tr) => tr.dataset.group ?? tr.dataset.service);
  assert.deepEqual(order(), ["emulator", "emulator@0", "emulator@1", "broker", "collector", "collector@0", "collector@1"]);
  const group = t.groups.get("collector");
  assert.equal(group.summary.textContent, "2 instances: 1 running · 1 backoff");
  assert.equal(group.element.classList.contains("troubled"), true);
  assert.equal(t.rows.get("collector@0").element.classList.contains("instance"), true);
  // Scaled up: a new instance arrives live and joins its group.
  t.status(of("emulator", 2), 1);
  assert.deepEqual(order().slice(0, 4), ["emulator", "emulator@0", "emulator@1", "emulator@2"]);
  assert.equal(t.groups.get("emulator").summary.textContent, "3 instances: 3 running");
  // Its buttons act on every instance at once (the handler is told it is a group).
  group.buttons.restart.dispatch("click");
  assert.deepEqual(controls.at(-1), ["collector", "restart", true]);
  assert.equal(group.buttons.start.hidden, true, "none of them is stopped");
  assert.deepEqual(t.groupNames(), ["emulator", "collector"]);
  // Scaled to none: the group row goes with them.
  t.snapshot([status("broker")], 2);
  assert.deepEqual(order(), ["broker"]);
  assert.equal(t.groups.size, 0);
});

test("a data kind's rate is per minute over the last minute, shown after 5 s of samples", () => {
  const { table: t } = table();
  t.status(status("w", { data: { items: { count: 0, last_age: null, timeout: null } } }), 0);
  const entry = t.rows.get("w").kinds.get("items");
  t.pulse([{ name: "w", data: { items: 2 } }], 2);
  assert.equal(entry.rateText.textContent, "", "too few seconds seen for a rate");
  t.pulse([{ name: "w", data: { items: 10 } }], 10);
  assert.equal(entry.rateText.textContent, "60/min"); // 10 in 10 s
  assert.equal(entry.countText.textContent, "10");
  t.tick(120); // nothing for 110 s: the last minute saw none
  assert.equal(entry.rateText.textContent, "0.0/min");
  // A daemon restart starts the counts again: no negative rate.
  t.pulse([{ name: "w", data: { items: 1 } }], 121);
  t.tick(130);
  assert.ok(!entry.rateText.textContent.startsWith("-"), entry.rateText.textContent);
});

test("a data kind past its timeout is marked late", () => {
  const { table: t } = table();
  t.status(status("w", { data: { items: { count: 3, last_age: 4, timeout: 5 } } }), 0);
  const entry = t.rows.get("w").kinds.get("items");
  assert.equal(entry.item.classList.contains("late"), false);
  t.tick(2);
  assert.equal(entry.item.classList.contains("late"), true);
  assert.equal(entry.item.title, "the last one 6 s ago");
});

test("series become one sparkline per kind over the last hour, heartbeats left out", () => {
  const { table: t } = table();
  t.status(status("w"), 0);
  const now = 3600 * 10 + 30;
  t.series(
    [
      {
        service: "w",
        step: 60,
        points: [
          { at: 3600 * 10, counts: { items: 4, heartbeat: 99 } },
          { at: 3600 * 10 - 60, counts: { items: 2 } },
          { at: 3600 * 8, counts: { items: 1000 } }, // older than an hour: not drawn
        ],
      },
      { service: "unknown", points: [] },
    ],
    now,
  );
  const row = t.rows.get("w");
  assert.deepEqual([...row.series.keys()], ["items"]);
  const values = row.series.get("items");
  assert.equal(values.length, 60);
  assert.deepEqual(values.slice(-2), [2, 4]);
  assert.equal(values.reduce((a, b) => a + b, 0), 6);
  const svg = row.kinds.get("items").spark.firstElementChild;
  assert.equal(svg.getAttribute("aria-label"), "items: 6 in the last hour, at most 4 a minute");
});

test("sparkline: points scaled to the highest value, labelled with total and peak", () => {
  const svg = sparkline([0, 5, 10], "items");
  assert.equal(svg.getAttribute("viewBox"), "0 0 60 16");
  const line = svg.querySelector("polyline");
  assert.equal(line.getAttribute("points"), "0.0,15.0 30.0,8.0 60.0,1.0");
  assert.equal(svg.querySelector("title").textContent, "items: 15 in the last hour, at most 10 a minute");
  // All zero: a flat line at the bottom, no division by zero.
  assert.equal(sparkline([0, 0], "x").querySelector("polyline").getAttribute("points"), "0.0,15.0 60.0,15.0");
});

const failed = (at, state, reason, extra = {}) => ({
  kind: "transition",
  service: "w",
  previous: "running",
  state,
  reason,
  at,
  detail: { failure: true },
  ...extra,
});

test("a failure stays on its row; an older one does not replace it", () => {
  const { table: t } = table();
  t.status(status("w"), 0);
  const row = t.rows.get("w");
  t.event({ kind: "transition", service: "w", state: "running", at: 1 }, true);
  assert.equal(row.trouble.hidden, true);
  t.event(failed(20, "unresponsive", "no heartbeat for 3.1 s"), true);
  assert.equal(row.trouble.hidden, false);
  assert.match(row.trouble.textContent, /^last trouble .*: no heartbeat for 3\.1 s$/);
  assert.ok(row.element.classList.contains("flash"));
  t.event(failed(10, "failed", "gave up"), false);
  assert.match(row.trouble.textContent, /no heartbeat/);
});

test("a crash is the newest trouble, not the backoff before it, nor a person's stop", () => {
  const { table: t } = table();
  t.status(status("w"), 0);
  const row = t.rows.get("w");
  t.event(failed(10, "restarting", "exit code 2"), false);
  const backoff = { kind: "transition", service: "w", previous: "restarting", state: "backoff" };
  t.event({ ...backoff, reason: "next start in 0.5 s (exit code 2)", at: 11, detail: null }, false);
  t.event(failed(30, "restarting", "exit code 1: ModuleNotFoundError: No module named 'x'"), false);
  assert.match(row.trouble.textContent, /: exit code 1: ModuleNotFoundError/);
  const stop = { kind: "transition", service: "w", previous: "running", state: "stopped" };
  t.event({ ...stop, reason: "stop requested", at: 40, detail: null }, false);
  assert.match(row.trouble.textContent, /exit code 1/);
  // A readiness probe turning to failing is trouble too (no restart, but not ready).
  t.event({ kind: "probe", service: "w", reason: "readiness probe failed 3 times", at: 50, detail: { passing: false } }, false);
  assert.match(row.trouble.textContent, /readiness probe failed 3 times$/);
});

test("troubles of an earlier daemon run are not this run's", () => {
  const { table: t } = table();
  t.status(status("w"), 0);
  const row = t.rows.get("w");
  const started = { kind: "daemon", service: null, reason: "heartwatch started (pid 9)", at: 50 };
  // A snapshot: newest first. The crash came before this daemon started.
  t.replay([started, failed(40, "restarting", "exit code 1"), { kind: "daemon", at: 1 }]);
  assert.equal(row.trouble.hidden, true);
  t.replay([failed(60, "restarting", "exit code 3"), started]);
  assert.match(row.trouble.textContent, /exit code 3/);
  t.event({ kind: "daemon", service: null, reason: "heartwatch stopping", at: 70 }, true);
  assert.equal(row.trouble.hidden, true);
});

test("the service needing eyes: the first in trouble now, else the newest trouble, else none", () => {
  const { table: t } = table();
  t.snapshot([status("emulator"), status("collector"), status("other")], 0);
  assert.equal(t.troubled(), null);
  t.event({ ...failed(5, "restarting", "exit code 1"), service: "other" }, false);
  t.event({ ...failed(3, "restarting", "exit code 1"), service: "collector" }, false);
  assert.equal(t.troubled(), "other", "the newest trouble of this run");
  t.status(status("collector", { state: "backoff" }), 1);
  assert.equal(t.troubled(), "collector", "in trouble now");
  t.status(status("emulator", { ready: false }), 1);
  assert.equal(t.troubled(), "emulator", "running, not ready");
  t.snapshot([status("a"), status("b", { state: "starting", probes: { readiness: { passing: false } } })], 2);
  assert.equal(t.troubled(), "b", "starting, its readiness probe failing");
});

test("control buttons call the handler with the service and verb; select marks one row", () => {
  const { controls, table: t } = table();
  t.status(status("a"), 0);
  t.status(status("b"), 0);
  t.rows.get("b").buttons.restart.dispatch("click");
  assert.deepEqual(controls, [["b", "restart"]]);
  t.select("a");
  assert.equal(t.rows.get("a").element.classList.contains("selected"), true);
  assert.equal(t.rows.get("b").nameButton.getAttribute("aria-pressed"), "false");
});

test("summarize: counts per state, running first, trouble counts all but running and stopped", () => {
  const { table: t } = table();
  t.snapshot(
    [
      status("a", { state: "failed" }),
      status("b"),
      status("c", { state: "unresponsive" }),
      status("d"),
      status("e", { state: "stopped" }),
      status("f", { state: "backoff" }),
    ],
    0,
  );
  assert.deepEqual(summarize(t), {
    text: "2 running · 1 unresponsive · 1 backoff · 1 failed · 1 stopped",
    trouble: 3,
  });
  assert.deepEqual(summarize(table().table), { text: "", trouble: 0 });
});

test("isTrouble: failures and failing probes only", () => {
  assert.equal(isTrouble({ kind: "transition", state: "restarting", detail: { failure: true } }), true);
  assert.equal(isTrouble({ kind: "transition", state: "backoff", detail: null }), false);
  assert.equal(isTrouble({ kind: "transition", state: "exited", detail: {} }), false);
  assert.equal(isTrouble({ kind: "probe", detail: { passing: false } }), true);
  assert.equal(isTrouble({ kind: "probe", detail: { passing: true } }), false);
  assert.equal(isTrouble({ kind: "exit", detail: { returncode: 1 } }), false, "its transition says");
});

test("heartbeatText and resourcesText, on their own", () => {
  assert.deepEqual(heartbeatText({ uptime: null }, 5).text, "–");
  assert.equal(heartbeatText({ uptime: 3, heartbeat_expected: true }, null).text, "none yet");
  assert.equal(heartbeatText({ state: "failed" }, 5).text, "–", "no uptime field: by state");
  assert.equal(resourcesText({ cpu_percent: null, rss_bytes: 1536 }), "1.5 KB");
  assert.equal(resourcesText({ cpu_percent: 0.44 }), "CPU 0.4 %");
  assert.equal(resourcesText({}), "");
});

test("a row links to its service's history page, the name encoded", () => {
  const { tbody, table: t } = table();
  t.snapshot([status("col lector@1")], 0);
  const link = tbody.querySelector("a");
  assert.equal(link.getAttribute("href"), "/history?service=col%20lector%401");
  assert.equal(link.textContent, "history");
});
