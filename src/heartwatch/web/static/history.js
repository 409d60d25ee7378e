// The history page (/history): a state strip per service with its figures, the chosen
// service's data-rate charts (uPlot, vendored), a Gantt per recovery, and the events behind
// them, filtered by service, kind and time range, exported as CSV or JSON. What it reads is
// docs/api.md's /api/v1/history/{name}, .../rates, /api/v1/recoveries and /api/v1/events; the
// numbers come from pictures.js (pure, tested under node), the drawing is here. Text goes in as
// text, never as markup; the strips and bars are SVG attributes and the charts a canvas, so
// the page runs under the dashboard's CSP (no inline script or style).

import { api, ApiError, auth, setUnauthorizedHandler, storeToken } from "./api.js";
import { byId, formatDuration, formatTime, h, svg } from "./dom.js";
import {
  buildQuery,
  dataKinds,
  describeSegment,
  downBands,
  EVENT_KINDS,
  eventsPath,
  exportName,
  fromLocalInput,
  ganttRows,
  ganttText,
  gapBands,
  heartbeatChartData,
  overviewPath,
  joinCsvPages,
  kindChartData,
  parseQuery,
  rangeOf,
  ratesPath,
  recoveriesPath,
  stripLayout,
  summaryFigures,
  toLocalInput,
  withAlpha,
} from "./pictures.js";
import { eventItem } from "./timeline.js";
import { askToken } from "./token.js";

const STRIP_WIDTH = 1000; // viewBox units; the strip stretches to its box
const STRIP_HEIGHT = 24;
const CHART_POINTS = 360; // buckets asked of /rates: one per ~2 px of a wide chart
const EVENTS_PAGE = 200;
const EXPORT_PAGE = 1000; // the API's largest page of events (web/history.py MAX_EVENTS_PAGE)
const EXPORT_PAGES = 100; // at most 100,000 events in one file
const CHART_HEIGHT = 150;
const HEARTBEAT_HEIGHT = 110;

const state = parseQuery(location.search);
let range = rangeOf(state, Date.now() / 1000);
let charts = []; // uPlot instances, destroyed when redrawn
let loadToken = 0; // a newer load makes an older one's answers moot

const parts = {
  service: byId("service"),
  window: byId("window"),
  until: byId("until"),
  strips: byId("strips"),
  charts: byId("charts"),
  recoveries: byId("recoveries"),
  events: byId("events"),
  older: byId("events-older"),
};

// -- filters ------------------------------------------------------------------------------

function setupFilters() {
  parts.window.value = state.window;
  if (state.until != null) parts.until.value = toLocalInput(state.until);
  byId("kinds").replaceChildren(
    ...EVENT_KINDS.map((kind) =>
      h(
        "label",
        { class: "kind-choice" },
        h("input", {
          type: "checkbox",
          value: kind,
          checked: state.kinds.includes(kind),
          onchange: kindsChanged,
        }),
        kind,
      ),
    ),
  );
  parts.service.addEventListener("change", () => {
    state.service = parts.service.value;
    state.recovery = null;
    reload();
  });
  parts.window.addEventListener("change", () => {
    state.window = parts.window.value;
    reload();
  });
  parts.until.addEventListener("change", () => {
    state.until = fromLocalInput(parts.until.value);
    reload();
  });
  byId("until-now").addEventListener("click", () => {
    state.until = null;
    parts.until.value = "";
    reload();
  });
  byId("export-csv").addEventListener("click", () => exportEvents("csv"));
  byId("export-json").addEventListener("click", () => exportEvents("json"));
  parts.older.addEventListener("click", () => loadEvents({ older: true }));
  byId("notice-close").addEventListener("click", () => {
    byId("notice").hidden = true;
  });
}

function kindsChanged() {
  state.kinds = [...byId("kinds").querySelectorAll("input:checked")].map((box) => box.value);
  history.replaceState(null, "", `/history${buildQuery(state)}`);
  loadEvents();
}

