// heartwatch's dashboard: wires the services table, the timeline and the log panel to the
// daemon (docs/api.md). Live state comes from one websocket, /ws/events (a snapshot, then
// events and pulses), reconnected with backoff when it drops; nothing polls. The per-minute
// series behind the sparklines are fetched once a minute.

import { api, auth, Backoff, setUnauthorizedHandler, storeToken, wsUrl } from "./api.js";
import { byId } from "./dom.js";
import { askToken, readAuth } from "./token.js";
import { LogPanel } from "./logpanel.js";
import { monotonic, ServiceTable, summarize } from "./services.js";
import { isRefusal, serverConstants } from "./shared.js";
import { Timeline } from "./timeline.js";

const TICK_MS = 1000; // ages and uptimes are recomputed locally at this pace
const SERIES_INTERVAL_MS = 60_000;

const VERB_TEXT = {
  restart: (name) => `${name} and the services that require it will be stopped and started again.`,
  stop: (name) => `${name} will be stopped, after the services that require it.`,
  start: (name) => `${name} will be started, after the services it requires.`,
};
const every = (group) => `Every instance of ${group}`;

const table = new ServiceTable(byId("services").tBodies[0], byId("services-empty"), {
  onSelect: (name) => logs.select(`service:${name}`),
  onControl: control,
});

const timeline = new Timeline(
  {
    list: byId("timeline"),
    empty: byId("timeline-empty"),
    filter: byId("timeline-filter"),
    older: byId("timeline-older"),
    history: byId("timeline-history"),
  },
  fetchEvents,
);

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
    onTarget: (target) => table.select(target.startsWith("service:") ? target.slice(8) : null),
  },
);

// -- credentials --------------------------------------------------------------------------

let authPending = null;

/** Find out what the stored token allows, asking for one if needed; one run at a time. */
function reauthenticate() {
  authPending ??= authenticate().finally(() => {
    authPending = null;
  });
  return authPending;
}

async function authenticate() {
  for (;;) {
    const answer = await readAuth((why) => setLink("down", `daemon unreachable: ${why}`));
    if (answer.scope !== "none") {
      applyAuth(answer);
      return;
    }
    const refused = Boolean(auth.token);
    auth.token = await askToken(
      refused
        ? "That token was refused. Enter a valid token for this daemon."
        : "This daemon needs a token. It is kept in this browser's local storage.",
    );
  }
}

function applyAuth(answer) {
  auth.required = Boolean(answer.token_required);
  auth.scope = answer.scope;
  storeToken(auth.required ? auth.token : "");
  document.body.classList.toggle("read-only", auth.scope !== "control");
  byId("forget-token").hidden = !auth.token;
}


byId("forget-token").addEventListener("click", () => {
  storeToken("");
  location.reload();
});

// -- the event stream ----------------------------------------------------------------------

const eventsBackoff = new Backoff(500, 10000);
let eventsSocket = null;
let live = false;
let rendered = false;

function connectEvents() {
  const socket = new WebSocket(wsUrl("/ws/events"));
  eventsSocket = socket;
  let opened = false;
  socket.addEventListener("open", () => {
    opened = true;
  });
  socket.addEventListener("message", (message) => receive(JSON.parse(message.data)));
  socket.addEventListener("close", (event) => {
    if (socket !== eventsSocket) return;
    eventsSocket = null;
    setLive(false);
    if (event.code === serverConstants().close.unauthorised) {
      setLink("down", "a token is needed");
      reauthenticate().then(connectEvents);
      return;
    }
    const delay = eventsBackoff.next();
    const why = isRefusal(event.code) && event.reason ? `refused: ${event.reason}` : "disconnected";
    setLink("down", `${why} · reconnecting in ${Math.ceil(delay / 1000)} s`);
    // The stream never opened: the daemon is down, or has no /ws/events; show what the plain
    // API says meanwhile (once per attempt, so at most once per backoff delay).
    if (!opened) loadServices();
    setTimeout(connectEvents, delay);
  });
}

function receive(message) {
  const at = monotonic();
  if (message.type === "snapshot") {
    eventsBackoff.reset();
    showServices(message.services, at);
    const events = message.events || [];
    table.replay(events); // each row's last trouble, of this daemon run
    // A snapshot holds the newest snapshot_events: fewer means there are no older ones.
    timeline.receive(events, { complete: events.length < serverConstants().snapshot_events });
    setLive(true);
    refreshSeries();
  } else if (message.type === "event") {
    const { event, service } = message;
    if (service) {
      const known = table.get(service.name) != null;
      table.status(replayed(event, service), at);
      if (!known) servicesChanged();
    }
    if (event) {
      table.event(event, true);
      timeline.live(event);
      // A reload may add and remove services (and instances): the stream only speaks of
      // those that exist, so the list is read again.
      if (event.kind === "reload") loadServices();
    }
    updateSummary();
  } else if (message.type === "pulse") {
    table.pulse(message.services || [], at);
  }
}

/** The status to show for an event's message. A message carries the service's status as it was
 * sent, which may already be past the transition it reports (unresponsive, then at once
 * restarting): the row takes the transition's state, so it walks through every state in order
 * and ends, with the last transition, on the current one. */
