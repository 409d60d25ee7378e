// fleet-model.js: groups by host and by label, search terms, problems first, counts, the bulk
// selection's rules, deltas from /ws/events, and unknown under an unreachable host.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  chunks,
  commandsText,
  FleetModel,
  isPending,
  labelKeys,
  parseSearch,
  serviceKey,
  shownState,
  statesText,
} from "../../src/heartwatch/hub/static/fleet-model.js";

function host(name, extra = {}) {
  return { host: name, state: "live", labels: {}, boot: "b1", last_seen_age: 1, ...extra };
}

function service(hostName, name, extra = {}) {
  return {
    host: hostName,
    name,
    instance_of: null,
    state: "running",
    last_state: "running",
    reason: "started",
    ready: true,
    pid: 10,
    restarts: 0,
    ...extra,
  };
}

/** farm-01 (site=sz): a, b, collector@0, collector@1; farm-02 (site=ny): a, b; lab-1: x. */
function fleet() {
  return {
    generated_at: 1000,
    hosts: [
      host("farm-02", { labels: { site: "ny", rack: "r1" } }),
      host("farm-01", { labels: { site: "sz", rack: "r3" } }),
      host("lab-1"),
    ],
    services: [
      service("farm-01", "a"),
      service("farm-01", "collector@0", { instance_of: "collector" }),
      service("farm-01", "b"),
      service("farm-01", "collector@1", { instance_of: "collector" }),
      service("farm-02", "a"),
      service("farm-02", "b", { reason: "queue depth high" }),
      service("lab-1", "x"),
    ],
  };
}

function loaded(data = fleet()) {
  const model = new FleetModel();
  model.load(data);
  return model;
}

const hostOrder = (view) => view.groups.flatMap((group) => group.hosts.map((h) => h.key));
const itemKeys = (hostView) => hostView.items.flatMap((item) => item.services.map((s) => s.key));

test("grouped by host: one group per host, by name, services in the hub's order", () => {
  const view = loaded().view();
  assert.deepEqual(
    view.groups.map((group) => group.title),
    ["farm-01", "farm-02", "lab-1"],
  );
  const farm1 = view.groups[0].hosts[0];
  assert.deepEqual(itemKeys(farm1), [
    "farm-01/a",
    "farm-01/collector@0",
    "farm-01/collector@1",
    "farm-01/b",
  ]);
  // The instances are one item, where the first of them comes.
  assert.deepEqual(
    farm1.items.map((item) => [item.kind, item.name ?? item.key]),
    [
      ["service", "farm-01/a"],
      ["instances", "collector"],
      ["service", "farm-01/b"],
    ],
  );
});

test("grouped by a label: one group per value, hosts without it last", () => {
  const view = loaded().view({ groupBy: "label:site" });
  assert.deepEqual(
    view.groups.map((group) => [group.title, group.hosts.map((h) => h.key)]),
    [
      ["site=ny", ["farm-02"]],
      ["site=sz", ["farm-01"]],
      ["no site", ["lab-1"]],
    ],
  );
  assert.equal(view.groups[1].counts.total, 4);
  assert.deepEqual(labelKeys(loaded()), ["rack", "site"]);
});

test("counts over the whole fleet, per group, and over what is shown", () => {
  const data = fleet();
  data.services[2].state = "failed";
  data.hosts[2].state = "stale";
  const view = loaded(data).view({ search: "host:farm-*" });
  assert.deepEqual(view.counts.hosts, { live: 2, stale: 1 });
  assert.deepEqual(view.counts.services, { running: 6, failed: 1 });
  assert.equal(view.counts.problems, 1);
  assert.equal(view.counts.total, 7);
  assert.equal(view.shown.total, 6);
  assert.deepEqual(view.shown.hosts, { live: 2 });
  assert.equal(view.groups[0].hosts[0].problems, 1);
  assert.equal(statesText(view.counts.services), "1 failed · 6 running");
});

test("problems first: unreachable, then stale, then hosts in trouble, then by name", () => {
  const data = fleet();
  data.hosts.push(host("zz-gone", { state: "unreachable" }), host("mm-late", { state: "stale" }));
  data.services.push(service("zz-gone", "a"), service("mm-late", "a"));
  data.services[6].state = "backoff"; // lab-1/x
  const view = loaded(data).view();
  assert.deepEqual(hostOrder(view), ["zz-gone", "mm-late", "lab-1", "farm-01", "farm-02"]);
});