async function loadServiceNames() {
  let names = [];
  try {
    names = (await api("/api/v1/services")).map((status) => status.name);
  } catch (error) {
    showError("could not list the services", error);
  }
  // A service no longer configured may still have history: keep the one asked for.
  if (state.service && !names.includes(state.service)) names.push(state.service);
  parts.service.replaceChildren(
    h("option", { value: "" }, "all services"),
    ...names.map((name) => h("option", { value: name }, name)),
  );
  parts.service.value = state.service;
}

// -- loading ------------------------------------------------------------------------------

/** Load everything for the filters: the pictures first (strips and charts), then the
 * recoveries and the events, whose queries would otherwise queue before the strips' on the
 * daemon. */
async function reload() {
  history.replaceState(null, "", `/history${buildQuery(state)}`);
  range = rangeOf(state, Date.now() / 1000);
  const token = ++loadToken;
  const span = formatDuration(range.until - range.since);
  byId("range-text").textContent =
    `${formatTime(range.since)} – ${formatTime(range.until)} (${span})`;
  await Promise.all([
    loadStrips(token),
    state.service ? loadCharts(state.service, token) : clearCharts(),
  ]);
  if (token !== loadToken) return;
  performance.mark("hw:history-painted"); // every strip and chart drawn (bench/history.py)
  await Promise.all([loadRecoveries(token), loadEvents()]);
  if (token === loadToken) document.body.dataset.loaded = String(token); // the tests wait for it
}

/** The strips of every service, or of the one chosen, from one answer (GET /api/v1/history),
 * in start order. One chosen may have left the configuration and still have history. */
async function loadStrips(token) {
  const only = state.service ? [state.service] : [];
  let answer;
  try {
    answer = await api(overviewPath(range, only));
  } catch (error) {
    showError(only.length ? `history of ${state.service}` : "could not load the history", error);
    answer = { services: [] };
  }
  if (token !== loadToken) return;
  const services = answer.services || [];
  parts.strips.replaceChildren(...services.map((one) => stripBlock(one.service, one)));
  byId("strips-empty").hidden = services.length > 0;
}

// -- the state strips ---------------------------------------------------------------------

/** One service's strip, its figures above it and what a pointed segment says below. */
function stripBlock(name, answer) {
  const detail = h("p", { class: "strip-detail", "aria-live": "polite" });
  const segments = answer.segments || [];
  const picture = stripPicture(answer, (segment, index, jump) => {
    showSegment(detail, segment, segments[index - 1] ?? null);
    if (jump) jumpToSegment(segment);
  });
  const figures = h(
    "dl",
    { class: "figures" },
    summaryFigures(answer.summary).map((figure) =>
      h(
        "div",
        { class: "figure", "data-figure": figure.key },
        h("dt", {}, figure.label),
        h("dd", {}, figure.text),
      ),
    ),
  );
  const title = state.service
    ? h("span", { class: "strip-name" }, name)
    : h(
        "a",
        { class: "strip-name", href: `/history${buildQuery({ ...state, service: name })}` },
        name,
      );
  return h(
    "div",
    { class: "strip-block", "data-service": name },
    h("div", { class: "strip-head" }, title, figures),
    picture,
    h(
      "div",
      { class: "strip-axis" },
      h("span", {}, formatTime(answer.since)),
      h("span", {}, formatTime(answer.until)),
    ),
    answer.truncated
      ? h("p", { class: "trouble" }, "too many entries in this window: its end is cut short")
      : null,
    detail,
  );
}

/** The strip: one SVG rect per segment (x and width as attributes: no style attribute), each
 * focusable, saying its change on hover, focus or a first tap, and jumping to its moment in the
 * event list on a click (a second tap on a touch screen). The listeners are the strip's, not
 * each rect's (a week of a busy service is thousands of segments), and a rect's tooltip is
 * made when it is first pointed at: drawing 50 strips stays a matter of attributes. */
