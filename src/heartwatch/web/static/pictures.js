// The history page's pictures as numbers: where each segment of a state strip goes, what a
// segment says when pointed at, the figures beside it, the data-rate charts' series and bands,
// and each recovery's Gantt rows. Pure: no DOM, no fetch, no clock (every "now" is passed in),
// so tests/js/pictures.test.mjs checks it all under node. The shapes it reads are docs/api.md's
// /api/v1/history/{name}, /rates and /api/v1/recoveries answers.

import { formatDuration, formatTime } from "./dom.js";

/** The windows the page offers, in seconds (the API's `window=` values). */
export const WINDOWS = { "1h": 3600, "24h": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400 };
export const DEFAULT_WINDOW = "24h";

/** The journal's entry kinds (core/journal.py), in the order the kind filter offers them. */
export const EVENT_KINDS = [
  "transition",
  "note",
  "recovery",
  "restart",
  "exit",
  "alert",
  "probe",
  "reload",
  "daemon",
];

// States that are news, widened to stay visible (a one-second hang in a 30-day strip is 4e-7
// of it) and painted over the segments drawn at their true width. Widened news may overlap (a
// hang is unresponsive for a millisecond, then restarting, then starting): the worse is painted
// last, so what went wrong stays on top of what the daemon did about it.
const CALM = new Set(["running", "stopped"]);
// The order `heartwatch history` ranks a column's states in (cli/history.py SEVERITY, read
// backwards without the calm ones; tests/test_history_pictures.py holds the two equal).
export const PAINT_ORDER = [
  "starting",
  "stopping",
  "restarting",
  "unknown",
  "backoff",
  "exited",
  "unresponsive",
  "failed",
];
const paintRank = (state) => PAINT_ORDER.indexOf(state); // -1: a state not listed, first
export const MIN_SEGMENT_FRACTION = 0.004; // of the strip's width: about 2 px on a phone

/** What the page's address says: `?service=&window=&until=&kind=&recovery=`; anything
 * unknown or malformed falls back to the defaults instead of failing. */
export function parseQuery(search) {
  const params = new URLSearchParams(search);
  const window = WINDOWS[params.get("window")] ? params.get("window") : DEFAULT_WINDOW;
  const untilText = params.get("until");
  const until = untilText != null && /^\d+(\.\d+)?$/.test(untilText) ? Number(untilText) : null;
  const kinds = params.getAll("kind").filter((kind) => EVENT_KINDS.includes(kind));
  const recoveryText = params.get("recovery");
  const recovery = recoveryText && /^\d+$/.test(recoveryText) ? Number(recoveryText) : null;
  return { service: params.get("service") || "", window, until, kinds, recovery };
}

/** The address for a choice of filters (the inverse of parseQuery, defaults left out). */
export function buildQuery({
  service = "",
  window = DEFAULT_WINDOW,
  until = null,
  kinds = [],
  recovery = null,
}) {
  const params = new URLSearchParams();
  if (service) params.set("service", service);
  if (window !== DEFAULT_WINDOW) params.set("window", window);
  if (until != null) params.set("until", String(until));
  for (const kind of kinds) params.append("kind", kind);
  if (recovery != null) params.set("recovery", String(recovery));
  const text = params.toString();
  return text ? `?${text}` : "";
}

/** The range shown: [since, until] in Unix seconds; `until` null is now (to the millisecond:
 * a window rounded down to the second could end before what just happened). */
export function rangeOf({ window, until }, nowSeconds) {
  const end = until ?? Math.round(nowSeconds * 1000) / 1000;
  return { since: end - WINDOWS[window], until: end };
}

