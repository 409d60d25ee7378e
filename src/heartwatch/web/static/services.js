// The services table: one row per service, updated in place from the event stream.
//
// Ages tick locally: a status carries ages measured when the daemon sent it; the row remembers
// when that arrived (the browser's monotonic clock) and adds the time since. `pulse` messages
// reset the heartbeat age; nothing is fetched to keep them right.

import { formatAge, formatCount, formatDuration, formatTime, h, setText, svg } from "./dom.js";

const TROUBLE = new Set(["unresponsive", "backoff", "failed", "exited"]);
const INACTIVE = new Set(["stopped", "exited", "failed", "stopping"]);
const VERBS = ["restart", "stop", "start"];
const SPARK_WIDTH = 60; // one unit per minute of the last hour
const SPARK_HEIGHT = 16;
const RATE_WINDOW = 60; // seconds: the rate shown is per minute, over the last minute
const RATE_MIN_SPAN = 5; // seconds of samples needed before a rate is shown

/** Seconds on the browser's monotonic clock. */
export const monotonic = () => performance.now() / 1000;

class Row {
  constructor(name, handlers) {
    this.name = name;
    this.status = null;
    this.receivedAt = 0; // when `status` arrived (monotonic seconds)
    this.heartbeatAge = null; // base ages, as of `heartbeatAt` / `receivedAt`
    this.heartbeatAt = 0;
    this.kinds = new Map(); // kind -> {item, count, rate, spark}
    this.series = new Map(); // kind -> counts per minute, oldest first

    this.nameButton = h("button", { type: "button", class: "svc-name", title: "show its log" }, name);
    this.nameButton.addEventListener("click", () => handlers.onSelect(name));
    this.tag = h("span", { class: "tag", hidden: true }, "watch-only");
    this.words = h("div", { class: "svc-words" });
    this.pill = h("span", { class: "pill" });
    this.since = h("div", { class: "sub" });
    this.pid = h("td", { class: "num", "data-label": "PID" });
    this.uptime = h("td", { class: "num", "data-label": "Uptime" });
    this.beat = h("span", { class: "age" });
    this.beatTimeout = h("div", { class: "sub" });
    this.data = h("ul", { class: "kinds" });
    this.queue = h("div", { class: "sub", hidden: true });
    this.dropped = h("div", { class: "trouble", hidden: true });
    this.restarts = h("td", { class: "num", "data-label": "Restarts" });
    this.reason = h("div", { class: "reason" });
    this.exit = h("div", { class: "sub" });
    this.trouble = h("div", { class: "trouble", hidden: true });
    this.troubleAt = 0;
    this.buttons = {};
    for (const verb of VERBS) {
      const button = h("button", { type: "button", class: `act act-${verb}`, "data-verb": verb });
      button.textContent = verb[0].toUpperCase() + verb.slice(1);
      button.addEventListener("click", () => handlers.onControl(name, verb, button));
      this.buttons[verb] = button;
    }
    this.element = h(
      "tr",
      { class: "svc", "data-service": name },
      h("th", { scope: "row", class: "name-cell" }, this.nameButton, this.tag, this.words),
      h("td", { class: "state-cell", "data-label": "State" }, this.pill, this.since),
      this.pid,
      this.uptime,
      h("td", { class: "num", "data-label": "Heartbeat" }, this.beat, this.beatTimeout),
      h("td", { class: "data-cell", "data-label": "Data" }, this.data, this.queue, this.dropped),
      this.restarts,
      h(
        "td",
        { class: "reason-cell", "data-label": "Reason" },
        this.reason,
        this.exit,
        this.trouble,
      ),
      h("td", { class: "controls" }, Object.values(this.buttons)),
    );
  }

