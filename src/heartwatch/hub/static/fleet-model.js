// The fleet dashboard's model: what the hub says (GET /api/v1/fleet, then the /ws/events
// deltas) and what the page shows of it (groups, search, problems first, counts, the bulk
// selection). Pure: no DOM, no fetch, no clock, so tests/js/fleet-model.test.mjs checks it all
// under node. The shapes it reads are docs/api.md's hub answers (Host, FleetService, Command).
//
// Rules of the view.
// - A service's shown state is the hub's, except under an unreachable host, where it is
//   "unknown" whatever the hub last said (its last known state is kept apart): a host that went
//   silent says nothing about its services, which are neither down nor fine.
// - Problems first: unreachable hosts, then stale ones, then hosts with services in trouble
//   (any state but running, stopped and unknown; or running and not ready); within a host, its
//   services in trouble first, then those not ready. Otherwise the order is stable: hosts by
//   name, a host's services in the hub's order (the agent's start order), which a delta never
//   changes. The instances of one [[service]] stay together, ranked by their worst.
// - The bulk selection is exactly the services the filters let through, all of them, recomputed
//   with every view: nothing hidden by a filter is ever in it. With no filter at all it is the
//   whole fleet, which `needsCount` says must be confirmed by typing its size.

// A service in one of these is fine; unknown is neither fine nor a problem (nothing is known).
const CALM = new Set(["running", "stopped"]);
export const HOST_STATES = ["unreachable", "stale", "live"];
// The order in which the counts bar lists services' states (others after, by name).
export const STATE_ORDER = [
  "failed",
  "exited",
  "backoff",
  "unresponsive",
  "restarting",
  "starting",
  "stopping",
  "running",
  "stopped",
  "unknown",
];
// Names for sets of states that `state:` accepts beside the states themselves.
export const STATE_ALIASES = {
  // No process runs (unknown is not down: nothing is known).
  down: new Set(["stopped", "exited", "failed", "backoff"]),
  up: new Set(["running"]),
};
const PROBLEM_WORDS = new Set(["problem", "problems", "trouble"]);
const SEARCH_KEYS = ["host", "service", "state", "label"];
const KEY_SYNONYMS = { name: "service", svc: "service", is: "state", labels: "label" };
export const MAX_EVENTS = 200; // recent events kept from the stream
export const MAX_COMMANDS = 20000; // commands remembered (a bulk restart of the fleet is 5,000)

/** The key of a service: "host/name" (a host name holds no "/"; fleetwire refuses it). */
export const serviceKey = (host, name) => `${host}/${name}`;

const byName = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

// -- search -------------------------------------------------------------------------------

/** A search text as terms: `word`, `"two words"`, `key:value[,value…]` with key one of host,
 * service, state, label (`label:site=sz`, `label:site`), each negated by a leading `-`.
 * Values may hold `*` and `?`; without them they match whole (case-insensitive). A key it
 * does not know is searched as text, with a hint saying so. All terms must hold. */
export function parseSearch(text) {
  const terms = [];
  const hints = [];
  for (const match of String(text ?? "").matchAll(/(-?)(?:"([^"]*)"?|(\S+))/g)) {
    const negated = match[1] === "-";
    const quoted = match[2];
    const raw = quoted ?? match[3];
    if (quoted === undefined) {
      const colon = raw.indexOf(":");
      if (colon > 0) {
        const word = raw.slice(0, colon).toLowerCase();
        const key = KEY_SYNONYMS[word] ?? word;
        const values = raw
          .slice(colon + 1)
          .split(",")
          .filter(Boolean);
        if (SEARCH_KEYS.includes(key) && values.length) {
          terms.push(fieldTerm(key, values, negated, hints));
          continue;
        }
        if (!SEARCH_KEYS.includes(key)) {
          hints.push(`"${word}:" is not a filter (${SEARCH_KEYS.join(":, ")}:): searched as text`);
        }
      }
    }
    const needle = raw.toLowerCase();
    if (needle) terms.push({ key: "text", needle, negated });
  }
  return { terms, hints };
}

function fieldTerm(key, values, negated, hints) {
  if (key === "label") {
    const pairs = values.map((value) => {
      const eq = value.indexOf("=");
      return eq === -1
        ? { name: glob(value), value: null }
        : { name: glob(value.slice(0, eq)), value: glob(value.slice(eq + 1)) };
    });
    return { key, pairs, negated };
  }
  if (key === "state") {
    const words = values.map((value) => value.toLowerCase());
    for (const word of words) {
      const known =
        STATE_ORDER.includes(word) ||
        HOST_STATES.includes(word) ||
        word in STATE_ALIASES ||
        PROBLEM_WORDS.has(word) ||
        word === "notready";
      if (!known) hints.push(`state:${word} is no state this page knows: it matches nothing`);
    }
    return { key, words, negated };
  }
  return { key, patterns: values.map(glob), negated };
}

