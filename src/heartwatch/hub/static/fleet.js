// The hub's fleet dashboard: wires fleet-model.js (what the hub says, what passes the
// filters) and fleet-view.js (the rows) to the hub (docs/api.md, the hub's part). Live state
// comes from one websocket, /ws/events (a hello with the whole fleet, then deltas), reconnected
// with backoff; while it is down the page says "hub connection lost" and dims what it shows,
// which is then as of the last message. Deltas are applied at once and drawn at most once per
// animation frame. Commands are POSTed to /api/v1/commands; their news arrives as
// {"type": "command"} messages, or is polled (GET /api/v1/commands/{id}) while the stream is
// down or silent about one.

import { api, Backoff, setUnauthorizedHandler, wsUrl } from "/agent-static/api.js";
import { byId, formatTime, h } from "/agent-static/dom.js";
import { LogPanel } from "/agent-static/logpanel.js";
import { isRefusal, serverConstants } from "/agent-static/shared.js";
import { capital, Commands, VERB_TEXT } from "./actions.js";
import { EventList } from "./events.js";
import {
  commandsText,
  FleetModel,
  FINAL_STATUSES,
  formatNumber as formatCount,
  labelKeys,
  serviceKey,
  statesText,
} from "./fleet-model.js";
import { FleetView, monotonic } from "./fleet-view.js";
import {
  confirmDialog,
  reauthenticate,
  setLink,
  showNotice,
  wireCommonButtons,
} from "./session.js";

const TICK_MS = 1000;
const SEARCH_DELAY_MS = 150;
const POLL_MS = 2000;
const CONFIRM_LISTED = 8; // targets named in a bulk confirmation
const RECENT_LOGS = 10;

const model = new FleetModel();
const commands = new Commands(model, () => schedule());
const events = new EventList(byId("events"), byId("events-empty"), {
  onError: (error) =>
    showNotice(`could not load the events: ${error.describe?.() ?? error.message}`),
});
const fleet = new FleetView(byId("fleet"), {
  onLogs: followLog,
  onControl: (key, verb, button) => commands.controlOne(key, verb, button),
});
const filters = readFilters();
let current = null; // the last view drawn
let filtersChanged = true;
let frame = 0;
let live = false;
let hadData = false;
let lastMessageAt = null; // Date.now() of the stream's last message
let bulk = null; // {verb, ids, count}: the last bulk action, whose replies the bar sums up

const plural = (n, noun) => `${formatCount(n)} ${noun}${n === 1 ? "" : "s"}`;

// -- filters ------------------------------------------------------------------------------

function readFilters() {
  const params = new URLSearchParams(location.search);
  const group = params.get("group") || "host";
  return {
    search: params.get("q") || "",
    state: params.get("state") || "",
    groupBy: group === "host" || group.startsWith("label:") ? group : "host",
  };
}

function writeFilters() {
  const params = new URLSearchParams();
  if (filters.search) params.set("q", filters.search);
  if (filters.state) params.set("state", filters.state);
  if (filters.groupBy !== "host") params.set("group", filters.groupBy);
  const query = params.toString();
  history.replaceState(null, "", query ? `/?${query}` : "/");
}

function filtersMoved() {
  filtersChanged = true;
  writeFilters();
  schedule();
}

const searchInput = byId("search");
const stateSelect = byId("state-filter");
const groupSelect = byId("group-by");
searchInput.value = filters.search;
stateSelect.value = filters.state;
let searchTimer = 0;
searchInput.addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    filters.search = searchInput.value.trim();
    filtersMoved();
  }, SEARCH_DELAY_MS);
});
stateSelect.addEventListener("change", () => {
  filters.state = stateSelect.value;
  filtersMoved();
});
groupSelect.addEventListener("change", () => {
  filters.groupBy = groupSelect.value;
  filtersMoved();
});

function refreshGroupChoices() {
  const values = ["host", ...labelKeys(model).map((key) => `label:${key}`)];
  if (!values.includes(filters.groupBy)) values.push(filters.groupBy); // asked for in the URL
  const before = [...groupSelect.options].map((option) => option.value);
  if (before.join("\n") !== values.join("\n")) {
    groupSelect.replaceChildren(
      ...values.map((value) =>
        h("option", { value }, value === "host" ? "host" : `label ${value.slice(6)}`),
      ),
    );
  }
  groupSelect.value = filters.groupBy;
}

// -- drawing ------------------------------------------------------------------------------

function schedule() {
  if (!frame) frame = requestAnimationFrame(draw);
}

function anything(changes) {
  return (
    changes.all ||
    changes.added ||
    changes.services.size > 0 ||
    changes.removed.size > 0 ||
    changes.hosts.size > 0 ||
    changes.removedHosts.size > 0 ||
    changes.commands.size > 0
  );
}