/** A Unix time as a datetime-local input's value ("2026-12-01T12:05"), in local time. */
export function toLocalInput(unix) {
  const date = new Date(unix * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  const day = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
  return `${day}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** A datetime-local input's value as a Unix time (whole seconds), or null when empty or not
 * a time (then the window ends now). */
export function fromLocalInput(text) {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/.test(text || "")) return null;
  const ms = new Date(text).getTime();
  return Number.isFinite(ms) ? Math.floor(ms / 1000) : null;
}

function rangeQuery({ since, until }, extra = {}) {
  const params = new URLSearchParams({ since: String(since), until: String(until) });
  for (const [name, value] of Object.entries(extra)) {
    for (const one of Array.isArray(value) ? value : [value]) {
      if (one !== "" && one != null) params.append(name, String(one));
    }
  }
  return params.toString();
}

/** Every service's strip in one answer (the overview), or those of `services` only: strips
 * without the recoveries /api/v1/history/{name} also computes (the page asks for those apart). */
export const overviewPath = (range, services = []) =>
  `/api/v1/history?${rangeQuery(range, { service: services })}`;

export const ratesPath = (service, range, points) =>
  `/api/v1/history/${encodeURIComponent(service)}/rates?${rangeQuery(range, { points })}`;

export const recoveriesPath = (service, range) =>
  `/api/v1/recoveries?${rangeQuery(range, { service })}`;

/** The events behind the pictures, as the list shows them and as the export downloads them:
 * the same query, so an export holds what the list shows. */
export function eventsPath({ service, kinds, range, limit, beforeId = null, format = "json" }) {
  const query = rangeQuery(range, { service, kind: kinds, limit, before_id: beforeId });
  return format === "csv" ? `/api/v1/events.csv?${query}` : `/api/v1/events?${query}`;
}

/** A file name for an export: `heartwatch-collector-20260101T1200Z-20260102T1200Z.csv`. */
export function exportName(service, range, format) {
  const stamp = (unix) => new Date(unix * 1000).toISOString().slice(0, 16).replace(/[-:]/g, "");
  const who = (service || "all").replace(/[^A-Za-z0-9_.@-]/g, "_");
  return `heartwatch-${who}-${stamp(range.since)}Z-${stamp(range.until)}Z.${format}`;
}

/** CSV answers of consecutive pages as one file: the header row once, from the first page
 * (a header holds no quoted line break, so it ends at the first one). */
export function joinCsvPages(pages) {
  return pages
    .map((text, i) => {
      if (i === 0) return text;
      const end = text.indexOf("\n");
      return end === -1 ? "" : text.slice(end + 1);
    })
    .join("");
}

// -- the state strip ----------------------------------------------------------------------

/** Segments as fractions of the strip, each clamped to [since, until]: `{x, width, segment,
 * index, widened}`, in paint order. News narrower than `minFraction` is widened to it (kept
 * inside the strip), so a short hang in a long window still shows, and painted after the
 * segments of true width, from the mildest to the worst (PAINT_ORDER). */
export function stripLayout(segments, since, until, minFraction = MIN_SEGMENT_FRACTION) {
  const span = until - since;
  if (!(span > 0)) return [];
  const laid = [];
  segments.forEach((segment, index) => {
    const start = Math.max(since, segment.start);
    const end = Math.min(until, segment.end);
    if (!(end > start)) return;
    let x = (start - since) / span;
    let width = (end - start) / span;
    const widened = !CALM.has(segment.state) && width < minFraction;
    if (widened) {
      width = minFraction;
      x = Math.min(x, 1 - width);
    }
    laid.push({ x, width, segment, index, widened });
  });
  // True widths do not overlap: in time order. Then the widened, by rank (a stable sort:
  // within a rank, in time order).
  const rank = (one) => (one.widened ? 1 + PAINT_ORDER.length + paintRank(one.segment.state) : 0);
  return laid.sort((a, b) => rank(a) - rank(b));
}

/** What a segment says when pointed at: the change that began it, when, how long, why. */
export function describeSegment(segment, previous = null) {
  const change = previous ? `${previous.state} → ${segment.state}` : segment.state;
  const state = segment.state === "unknown" ? "unknown (the daemon was down, or no record)" : null;
  return {
    change: state && !previous ? state : change,
    when: `${formatTime(segment.start)} – ${formatTime(segment.end)}`,
    lasted: formatDuration(segment.end - segment.start),
    reason: segment.reason || "",
  };
}

/** The segment of a strip that holds Unix time `at` (the last one to start at or before it),
 * or null outside the strip. */
export function segmentAt(segments, at) {
  let found = null;
  for (const segment of segments) {
    if (segment.start <= at && at < segment.end) found = segment;
  }
  return found;
}

/** Uptime as a percentage that never rounds up to 100 (a strip 99.996 % up was not always up):
 * two decimals, truncated; null (nothing was wanted) is "–". */
export function formatUptime(uptime) {
  if (uptime == null || !Number.isFinite(uptime)) return "–";
  if (uptime >= 1) return "100 %";
  const hundredths = Math.floor(Math.max(0, uptime) * 10_000) / 100;
  return `${hundredths.toFixed(2)} %`;
}

/** The figures beside a strip, as label and text, in the order shown. */
export function summaryFigures(summary) {
  const s = summary || {};
  const figures = [
    { key: "uptime", label: "uptime", text: formatUptime(s.uptime) },
    { key: "incidents", label: "incidents", text: String(s.incidents ?? 0) },
    { key: "mttr", label: "time to recover", text: formatDuration(s.mttr_seconds) },
    { key: "longest", label: "longest outage", text: formatDuration(s.longest_outage_seconds) },
  ];
  if (s.unknown_seconds > 0) {
    // The daemon's own absence (or no record yet): not counted against the service, apart.
    figures.push({ key: "unknown", label: "unknown", text: formatDuration(s.unknown_seconds) });
  }
  return figures;
}

// -- data-rate charts ---------------------------------------------------------------------

/** The kinds to chart, data kinds first in name order, without the heartbeat (charted beneath
 * them all). */
export function dataKinds(rates) {
  return Object.keys(rates?.kinds || {})
    .filter((kind) => kind !== "heartbeat")
    .sort();
}

/** The slowest rate a kind's data_timeout allows, per minute: one event per timeout. Averaged
 * over a bucket, a rate under this line means a deadline was (or was nearly) missed. */
export function timeoutRate(timeoutSeconds) {
  return timeoutSeconds > 0 ? 60 / timeoutSeconds : null;
}

/** uPlot's data for one kind: [times, rates, the timeout's line], nulls where the daemon was
 * down (drawn as breaks, never as zero). */
export function kindChartData(rates, kind) {
  const times = rates.times || [];
  const values = rates.kinds?.[kind] || times.map(() => null);
  const floor = timeoutRate(rates.timeouts?.[kind]);
  const series = [times, values.map(orNull)];
  if (floor != null) series.push(times.map(() => floor));
  return series;
}

/** uPlot's data for the heartbeat chart beneath: [times, heartbeats per minute]. */
export function heartbeatChartData(rates) {
  const times = rates.times || [];
  const values = rates.kinds?.heartbeat || times.map(() => null);
  return [times, values.map(orNull)];
}

function orNull(value) {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/** One kind's gaps (no data while the service beat), clamped to the range: `{start, end}`. */
export function gapBands(rates, kind) {
  const since = rates.since;
  const until = rates.until;
  return (rates.gaps || [])
    .filter((gap) => gap.kind === kind)
    .map((gap) => ({ start: Math.max(since, gap.start), end: Math.min(until, gap.end) }))
    .filter((gap) => gap.end > gap.start);
}

/** The spans where the daemon was down: the runs of nulls in the heartbeat series, each from
 * its first null bucket's start to the next bucket's. */
export function downBands(rates) {
  const times = rates.times || [];
  const beats = rates.kinds?.heartbeat || [];
  const step = rates.step_seconds || 60;
  const bands = [];
  let start = null;
  times.forEach((time, i) => {
    const down = beats[i] == null;
    if (down && start == null) start = time;
    if (!down && start != null) {
      bands.push({ start, end: time });
      start = null;
    }
  });
  if (start != null) bands.push({ start, end: Math.min(rates.until, times.at(-1) + step) });
  return bands;
}

/** A CSS hex colour ("#1f8a4c" or "#fff") with an alpha, as canvas and uPlot take it; any
 * other text is returned as it is. */
export function withAlpha(colour, alpha) {
  const hex = colour.trim().replace(/^#/, "");
  if (!/^([0-9a-f]{3}|[0-9a-f]{6})$/i.test(hex)) return colour;
  const full = hex.length === 3 ? [...hex].map((c) => c + c).join("") : hex;
  const [r, g, b] = [0, 2, 4].map((i) => Number.parseInt(full.slice(i, i + 2), 16));
  return `rgba(${r}, ${g}, ${b}, ${alpha})`;
}

// -- recoveries ---------------------------------------------------------------------------

export const PHASES = [
  // [name, from, to, what it means]
  ["stopping", "stop_sent", "gone", "stop sent → gone"],
  ["down", "gone", "spawned", "gone → spawned"],
  ["starting", "spawned", "ready", "spawned → ready"],
];

/** A recovery's span: from its entry to the last fact of any step. */
export function recoverySpan(recovery) {
  const times = [recovery.at];
  for (const step of recovery.steps || []) {
    for (const [, from, to] of PHASES) {
      if (step[from] != null) times.push(step[from]);
      if (step[to] != null) times.push(step[to]);
    }
  }
  const start = Math.min(...times);
  return { start, end: Math.max(start, ...times) };
}

/** One Gantt row per step, in the order given (the start order): each phase with both ends
 * known as a bar (fractions of the recovery's span, at least `minFraction` wide) and its
 * duration; a phase with an end missing says so instead of guessing. */
export function ganttRows(recovery, minFraction = MIN_SEGMENT_FRACTION) {
  const { start, end } = recoverySpan(recovery);
  const span = end - start;
  return (recovery.steps || []).map((step) => {
    const phases = PHASES.map(([name, from, to, label]) => {
      const a = step[from];
      const b = step[to];
      if (a == null || b == null) return { name, label, known: false, seconds: null };
      const x = span > 0 ? (a - start) / span : 0;
      const width = span > 0 ? Math.max(minFraction, (b - a) / span) : 1;
      return { name, label, known: true, seconds: b - a, x: Math.min(x, 1 - width), width };
    });
    return { service: step.service, phases };
  });
}

/** "stop 0.4 s · down 0.1 s · start 1.2 s" for one Gantt row; "–" for what is not known. */
export function ganttText(row) {
  const words = { stopping: "stop", down: "down", starting: "start" };
  return row.phases
    .map((phase) => `${words[phase.name]} ${phase.known ? formatDuration(phase.seconds) : "–"}`)
    .join(" · ");
}