function replayed(event, status) {
  if (event?.kind !== "transition" || event.service !== status.name || !event.state) return status;
  return { ...status, state: event.state };
}

function showServices(statuses, at) {
  table.snapshot(statuses, at);
  servicesChanged();
  updateSummary();
  if (!rendered) {
    rendered = true;
    performance.mark("hw:services-rendered"); // read by bench/dashboard.py
  }
}

async function loadServices() {
  try {
    showServices(await api("/api/v1/services"), monotonic());
  } catch {
    // the link indicator already says the daemon is unreachable
  }
}

function servicesChanged() {
  timeline.setServices(table.names(), table.groupNames());
  refreshLogSources();
}

function setLive(isLive) {
  live = isLive;
  document.body.classList.toggle("stale", !isLive);
  if (isLive) setLink("live", "live");
}

function setLink(state, text) {
  const link = byId("link");
  link.dataset.link = state;
  link.textContent = text;
}

function updateSummary() {
  const { text, trouble } = summarize(table);
  byId("summary").textContent = text;
  document.title = trouble ? `(${trouble}) heartwatch` : "heartwatch";
}

// -- series, logs, history -----------------------------------------------------------------

let seriesMissing = false;

async function refreshSeries() {
  if (seriesMissing) return;
  try {
    table.series(await api("/api/v1/series"), Date.now() / 1000);
  } catch (error) {
    if (error.status === 404) seriesMissing = true; // a daemon without history
  }
}

function scheduleSeries() {
  // Just after each minute turns, when the previous minute's count is complete.
  const delay = SERIES_INTERVAL_MS - (Date.now() % SERIES_INTERVAL_MS) + 2000;
  setTimeout(() => {
    if (live) refreshSeries();
    scheduleSeries();
  }, delay);
}

async function refreshLogSources() {
  let list;
  try {
    list = await api("/api/v1/logs");
  } catch {
    list = table.names().map((name) => ({ kind: "service", name }));
  }
  logs.setSources(list);
  if (!logs.target && list.length) logs.select(firstLog(list));
}

/** The log to open on: the service in trouble (services.js troubled()), else the first
 * service, else whatever comes first. */
function firstLog(list) {
  const services = list.filter((entry) => entry.kind === "service").map((entry) => entry.name);
  const troubled = table.troubled();
  const name = services.includes(troubled) ? troubled : services[0];
  return name != null ? `service:${name}` : `${list[0].kind}:${list[0].name}`;
}

async function fetchEvents(service, limit) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (service) query.set("service", service);
  try {
    return (await api(`/api/v1/events?${query}`)).events;
  } catch (error) {
    if (error.status === 404 && error.code !== "unknown_service") return null;
    showNotice(`could not load older events: ${error.describe()}`);
    return [];
  }
}

// -- control -------------------------------------------------------------------------------

/** A button's verb for one service, or (`group`) for every instance of a [[service]] at
 * once through /api/v1/control/{verb}, which answers their statuses. */
async function control(name, verb, button, group = false) {
  if (!(await confirmAction(group ? every(name) : name, verb, group ? `all of ${name}` : name))) {
    return;
  }
  button.disabled = true;
  try {
    const answer = group
      ? await api(`/api/v1/control/${verb}`, { method: "POST", body: { names: [name] } })
      : await api(`/api/v1/services/${encodeURIComponent(name)}/${verb}`, { method: "POST" });
    // The event stream says what happens next; its messages may overtake this answer, so the
    // answer is shown only when the stream is down.
    if (!live) {
      for (const status of Array.isArray(answer) ? answer : [answer]) {
        table.status(status, monotonic());
      }
      updateSummary();
    }
  } catch (error) {
    showNotice(`${verb} ${name}: ${error.describe()}`);
  } finally {
    button.disabled = false;
  }
}

function confirmAction(subject, verb, title = subject) {
  const dialog = byId("confirm");
  const ok = byId("confirm-ok");
  byId("confirm-title").textContent = `${verb[0].toUpperCase()}${verb.slice(1)} ${title}?`;
  byId("confirm-text").textContent = VERB_TEXT[verb](subject);
  ok.textContent = verb[0].toUpperCase() + verb.slice(1);
  ok.dataset.verb = verb;
  return new Promise((resolve) => {
    const finish = (answer) => {
      ok.onclick = byId("confirm-cancel").onclick = dialog.onclose = null;
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    ok.onclick = () => finish(true);
    byId("confirm-cancel").onclick = () => finish(false);
    dialog.onclose = () => finish(false); // Escape
    dialog.showModal();
    byId("confirm-cancel").focus();
  });
}

function showNotice(text) {
  byId("notice-text").textContent = text;
  byId("notice").hidden = false;
}

byId("notice-close").addEventListener("click", () => {
  byId("notice").hidden = true;
});

// -- start ---------------------------------------------------------------------------------

async function boot() {
  timeline.render();
  setUnauthorizedHandler(() => reauthenticate());
  // The stream opens at once with the stored token (or none): a first load does not wait for
  // /api/v1/auth. If a token is needed, it closes with 4401 and waits for the prompt. Controls
  // stay hidden (body.read-only in the HTML) until the answer says they are allowed.
  connectEvents();
  await reauthenticate();
  setInterval(() => table.tick(monotonic()), TICK_MS);
  scheduleSeries();
}

boot();
