// pictures.js: the history page's strips, figures, charts' series and Gantt rows as numbers,
// from answers shaped as docs/api.md's /api/v1/history/{name}, /rates and /api/v1/recoveries.
import "./fakedom.js";

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  buildQuery,
  describeSegment,
  downBands,
  eventsPath,
  exportName,
  formatUptime,
  fromLocalInput,
  ganttRows,
  ganttText,
  gapBands,
  heartbeatChartData,
  joinCsvPages,
  kindChartData,
  parseQuery,
  rangeOf,
  ratesPath,
  recoveriesPath,
  segmentAt,
  stripLayout,
  summaryFigures,
  timeoutRate,
  toLocalInput,
  dataKinds,
  withAlpha,
} from "../../src/heartwatch/web/static/pictures.js";

const T0 = 1_779_999_960; // a Unix time on a minute

// A day: running, a hang and its restart, the daemon down for ten minutes, running again.
const SEGMENTS = [
  { start: T0, end: T0 + 3600, state: "running", reason: "ready", entry_id: 1 },
  {
    start: T0 + 3600,
    end: T0 + 3601,
    state: "unresponsive",
    reason: "no heartbeat for 1.5 s",
    entry_id: 2,
  },
  {
    start: T0 + 3601,
    end: T0 + 3603,
    state: "restarting",
    reason: "no heartbeat for 1.5 s",
    entry_id: 3,
  },
  { start: T0 + 3603, end: T0 + 7200, state: "running", reason: "ready", entry_id: 4 },
  { start: T0 + 7200, end: T0 + 7800, state: "unknown", reason: "", entry_id: null },
  { start: T0 + 7800, end: T0 + 86_400, state: "running", reason: "ready", entry_id: 5 },
];

test("parseQuery and buildQuery: the address holds the filters, defaults left out", () => {
  const state = {
    service: "col lector",
    window: "7d",
    until: T0,
    kinds: ["exit", "restart"],
    recovery: 42,
  };
  assert.deepEqual(parseQuery(buildQuery(state)), state);
  assert.equal(buildQuery({}), "");
  assert.deepEqual(parseQuery(""), {
    service: "",
    window: "24h",
    until: null,
    kinds: [],
    recovery: null,
  });
  // Malformed values fall back instead of failing.
  const odd = parseQuery("?window=2w&until=yesterday&kind=bogus&kind=exit&recovery=-1");
  assert.deepEqual(odd, {
    service: "",
    window: "24h",
    until: null,
    kinds: ["exit"],
    recovery: null,
  });
});

test("rangeOf: a window ending now, or at the chosen time", () => {
  const now = rangeOf({ window: "1h", until: null }, T0 + 0.7);
  assert.equal(now.until, T0 + 0.7); // not rounded down: what just happened is inside
  assert.ok(Math.abs(now.until - now.since - 3600) < 1e-6);
  assert.deepEqual(rangeOf({ window: "30d", until: T0 }, 0), {
    since: T0 - 30 * 86_400,
    until: T0,
  });
});

test("API paths: the contract's names, the service's name encoded, repeated kinds", () => {
  const range = { since: T0, until: T0 + 60 };
  assert.equal(
    ratesPath("a/b c", range, 300),
    `/api/v1/history/a%2Fb%20c/rates?since=${T0}&until=${T0 + 60}&points=300`,
  );
  assert.equal(recoveriesPath("", range), `/api/v1/recoveries?since=${T0}&until=${T0 + 60}`);
  assert.equal(
    recoveriesPath("x", range),
    `/api/v1/recoveries?since=${T0}&until=${T0 + 60}&service=x`,
  );
  const query = { service: "x", kinds: ["exit", "restart"], range, limit: 500 };
  assert.equal(
    eventsPath(query),
    `/api/v1/events?since=${T0}&until=${T0 + 60}&service=x&kind=exit&kind=restart&limit=500`,
  );
  // The export asks the same question in CSV.
  assert.equal(
    eventsPath({ ...query, format: "csv" }),
    eventsPath(query).replace("/events?", "/events.csv?"),
  );
  assert.match(eventsPath({ ...query, beforeId: 77 }), /&before_id=77$/);
});

