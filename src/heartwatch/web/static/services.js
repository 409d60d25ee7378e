// The services table: one row per service, updated in place from the event stream; the
// instances of one [[service]] (`collector@0`, `collector@1`, ...) under a row of their own.
//
// Ages tick locally: a status carries ages measured when the daemon sent it; the row remembers
// when that arrived (the browser's monotonic clock) and adds the time since. `pulse` messages
// reset the heartbeat age; nothing is fetched to keep them right.
//
// What a row says must be true: no heartbeat age while the service has no run (a stopped
// service's silence is no news), "not expected" for one that by design sends nothing, restarts
// that are recoveries apart from those people asked for, and its last trouble of this daemon
// run: the newest transition by which it failed itself (a crash, a hang, a limit, giving up).
// Fields a daemon may not send yet (probes, ready, cpu_percent, rss_bytes, autostart,
// instance_of) are shown when present and left out when absent.

import {
  formatAge,
  formatCount,
  formatDuration,
  formatPercent,
  formatSize,
  formatTime,
  h,
  setText,
  svg,
} from "./dom.js";

// States in which a service needs someone's eyes (the log panel opens on the first of them).
const IN_TROUBLE = new Set(["unresponsive", "backoff", "failed", "exited"]);
const INACTIVE = new Set(["stopped", "exited", "failed", "stopping"]);
const PROBE_ROLES = ["startup", "readiness", "liveness"];
const PROBE_REASON_CHARS = 160; // of a failing probe's reason, on the row (all of it in the title)
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
    this.manualTag = h(
      "span",
      { class: "tag", hidden: true, title: "autostart = false: started only when asked" },
      "manual start",
    );
    this.words = h("div", { class: "svc-words" });
    this.historyLink = h(
      "a",
      {
        class: "history-link",
        href: `/history?service=${encodeURIComponent(name)}`,
        title: `${name}'s states, data rates and recoveries over time`,
      },
      "history",
    );
    this.pill = h("span", { class: "pill" });
    this.notReady = h(
      "span",
      { class: "tag not-ready", hidden: true, title: "dependents do not rely on it now" },
      "not ready",
    );
    this.since = h("div", { class: "sub" });
    this.probes = h("ul", { class: "probes", hidden: true });
    this.pidText = h("span", {});
    this.resources = h("div", { class: "sub resources", hidden: true });
    this.pid = h("td", { class: "num", "data-label": "PID" }, this.pidText, this.resources);
    this.uptime = h("td", { class: "num", "data-label": "Uptime" });
    this.beat = h("span", { class: "age" });
    this.beatTimeout = h("div", { class: "sub" });
    this.data = h("ul", { class: "kinds" });
    this.queue = h("div", { class: "sub", hidden: true });
    this.dropped = h("div", { class: "trouble", hidden: true });
    this.restartCount = h("span", {
      title: "recoveries: runs the daemon began because it (or one it goes with) failed",
    });
    this.restartsAsked = h("div", {
      class: "sub",
      hidden: true,
      title: "restarts and starts people asked for: not counted as restarts",
    });
    this.restarts = h(
      "td",
      { class: "num", "data-label": "Restarts" },
      this.restartCount,
      this.restartsAsked,
    );
    this.reason = h("div", { class: "reason" });
    this.exit = h("div", { class: "sub" });
    this.trouble = h("div", { class: "trouble last-trouble", hidden: true });
    this.troubleAt = 0;
    this.buttons = {};
    for (const verb of VERBS) {
      const button = h("button", { type: "button", class: `act act-${verb}`, "data-verb": verb });
      button.textContent = verb[0].toUpperCase() + verb.slice(1);
      button.addEventListener("click", () => handlers.onControl(name, verb, button));
      this.buttons[verb] = button;
    }
    this.dataCell = h(
      "td",
      { class: "data-cell", "data-label": "Data" },
      this.data,
      this.queue,
      this.dropped,
    );
    this.element = h(
      "tr",
      { class: "svc", "data-service": name },
      h(
        "th",
        { scope: "row", class: "name-cell" },
        this.nameButton,
        this.tag,
        this.manualTag,
        this.words,
        this.historyLink,
      ),
      h(
        "td",
        { class: "state-cell", "data-label": "State" },
        this.pill,
        this.notReady,
        this.since,
        this.probes,
      ),
      this.pid,
      this.uptime,
      h("td", { class: "num", "data-label": "Heartbeat" }, this.beat, this.beatTimeout),
      this.dataCell,
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
    row.classList.toggle("instance", status.instance_of != null);
    setText(this.pill, status.state);
    this.tag.hidden = !status.watch_only;
    this.manualTag.hidden = !(status.autostart === false && status.state === "stopped");
    this.notReady.hidden = !(
      status.ready === false && ["running", "unresponsive"].includes(status.state)
    );
    setText(this.words, status.status || "");
    setText(this.pidText, status.pid == null ? "–" : String(status.pid));
    const resources = resourcesText(status);
    this.resources.hidden = !resources;
    setText(this.resources, resources);
    setText(this.restartCount, formatCount(status.restarts));
    const asked = status.restarts_requested;
    this.restartsAsked.hidden = !asked;
    setText(this.restartsAsked, asked ? `+${formatCount(asked)} asked` : "");
    this.renderProbes(status.probes);
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
    const running = hasRun(status);
    const beat = heartbeatText(status, age, running);
    setText(this.beat, beat.text);
    if (this.beat.title !== beat.title) this.beat.title = beat.title;
    this.beat.classList.toggle("quiet", beat.quiet);
    const timeout = status.heartbeat_timeout;
    const late = running && age != null && timeout && age > timeout;
    this.beat.classList.toggle("late", Boolean(late));
    const elapsed = now - this.receivedAt;
    setText(this.since, `for ${formatDuration(status.since_age + elapsed)}`);
    const uptime = uptimeOf(status);
    setText(this.uptime, uptime == null ? "–" : formatDuration(uptime + elapsed));
    for (const entry of this.kinds.values()) {
      const rate = this.rate(entry, now);
      setText(entry.rateText, rate == null ? "" : `${formatRate(rate)}/min`);
      const age = entry.lastAge == null ? null : entry.lastAge + (now - entry.lastAt);
      const late = running && age != null && entry.timeout != null && age > entry.timeout;
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
    // Nothing to show: a phone's card leaves the cell out rather than a bare label.
    const none = this.kinds.size === 0 && this.queue.hidden && this.dropped.hidden;
    this.dataCell.classList.toggle("none", none);
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

  /** Probe verdicts, in their order of use; the row's own for a failing one's reason. */
  renderProbes(probes) {
    const roles = PROBE_ROLES.filter((role) => probes?.[role]);
    this.probes.hidden = roles.length === 0;
    const key = JSON.stringify(roles.map((role) => [role, probes[role]]));
    if (key === this.probesKey) return; // statuses come with events: rebuilt only on news
    this.probesKey = key;
    this.probes.replaceChildren(...roles.map((role) => probeItem(role, probes[role])));
  }

  /** The newest failure of this daemon run, kept in view after the service recovers. */
  setTrouble(event, live) {
    if (event.at < this.troubleAt) return;
    this.troubleAt = event.at;
    const why = event.reason || event.state || event.kind;
    setText(this.trouble, `last trouble ${formatTime(event.at)}: ${why}`);
    this.trouble.title = event.state ? `${event.previous ?? "?"} → ${event.state}` : event.kind;
    this.trouble.hidden = false;
    if (live) {
      // A hung service may be unresponsive for a millisecond before its restart: flash the row
      // so that the eye catches it.
      this.element.classList.remove("flash");
      void this.element.offsetWidth; // restart the animation
      this.element.classList.add("flash");
    }
  }

  clearTrouble() {
    this.troubleAt = 0;
    this.trouble.hidden = true;
    setText(this.trouble, "");
  }

  setSelected(selected) {
    this.element.classList.toggle("selected", selected);
    this.nameButton.setAttribute("aria-pressed", String(selected));
  }
}

/** In a troubled state now, running without being ready, or with a probe failing. */
function inTrouble(status) {
  if (!status) return false;
  if (IN_TROUBLE.has(status.state)) return true;
  if (status.ready === false && status.state === "running") return true;
  return Object.values(status.probes || {}).some((probe) => probe?.passing === false);
}

/** Whether the service has a run being watched now (a process, or a watch-only service watched):
 * `uptime` is null without one. */
function hasRun(status) {
  if ("uptime" in status) return status.uptime != null;
  return !INACTIVE.has(status.state);
}

/** What the heartbeat cell says: nothing while there is no run, "not expected" for a service
 * that by design sends nothing, else the age of its last message. */
export function heartbeatText(status, age, running = hasRun(status)) {
  if (!running) {
    return { text: "–", title: "no run: nothing is expected while it is not running", quiet: true };
  }
  // A daemon without `heartbeat_expected`: no deadline and nothing ever heard says the same.
  const expected =
    status.heartbeat_expected ??
    (status.heartbeat_timeout != null || status.last_heartbeat_age != null);
  if (age == null && expected) {
    return { text: "none yet", title: "no message since the daemon started", quiet: false };
  }
  if (age == null) {
    const title = "it sends no heartbeats by design (no heartbeat_timeout)";
    return { text: "not expected", title, quiet: true };
  }
  return { text: formatAge(age), title: "since its last message", quiet: false };
}

/** "CPU 3.2 % · 45.1 MB" (the whole process tree), or "" when the daemon says neither. */
export function resourcesText(status) {
  const parts = [];
  if (status.cpu_percent != null) parts.push(`CPU ${formatPercent(status.cpu_percent)}`);
  if (status.rss_bytes != null) parts.push(formatSize(status.rss_bytes));
  return parts.join(" · ");
}

function probeItem(role, probe) {
  const verdict = probe.passing == null ? "pending" : probe.passing ? "passing" : "failing";
  const failures = probe.consecutive_failures;
  const count = !probe.passing && failures ? ` (${formatCount(failures)}×)` : "";
  const reason = probe.reason || "";
  const short =
    reason.length > PROBE_REASON_CHARS ? `${reason.slice(0, PROBE_REASON_CHARS)}…` : reason;
  const shown = probe.passing === false && reason ? `: ${short}` : "";
  const age = probe.last_run_age;
  const ran = age == null ? "not run yet" : `last run ${formatAge(age)} ago`;
  return h(
    "li",
    {
      "data-passing": String(probe.passing ?? "pending"),
      title: reason ? `${ran}: ${reason}` : ran,
    },
    h("span", { class: "probe-role" }, role),
    ` ${verdict}${count}${shown}`,
  );
}

/** A journal entry by which the service itself failed (a crash, a hang, a limit, a failing
 * liveness probe, giving up), or a probe turning to failing: what "last trouble" shows. */
export function isTrouble(event) {
  if (event.kind === "transition") return event.detail?.failure === true;
  if (event.kind === "probe") return event.detail?.passing === false;
  return false;
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

/** The row above a [[service]]'s instances: its name, how its instances are doing, and
 * buttons for all of them at once. */
class GroupRow {
  constructor(name, handlers) {
    this.name = name;
    this.summary = h("span", { class: "sub group-summary" });
    this.buttons = {};
    for (const verb of VERBS) {
      const button = h("button", {
        type: "button",
        class: `act act-${verb}`,
        "data-verb": verb,
        title: `${verb} every instance of ${name}`,
      });
      button.textContent = `${verb[0].toUpperCase()}${verb.slice(1)} all`;
      button.addEventListener("click", () => handlers.onControl(name, verb, button, true));
      this.buttons[verb] = button;
    }
    // One cell across the table: the buttons of a group must not widen the column of the
    // services' own buttons.
    this.element = h(
      "tr",
      { class: "group", "data-group": name },
      h(
        "th",
        { scope: "rowgroup", colspan: "9" },
        h("span", { class: "group-name" }, name),
        this.summary,
        h("span", { class: "controls group-controls" }, Object.values(this.buttons)),
      ),
    );
  }

  update(rows) {
    const counts = new Map();
    for (const row of rows) {
      const state = row.status?.state ?? "unknown";
      counts.set(state, (counts.get(state) || 0) + 1);
    }
    const states = [...counts].map(([state, n]) => `${n} ${state}`).join(" · ");
    const noun = rows.length === 1 ? "instance" : "instances";
    setText(this.summary, `${rows.length} ${noun}: ${states}`);
    const worst = rows.some((row) => inTrouble(row.status));
    this.element.classList.toggle("troubled", worst);
    const active = rows.some((row) => !INACTIVE.has(row.status?.state));
    const inactive = rows.some((row) => INACTIVE.has(row.status?.state));
    this.buttons.restart.hidden = !active;
    this.buttons.stop.hidden = !active;
    this.buttons.start.hidden = !inactive;
  }
}

export class ServiceTable {
  constructor(tbody, empty, handlers) {
    this.tbody = tbody;
    this.empty = empty;
    this.handlers = handlers;
    this.rows = new Map(); // name -> Row, in the daemon's start order
    this.groups = new Map(); // [[service]] name -> GroupRow, for services with instances
    this.selected = null;
  }

  names() {
    return [...this.rows.keys()];
  }

  get(name) {
    return this.rows.get(name)?.status ?? null;
  }

  /** The [[service]] names whose instances are shown, in start order. */
  groupNames() {
    return [...this.groups.keys()];
  }

  /** Every service, in start order: rows are reused, added and removed to match. */
  snapshot(statuses, at) {
    const seen = new Set(statuses.map((status) => status.name));
    for (const [name, row] of this.rows) {
      if (!seen.has(name)) {
        row.element.remove();
        this.rows.delete(name);
      }
    }
    const previous = this.rows;
    this.rows = new Map(); // in the snapshot's order, which is the start order
    for (const status of statuses) {
      const row = previous.get(status.name) ?? this.row(status.name);
      this.rows.set(status.name, row);
      row.update(status, at);
    }
    this.layout();
  }

  status(status, at) {
    const row = this.rows.get(status.name);
    const regroup = !row || (row.status?.instance_of ?? null) !== (status.instance_of ?? null);
    this.row(status.name).update(status, at);
    if (regroup) this.layout();
    else this.updateGroups();
  }

  /** The rows in start order, each [[service]]'s instances together under their group row
   * (where its first instance comes). */
  layout() {
    const members = new Map(); // group name -> rows
    for (const row of this.rows.values()) {
      const group = row.status?.instance_of;
      if (group == null) continue;
      if (!members.has(group)) members.set(group, []);
      members.get(group).push(row);
    }
    for (const name of this.groups.keys()) if (!members.has(name)) this.groups.delete(name);
    const ordered = [];
    for (const row of this.rows.values()) {
      const group = row.status?.instance_of;
      if (group == null) {
        ordered.push(row.element);
      } else if (members.get(group)[0] === row) {
        if (!this.groups.has(group)) this.groups.set(group, new GroupRow(group, this.handlers));
        ordered.push(this.groups.get(group).element, ...members.get(group).map((r) => r.element));
      }
    }
    const current = [...this.tbody.children];
    if (current.length !== ordered.length || current.some((el, i) => el !== ordered[i])) {
      this.tbody.replaceChildren(...ordered);
    }
    this.updateGroups(members);
    this.empty.hidden = this.rows.size > 0;
  }

  updateGroups(members = null) {
    if (!this.groups.size) return;
    for (const [name, group] of this.groups) {
      const rows =
        members?.get(name) ??
        [...this.rows.values()].filter((row) => row.status?.instance_of === name);
      group.update(rows);
    }
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

  /** A snapshot's events (newest first): each row's last trouble found again, of this daemon
   * run only. */
  replay(events) {
    for (const row of this.rows.values()) row.clearTrouble();
    for (const event of [...events].reverse()) this.event(event, false);
  }

  /** Note a timeline event (in the order they happened): a failure stays shown on its row
   * until a newer one; the daemon's own start or stop begins another run, whose rows start
   * without trouble. */
  event(event, live) {
    if (event.kind === "daemon") {
      for (const row of this.rows.values()) row.clearTrouble();
    } else if (isTrouble(event)) {
      this.rows.get(event.service)?.setTrouble(event, live);
    }
  }

  /** The service that needs eyes first: the first in trouble now, else the one whose trouble
   * (this daemon run) is the newest; null when all is well. */
  troubled() {
    for (const row of this.rows.values()) if (inTrouble(row.status)) return row.name;
    let newest = null;
    for (const row of this.rows.values()) {
      if (row.troubleAt && (!newest || row.troubleAt > newest.troubleAt)) newest = row;
    }
    return newest?.name ?? null;
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