  update(status, at) {
    this.status = status;
    this.receivedAt = at;
    this.heartbeatAge = status.last_heartbeat_age;
    this.heartbeatAt = at;
    const row = this.element;
    row.dataset.state = status.state;
    setText(this.pill, status.state);
    this.tag.hidden = !status.watch_only;
    setText(this.words, status.status || "");
    setText(this.pid, status.pid == null ? "–" : String(status.pid));
    setText(this.restarts, formatCount(status.restarts));
    setText(this.reason, status.reason || "");
    setText(this.exit, status.last_exit ? `last exit: ${status.last_exit}` : "");
    const timeout = status.heartbeat_timeout;
    setText(this.beatTimeout, timeout ? `timeout ${formatDuration(timeout)}` : "");
    const inactive = INACTIVE.has(status.state);
    this.buttons.restart.hidden = inactive;
    this.buttons.stop.hidden = inactive;
    this.buttons.start.hidden = !inactive;
    for (const [kind, data] of Object.entries(status.data || {})) {
      this.noteCount(kind, data.count, at);
      Object.assign(this.kind(kind), { lastAge: data.last_age, lastAt: at, timeout: data.timeout });
    }
    const queue = status.queue;
    this.queue.hidden = !queue;
    if (queue) {
      const depth = queue.depth == null ? "depth unknown" : `${formatCount(queue.depth)} ready`;
      const problem = queue.broker_problem ? ` · ${queue.broker_problem}` : "";
      setText(this.queue, `queue ${queue.name}: ${depth}${problem}`);
    }
    this.dropped.hidden = !status.client_dropped;
    setText(this.dropped, `${formatCount(status.client_dropped)} events dropped by the client`);
    this.renderKinds();
    this.tick(at);
  }

  /** A pulse: the service sent something; its heartbeat age is fresh, its counters moved. */
  pulse(entry, at) {
    if (entry.last_heartbeat_age !== undefined) {
      this.heartbeatAge = entry.last_heartbeat_age;
      this.heartbeatAt = at;
    }
    if (this.status && typeof entry.messages === "number") this.status.messages = entry.messages;
    for (const [kind, count] of Object.entries(entry.data || {})) {
      this.noteCount(kind, count, at);
    }
    this.renderKinds();
    this.tick(at);
  }

  /** A kind's count as of `at`; its samples over the last minute or so give the live rate. */
  noteCount(kind, count, at) {
    const entry = this.kind(kind);
    if (count !== entry.count) Object.assign(entry, { lastAge: 0, lastAt: at }); // one just came
    const samples = entry.samples;
    if (samples.length && count < samples.at(-1).count) samples.length = 0; // a daemon restart
    if (!samples.length || samples.at(-1).count !== count) samples.push({ at, count });
    // Keep one sample older than the window (the base), and those inside it.
    while (samples.length > 2 && samples[1].at <= at - RATE_WINDOW) samples.shift();
    entry.count = count;
  }

  /** Events of `kind` per minute over the last minute, or null while too few were seen. */
  rate(entry, now) {
    const samples = entry.samples;
    if (!samples.length) return null;
    let base = samples[0];
    for (const sample of samples) if (sample.at <= now - RATE_WINDOW) base = sample;
    // The count stood at base.count until the next sample: over a full window, the window.
    const span = Math.min(RATE_WINDOW, now - base.at);
    if (span < RATE_MIN_SPAN) return null;
    return ((entry.count - base.count) / span) * 60;
  }

  tick(now) {
    const status = this.status;
    if (!status) return;
    const age = this.heartbeatAge == null ? null : this.heartbeatAge + (now - this.heartbeatAt);
    setText(this.beat, age == null ? "never" : formatAge(age));
    const late = age != null && status.heartbeat_timeout && age > status.heartbeat_timeout;
    this.beat.classList.toggle("late", Boolean(late));
    const elapsed = now - this.receivedAt;
    setText(this.since, `for ${formatDuration(status.since_age + elapsed)}`);
    const uptime = uptimeOf(status);
    setText(this.uptime, uptime == null ? "–" : formatDuration(uptime + elapsed));
    for (const entry of this.kinds.values()) {
      const rate = this.rate(entry, now);
      setText(entry.rateText, rate == null ? "" : `${formatRate(rate)}/min`);
      const age = entry.lastAge == null ? null : entry.lastAge + (now - entry.lastAt);
      const late = age != null && entry.timeout != null && age > entry.timeout;
      entry.item.classList.toggle("late", late);
      entry.item.title = age == null ? "none yet" : `the last one ${formatAge(age)} ago`;
    }
  }