/** A glob (`*`, `?`) as an anchored, case-insensitive test. */
function glob(pattern) {
  const source = pattern
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
  const regex = new RegExp(`^${source}$`, "i");
  return (text) => text != null && regex.test(text);
}

// -- states -------------------------------------------------------------------------------

/** The state the page shows for a service of `host`: "unknown" under an unreachable host. */
export function shownState(service, host) {
  if (host?.state === "unreachable") return "unknown";
  return service.state || "unknown";
}

/** The state last known for a service: its own while known, else what the hub kept. */
export function lastKnownState(service) {
  return service.state === "unknown" || service.state == null
    ? (service.last_state ?? null)
    : service.state;
}

/** 0: in trouble, 1: running and not ready, 2: fine or unknown (problems first sort key). */
export function serviceRank(state, service) {
  if (state === "unknown" || state === "stopped") return 2;
  if (state !== "running") return 0;
  return service.ready === false ? 1 : 2;
}

export const isProblem = (state, service) => serviceRank(state, service) < 2;

/** 0: unreachable, 1: stale, 2: a service in trouble, 3: all well. */
function hostRank(host, problems) {
  if (host.state === "unreachable") return 0;
  if (host.state === "stale") return 1;
  return problems > 0 ? 2 : 3;
}

// -- the model ----------------------------------------------------------------------------

/** A service as the model keeps it: the hub's record, its place, and its search text. */
class Entry {
  constructor(service, order) {
    this.order = order; // first seen: the stable order within its host
    this.set(service);
  }

  set(service) {
    this.service = service;
    this.key = serviceKey(service.host, service.name);
    this.text = [service.host, service.name, service.instance_of ?? "", service.reason ?? ""]
      .join("\n")
      .toLowerCase();
  }
}

export class FleetModel {
  constructor() {
    this.hosts = new Map(); // host -> Host (as the hub sent it)
    this.entries = new Map(); // "host/name" -> Entry
    this.byHost = new Map(); // host -> Set of keys
    this.commands = new Map(); // id -> Command, oldest first
    this.lastCommand = new Map(); // "host/name" (or host) -> command id
    this.events = []; // newest first, at most MAX_EVENTS
    this.generatedAt = null;
    this.nextOrder = 0;
    this.versions = new Map(); // host -> a number bumped when it or one of its services changes
    this.parts = { filterKey: null, byHost: new Map() }; // view()'s per-host results
    this.changes = emptyChanges(true);
  }

  touch(host) {
    this.versions.set(host, (this.versions.get(host) ?? 0) + 1);
  }

  /** The hello (or GET /api/v1/fleet): everything replaced. */
  load(fleet) {
    this.hosts = new Map();
    this.entries = new Map();
    this.byHost = new Map();
    this.nextOrder = 0;
    this.parts = { filterKey: null, byHost: new Map() };
    this.generatedAt = fleet?.generated_at ?? null;
    for (const host of fleet?.hosts ?? []) this.hosts.set(host.host, host);
    for (const service of fleet?.services ?? []) this.putService(service);
    this.changes = emptyChanges(true);
  }

  /** One /ws/events message. Returns whether it was understood (an unknown type is ignored). */
  apply(message) {
    switch (message?.type) {
      case "hello":
        this.load(message.fleet);
        return true;
      case "host":
        return this.putHost(message.host);
      case "service":
        if (!message.service?.host || message.service.name == null) return false;
        this.putService(message.service);
        return true;
      case "removed":
        return this.remove(message.host, message.name);
      case "command":
        return this.putCommand(message.command);
      case "event":
        if (!message.event) return false;
        this.events.unshift(message.event);
        if (this.events.length > MAX_EVENTS) this.events.length = MAX_EVENTS;
        this.changes.events = true;
        return true;
      default:
        return false;
    }
  }

  putHost(host) {
    if (!host?.host) return false;
    const before = this.hosts.get(host.host);
    this.hosts.set(host.host, host);
    this.touch(host.host);
    this.changes.hosts.add(host.host);
    // Its state decides its services' shown state (unknown while unreachable): their rows
    // change only when that turns (a host's news comes with each of its messages).
    if ((before?.state === "unreachable") !== (host.state === "unreachable")) {
      for (const key of this.byHost.get(host.host) ?? []) this.changes.services.add(key);
    }
    return true;
  }

