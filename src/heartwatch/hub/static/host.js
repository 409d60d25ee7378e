// A host's page on the hub (/hosts/{host}): the host's dashboard as far as the hub knows it.
// Its state, labels and boot; its services, with the fleet page's rows and actions
// (fleet-view.js, actions.js); the state strips of /api/v1/hosts/{host}/history (the agent's
// /api/v1/history answer shape, laid out by the agent's pictures.js); its recent events
// (GET /api/v1/events?host=, then live); and a service's live log (the agent's logpanel.js
// on /ws/logs/{host}/{service}). Live state comes from /ws/events, of which this page keeps
// only what is about its host. Text goes in as text, never as markup.

import { api, Backoff, setUnauthorizedHandler, wsUrl } from "/agent-static/api.js";
import { byId, formatAge, formatTime, h, setText, svg } from "/agent-static/dom.js";
import { LogPanel } from "/agent-static/logpanel.js";
import {
  describeSegment,
  overviewPath,
  rangeOf,
  stripLayout,
  summaryFigures,
} from "/agent-static/pictures.js";
import { isRefusal, serverConstants } from "/agent-static/shared.js";
import { Commands } from "./actions.js";
import { EventList } from "./events.js";
import { FleetModel, statesText } from "./fleet-model.js";
import { FleetView, monotonic } from "./fleet-view.js";
import { reauthenticate, setLink, showNotice, wireCommonButtons } from "./session.js";