function stripPicture(answer, onSegment) {
  const segments = answer.segments || [];
  const rects = stripLayout(segments, answer.since, answer.until).map(
    ({ x, width, segment, index }) =>
      svg("rect", {
        class: "seg",
        x: (x * STRIP_WIDTH).toFixed(3),
        width: (width * STRIP_WIDTH).toFixed(3),
        y: 0,
        height: STRIP_HEIGHT,
        tabindex: "0",
        "data-index": String(index),
        "data-state": segment.state,
        "data-start": String(segment.start),
        "data-end": String(segment.end),
        "data-entry": segment.entry_id == null ? null : String(segment.entry_id),
      }),
  );
  const strip = svg(
    "svg",
    {
      class: "strip",
      "data-since": String(answer.since),
      "data-until": String(answer.until),
      viewBox: `0 0 ${STRIP_WIDTH} ${STRIP_HEIGHT}`,
      preserveAspectRatio: "none",
      role: "img",
      "aria-label": `states of ${answer.service} from ${formatTime(answer.since)} to ${formatTime(answer.until)}`,
    },
    ...rects,
  );
  /** The rect an event is about, with its tooltip made on first need. */
  const pointed = (event) => {
    const rect = event.target instanceof Element ? event.target.closest("rect.seg") : null;
    if (rect === null || !strip.contains(rect)) return null;
    const index = Number(rect.dataset.index);
    if (rect.firstChild === null) {
      const said = describeSegment(segments[index], segments[index - 1] ?? null);
      rect.append(
        svg("title", {}, `${said.change} · ${said.when}${said.reason ? ` · ${said.reason}` : ""}`),
      );
    }
    return { rect, index, segment: segments[index] };
  };
  let touched = false;
  strip.addEventListener("pointerdown", (event) => {
    touched = event.pointerType === "touch" || event.pointerType === "pen";
  });
  // pointerover bubbles (pointerenter does not): entering a rect from another, or from outside.
  strip.addEventListener("pointerover", (event) => {
    const hit = pointed(event);
    if (hit) onSegment(hit.segment, hit.index, false);
  });
  strip.addEventListener("focusin", (event) => {
    const hit = pointed(event);
    if (hit) onSegment(hit.segment, hit.index, false);
  });
  strip.addEventListener("click", (event) => {
    const hit = pointed(event);
    if (!hit) return;
    const first = touched && !hit.rect.classList.contains("pointed");
    onSegment(hit.segment, hit.index, !first);
    for (const other of strip.querySelectorAll(".pointed")) other.classList.remove("pointed");
    hit.rect.classList.add("pointed");
  });
  strip.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" && event.key !== " ") return;
    const hit = pointed(event);
    if (!hit) return;
    event.preventDefault();
    onSegment(hit.segment, hit.index, true);
  });
  return strip;
}

function showSegment(detail, segment, previous) {
  const said = describeSegment(segment, previous);
  detail.replaceChildren(
    h("strong", {}, said.change),
    ` ${said.when} (${said.lasted})`,
    said.reason ? h("span", { class: "strip-reason" }, said.reason) : null,
  );
  detail.dataset.state = segment.state;
}

// -- the event list -----------------------------------------------------------------------

let oldestShown = null; // the smallest id listed: "older" asks for what comes before it

/** The newest page of the filters' events; `older`: the page before those listed;
 * `beforeId` or `until`: the page from that entry or moment back (a jump). */
async function loadEvents({ older = false, beforeId = null, until = null } = {}) {
  const token = loadToken;
  const before = older ? oldestShown : beforeId;
  const upTo = until == null ? range : { since: range.since, until: Math.min(range.until, until) };
  const path = eventsPath({
    service: state.service,
    kinds: state.kinds,
    range: upTo,
    limit: EVENTS_PAGE,
    beforeId: before,
  });
  let events;
  try {
    events = (await api(path)).events;
  } catch (error) {
    showError("could not load the events", error);
    return;
  }
  if (token !== loadToken) return;
  const now = Date.now() / 1000;
  const items = events.map((event) => eventItem(event, now));
  if (older) parts.events.append(...items);
  else parts.events.replaceChildren(...items);
  if (events.length) oldestShown = events.at(-1).id;
  else if (!older) oldestShown = null;
  parts.older.hidden = events.length < EVENTS_PAGE;
  byId("events-empty").hidden = parts.events.childElementCount > 0;
  const jumped = !older && (before != null || until != null);
  byId("events-text").textContent = jumped
    ? `from ${formatTime(events[0]?.at ?? upTo.until)} back`
    : "";
}