test("exportName: a safe file name that says what and when", () => {
  const name = exportName("../evil name", { since: 0, until: 3600 }, "csv");
  assert.equal(name, "heartwatch-.._evil_name-19700101T0000Z-19700101T0100Z.csv");
  assert.equal(
    exportName("", { since: 0, until: 60 }, "json"),
    "heartwatch-all-19700101T0000Z-19700101T0001Z.json",
  );
});

test("stripLayout: fractions of the window, news painted last and widened to be seen", () => {
  const laid = stripLayout(SEGMENTS, T0, T0 + 86_400);
  assert.deepEqual(
    laid.map((one) => one.segment.state),
    // True widths in time order (the daemon's ten minutes away among them), then the widened.
    ["running", "running", "unknown", "running", "restarting", "unresponsive"],
  );
  // The hang and its restart, both widened, overlap: the hang is painted over the restart.
  const order = laid.map((one) => one.segment.state);
  assert.ok(order.indexOf("unresponsive") > order.indexOf("restarting"));
  const hang = laid.find((one) => one.segment.state === "unresponsive");
  assert.equal(hang.x, 3600 / 86_400); // at its minute
  assert.equal(hang.width, 0.004); // one second of a day, widened
  const unknown = laid.find((one) => one.segment.state === "unknown");
  assert.ok(Math.abs(unknown.width - 600 / 86_400) < 1e-12); // wide enough already: as it is
  const first = laid[0];
  assert.equal(first.x, 0);
  assert.equal(first.width, 3600 / 86_400);
  // Calm segments are never widened; their fractions add up to their share of the day.
  const calm = laid.filter((one) => one.segment.state === "running");
  const total = calm.reduce((sum, one) => sum + one.width, 0);
  assert.ok(Math.abs(total - (86_400 - 3 - 600) / 86_400) < 1e-9);
});

test("stripLayout: the worse painted over the milder, time order kept within a state", () => {
  const states = [
    "failed",
    "starting",
    "running",
    "exited",
    "unresponsive",
    "backoff",
    "stopped",
    "unknown",
    "stopping",
    "restarting",
    "starting",
  ];
  const many = states.map((state, i) => ({
    start: T0 + i,
    end: T0 + i + 1,
    state,
    reason: "",
    entry_id: i,
  }));
  const laid = stripLayout(many, T0, T0 + 86_400); // each one second of a day: all widened but calm
  assert.deepEqual(
    laid.map((one) => one.segment.entry_id),
    [2, 6, 1, 10, 8, 9, 7, 5, 3, 4, 0],
  );
  // Wide enough, a segment is drawn in time order whatever its state: the wide never hides news.
  const wide = stripLayout(many, T0, T0 + 11);
  assert.deepEqual(
    wide.map((one) => one.segment.entry_id),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
  );
  assert.ok(wide.every((one) => !one.widened));
});

test("stripLayout: clamped to the window, kept inside it, nothing for an empty range", () => {
  const laid = stripLayout(SEGMENTS, T0 + 3000, T0 + 3601);
  assert.deepEqual(
    laid.map((one) => [one.segment.entry_id, one.x, one.width]),
    [
      [1, 0, 600 / 601],
      [2, 1 - 0.004, 0.004], // widened at the right edge: moved left to stay inside
    ],
  );
  assert.deepEqual(stripLayout(SEGMENTS, T0, T0), []);
  assert.deepEqual(stripLayout([], T0, T0 + 60), []);
});

test("describeSegment: the change that began it, when, for how long, why", () => {
  const said = describeSegment(SEGMENTS[1], SEGMENTS[0]);
  assert.equal(said.change, "running → unresponsive");
  assert.equal(said.lasted, "1.0 s");
  assert.equal(said.reason, "no heartbeat for 1.5 s");
  assert.match(said.when, /–/);
  assert.equal(describeSegment(SEGMENTS[4], SEGMENTS[3]).change, "running → unknown");
  assert.match(describeSegment(SEGMENTS[4]).change, /daemon was down/);
  assert.equal(describeSegment(SEGMENTS[0]).change, "running");
});