function draw() {
  frame = 0;
  const changes = model.takeChanges();
  if (!filtersChanged && !anything(changes)) return;
  changes.commandTargets = [...changes.commands]
    .map((id) => model.commands.get(id))
    .filter((command) => command?.service != null)
    .map((command) => serviceKey(command.host, command.service));
  if (changes.all || changes.hosts.size || changes.removedHosts.size) refreshGroupChoices();
  current = model.view(filters);
  fleet.render(current, changes, (key) => model.commandFor(key), filters.groupBy !== "host");
  filtersChanged = false;
  showCounts(current);
  showSelection(current);
  if (changes.commands.size) showBulk();
  if (hadData && !document.body.dataset.rendered) {
    document.body.dataset.rendered = "true"; // the tests and bench/fleet_dashboard.py wait for it
    performance.mark("hw:fleet-rendered"); // the first screens' rows are in the DOM
    // And painted: a task queued from the next frame's callback runs after that frame.
    requestAnimationFrame(() => setTimeout(() => performance.mark("hw:fleet-painted")));
  }
}

function showCounts(view) {
  const { counts } = view;
  const hosts = ["live", "stale", "unreachable", "unknown"]
    .filter((state) => counts.hosts[state])
    .map((state) => `${formatCount(counts.hosts[state])} ${state}`);
  byId("host-counts").textContent = counts.hostCount
    ? `${formatCount(counts.hostCount)}: ${hosts.join(" · ")}`
    : "none yet";
  byId("service-counts").textContent = counts.total
    ? `${formatCount(counts.total)}: ${statesText(counts.services)}`
    : "none yet";
  const troubled = counts.problems + (counts.hosts.stale || 0) + (counts.hosts.unreachable || 0);
  const parts = [];
  if (counts.problems) parts.push(`${plural(counts.problems, "service")} in trouble`);
  if (counts.hosts.unreachable)
    parts.push(`${plural(counts.hosts.unreachable, "host")} unreachable`);
  if (counts.hosts.stale) parts.push(`${plural(counts.hosts.stale, "host")} stale`);
  byId("summary").textContent = parts.length ? parts.join(" · ") : counts.total ? "all well" : "";
  document.title = troubled ? `(${troubled}) heartwatch fleet` : "heartwatch fleet";
  byId("fleet-empty").hidden = counts.hostCount > 0;
  byId("fleet-none").hidden = counts.hostCount === 0 || view.groups.length > 0;
  const hints = byId("hints");
  hints.hidden = view.hints.length === 0;
  hints.textContent = view.hints.join("; ");
}

function showSelection(view) {
  const n = view.selection.length;
  const what = view.filtered ? "shown by the filters" : "no filter: the whole fleet";
  byId("selection-text").textContent =
    `Selection: ${formatCount(n)} ${n === 1 ? "service" : "services"} (${what})`;
  for (const verb of ["restart", "stop", "start"]) {
    const button = byId(`bulk-${verb}`);
    button.textContent = `${capital(verb)} ${formatCount(n)}`;
    button.disabled = n === 0;
  }
}

// -- the event stream ---------------------------------------------------------------------

const eventsBackoff = new Backoff(500, 10000);
let eventsSocket = null;

function connectEvents() {
  if (!eventsSocket && !hadData) performance.mark("hw:fleet-connect");
  const socket = new WebSocket(wsUrl("/ws/events"));
  eventsSocket = socket;
  let opened = false;
  socket.addEventListener("open", () => {
    opened = true;
  });
  socket.addEventListener("message", (message) => {
    let data;
    try {
      data = JSON.parse(message.data);
    } catch {
      return; // not JSON: nothing the hub sends; ignored rather than fatal
    }
    lastMessageAt = Date.now();
    if (data.type === "hello") {
      if (!hadData) performance.mark("hw:fleet-hello"); // read by bench/fleet_dashboard.py
      eventsBackoff.reset();
      hadData = true;
      setLive(true);
    }
    if (data.type === "command") commands.heard(data.command);
    if (data.type === "event") events.add(data.event);
    model.apply(data);
    schedule();
  });
  socket.addEventListener("close", (event) => {
    if (socket !== eventsSocket) return;
    eventsSocket = null;
    setLive(false);
    if (event.code === serverConstants().close?.unauthorised) {
      setLink("down", "a token is needed");
      reauthenticate().then(connectEvents);
      return;
    }
    const delay = eventsBackoff.next();
    const why = closeWhy(event);
    const asOf = lastMessageAt ? ` · shown as of ${formatTime(lastMessageAt / 1000)}` : "";
    setLink(
      "down",
      `hub connection lost${why} · reconnecting in ${Math.ceil(delay / 1000)} s${asOf}`,
    );
    if (!opened) loadFleet(); // the stream did not open: what the plain API says meanwhile
    setTimeout(connectEvents, delay);
  });
}

function closeWhy(event) {
  const close = serverConstants().close;
  if (close && isRefusal(event.code) && event.reason) return ` (refused: ${event.reason})`;
  return "";
}

async function loadFleet() {
  try {
    const answer = await api("/api/v1/fleet");
    if (live) return; // the stream came back meanwhile: its hello is newer
    model.load(answer);
    hadData = true;
    schedule();
  } catch {
    // the link indicator already says the hub is unreachable
  }
}