const HOST = decodeURIComponent(location.pathname.replace(/^\/hosts\//, "").replace(/\/$/, ""));
const HOST_PATH = `/api/v1/hosts/${encodeURIComponent(HOST)}`;
const EVENTS_SHOWN = 100;
const STRIP_WIDTH = 1000; // viewBox units
const STRIP_HEIGHT = 18;
const STRIPS_EVERY_MS = 60_000;
const POLL_MS = 2000;

const model = new FleetModel();
const commands = new Commands(model, () => schedule());
const rows = new FleetView(byId("fleet"), {
  onLogs: (key) => logs.select(`service:${key}`),
  onControl: (key, verb, button) => commands.controlOne(key, verb, button),
});
let frame = 0;
let live = false;
let seen = { age: null, at: 0 };

document.title = `${HOST} · heartwatch fleet`;
byId("host-title").textContent = HOST;

// -- drawing ------------------------------------------------------------------------------

function schedule() {
  if (!frame) frame = requestAnimationFrame(draw);
}

function draw() {
  frame = 0;
  const changes = model.takeChanges();
  changes.commandTargets = [...changes.commands]
    .map((id) => model.commands.get(id))
    .filter((command) => command?.service != null)
    .map((command) => `${command.host}/${command.service}`);
  const view = model.view();
  rows.render(view, changes, (key) => model.commandFor(key), false);
  const host = model.hosts.get(HOST);
  byId("host-missing").hidden = host != null;
  if (host) showHost(host, view);
  const reload = model.commandFor(HOST);
  const said = byId("host-command");
  setText(
    said,
    reload ? `${reload.verb} ${reload.status}${reload.reason ? `: ${reload.reason}` : ""}` : "",
  );
  if (reload) said.dataset.status = reload.status;
  if (changes.all || changes.services.size || changes.added) refreshLogSources();
  if (!document.body.dataset.rendered && host) document.body.dataset.rendered = "true";
}

function showHost(host, view) {
  if (host.last_seen_age !== seen.sourceAge) {
    seen = { age: host.last_seen_age ?? null, at: monotonic(), sourceAge: host.last_seen_age };
  }
  const facts = [
    ["state", host.state],
    [
      "labels",
      Object.entries(host.labels ?? {})
        .map(([k, v]) => `${k}=${v}`)
        .join(" ") || "none",
    ],
    ["state since", host.state_since == null ? "–" : formatTime(host.state_since)],
    ["last heard", lastHeard()],
    ["boot", host.boot || "–"],
    ["version", host.version || "–"],
    ["configuration", host.config_hash ? host.config_hash.slice(0, 12) : "–"],
  ];
  const key = JSON.stringify(facts.filter(([name]) => name !== "last heard"));
  const list = byId("host-facts");
  if (list.dataset.key !== key) {
    list.dataset.key = key;
    list.replaceChildren(
      ...facts.map(([name, text]) =>
        h("div", { "data-fact": name }, h("dt", {}, name), h("dd", {}, text)),
      ),
    );
  }
  list.dataset.state = host.state;
  const counts = view.counts;
  const problems = counts.problems ? ` · ${counts.problems} in trouble` : "";
  byId("summary").textContent = `${host.state} · ${statesText(counts.services)}${problems}`;
}

function lastHeard() {
  return seen.age == null ? "–" : `${formatAge(seen.age + (monotonic() - seen.at))} ago`;
}

function tick() {
  const fact = byId("host-facts").querySelector('[data-fact="last heard"] dd');
  if (fact) setText(fact, lastHeard());
}

// -- the hub ------------------------------------------------------------------------------

/** Of the fleet's messages, those about this host. */
function about(message) {
  switch (message.type) {
    case "host":
      return message.host?.host === HOST;
    case "service":
      return message.service?.host === HOST;
    case "removed":
    case "command":
      return (message.host ?? message.command?.host) === HOST;
    case "event":
      return message.event?.host === HOST;
    default:
      return false;
  }
}

function onlyThisHost(fleet) {
  return {
    generated_at: fleet?.generated_at,
    hosts: (fleet?.hosts ?? []).filter((host) => host.host === HOST),
    services: (fleet?.services ?? []).filter((service) => service.host === HOST),
  };
}

const backoff = new Backoff(500, 10000);
let socket = null;

function connect() {
  const current = new WebSocket(wsUrl("/ws/events"));
  socket = current;
  current.addEventListener("message", (message) => {
    let data;
    try {
      data = JSON.parse(message.data);
    } catch {
      return;
    }
    if (data.type === "hello") {
      backoff.reset();
      setLive(true);
      model.load(onlyThisHost(data.fleet));
    } else if (about(data)) {
      if (data.type === "command") commands.heard(data.command);
      if (data.type === "event") events.add(data.event);
      model.apply(data);
    } else {
      return;
    }
    schedule();
  });
  current.addEventListener("close", (event) => {
    if (current !== socket) return;
    socket = null;
    setLive(false);
    const close = serverConstants().close;
    if (event.code === close?.unauthorised) {
      setLink("down", "a token is needed");
      reauthenticate().then(connect);
      return;
    }
    const delay = backoff.next();
    const why = close && isRefusal(event.code) && event.reason ? ` (refused: ${event.reason})` : "";
    setLink("down", `hub connection lost${why} · reconnecting in ${Math.ceil(delay / 1000)} s`);
    setTimeout(connect, delay);
  });
}

function setLive(isLive) {
  live = isLive;
  document.body.classList.toggle("stale", !isLive);
  if (isLive) setLink("live", "live");
}

/** What the plain API says of the host (before the stream's hello, or without it). */
async function loadHost() {
  try {
    const answer = await api(HOST_PATH);
    if (live) return;
    const { service_list: services = [], ...host } = answer;
    model.load({ hosts: [host], services });
    schedule();
  } catch (error) {
    if (error.status === 404) {
      byId("host-missing").hidden = false;
      document.body.dataset.rendered = "true";
    }
  }
}

// -- events -------------------------------------------------------------------------------

const events = new EventList(byId("events"), byId("events-empty"), {
  limit: EVENTS_SHOWN,
  host: HOST,
  onError: (error) =>
    showNotice(`could not load the events: ${error.describe?.() ?? error.message}`),
});

// -- history strips -----------------------------------------------------------------------

const windowSelect = byId("window");
windowSelect.value = "24h";
windowSelect.addEventListener("change", () => loadStrips());

async function loadStrips() {
  const range = rangeOf({ window: windowSelect.value, until: null }, Date.now() / 1000);
  const path = overviewPath(range).replace("/api/v1/history", `${HOST_PATH}/history`);
  let answer;
  try {
    answer = await api(path);
  } catch (error) {
    if (error.status !== 404)
      showNotice(`could not load the history: ${error.describe?.() ?? error.message}`);
    answer = { services: [] };
  }
  const services = answer.services || [];
  byId("range-text").textContent = `${formatTime(range.since)} – ${formatTime(range.until)}`;
  byId("strips").replaceChildren(...services.map(stripBlock));
  byId("strips-empty").hidden = services.length > 0;
}

function stripBlock(answer) {
  const segments = answer.segments || [];
  const detail = h("span", { class: "sub strip-detail" });
  const rects = stripLayout(segments, answer.since, answer.until).map(
    ({ x, width, segment, index }) =>
      svg("rect", {
        class: "seg",
        x: (x * STRIP_WIDTH).toFixed(3),
        width: (width * STRIP_WIDTH).toFixed(3),
        y: 0,
        height: STRIP_HEIGHT,
        "data-index": String(index),
        "data-state": segment.state,
      }),
  );
  const strip = svg(
    "svg",
    {
      class: "strip",
      viewBox: `0 0 ${STRIP_WIDTH} ${STRIP_HEIGHT}`,
      preserveAspectRatio: "none",
      role: "img",
      "aria-label": `states of ${answer.service}`,
    },
    ...rects,
  );
  // One listener per strip; what a segment says is worked out when it is pointed at.
  strip.addEventListener("pointerover", (event) => {
    const rect = event.target instanceof Element ? event.target.closest("rect.seg") : null;
    if (!rect) return;
    const index = Number(rect.dataset.index);
    const said = describeSegment(segments[index], segments[index - 1] ?? null);
    const why = said.reason ? ` · ${said.reason}` : "";
    detail.textContent = `${said.change} · ${said.when} (${said.lasted})${why}`;
  });
  const figures = summaryFigures(answer.summary)
    .map((figure) => `${figure.label} ${figure.text}`)
    .join(" · ");
  return h(
    "div",
    { class: "strip-block", "data-service": answer.service },
    h(
      "div",
      { class: "strip-head" },
      h("span", { class: "strip-name" }, answer.service),
      h("span", { class: "strip-figures" }, figures),
      answer.truncated ? h("span", { class: "trouble" }, "too many entries: cut short") : null,
    ),
    strip,
    detail,
  );
}

// -- logs ---------------------------------------------------------------------------------

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
    onTarget: () => {},
    servicePath: (key) => `/ws/logs/${key.split("/").map(encodeURIComponent).join("/")}`,
  },
);

function refreshLogSources() {
  const keys = [...(model.byHost.get(HOST) ?? [])];
  logs.setSources(keys.map((name) => ({ kind: "service", name })));
  if (!logs.target && keys.length) {
    // The first in trouble, else the first.
    const view = model.view();
    const first = view.selection[0] ?? keys[0];
    logs.select(`service:${first}`);
  }
}

// -- start --------------------------------------------------------------------------------

async function boot() {
  wireCommonButtons();
  setUnauthorizedHandler(() => reauthenticate());
  byId("host-reload").addEventListener("click", (event) =>
    commands.controlOne(HOST, "reload", event.currentTarget),
  );
  connect();
  loadHost();
  await reauthenticate();
  events.load();
  loadStrips();
  setInterval(tick, 1000);
  setInterval(loadStrips, STRIPS_EVERY_MS);
  setInterval(() => commands.poll(live), POLL_MS);
}

boot();