  kind(kind) {
    let entry = this.kinds.get(kind);
    if (!entry) {
      entry = {
        item: null,
        countText: h("span", { class: "count" }),
        rateText: h("span", { class: "rate" }),
        spark: h("span", { class: "spark" }),
        count: null,
        samples: [], // {at, count}: counts seen, for the live rate
        lastAge: null, // seconds since the newest one, as of lastAt
        lastAt: 0,
        timeout: null, // the kind's data_timeout
      };
      entry.item = h(
        "li",
        {},
        h("span", { class: "kind" }, kind),
        entry.countText,
        entry.spark,
        entry.rateText,
      );
      this.kinds.set(kind, entry);
    }
    return entry;
  }

  renderKinds() {
    const kinds = [...this.kinds.keys()].sort();
    if (this.data.childElementCount !== kinds.length) {
      this.data.replaceChildren(...kinds.map((kind) => this.kinds.get(kind).item));
    }
    for (const entry of this.kinds.values()) setText(entry.countText, formatCount(entry.count));
  }

  /** Per-minute counts for the last hour, oldest first, per kind (heartbeats excluded). */
  setSeries(perKind) {
    this.series = perKind;
    for (const kind of new Set([...this.kinds.keys(), ...perKind.keys()])) {
      const values = perKind.get(kind) ?? new Array(SPARK_WIDTH).fill(0);
      this.kind(kind).spark.replaceChildren(sparkline(values, kind));
    }
    this.renderKinds();
  }

  /** The newest transition into a troubled state, kept in view after the service recovers. */
  setTrouble(event, live) {
    if (event.at < this.troubleAt) return;
    this.troubleAt = event.at;
    const why = event.reason ? `: ${event.reason}` : "";
    setText(this.trouble, `last trouble: ${event.state} at ${formatTime(event.at)}${why}`);
    this.trouble.hidden = false;
    if (live) {
      // A hung service may be unresponsive for a millisecond before its restart: flash the row
      // so that the eye catches it.
      this.element.classList.remove("flash");
      void this.element.offsetWidth; // restart the animation
      this.element.classList.add("flash");
    }
  }

  setSelected(selected) {
    this.element.classList.toggle("selected", selected);
    this.nameButton.setAttribute("aria-pressed", String(selected));
  }
}

function formatRate(perMinute) {
  return perMinute >= 10 ? formatCount(Math.round(perMinute)) : perMinute.toFixed(1);
}

function uptimeOf(status) {
  // `uptime` (seconds since the process started) when the daemon gives it; else the time in
  // `running`, which is the same for a process that has not been unresponsive meanwhile.
  if ("uptime" in status) return status.uptime;
  return status.pid != null && status.state === "running" ? status.since_age : null;
}

/** An inline SVG sparkline of counts per minute (built with DOM calls, styled by app.css). */
export function sparkline(values, label) {
  const max = Math.max(1, ...values);
  const step = SPARK_WIDTH / Math.max(1, values.length - 1);
  const points = values.map((v, i) => {
    const y = SPARK_HEIGHT - 1 - (v / max) * (SPARK_HEIGHT - 2);
    return `${(i * step).toFixed(1)},${y.toFixed(1)}`;
  });
  const total = values.reduce((a, b) => a + b, 0);
  return svg(
    "svg",
    {
      class: "sparkline",
      viewBox: `0 0 ${SPARK_WIDTH} ${SPARK_HEIGHT}`,
      preserveAspectRatio: "none",
      role: "img",
      "aria-label": `${label}: ${total} in the last hour, at most ${max} a minute`,
    },
    svg("title", {}, `${label}: ${total} in the last hour, at most ${max} a minute`),
    svg("polygon", {
      class: "area",
      points: `0,${SPARK_HEIGHT} ${points.join(" ")} ${SPARK_WIDTH},${SPARK_HEIGHT}`,
    }),
    svg("polyline", {
      class: "line",
      points: points.join(" "),
      "vector-effect": "non-scaling-stroke",
    }),
  );
}