test("within a host: services in trouble first, then not ready, instances kept together", () => {
  const data = fleet();
  data.services[2].ready = false; // farm-01/b: running, not ready
  data.services[3].state = "unresponsive"; // farm-01/collector@1
  const view = loaded(data).view();
  assert.deepEqual(itemKeys(view.groups.find((g) => g.title === "farm-01").hosts[0]), [
    "farm-01/collector@1",
    "farm-01/collector@0",
    "farm-01/b",
    "farm-01/a",
  ]);
});

test("order is stable: a delta of a calm service moves nothing", () => {
  const model = loaded();
  const before = model.view().selection;
  model.apply({ type: "service", service: service("farm-01", "a", { reason: "restarted" }) });
  assert.deepEqual(model.view().selection, before);
  model.apply({ type: "service", service: service("farm-01", "a", { state: "failed" }) });
  assert.equal(model.view().selection[0], "farm-01/a");
  model.apply({ type: "service", service: service("farm-01", "a") });
  assert.deepEqual(model.view().selection, before);
});

test("unknown under an unreachable host: not down, not fine, last state kept", () => {
  const model = loaded();
  model.apply({
    type: "host",
    host: host("farm-02", { state: "unreachable", labels: { site: "ny" } }),
  });
  const view = model.view();
  const farm2 = view.groups[0].hosts[0];
  assert.equal(farm2.key, "farm-02");
  assert.deepEqual(
    farm2.items.map((item) => item.services[0].state),
    ["unknown", "unknown"],
  );
  assert.equal(farm2.unknown, 2);
  assert.equal(farm2.problems, 0); // unknown is no trouble reported
  assert.equal(view.counts.services.unknown, 2);
  assert.equal(view.counts.problems, 0);
  assert.deepEqual(model.view({ search: "state:down" }).selection, []);
  assert.deepEqual(model.view({ state: "unknown" }).selection, ["farm-02/a", "farm-02/b"]);
  // The hub's own word while unreachable, and what it last knew, are apart.
  const s = service("farm-02", "a", { state: "unknown", last_state: "failed" });
  assert.equal(shownState(s, host("farm-02")), "unknown");
  assert.equal(shownState(service("farm-02", "a"), { state: "unreachable" }), "unknown");
});

test("a host turning unreachable or back marks its services changed (their shown state)", () => {
  const model = loaded();
  model.takeChanges();
  model.apply({ type: "host", host: host("farm-02", { state: "unreachable" }) });
  const changes = model.takeChanges();
  assert.equal(changes.all, false);
  assert.deepEqual([...changes.hosts], ["farm-02"]);
  assert.deepEqual([...changes.services].sort(), ["farm-02/a", "farm-02/b"]);
  assert.equal(model.takeChanges().services.size, 0);
  // News of the host that does not turn it reachable or unreachable leaves its rows be.
  model.apply({ type: "host", host: host("farm-02", { state: "unreachable", last_seen_age: 9 }) });
  assert.deepEqual([...model.takeChanges().services], []);
  model.apply({ type: "host", host: host("farm-02", { state: "live" }) });
  assert.equal(model.takeChanges().services.size, 2);
});

test("search: text over host, service, reason and labels, case-insensitive", () => {
  const model = loaded();
  assert.deepEqual(model.view({ search: "QUEUE" }).selection, ["farm-02/b"]);
  assert.deepEqual(model.view({ search: "site=sz" }).selection.length, 4);
  assert.deepEqual(model.view({ search: "collector" }).selection, [
    "farm-01/collector@0",
    "farm-01/collector@1",
  ]);
  assert.deepEqual(model.view({ search: "lab" }).selection, ["lab-1/x"]);
  assert.deepEqual(model.view({ search: "nothing-like-this" }).groups, []);
});

