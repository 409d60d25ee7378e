// The incident timeline: events from the snapshot, live `event` messages, and older ones from
// /api/v1/events, newest first, filterable by service. Daemon events (service null) are kept
// under every filter: a daemon restart explains what follows it. A transition always changes
// the state; a new reason in the same state is a `note` ("still stopped: waiting for
// emulator"), shown quieter. Probe verdicts and reloads have lines of their own.

import { formatTime, h } from "./dom.js";

const MAX_KEPT = 2000; // events held in memory; the oldest go first
const TRIM_SLACK = 200; // trimmed in batches, not at every event
const PAGE = 100; // how many more "older events" asks for

export class Timeline {
  constructor({ list, empty, filter, older, history = null }, fetchEvents) {
    this.list = list;
    this.history = history; // a link to the history page of the service filtered on
    this.empty = empty;
    this.filter = filter;
    this.older = older;
    this.fetchEvents = fetchEvents; // (service, limit) => Promise<HistoryEntry[]|null>; null: no history
    this.events = new Map(); // id -> event
    this.nodes = new Map(); // id -> <li>
    this.shown = PAGE; // how many of the filtered events are rendered
    this.exhausted = new Set(); // filters ("" for all) with nothing older to fetch
    this.historyMissing = false;
    this.historyComplete = false;
    this.renderPending = false;
    filter.addEventListener("change", () => this.filterChanged());
    older.addEventListener("click", () => this.loadOlder());
  }

  get service() {
    return this.filter.value;
  }

  /** Events from a snapshot or a history answer: merged by id. `complete`: there are no
   * older ones (a snapshot holding fewer than it could). */
  receive(events, { complete = false } = {}) {
    if (complete) this.historyComplete = true;
    for (const event of events) this.events.set(event.id, event);
    this.trim();
    this.scheduleRender();
  }

  /** One render per frame however many events come (a restart storm sends hundreds). */
  scheduleRender() {
    if (this.renderPending) return;
    this.renderPending = true;
    requestAnimationFrame(() => {
      this.renderPending = false;
      this.render();
    });
  }

  /** One live event. */
  live(event) {
    this.receive([event]);
  }

  /** Keep the filter's choices in step with the services; `groups`: the [[service]] names
   * with instances, each offered as `name@*` (all its instances) before its instances. */
  setServices(names, groups = []) {
    const current = this.service;
    const choices = [];
    const offered = new Set();
    for (const name of names) {
      const group = groups.find((g) => name.startsWith(`${g}@`));
      if (group && !offered.has(group)) {
        offered.add(group);
        choices.push([`${group}@*`, `${group} (all instances)`]);
      }
      choices.push([name, name]);
    }
    const wanted = ["", ...choices.map(([value]) => value)];
    const have = [...this.filter.options].map((o) => o.value);
    if (wanted.length === have.length && wanted.every((name, i) => name === have[i])) return;
    this.filter.replaceChildren(
      h("option", { value: "" }, "all services"),
      ...choices.map(([value, text]) => h("option", { value }, text)),
    );
    this.filter.value = wanted.includes(current) ? current : "";
  }

  sorted() {
    const service = this.service;
    const prefix = groupPrefix(service);
    const matches = prefix
      ? (e) => e.service?.startsWith(prefix) || e.service === service.slice(0, -2)
      : (e) => e.service === service;
    return [...this.events.values()]
      .filter((e) => !service || matches(e) || e.service == null)
      .sort((a, b) => b.at - a.at || compareIds(b.id, a.id));
  }

  render() {
    const events = this.sorted();
    const shown = events.slice(0, this.shown);
    const nodes = shown.map((event) => this.node(event));
    const current = [...this.list.children];
    if (current.length !== nodes.length || current.some((el, i) => el !== nodes[i])) {
      this.list.replaceChildren(...nodes);
    }
    this.empty.hidden = nodes.length > 0;
    if (this.history) {
      // A [[service]]'s instances together have no one history: the page's overview then.
      const one = this.service && groupPrefix(this.service) == null;
      const href = one ? `/history?service=${encodeURIComponent(this.service)}` : "/history";
      if (this.history.getAttribute("href") !== href) this.history.setAttribute("href", href);
    }
    this.older.hidden =
      this.historyMissing || this.historyComplete || this.exhausted.has(this.service);
  }

  node(event) {
    let node = this.nodes.get(event.id);
    if (!node) {
      node = eventItem(event);
      this.nodes.set(event.id, node);
    }
    return node;
  }

  trim() {
    if (this.events.size <= MAX_KEPT + TRIM_SLACK) return;
    const sorted = [...this.events.values()].sort((a, b) => b.at - a.at || compareIds(b.id, a.id));
    for (const event of sorted.slice(MAX_KEPT)) {
      this.events.delete(event.id);
      this.nodes.delete(event.id);
    }
  }

  async filterChanged() {
    this.shown = PAGE;
    this.render();
    // A service with few events in the live window may have more in the history.
    if (this.service && this.sorted().length < PAGE) await this.loadOlder();
  }