export class ServiceTable {
  constructor(tbody, empty, handlers) {
    this.tbody = tbody;
    this.empty = empty;
    this.handlers = handlers;
    this.rows = new Map();
    this.selected = null;
  }

  names() {
    return [...this.rows.keys()];
  }

  get(name) {
    return this.rows.get(name)?.status ?? null;
  }

  /** Every service, in start order: rows are reused, added and removed to match. */
  snapshot(statuses, at) {
    const seen = new Set();
    const ordered = [];
    for (const status of statuses) {
      seen.add(status.name);
      const row = this.row(status.name);
      row.update(status, at);
      ordered.push(row.element);
    }
    for (const [name, row] of this.rows) {
      if (!seen.has(name)) {
        row.element.remove();
        this.rows.delete(name);
      }
    }
    const current = [...this.tbody.children];
    if (current.length !== ordered.length || current.some((el, i) => el !== ordered[i])) {
      this.tbody.replaceChildren(...ordered);
    }
    this.empty.hidden = this.rows.size > 0;
  }

  status(status, at) {
    const isNew = !this.rows.has(status.name);
    const row = this.row(status.name);
    row.update(status, at);
    if (isNew) this.tbody.append(row.element);
    this.empty.hidden = true;
  }

  pulse(entries, at) {
    for (const entry of entries) this.rows.get(entry.name)?.pulse(entry, at);
  }

  tick(now) {
    for (const row of this.rows.values()) row.tick(now);
  }

  /** `/api/v1/series` answers: per service, points per minute; `nowSeconds` is Unix time. */
  series(allSeries, nowSeconds) {
    for (const one of allSeries) {
      const row = this.rows.get(one.service);
      if (row) row.setSeries(perMinute(one, nowSeconds));
    }
  }

  /** Note a timeline event: transitions into trouble stay shown on their row. */
  event(event, live) {
    if (event.kind === "transition" && TROUBLE.has(event.state)) {
      this.rows.get(event.service)?.setTrouble(event, live);
    }
  }

  select(name) {
    this.selected = name;
    for (const row of this.rows.values()) row.setSelected(row.name === name);
  }

  row(name) {
    let row = this.rows.get(name);
    if (!row) {
      row = new Row(name, this.handlers);
      row.setSelected(name === this.selected);
      this.rows.set(name, row);
    }
    return row;
  }
}

/** The last 60 minutes of a series as one array per data kind (the current minute last). */
function perMinute(series, nowSeconds) {
  const step = series.step || 60;
  const newest = Math.max(
    Math.floor(nowSeconds / step) * step,
    ...(series.points || []).map((p) => p.at),
  );
  const first = newest - (SPARK_WIDTH - 1) * step;
  const perKind = new Map();
  for (const point of series.points || []) {
    const index = Math.round((point.at - first) / step);
    if (index < 0 || index >= SPARK_WIDTH) continue;
    for (const [kind, count] of Object.entries(point.counts || {})) {
      if (kind === "heartbeat") continue;
      if (!perKind.has(kind)) perKind.set(kind, new Array(SPARK_WIDTH).fill(0));
      perKind.get(kind)[index] += count;
    }
  }
  return perKind;
}

/** "3 running · 1 unresponsive": the header line and the tab's title. */
export function summarize(table) {
  const counts = new Map();
  for (const row of table.rows.values()) {
    const state = row.status?.state ?? "unknown";
    counts.set(state, (counts.get(state) || 0) + 1);
  }
  const order = ["running", "starting", "restarting", "unresponsive", "backoff", "stopping"];
  const states = [...counts.keys()].sort((a, b) => {
    const ia = order.indexOf(a) === -1 ? 99 : order.indexOf(a);
    const ib = order.indexOf(b) === -1 ? 99 : order.indexOf(b);
    return ia - ib || a.localeCompare(b);
  });
  const trouble = [...counts]
    .filter(([state]) => !["running", "stopped"].includes(state))
    .reduce((n, [, c]) => n + c, 0);
  return {
    text: states.map((state) => `${counts.get(state)} ${state}`).join(" · "),
    trouble,
  };
}