  putService(service) {
    const key = serviceKey(service.host, service.name);
    this.touch(service.host);
    const entry = this.entries.get(key);
    if (entry) entry.set(service);
    else {
      this.entries.set(key, new Entry(service, this.nextOrder++));
      if (!this.byHost.has(service.host)) this.byHost.set(service.host, new Set());
      this.byHost.get(service.host).add(key);
      this.changes.added = true;
    }
    if (!this.hosts.has(service.host)) {
      // A service before its host: shown under a host whose state nobody said yet.
      this.hosts.set(service.host, { host: service.host, state: "unknown", labels: {} });
      this.changes.hosts.add(service.host);
    }
    this.changes.services.add(key);
  }

  /** A service gone from its host's configuration, or (no name) the whole host. */
  remove(host, name) {
    if (!host) return false;
    this.touch(host);
    const keys = name == null ? [...(this.byHost.get(host) ?? [])] : [serviceKey(host, name)];
    for (const key of keys) {
      if (!this.entries.delete(key)) continue;
      this.byHost.get(host)?.delete(key);
      this.changes.removed.add(key);
    }
    if (name == null && this.hosts.delete(host)) {
      this.byHost.delete(host);
      this.changes.removedHosts.add(host);
    }
    return true;
  }

  putCommand(command) {
    if (!command?.id) return false;
    const known = this.commands.delete(command.id); // re-inserted: in order of last news
    this.commands.set(command.id, command);
    // The newest issued is the one a row shows; news of an older one does not displace it.
    const target =
      command.service == null ? command.host : serviceKey(command.host, command.service);
    const shown = this.commands.get(this.lastCommand.get(target));
    if (!known && !(shown && (shown.issued_at ?? 0) > (command.issued_at ?? 0))) {
      this.lastCommand.set(target, command.id);
    }
    while (this.commands.size > MAX_COMMANDS) {
      const oldest = this.commands.keys().next().value;
      this.commands.delete(oldest);
    }
    this.changes.commands.add(command.id);
    return true;
  }

  /** The newest command of a service ("host/name") or a host, or null. */
  commandFor(target) {
    const id = this.lastCommand.get(target);
    return id == null ? null : (this.commands.get(id) ?? null);
  }

  service(key) {
    return this.entries.get(key)?.service ?? null;
  }

  /** What changed since the last call: `{all, services, removed, hosts, removedHosts, added,
   * commands, events}` (sets of keys). The page redraws only those. */
  takeChanges() {
    const changes = this.changes;
    this.changes = emptyChanges(false);
    return changes;
  }

  /** Hosts and services as the page shows them for `{search, state, groupBy}`:
   * - `search`: a text for parseSearch;
   * - `state`: "" (all), "problems", "unknown", a host state (live, stale, unreachable), a
   *   service state, or an alias (down, up);
   * - `groupBy`: "host" or "label:<key>".
   * Returns `{groups, counts, shown, selection, filtered, needsCount, hints}`: groups of hosts
   * of services, problems first; `counts` over the whole fleet, `shown` over what passed;
   * `selection` the "host/name" of every service shown, in the order shown. */
  view({ search = "", state = "", groupBy = "host" } = {}) {
    const { terms, hints } = parseSearch(search);
    const filtered = terms.length > 0 || state !== "";
    const counts = newCounts();
    const shown = newCounts();
    const groups = new Map(); // group key -> {key, title, hosts: []}
    const labelKey = groupBy.startsWith("label:") ? groupBy.slice(6) : null;
    // A host's part is worked out again only when it or one of its services changed, or the
    // filters did: a frame with a few deltas recomputes a few hosts, not the fleet.
    const filterKey = `${state}\n${search}`;
    if (this.parts.filterKey !== filterKey) this.parts = { filterKey, byHost: new Map() };

    for (const host of [...this.hosts.values()].sort((a, b) => byName(a.host, b.host))) {
      const version = this.versions.get(host.host) ?? 0;
      let part = this.parts.byHost.get(host.host);
      if (!part || part.version !== version || part.host !== host) {
        part = this.hostPart(host, terms, state, filtered);
        part.version = version;
        this.parts.byHost.set(host.host, part);
      }
      addCounts(counts, part.all);
      if (!part.hostView) continue;
      const hostView = part.hostView;
      addCounts(shown, part.shown);
      const groupKey = labelKey == null ? host.host : (host.labels?.[labelKey] ?? null);
      const id = labelKey == null ? `host:${host.host}` : `label:${groupKey ?? ""}`;
      if (!groups.has(id)) {
        const title =
          labelKey == null
            ? host.host
            : groupKey == null
              ? `no ${labelKey}`
              : `${labelKey}=${groupKey}`;
        groups.set(id, { key: id, title, value: groupKey, hosts: [], counts: newCounts() });
      }
      const group = groups.get(id);
      group.hosts.push(hostView);
      addCounts(group.counts, part.shown);
    }

    for (const group of groups.values()) {
      group.hosts.sort((a, b) => a.rank - b.rank || byName(a.host.host, b.host.host));
      group.rank = Math.min(...group.hosts.map((hostView) => hostView.rank));
    }
    const ordered = [...groups.values()].sort(
      (a, b) =>
        a.rank - b.rank ||
        (a.value == null) - (b.value == null) || // "no <key>" after every value
        byName(a.title, b.title),
    );
    const selection = [];
    for (const group of ordered) {
      for (const hostView of group.hosts) {
        for (const item of hostView.items) {
          for (const one of item.services) selection.push(one.key);
        }
      }
    }
    return {
      groups: ordered,
      counts,
      shown,
      selection,
      filtered,
      needsCount: !filtered && selection.length > 0,
      hints,
    };
  }