test("segmentAt: the segment holding a moment", () => {
  assert.equal(segmentAt(SEGMENTS, T0 + 3600.5).entry_id, 2);
  assert.equal(segmentAt(SEGMENTS, T0 + 7500).state, "unknown");
  assert.equal(segmentAt(SEGMENTS, T0 - 1), null);
  assert.equal(segmentAt(SEGMENTS, T0 + 86_400), null); // the end is outside
});

test("formatUptime: never rounds up to 100 %, '–' when nothing was wanted", () => {
  assert.equal(formatUptime(1), "100 %");
  assert.equal(formatUptime(0.99996), "99.99 %");
  assert.equal(formatUptime(0.5), "50.00 %");
  assert.equal(formatUptime(0), "0.00 %");
  assert.equal(formatUptime(null), "–");
  assert.equal(formatUptime(Number.NaN), "–");
});

test("summaryFigures: uptime, incidents, MTTR, longest outage; the daemon's absence apart", () => {
  const summary = {
    uptime: 0.9931,
    running_seconds: 85_197,
    wanted_seconds: 85_800,
    unknown_seconds: 600,
    incidents: 2,
    mttr_seconds: 3,
    longest_outage_seconds: 3,
  };
  assert.deepEqual(
    summaryFigures(summary).map((f) => [f.key, f.text]),
    [
      ["uptime", "99.31 %"],
      ["incidents", "2"],
      ["mttr", "3.0 s"],
      ["longest", "3.0 s"],
      ["unknown", "10 min"],
    ],
  );
  const never = {
    uptime: null,
    incidents: 0,
    mttr_seconds: null,
    longest_outage_seconds: null,
    unknown_seconds: 0,
  };
  assert.deepEqual(
    summaryFigures(never).map((f) => f.text),
    ["–", "0", "–", "–"],
  );
});

const RATES = {
  service: "collector",
  since: T0,
  until: T0 + 600,
  step_seconds: 120,
  times: [T0, T0 + 120, T0 + 240, T0 + 360, T0 + 480],
  kinds: {
    heartbeat: [60, 60, null, null, 58.5],
    poiid: [12, 0, null, null, 11],
    alarm: [1, 2, 0, 0, 1],
  },
  timeouts: { poiid: 30 },
  gaps: [
    { kind: "poiid", start: T0 + 100, end: T0 + 240 },
    { kind: "alarm", start: T0 - 50, end: T0 + 10 },
  ],
};

test("charts: data kinds in name order, nulls kept as breaks, the timeout as a rate line", () => {
  assert.deepEqual(dataKinds(RATES), ["alarm", "poiid"]);
  assert.equal(timeoutRate(30), 2); // one per 30 s: 2 a minute
  assert.equal(timeoutRate(null), null);
  assert.deepEqual(kindChartData(RATES, "poiid"), [
    RATES.times,
    [12, 0, null, null, 11],
    [2, 2, 2, 2, 2],
  ]);
  assert.deepEqual(kindChartData(RATES, "alarm"), [RATES.times, [1, 2, 0, 0, 1]]); // no timeout
  assert.deepEqual(kindChartData(RATES, "missing")[1], [null, null, null, null, null]);
  assert.deepEqual(heartbeatChartData(RATES), [RATES.times, [60, 60, null, null, 58.5]]);
  assert.deepEqual(dataKinds({}), []);
});

test("bands: a kind's gaps clamped to the range; the daemon's absence from null heartbeats", () => {
  assert.deepEqual(gapBands(RATES, "poiid"), [{ start: T0 + 100, end: T0 + 240 }]);
  assert.deepEqual(gapBands(RATES, "alarm"), [{ start: T0, end: T0 + 10 }]);
  assert.deepEqual(downBands(RATES), [{ start: T0 + 240, end: T0 + 480 }]);
  const endsDown = { ...RATES, kinds: { heartbeat: [1, null, null, null, null] } };
  assert.deepEqual(downBands(endsDown), [{ start: T0 + 120, end: T0 + 600 }]);
});

// The collector (requires the emulator) hung: both stopped, dependents first; started again,
// requirements first.
const RECOVERY = {
  id: 90,
  at: T0,
  trigger: "collector",
  reason: "no heartbeat for 1.5 s",
  members: ["emulator", "collector"],
  steps: [
    { service: "emulator", stop_sent: T0 + 0.5, gone: T0 + 1, spawned: T0 + 1.2, ready: T0 + 2 },
    { service: "collector", stop_sent: T0, gone: T0 + 0.5, spawned: T0 + 2, ready: null },
  ],
  duration_seconds: null,
};