/** Show a segment's moment in the event list: its entry when listed, else the events from
 * its entry (or, for the daemon's absence, from its end) back. */
async function jumpToSegment(segment) {
  const find = () =>
    segment.entry_id != null
      ? parts.events.querySelector(`li[data-id="${segment.entry_id}"]`)
      : null;
  let item = find();
  if (!item) {
    if (segment.entry_id != null) await loadEvents({ beforeId: segment.entry_id + 1 });
    else await loadEvents({ until: Math.ceil(segment.end) });
    item = find() ?? parts.events.firstElementChild;
  }
  if (!item) return;
  for (const other of parts.events.querySelectorAll(".focused")) other.classList.remove("focused");
  item.classList.add("focused");
  item.scrollIntoView({ block: "nearest", behavior: "smooth" });
}

// -- data-rate charts ---------------------------------------------------------------------

function clearCharts() {
  for (const chart of charts) chart.destroy();
  charts = [];
  parts.charts.replaceChildren();
  byId("charts-panel").hidden = true;
}

async function loadCharts(service, token) {
  let rates;
  try {
    rates = await api(ratesPath(service, range, CHART_POINTS));
  } catch (error) {
    showError(`data rates of ${service}`, error);
    return;
  }
  if (token !== loadToken) return;
  clearCharts();
  byId("charts-panel").hidden = false;
  const kinds = dataKinds(rates);
  const anyCounts = Object.values(rates.kinds || {}).some((values) =>
    values.some((v) => v != null),
  );
  byId("charts-empty").hidden = anyCounts;
  if (typeof globalThis.uPlot !== "function") {
    showError("charts", { describe: () => "uPlot did not load (static/vendor/uplot)" });
    return;
  }
  const width = Math.max(240, parts.charts.clientWidth);
  const colours = palette();
  for (const kind of kinds) charts.push(kindChart(rates, kind, width, colours));
  charts.push(heartbeatChart(rates, width, colours));
}

/** One kind's chart: its rate, its data_timeout's line, its gaps and the daemon's absences. */
function kindChart(rates, kind, width, colours) {
  const box = h(
    "figure",
    { class: "chart", "data-kind": kind },
    h("figcaption", {}, kindCaption(rates, kind)),
  );
  parts.charts.append(box);
  const series = [
    {},
    { label: kind, stroke: colours.line, fill: colours.fill, width: 1.5, value: rateValue },
  ];
  if (rates.timeouts?.[kind] != null) {
    series.push({
      label: "1 per data_timeout",
      stroke: colours.warning,
      dash: [6, 4],
      width: 1,
      points: { show: false },
      value: rateValue,
    });
  }
  const bands = [
    ...gapBands(rates, kind).map((band) => ({ ...band, colour: colours.gap })),
    ...downBands(rates).map((band) => ({ ...band, colour: colours.unknown })),
  ];
  const options = chartOptions(rates, width, CHART_HEIGHT, series, bands, colours);
  return new globalThis.uPlot(options, kindChartData(rates, kind), box);
}

/** The heartbeats beneath the kinds, on the same time axis. */
function heartbeatChart(rates, width, colours) {
  const box = h(
    "figure",
    { class: "chart", "data-kind": "heartbeat" },
    h("figcaption", {}, "heartbeats per minute"),
  );
  parts.charts.append(box);
  const series = [
    {},
    { label: "heartbeat", stroke: colours.running, width: 1.5, value: rateValue },
  ];
  const downs = downBands(rates).map((band) => ({ ...band, colour: colours.unknown }));
  const options = chartOptions(rates, width, HEARTBEAT_HEIGHT, series, downs, colours);
  return new globalThis.uPlot(options, heartbeatChartData(rates), box);
}