test("search: host:, service:, state:, label: terms, globs, lists, negation, all must hold", () => {
  const data = fleet();
  data.services[5].state = "failed"; // farm-02/b
  data.services[6].state = "exited"; // lab-1/x
  const model = loaded(data);
  const sel = (search, state = "") => model.view({ search, state }).selection;
  assert.deepEqual(sel("host:farm-0*").length, 6);
  assert.deepEqual(sel("host:farm-02"), ["farm-02/b", "farm-02/a"]);
  assert.deepEqual(sel("host:farm"), []); // no wildcard: the whole name
  assert.deepEqual(sel("state:down"), ["farm-02/b", "lab-1/x"]); // both in trouble: by name
  assert.deepEqual(sel("state:failed,exited host:farm-*"), ["farm-02/b"]);
  assert.deepEqual(sel("label:site=sz service:collector"), [
    "farm-01/collector@0",
    "farm-01/collector@1",
  ]);
  assert.deepEqual(sel("label:site").length, 6);
  assert.deepEqual(sel("label:site=s?"), sel("label:site=sz"));
  assert.deepEqual(sel("-host:farm-*"), ["lab-1/x"]);
  assert.deepEqual(sel("state:problems"), ["farm-02/b", "lab-1/x"]);
  assert.deepEqual(sel("service:a host:farm-01"), ["farm-01/a"]);
  assert.deepEqual(sel('"depth high"'), ["farm-02/b"]);
  assert.deepEqual(sel('"high depth"'), []);
});

test("search: an unknown key is searched as text, with a hint; a made-up state matches nothing", () => {
  const { terms, hints } = parseSearch("stat:failed");
  assert.deepEqual(
    terms.map((t) => t.key),
    ["text"],
  );
  assert.match(hints[0], /"stat:" is not a filter/);
  const model = loaded();
  const view = model.view({ search: "state:broken" });
  assert.deepEqual(view.selection, []);
  assert.match(view.hints[0], /state:broken/);
  assert.equal(view.filtered, true);
  assert.equal(view.needsCount, false);
});

test("the state filter: problems, a host state, a service state, an alias", () => {
  const data = fleet();
  data.hosts[2].state = "stale"; // lab-1
  data.services[0].state = "failed"; // farm-01/a
  const model = loaded(data);
  const sel = (state) => model.view({ state }).selection;
  assert.deepEqual(sel("problems"), ["lab-1/x", "farm-01/a"]); // a stale host's are in
  assert.deepEqual(sel("stale"), ["lab-1/x"]);
  assert.deepEqual(sel("failed"), ["farm-01/a"]);
  assert.deepEqual(sel("down"), ["farm-01/a"]);
});

test("the selection is exactly what passes, recomputed with the filter and with deltas", () => {
  const model = loaded();
  const all = model.view();
  assert.equal(all.filtered, false);
  assert.equal(all.needsCount, true); // the whole fleet: confirmed by typing its size
  assert.equal(all.selection.length, 7);
  const farm = model.view({ search: "host:farm-02" });
  assert.equal(farm.needsCount, false);
  assert.deepEqual(farm.selection, ["farm-02/a", "farm-02/b"]);
  // A service that leaves the filter leaves the selection at the next view.
  model.apply({ type: "service", service: service("farm-02", "b", { state: "failed" }) });
  assert.deepEqual(model.view({ state: "failed" }).selection, ["farm-02/b"]);
  model.apply({ type: "service", service: service("farm-02", "b") });
  assert.deepEqual(model.view({ state: "failed" }).selection, []);
  // Nothing shown is nothing to act on, filtered or not.
  assert.equal(new FleetModel().view().needsCount, false);
});

test("deltas: a new service, a removed one, a removed host, a service before its host", () => {
  const model = loaded();
  model.takeChanges();
  model.apply({ type: "service", service: service("farm-02", "c") });
  assert.equal(model.takeChanges().added, true);
  assert.deepEqual(model.view({ search: "host:farm-02" }).selection, [
    "farm-02/a",
    "farm-02/b",
    "farm-02/c",
  ]);
  model.apply({ type: "removed", host: "farm-02", name: "a" });
  const changes = model.takeChanges();
  assert.deepEqual([...changes.removed], ["farm-02/a"]);
  assert.deepEqual(model.view({ search: "host:farm-02" }).selection, ["farm-02/b", "farm-02/c"]);
  model.apply({ type: "removed", host: "lab-1", name: null });
  assert.equal(model.hosts.has("lab-1"), false);
  assert.deepEqual([...model.takeChanges().removedHosts], ["lab-1"]);
  model.apply({ type: "service", service: service("new-host", "a") });
  const view = model.view({ search: "host:new-host" });
  assert.equal(view.groups[0].hosts[0].host.state, "unknown");
  assert.equal(model.apply({ type: "what" }), false);
  assert.equal(model.apply({ type: "service", service: { name: "x" } }), false);
});