function setLive(isLive) {
  live = isLive;
  document.body.classList.toggle("stale", !isLive);
  if (isLive) setLink("live", "live");
}

// -- commands -----------------------------------------------------------------------------

function describeFilters() {
  const parts = [];
  if (filters.search) parts.push(`matching “${filters.search}”`);
  if (filters.state) parts.push(`state filter: ${filters.state}`);
  return parts.length ? parts.join(", ") : "no filter: every service of the fleet";
}

async function controlSelection(verb) {
  if (!current) return;
  const targets = current.selection.slice();
  const n = targets.length;
  if (!n) return;
  const noun = n === 1 ? "service" : "services";
  const listed = targets.slice(0, CONFIRM_LISTED).map((key) => h("li", {}, key));
  if (n > CONFIRM_LISTED)
    listed.push(h("li", { class: "more" }, `… and ${formatCount(n - CONFIRM_LISTED)} more`));
  byId("confirm-list").replaceChildren(...listed);
  let changed = false;
  const confirmed = await confirmDialog({
    title: `${capital(verb)} ${formatCount(n)} ${noun}?`,
    text:
      `Each of the ${formatCount(n)} ${noun} shown (${describeFilters()}) ` +
      `will be ${VERB_TEXT[verb]}.`,
    ok: `${capital(verb)} ${formatCount(n)}`,
    verb,
    count: current.needsCount ? n : null,
    onOk: (finish) => {
      // What passes the filters now: a service that came or went meanwhile is not acted on
      // blind (the same services in another order are the same selection).
      const now = model.view(filters).selection;
      const asked = new Set(targets);
      changed = now.length !== asked.size || now.some((key) => !asked.has(key));
      finish(!changed);
    },
  });
  byId("confirm-list").replaceChildren();
  if (changed) {
    const now = formatCount(current.selection.length);
    showNotice(
      `The selection changed while the confirmation was open (now ${now}): nothing was sent. ` +
        "Look again and confirm anew.",
    );
    return;
  }
  if (!confirmed) return;
  bulk = { verb, ids: [], count: n };
  showBulk();
  try {
    const issued = await commands.issue(targets, verb);
    bulk.ids = issued.map((command) => command.id);
  } catch (error) {
    showNotice(`${verb} of ${formatCount(n)} ${noun}: ${error.describe?.() ?? error.message}`);
  }
  showBulk();
}

for (const verb of ["restart", "stop", "start"]) {
  byId(`bulk-${verb}`).addEventListener("click", () => controlSelection(verb));
}

function showBulk() {
  const bar = byId("bulk-status");
  if (!bulk) return;
  bar.hidden = false;
  const issued = bulk.ids.map((id) => model.commands.get(id)).filter(Boolean);
  const sent = issued.length ? commandsText(issued) : bulk.ids.length === 0 ? "sending…" : "";
  bar.textContent = `${bulk.verb} of ${formatCount(bulk.count)}: ${sent}`;
  const failed = issued.filter((c) => c.status === "failed" || c.status === "refused");
  bar.title = failed
    .slice(0, 20)
    .map((c) => `${c.host}/${c.service}: ${c.status}${c.reason ? ` (${c.reason})` : ""}`)
    .join("\n");
  const done = issued.length > 0 && issued.every((c) => FINAL_STATUSES.has(c.status));
  bar.dataset.done = String(done);
}

// -- logs ---------------------------------------------------------------------------------

const recentLogs = [];
let selectedRow = null;

const logs = new LogPanel(
  {
    view: byId("log-view"),
    source: byId("log-source"),
    grep: byId("log-grep"),
    follow: byId("log-follow"),
    clear: byId("log-clear"),
    newLines: byId("log-new"),
    status: byId("log-status"),
  },
  {
    onUnauthorized: () => reauthenticate(),
    onTarget: (target) => markSelected(target.startsWith("service:") ? target.slice(8) : null),
    servicePath: (key) => `/ws/logs/${key.split("/").map(encodeURIComponent).join("/")}`,
  },
);

function followLog(key) {
  const at = recentLogs.indexOf(key);
  if (at !== -1) recentLogs.splice(at, 1);
  recentLogs.unshift(key);
  recentLogs.length = Math.min(recentLogs.length, RECENT_LOGS);
  logs.setSources(recentLogs.map((name) => ({ kind: "service", name })));
  logs.select(`service:${key}`);
}

function markSelected(key) {
  selectedRow?.element.classList.remove("selected");
  selectedRow = key ? fleet.row(key) : null;
  selectedRow?.element.classList.add("selected");
}

// -- start --------------------------------------------------------------------------------

async function boot() {
  wireCommonButtons();
  setUnauthorizedHandler(() => reauthenticate());
  refreshGroupChoices();
  // The stream opens at once with the stored token (or none); a hub that needs one closes it
  // with 4401 and the prompt follows.
  connectEvents();
  await reauthenticate();
  events.load();
  setInterval(() => fleet.tick(monotonic()), TICK_MS);
  setInterval(async () => {
    await commands.poll(live);
    if (bulk) showBulk();
  }, POLL_MS);
}

boot();