function kindCaption(rates, kind) {
  const timeout = rates.timeouts?.[kind];
  const gaps = gapBands(rates, kind);
  const words = [`${kind} per minute`];
  if (timeout != null) words.push(`data_timeout ${formatDuration(timeout)}`);
  if (gaps.length) words.push(`${gaps.length} ${gaps.length === 1 ? "gap" : "gaps"}`);
  return words.join(" · ");
}

const rateValue = (_chart, value) =>
  value == null ? "–" : value >= 10 ? value.toFixed(0) : value.toFixed(2);

/** One chart's options: the window as the x range (every chart on the same axis, cursors in
 * step), bands painted under the lines. */
function chartOptions(rates, width, height, series, bands, colours) {
  return {
    width,
    height,
    series,
    scales: {
      x: { time: true, range: [rates.since, rates.until] },
      y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] },
    },
    axes: [
      { stroke: colours.muted, grid: { stroke: colours.grid } },
      { stroke: colours.muted, grid: { stroke: colours.grid }, size: 44 },
    ],
    cursor: { sync: { key: "history-rates" } },
    legend: { live: true },
    hooks: { drawClear: [(chart) => paintBands(chart, bands)] },
  };
}

function paintBands(chart, bands) {
  const ctx = chart.ctx;
  const { top, height } = chart.bbox;
  ctx.save();
  for (const band of bands) {
    const left = chart.valToPos(band.start, "x", true);
    const right = chart.valToPos(band.end, "x", true);
    ctx.fillStyle = band.colour;
    ctx.fillRect(left, top, Math.max(2, right - left), height);
  }
  ctx.restore();
}

/** The dashboard's colours (app.css's variables), for the canvas, which cannot read CSS. */
function palette() {
  const style = getComputedStyle(document.documentElement);
  const read = (name) => style.getPropertyValue(name).trim();
  return {
    line: read("--spark"),
    fill: withAlpha(read("--spark"), 0.15),
    running: read("--running"),
    warning: read("--warning"),
    gap: withAlpha(read("--warning"), 0.25),
    unknown: withAlpha(read("--unknown"), 0.45),
    muted: read("--muted"),
    grid: read("--line"),
  };
}

/** Charts follow their box's width (a phone turned, a window resized), once a frame at most. */
function watchChartWidths() {
  let pending = false;
  new ResizeObserver(() => {
    if (pending || !charts.length) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      const width = Math.max(240, parts.charts.clientWidth);
      for (const chart of charts) {
        if (chart.width !== width) chart.setSize({ width, height: chart.height });
      }
    });
  }).observe(parts.charts);
}

// -- recoveries ---------------------------------------------------------------------------

async function loadRecoveries(token) {
  let answer;
  try {
    answer = await api(recoveriesPath(state.service, range));
  } catch (error) {
    showError("could not load the recoveries", error);
    return;
  }
  if (token !== loadToken) return;
  const recoveries = answer.recoveries || [];
  parts.recoveries.replaceChildren(...recoveries.map(recoveryItem));
  byId("recoveries-empty").hidden = recoveries.length > 0;
  if (state.recovery != null) {
    const item = byId("recoveries").querySelector(`#recovery-${state.recovery}`);
    if (item) {
      item.classList.add("focused");
      item.scrollIntoView({ block: "start" });
    }
  }
}

/** A recovery's Gantt: one row per member in the order given, its three steps as bars on the
 * recovery's span, each step's duration in words beside it. */
function recoveryItem(recovery) {
  const rows = ganttRows(recovery);
  return h(
    "li",
    { class: "recovery", id: `recovery-${recovery.id}`, "data-id": String(recovery.id) },
    h(
      "div",
      { class: "recovery-head" },
      h("time", { datetime: new Date(recovery.at * 1000).toISOString() }, formatTime(recovery.at)),
      h("span", { class: "recovery-trigger" }, recovery.trigger ?? ""),
      h("span", { class: "recovery-reason" }, recovery.reason ?? ""),
      h(
        "span",
        { class: "recovery-duration" },
        recovery.duration_seconds == null
          ? "not back yet"
          : `back in ${formatDuration(recovery.duration_seconds)}`,
      ),
    ),
    h(
      "ol",
      { class: "gantt" },
      rows.map((row) =>
        h(
          "li",
          { class: "gantt-row", "data-service": row.service },
          h("span", { class: "gantt-name" }, row.service),
          ganttBars(row),
          h("span", { class: "gantt-text" }, ganttText(row)),
        ),
      ),
    ),
  );
}

