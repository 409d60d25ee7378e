// services.js: rows built and updated from statuses, ages that tick locally, rates, sparklines,
// and the summary line.
import "./fakedom.js";

import assert from "node:assert/strict";
import { test } from "node:test";

import { h } from "../../src/heartwatch/web/static/dom.js";
import { ServiceTable, sparkline, summarize } from "../../src/heartwatch/web/static/services.js";

function table() {
  const controls = [];
  const handlers = {
    onSelect: () => {},
    onControl: (name, verb) => controls.push([name, verb]),
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
  assert.equal(t.rows.get("never").beat.textContent, "never");
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

test("a transition into trouble stays on its row; an older one does not replace it", () => {
  const { table: t } = table();
  t.status(status("w"), 0);
  const row = t.rows.get("w");
  t.event({ kind: "transition", service: "w", state: "running", at: 1 }, true);
  assert.equal(row.trouble.hidden, true);
  t.event({ kind: "transition", service: "w", state: "unresponsive", at: 20, reason: "no beat" }, true);
  assert.equal(row.trouble.hidden, false);
  assert.match(row.trouble.textContent, /^last trouble: unresponsive at .*: no beat$/);
  assert.ok(row.element.classList.contains("flash"));
  t.event({ kind: "transition", service: "w", state: "failed", at: 10 }, false);
  assert.match(row.trouble.textContent, /unresponsive/);
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