test("a host without services is shown unless the filters are about services", () => {
  const data = fleet();
  data.hosts.push(host("empty-1"));
  const model = loaded(data);
  assert.ok(hostOrder(model.view()).includes("empty-1"));
  assert.deepEqual(hostOrder(model.view({ search: "host:empty-*" })), ["empty-1"]);
  assert.ok(!hostOrder(model.view({ search: "service:a" })).includes("empty-1"));
  assert.ok(!hostOrder(model.view({ state: "failed" })).includes("empty-1"));
});

test("hello replaces everything; events are kept newest first and bounded", () => {
  const model = loaded();
  model.apply({
    type: "hello",
    fleet: { hosts: [host("solo")], services: [service("solo", "s")] },
  });
  assert.deepEqual(model.view().selection, ["solo/s"]);
  assert.equal(model.takeChanges().all, true);
  for (let i = 0; i < 250; i++) model.apply({ type: "event", event: { seq: i } });
  assert.equal(model.events.length, 200);
  assert.equal(model.events[0].seq, 249);
});

test("commands: the newest per target, their news in place, counts by status", () => {
  const model = loaded();
  const command = (id, status, svc = "a") => ({
    id,
    host: "farm-01",
    service: svc,
    verb: "restart",
    status,
    expires_at: 100,
  });
  model.apply({ type: "command", command: command("c1", "sent") });
  model.apply({ type: "command", command: command("c2", "sent") });
  model.apply({ type: "command", command: command("c1", "done") });
  assert.equal(model.commandFor(serviceKey("farm-01", "a")).id, "c2");
  assert.equal(model.commands.get("c1").status, "done");
  assert.deepEqual([...model.takeChanges().commands].sort(), ["c1", "c2"]);
  const list = [
    command("1", "done"),
    command("2", "done"),
    command("3", "expired"),
    command("4", "accepted"),
  ];
  assert.equal(commandsText(list), "1 expired · 1 accepted · 2 done");
  assert.equal(isPending(command("x", "accepted"), 50), true);
  assert.equal(isPending(command("x", "accepted"), 200), false);
  assert.equal(isPending(command("x", "done"), 50), false);
  // No answer by its expiry: the wait ends (unknown whether it ran); a late reply still moves it.
  assert.equal(isPending(command("x", "unanswered"), 50), false);
  assert.equal(
    commandsText([command("5", "unanswered"), command("6", "sent")]),
    "1 unanswered · 1 sent",
  );
  model.apply({ type: "command", command: command("c2", "unanswered") });
  model.apply({ type: "command", command: command("c2", "done") });
  assert.equal(model.commands.get("c2").status, "done");
  assert.deepEqual(chunks([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]);
});

test("5,000 services: a view is computed in well under a frame's budget", () => {
  const hosts = [];
  const services = [];
  for (let h = 0; h < 100; h++) {
    const name = `farm-${String(h).padStart(3, "0")}`;
    hosts.push(host(name, { labels: { site: h % 2 ? "sz" : "ny" } }));
    for (let s = 0; s < 50; s++) services.push(service(name, `svc-${s}`));
  }
  const model = loaded({ hosts, services });
  const started = performance.now();
  const view = model.view({ groupBy: "label:site" });
  const took = performance.now() - started;
  assert.equal(view.selection.length, 5000);
  // A sanity bound only (the figures are bench/fleet_dashboard.py's).
  assert.ok(took < 2000, `a view of 5,000 services took ${took} ms`);
});

test("a host's part is reused only while it, its services and the filters are unchanged", () => {
  const model = loaded();
  const first = model.view({ search: "host:farm-02" });
  const again = model.view({ search: "host:farm-02" });
  assert.equal(again.groups[0].hosts[0], first.groups[0].hosts[0]); // nothing changed: reused
  model.view({ state: "failed" }); // another filter between
  model.apply({ type: "service", service: service("farm-02", "a", { state: "failed" }) });
  const after = model.view({ search: "host:farm-02" });
  assert.notEqual(after.groups[0].hosts[0], first.groups[0].hosts[0]);
  assert.deepEqual(after.selection, ["farm-02/a", "farm-02/b"]);
  assert.equal(after.counts.services.failed, 1);
  assert.deepEqual(model.view({ state: "failed" }).selection, ["farm-02/a"]);
  // A host's own news (its state) counts as a change of its part too.
  model.apply({ type: "host", host: host("farm-02", { state: "unreachable" }) });
  assert.deepEqual(model.view({ state: "failed" }).selection, []);
  assert.deepEqual(model.view({ state: "unknown" }).selection, ["farm-02/a", "farm-02/b"]);
});