  async loadOlder() {
    const service = this.service;
    // The history has no filter for a group: its older events come with everyone's.
    const group = groupPrefix(service) != null;
    const counted = group ? [...this.events.values()] : this.sorted();
    const have = counted.filter((e) => e.service != null).length;
    const limit = Math.min(1000, have + PAGE);
    this.older.disabled = true;
    try {
      const events = await this.fetchEvents(group ? "" : service, limit);
      if (events == null) {
        this.historyMissing = true;
      } else {
        const before = this.events.size;
        this.receive(events);
        if (events.length < limit || this.events.size === before || limit >= 1000) {
          this.exhausted.add(service);
        }
        this.shown = Math.max(this.shown, limit);
      }
    } finally {
      this.older.disabled = false;
      this.render();
    }
  }
}

/** "collector@" for the filter "collector@*" (all of a [[service]]'s instances), else null. */
function groupPrefix(filter) {
  return filter?.endsWith("@*") ? filter.slice(0, -1) : null;
}

function compareIds(a, b) {
  return typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b));
}

/** One event as a list item (the dashboard's timeline and the history page's event list). A
 * recovery links to its picture on the history page. */
export function eventItem(event, nowSeconds = Date.now() / 1000) {
  const iso = new Date(event.at * 1000).toISOString();
  return h(
    "li",
    {
      class: `ev kind-${event.kind}`,
      "data-state": event.state || "",
      "data-id": event.id,
      "data-passing": event.kind === "probe" ? String(event.detail?.passing ?? "") : null,
      // An exit at the end of a stop it was sent is no failure: not marked as one.
      "data-stopped": event.kind === "exit" && event.detail?.stopped ? "true" : null,
    },
    h("time", { datetime: iso, title: iso }, formatTime(event.at)),
    h("span", { class: "ev-service" }, event.service ?? "heartwatch"),
    h("span", { class: "ev-what" }, describe(event)),
    event.reason && event.kind !== "daemon" ? h("span", { class: "ev-why" }, event.reason) : null,
    event.kind === "recovery" ? recoveryLink(event, nowSeconds) : null,
  );
}

// The history page's windows, and how old a recovery may be for each to still hold it while
// the page stays open a while (a link is made once, with its item).
const LINK_WINDOWS = [
  ["1h", 1800],
  ["24h", 12 * 3600],
  ["7d", 3.5 * 86_400],
];

/** A link to a recovery's picture: its service's history over a window that holds it. */
function recoveryLink(event, nowSeconds) {
  const service = event.service ?? event.detail?.members?.[0];
  const age = nowSeconds - event.at;
  const window = LINK_WINDOWS.find(([, within]) => age < within)?.[0] ?? "30d";
  const query = new URLSearchParams({ window, recovery: String(event.id) });
  if (service) query.set("service", service);
  return h(
    "a",
    { class: "ev-link", href: `/history?${query}#recovery-${event.id}` },
    "picture of this recovery",
  );
}

/** One line saying what happened. */
export function describe(event) {
  const detail = event.detail || {};
  switch (event.kind) {
    case "transition":
      // A history written before notes existed holds same-state "transitions": notes too.
      if (event.previous === event.state) return `still ${event.state}`;
      return `${event.previous ?? "?"} → ${event.state}`;
    case "note":
      return event.state ? `still ${event.state}` : "note";
    case "probe": {
      const role = detail.probe ?? detail.role;
      const verdict =
        detail.passing === true ? "passing" : detail.passing === false ? "failing" : detail.verdict;
      return [role ? `${role} probe` : "probe", verdict].filter(Boolean).join(" ");
    }
    case "reload":
      return describeReload(detail);
    case "recovery":
      return `recovering ${(detail.members || []).join(", ") || "the group"}`;
    case "exit": {
      const code = detail.returncode;
      const how =
        event.reason || code == null
          ? "exited"
          : code < 0
            ? `killed by signal ${-code}`
            : `exited with code ${code}`;
      return detail.pid ? `pid ${detail.pid} ${how}` : how;
    }
    case "restart": {
      const how = detail.pid ? `restarted as pid ${detail.pid}` : "restarted";
      const cause = { recovery: "recovery", requested: "asked for" }[detail.cause];
      return cause ? `${how} (${cause})` : how;
    }
    case "alert": {
      const outcome = detail.outcome ? ` (${detail.outcome})` : "";
      return `alert ${detail.alert ?? ""}${outcome}`;
    }
    case "daemon":
      return event.reason || "the daemon";
    default:
      return event.state ? `${event.kind}: ${event.state}` : String(event.kind);
  }
}

/** A reload's outcome; its reason line says what changed ("reload: added a; changed b"). */
function describeReload(detail) {
  const problems = detail.problems;
  if (Array.isArray(problems) && problems.length) {
    const n = problems.length;
    return `reload refused (${n} ${n === 1 ? "problem" : "problems"}): the old configuration stays`;
  }
  const restart = detail.needs_daemon_restart;
  if (Array.isArray(restart) && restart.length) {
    return `configuration reloaded; ${restart.join(", ")} need a daemon restart`;
  }
  return "configuration reloaded";
}