test("ganttRows: one row per step in the order given, bars on the recovery's span", () => {
  const rows = ganttRows(RECOVERY);
  assert.deepEqual(
    rows.map((row) => row.service),
    ["emulator", "collector"],
  );
  const [emulator, collector] = rows;
  // The span is the collector's stop sent (T0) to the emulator's ready (T0 + 2).
  const near = (got, want) => assert.ok(Math.abs(got - want) < 1e-6, `${got} is not ${want}`);
  const expected = [
    ["stopping", 0.25, 0.25, 0.5],
    ["down", 0.5, 0.1, 0.2],
    ["starting", 0.6, 0.4, 0.8],
  ];
  emulator.phases.forEach((phase, i) => {
    const [name, x, width, seconds] = expected[i];
    assert.equal(phase.name, name);
    near(phase.x, x);
    near(phase.width, width);
    near(phase.seconds, seconds);
  });
  assert.deepEqual(
    collector.phases.map((p) => p.known),
    [true, true, false],
  ); // not ready yet
  assert.equal(ganttText(collector), "stop 0.5 s · down 1.5 s · start –");
  assert.equal(ganttText(emulator), "stop 0.5 s · down 0.2 s · start 0.8 s");
});

test("ganttRows: no facts at all, one instant, and tiny steps still shown", () => {
  const bare = {
    ...RECOVERY,
    steps: [{ service: "a", stop_sent: null, gone: null, spawned: null, ready: null }],
  };
  assert.deepEqual(
    ganttRows(bare)[0].phases.map((p) => p.known),
    [false, false, false],
  );
  assert.equal(ganttText(ganttRows(bare)[0]), "stop – · down – · start –");
  const instant = {
    ...RECOVERY,
    steps: [{ service: "a", stop_sent: T0, gone: T0, spawned: T0, ready: T0 }],
  };
  assert.ok(ganttRows(instant)[0].phases.every((p) => p.known && p.x === 0 && p.width === 1));
  const long = {
    ...RECOVERY,
    steps: [{ service: "a", stop_sent: T0, gone: T0 + 0.001, spawned: T0 + 100, ready: T0 + 100 }],
  };
  const phases = ganttRows(long)[0].phases;
  assert.equal(phases[0].width, 0.004);
  assert.equal(phases[2].x, 1 - 0.004); // widened at the end: kept inside
  assert.deepEqual(ganttRows({ ...RECOVERY, steps: undefined }), []);
});

test("withAlpha: the dashboard's hex colours for a canvas, anything else as it is", () => {
  assert.equal(withAlpha("#1f8a4c", 0.25), "rgba(31, 138, 76, 0.25)");
  assert.equal(withAlpha(" #fff ", 1), "rgba(255, 255, 255, 1)");
  assert.equal(withAlpha("rebeccapurple", 0.5), "rebeccapurple");
});

test("joinCsvPages: one header, every page's rows in order", () => {
  const page = (rows) => ["id,at,reason", ...rows].join("\r\n") + "\r\n";
  const joined = joinCsvPages([
    page(["3,1,a", '2,1,"two\r\nlines"']),
    page(["1,0,x"]),
    "id,at,reason\r\n",
  ]);
  assert.equal(joined, 'id,at,reason\r\n3,1,a\r\n2,1,"two\r\nlines"\r\n1,0,x\r\n');
  assert.equal(joinCsvPages([]), "");
  assert.equal(joinCsvPages(["id\r\n", ""]), "id\r\n");
});

test("the Ending field: a local time to the minute and back; empty or odd text is now", () => {
  const text = toLocalInput(T0 + 59);
  assert.match(text, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/);
  assert.equal(fromLocalInput(text), T0); // T0 is on a minute: the seconds are dropped
  assert.equal(fromLocalInput(toLocalInput(T0 + 3600)), T0 + 3600);
  assert.equal(fromLocalInput(""), null);
  assert.equal(fromLocalInput("tomorrow"), null);
  assert.equal(fromLocalInput("2026-13-45T99:99"), null);
});