  /** One host under the filters: its counts over all its services (`all`) and over those
   * that pass (`shown`), and its hostView, or null when nothing of it is shown. */
  hostPart(host, terms, state, filtered) {
    const all = newCounts();
    const shown = newCounts();
    countHost(all, host);
    const keys = [...(this.byHost.get(host.host) ?? [])];
    const entries = keys.map((key) => this.entries.get(key)).sort((a, b) => a.order - b.order);
    const passed = [];
    for (const entry of entries) {
      const service = entry.service;
      const shownAs = shownState(service, host);
      countService(all, shownAs, service);
      if (state && !stateMatches(state, shownAs, service, host)) continue;
      if (!terms.every((term) => termHolds(term, entry, host, shownAs))) continue;
      passed.push({ entry, state: shownAs });
      countService(shown, shownAs, service);
    }
    // A host without any service is shown when the filters, asked of the host alone, let it
    // through (a new host, or one whose configuration is empty, is still a host).
    const bare = entries.length === 0 && (!filtered || hostAloneMatches(terms, state, host));
    if (!passed.length && !bare && (filtered || entries.length)) {
      return { host, all, shown, hostView: null };
    }
    countHost(shown, host);
    return { host, all, shown, hostView: this.hostView(host, passed, entries.length) };
  }

  /** A host's shown services as items: lone services, and each [[service]]'s instances
   * together (where its first instance comes), problems first, stable otherwise. */
  hostView(host, passed, total) {
    const items = [];
    const groups = new Map();
    for (const { entry, state } of passed) {
      const one = { key: entry.key, service: entry.service, state, order: entry.order };
      one.rank = serviceRank(state, entry.service);
      const group = entry.service.instance_of;
      if (group == null) {
        items.push({
          kind: "service",
          key: entry.key,
          rank: one.rank,
          order: one.order,
          services: [one],
        });
      } else if (groups.has(group)) {
        const item = groups.get(group);
        item.services.push(one);
        item.rank = Math.min(item.rank, one.rank);
      } else {
        const item = {
          kind: "instances",
          key: `${host.host}/${group}@`,
          name: group,
          rank: one.rank,
          order: one.order,
          services: [one],
        };
        groups.set(group, item);
        items.push(item);
      }
    }
    const inOrder = (a, b) => a.rank - b.rank || a.order - b.order;
    for (const item of items) item.services.sort(inOrder);
    items.sort(inOrder);
    const problems = passed.filter(({ entry, state }) => isProblem(state, entry.service)).length;
    const unknown = passed.filter(({ state }) => state === "unknown").length;
    return {
      key: host.host,
      host,
      items,
      shown: passed.length,
      total,
      problems,
      unknown,
      rank: hostRank(host, problems),
    };
  }
}

function emptyChanges(all) {
  return {
    all,
    services: new Set(),
    removed: new Set(),
    hosts: new Set(),
    removedHosts: new Set(),
    added: false,
    commands: new Set(),
    events: false,
  };
}

function newCounts() {
  return { hosts: {}, services: {}, problems: 0, unknown: 0, total: 0, hostCount: 0 };
}

function addCounts(into, from) {
  for (const [state, n] of Object.entries(from.hosts))
    into.hosts[state] = (into.hosts[state] || 0) + n;
  for (const [state, n] of Object.entries(from.services)) {
    into.services[state] = (into.services[state] || 0) + n;
  }
  into.problems += from.problems;
  into.unknown += from.unknown;
  into.total += from.total;
  into.hostCount += from.hostCount;
}