function ganttBars(row) {
  const bars = row.phases
    .filter((phase) => phase.known)
    .map((phase) =>
      svg(
        "rect",
        {
          class: "bar",
          "data-phase": phase.name,
          x: (phase.x * STRIP_WIDTH).toFixed(3),
          width: (phase.width * STRIP_WIDTH).toFixed(3),
          y: 2,
          height: 14,
        },
        svg("title", {}, `${phase.label}: ${formatDuration(phase.seconds)}`),
      ),
    );
  return svg(
    "svg",
    {
      class: "gantt-bars",
      viewBox: `0 0 ${STRIP_WIDTH} 18`,
      preserveAspectRatio: "none",
      "aria-hidden": "true",
    },
    ...bars,
  );
}

// -- export -------------------------------------------------------------------------------

/** The events of the current filters, as a file: fetched with the token (a plain link could
 * not carry it), a page at a time (the API's largest page is EXPORT_PAGE events), then handed
 * to the browser as a download. The range is fixed while it pages, so the pages join. */
async function exportEvents(format) {
  const query = { service: state.service, kinds: state.kinds, range, limit: EXPORT_PAGE };
  const events = [];
  const csvPages = [];
  try {
    let beforeId = null;
    for (let page = 0; page < EXPORT_PAGES; page++) {
      const batch = (await api(eventsPath({ ...query, beforeId }))).events;
      if (format === "csv")
        csvPages.push(await fetchText(eventsPath({ ...query, beforeId, format })));
      events.push(...batch);
      if (batch.length < EXPORT_PAGE) break;
      beforeId = batch.at(-1).id;
    }
  } catch (error) {
    showError(`export ${format}`, error);
    return;
  }
  const blob =
    format === "csv"
      ? new Blob([joinCsvPages(csvPages)], { type: "text/csv" })
      : new Blob(
          [
            JSON.stringify(
              { service: state.service || null, ...range, kinds: state.kinds, events },
              null,
              1,
            ),
          ],
          {
            type: "application/json",
          },
        );
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: exportName(state.service, range, format) });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

async function fetchText(path) {
  const headers = auth.token ? { Authorization: `Bearer ${auth.token}` } : {};
  const response = await fetch(path, { headers, cache: "no-store" });
  if (!response.ok)
    throw new ApiError(
      response.status,
      `http_${response.status}`,
      response.statusText || "request failed",
    );
  return response.text();
}

function showError(what, error) {
  if (error?.status === 401) return; // the token dialog says it
  const why = typeof error?.describe === "function" ? error.describe() : String(error);
  byId("notice-text").textContent = `${what}: ${why}`;
  byId("notice").hidden = false;
}

// -- the token ----------------------------------------------------------------------------

let tokenAsked = null; // one dialog however many requests were refused at once

/** A 401: ask for a token (the dashboard's, kept in this browser's local storage), then load
 * everything again with it. */
function tokenRefused() {
  const message = auth.token
    ? "That token was refused. Enter a valid token for this daemon."
    : "This daemon needs a token. It is kept in this browser's local storage.";
  tokenAsked ??= askToken(message).then((token) => {
    storeToken(token);
    tokenAsked = null;
    return start();
  });
}


// -- start --------------------------------------------------------------------------------

function boot() {
  setupFilters();
  watchChartWidths();
  setUnauthorizedHandler(tokenRefused);
  return start();
}

/** Load the page: the pictures need no list of services (the overview's answer holds them
 * all), so the list fills the filter meanwhile. */
async function start() {
  await Promise.all([loadServiceNames(), reload()]);
}

boot();