function countHost(counts, host) {
  counts.hosts[host.state] = (counts.hosts[host.state] || 0) + 1;
  counts.hostCount += 1;
}

function countService(counts, state, service) {
  counts.services[state] = (counts.services[state] || 0) + 1;
  counts.total += 1;
  if (isProblem(state, service)) counts.problems += 1;
  if (state === "unknown") counts.unknown += 1;
}

/** Whether the state filter lets a service through. */
export function stateMatches(word, state, service, host) {
  if (PROBLEM_WORDS.has(word)) return isProblem(state, service) || host.state !== "live";
  if (word === "notready") return state === "running" && service.ready === false;
  if (word in STATE_ALIASES) return STATE_ALIASES[word].has(state);
  if (HOST_STATES.includes(word)) return host.state === word;
  return state === word;
}

function termHolds(term, entry, host, state) {
  return term.negated !== positive(term, entry, host, state);
}

function positive(term, entry, host, state) {
  const service = entry?.service ?? null;
  switch (term.key) {
    case "text":
      return (
        (entry?.text ?? host.host.toLowerCase()).includes(term.needle) ||
        labelText(host).includes(term.needle)
      );
    case "host":
      return term.patterns.some((test) => test(host.host));
    case "service":
      return (
        service != null &&
        term.patterns.some((test) => test(service.name) || test(service.instance_of))
      );
    case "state":
      if (service == null)
        return term.words.some((word) => HOST_STATES.includes(word) && host.state === word);
      return term.words.some((word) => stateMatches(word, state, service, host));
    case "label":
      return term.pairs.some(({ name, value }) =>
        Object.entries(host.labels ?? {}).some(
          ([k, v]) => name(k) && (value == null || value(String(v))),
        ),
      );
    default:
      return false;
  }
}

function hostAloneMatches(terms, state, host) {
  if (state && !(HOST_STATES.includes(state) && host.state === state)) return false;
  return terms.every((term) => termHolds(term, null, host, null));
}

const labelTexts = new WeakMap(); // Host -> "k=v k=v", lower case: asked per service
function labelText(host) {
  let text = labelTexts.get(host);
  if (text === undefined) {
    text = Object.entries(host.labels ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join(" ")
      .toLowerCase();
    labelTexts.set(host, text);
  }
  return text;
}

/** The label keys of the fleet's hosts, sorted: what the group-by chooser offers. */
export function labelKeys(model) {
  const keys = new Set();
  for (const host of model.hosts.values())
    for (const key of Object.keys(host.labels ?? {})) keys.add(key);
  return [...keys].sort(byName);
}

// One formatter: toLocaleString makes one per call, which a busy page pays for per row.
const NUMBER = new Intl.NumberFormat("en");
export const formatNumber = (n) => NUMBER.format(n);

/** "12 failed · 3 unknown · 4,980 running" for a counts' services, in STATE_ORDER. */
export function statesText(services) {
  return orderedStates(services)
    .map((state) => `${formatNumber(services[state])} ${state}`)
    .join(" · ");
}

export function orderedStates(services) {
  const rank = (state) => {
    const i = STATE_ORDER.indexOf(state);
    return i === -1 ? STATE_ORDER.length : i;
  };
  return Object.keys(services).sort((a, b) => rank(a) - rank(b) || byName(a, b));
}

// -- commands -----------------------------------------------------------------------------

// "unanswered" (no answer by its expiry: unknown whether it ran) ends the wait, though a late
// reply may still move it (the stream then brings that news).
export const FINAL_STATUSES = new Set(["done", "failed", "refused", "expired", "unanswered"]);

/** Whether a command is still waiting for news (sent or accepted, not past its expiry by much:
 * the hub marks an expired one itself, `slack` seconds is how long the page waits for that). */
export function isPending(command, nowSeconds, slack = 30) {
  if (FINAL_STATUSES.has(command.status)) return false;
  return !(command.expires_at != null && nowSeconds > command.expires_at + slack);
}

/** A set of commands (a bulk action's) as counts by status: "30 done · 5 accepted · 2 expired". */
export function commandsText(commands) {
  const counts = {};
  for (const command of commands) counts[command.status] = (counts[command.status] || 0) + 1;
  const order = ["failed", "refused", "expired", "unanswered", "sent", "accepted", "done"];
  return order
    .filter((status) => counts[status])
    .map((status) => `${formatNumber(counts[status])} ${status}`)
    .join(" · ");
}

/** The targets of a bulk action split into requests of at most `size`. */
export function chunks(targets, size = 500) {
  const out = [];
  for (let i = 0; i < targets.length; i += size) out.push(targets.slice(i, i + size));
  return out;
}
