// The fleet dashboard's DOM: one block per host (its head, then its services' rows), in the
// order of fleet-model.js's view, kept in step with it at most once per animation frame.
//
// Cost. A fleet is thousands of services and a few percent change a second. Rows are keyed
// ("host/name") and made once; a frame touches only the rows whose service changed, moves
// elements only where the order changed (a host's sequence of keys is compared as one string
// first), and a host block's rows are made only when the block comes near the viewport (the
// blocks on the first screens at once, the others a few rows a frame once an
// IntersectionObserver says they are near): until then the block holds an empty box of the
// rows' estimated height, so the scrollbar is right. Blocks off-screen skip layout and paint
// (CSS content-visibility). Ages tick on the host heads only (a service's heartbeat age is
// shown as at the agent's report).
//
// Text goes in as text (setText, text nodes), never as markup.

import { formatAge, formatTime, h, setText } from "/agent-static/dom.js";
import { lastKnownState, statesText } from "./fleet-model.js";

const ROW_PX = 31; // a service row's height (fleet.css .frow), for the boxes of unmade rows
const HEAD_PX = 38;
const NEAR_PX = 1500; // blocks within this distance of the viewport have their rows made
const ROWS_PER_FRAME = 20; // rows made a frame for blocks coming into view
const INACTIVE = new Set(["stopped", "exited", "failed", "stopping"]);
const VERBS = ["restart", "stop", "start"];

/** Seconds on the browser's monotonic clock. */
export const monotonic = () => performance.now() / 1000;

/** Reorder `parent`'s children into `wanted` (elements), moving only those out of place and
 * removing the others. */
export function placeChildren(parent, wanted) {
  const keep = new Set(wanted);
  for (const child of [...parent.children]) if (!keep.has(child)) child.remove();
  let cursor = parent.firstElementChild;
  for (const element of wanted) {
    if (element === cursor) {
      cursor = cursor.nextElementSibling;
    } else {
      parent.insertBefore(element, cursor);
    }
  }
}

class ServiceRow {
  constructor(key, service, handlers) {
    this.key = key;
    this.name = h("button", { type: "button", class: "svc-name", title: "follow its log" });
    this.name.addEventListener("click", () => handlers.onLogs(this.key));
    this.words = h("span", { class: "sub svc-words" });
    this.pill = h("span", { class: "pill" });
    this.notReady = h("span", { class: "tag not-ready", hidden: true }, "not ready");
    this.since = h("span", { class: "fcell since" });
    this.pid = h("span", { class: "fcell num" });
    this.restarts = h("span", { class: "fcell num" });
    this.beat = h("span", { class: "fcell num age" });
    this.reason = h("span", { class: "fcell reason" });
    this.command = h("span", { class: "fcell command" });
    this.buttons = {};
    for (const verb of VERBS) {
      const button = h("button", { type: "button", class: `act act-${verb}`, "data-verb": verb });
      button.textContent = verb[0].toUpperCase() + verb.slice(1);
      button.addEventListener("click", () => handlers.onControl(this.key, verb, button));
      this.buttons[verb] = button;
    }
    this.element = h(
      "div",
      {
        class: "frow svc",
        "data-key": key,
        "data-host": service.host,
        "data-service": service.name,
      },
      h("span", { class: "fcell name-cell" }, this.name, this.words),
      h("span", { class: "fcell state-cell" }, this.pill, this.notReady),
      this.since,
      this.pid,
      this.restarts,
      this.beat,
      this.reason,
      this.command,
      h("span", { class: "fcell controls" }, Object.values(this.buttons)),
    );
  }

  update(service, state, command) {
    const row = this.element;
    row.dataset.state = state;
    row.classList.toggle("instance", service.instance_of != null);
    setText(this.name, service.name);
    setText(this.words, service.status?.status || "");
    setText(this.pill, state);
    const last = lastKnownState(service);
    this.pill.title =
      state === "unknown" ? `host unreachable; last known: ${last ?? "nothing"}` : "";
    this.notReady.hidden = !(service.ready === false && state === "running");
    setText(this.since, service.since == null ? "–" : formatTime(service.since));
    setText(this.pid, service.pid == null ? "–" : String(service.pid));
    setText(this.restarts, service.restarts == null ? "–" : String(service.restarts));
    const age = service.last_heartbeat_age_at_report;
    setText(this.beat, age == null ? "–" : formatAge(age));
    setText(this.reason, service.reason || "");
    if (this.reason.title !== (service.reason || "")) this.reason.title = service.reason || "";
    const inactive = INACTIVE.has(state === "unknown" ? last : state);
    this.buttons.restart.hidden = inactive;
    this.buttons.stop.hidden = inactive;
    this.buttons.start.hidden = !inactive;
    this.showCommand(command);
  }

  showCommand(command) {
    if (!command) {
      setText(this.command, "");
      delete this.command.dataset.status;
      return;
    }
    setText(this.command, `${command.verb} ${command.status}`);
    this.command.dataset.status = command.status;
    const why = command.reason ? `: ${command.reason}` : "";
    this.command.title = `command ${command.id}${why}`;
  }
}

/** The row above a [[service]]'s instances on a host: its name and their states. */
class InstancesRow {
  constructor(name) {
    this.summary = h("span", { class: "sub group-summary" });
    this.element = h(
      "div",
      { class: "frow instances", "data-group": name },
      h("span", { class: "fcell group-name" }, name),
      this.summary,
    );
  }

  update(services) {
    const counts = {};
    for (const one of services) counts[one.state] = (counts[one.state] || 0) + 1;
    const noun = services.length === 1 ? "instance" : "instances";
    setText(this.summary, `${services.length} ${noun} shown: ${statesText(counts)}`);
  }
}

/** A group's title row, when grouped by a label. */
class GroupHead {
  constructor(key) {
    this.title = h("h2", { class: "fgroup-title" });
    this.counts = h("span", { class: "sub" });
    this.element = h("div", { class: "fgroup", "data-group": key }, this.title, this.counts);
  }

  update(group) {
    setText(this.title, group.title);
    const hosts = group.hosts.length;
    const n = group.counts.problems;
    const problems = n ? ` · ${n} ${n === 1 ? "problem" : "problems"}` : "";
    setText(
      this.counts,
      `${hosts} ${hosts === 1 ? "host" : "hosts"} · ` +
        `${statesText(group.counts.services)}${problems}`,
    );
    this.element.classList.toggle("troubled", group.rank < 3);
  }
}

class HostBlock {
  constructor(name, handlers) {
    this.handlers = handlers;
    this.rows = new Map(); // key -> ServiceRow (made once, kept while the host is)
    this.instances = new Map(); // [[service]] name -> InstancesRow
    this.built = false;
    this.incomplete = false; // built, with rows left to make
    this.signature = null; // the keys shown, as one string: unchanged order, nothing to move
    this.hostView = null;
    this.dirty = new Set(); // keys whose rows are to be redrawn when next shown
    this.allDirty = false; // every row is (a new hello)
    this.seenAge = null; // host.last_seen_age, as of seenAt (monotonic)
    this.seenAt = 0;
    this.hostRecord = null;

    this.link = h("a", { class: "host-name", href: `/hosts/${encodeURIComponent(name)}` }, name);
    this.state = h("span", { class: "pill host-pill" });
    this.labels = h("span", { class: "labels" });
    this.seen = h("span", { class: "sub seen" });
    this.counts = h("span", { class: "sub host-counts" });
    this.list = h("div", { class: "rows" });
    this.element = h(
      "div",
      { class: "host", "data-host": name },
      h("div", { class: "host-head" }, this.link, this.state, this.labels, this.counts, this.seen),
      this.list,
    );
  }

  /** The block as `hostView` has it; its rows redrawn where `this.dirty` says. */
  setView(hostView, commandFor) {
    // The model hands the same hostView again while nothing of the host changed.
    if (hostView === this.hostView && this.dirty.size === 0 && !this.allDirty) return;
    this.hostView = hostView;
    const host = hostView.host;
    if (host !== this.hostRecord) {
      this.hostRecord = host;
      this.element.dataset.state = host.state;
      setText(this.state, host.state);
      const labels = Object.entries(host.labels ?? {}).map(([k, v]) => `${k}=${v}`);
      if (this.labels.textContent !== labels.join("")) {
        this.labels.replaceChildren(...labels.map((text) => h("span", { class: "tag" }, text)));
      }
      this.seenAge = host.last_seen_age ?? null;
      this.seenAt = monotonic();
      this.link.title = [
        host.version && `version ${host.version}`,
        host.boot && `boot ${host.boot}`,
      ]
        .filter(Boolean)
        .join(" · ");
    }
    const shown = hostView.shown === hostView.total ? "" : ` (${hostView.shown} shown)`;
    const n = hostView.problems;
    const problems = n ? ` · ${n} ${n === 1 ? "problem" : "problems"}` : "";
    const states = {};
    for (const item of hostView.items) {
      for (const one of item.services) states[one.state] = (states[one.state] || 0) + 1;
    }
    const noun = hostView.total === 1 ? "service" : "services";
    const text = hostView.total
      ? `${hostView.total} ${noun}${shown}: ${statesText(states)}${problems}`
      : "no services";
    setText(this.counts, text);
    this.element.classList.toggle("troubled", hostView.rank < 3);
    this.tick(monotonic());
    if (this.built) this.refresh(commandFor, this.incomplete ? ROWS_PER_FRAME : Infinity);
    else this.reserve();
  }

  /** A service of this host changed (or its command did): its row is redrawn when shown. */
  mark(key) {
    if (this.built) this.dirty.add(key); // unmade rows are drawn whole when made
  }

  /** Rows shown, with the instances' head rows. */
  rowCount() {
    return this.hostView.items.reduce(
      (n, item) => n + item.services.length + (item.kind === "instances" ? 1 : 0),
      0,
    );
  }

  /** The rows' estimated height while they are not made. */
  reserve() {
    const count = this.rowCount();
    if (count === this.reserved) return;
    this.reserved = count;
    this.list.style.height = `${count * ROW_PX}px`;
    this.element.style.containIntrinsicSize = `auto ${count * ROW_PX + HEAD_PX}px`;
  }

  /** Make the rows, at most `limit` of them now (the rest: `incomplete`, by later calls). */
  build(commandFor, limit = Infinity) {
    if (this.built) return;
    this.built = true;
    this.list.style.height = "";
    this.reserved = null;
    this.allDirty = true;
    this.refresh(commandFor, limit);
  }

  /** Rows in the view's order, making at most `limit` new ones; the dirty ones redrawn (and
   * no longer dirty). While rows are left to make, the list keeps its whole height. */
  refresh(commandFor, limit = Infinity) {
    const dirty = this.dirty;
    const all = this.allDirty;
    this.allDirty = false;
    const wanted = [];
    const keys = [];
    let made = 0;
    let complete = true;
    items: for (const item of this.hostView.items) {
      if (item.kind === "instances") {
        let head = this.instances.get(item.name);
        if (!head) this.instances.set(item.name, (head = new InstancesRow(item.name)));
        head.update(item.services);
        wanted.push(head.element);
        keys.push(`@${item.name}`);
      }
      for (const one of item.services) {
        let row = this.rows.get(one.key);
        const fresh = !row;
        if (fresh) {
          if (made >= limit) {
            complete = false;
            break items;
          }
          made += 1;
          this.rows.set(one.key, (row = new ServiceRow(one.key, one.service, this.handlers)));
        }
        if (fresh || all || dirty.has(one.key)) {
          row.update(one.service, one.state, commandFor(one.key));
          dirty.delete(one.key);
        }
        wanted.push(row.element);
        keys.push(one.key);
      }
    }
    if (complete !== !this.incomplete) {
      this.incomplete = !complete;
      this.list.style.minHeight = complete ? "" : `${this.rowCount() * ROW_PX}px`;
    }
    const signature = keys.join("\n");
    if (signature !== this.signature) {
      this.signature = signature;
      placeChildren(this.list, wanted);
    }
  }

  /** A removed service's row forgotten. */
  forget(key) {
    const row = this.rows.get(key);
    if (!row) return;
    row.element.remove();
    this.rows.delete(key);
    this.dirty.delete(key);
    this.signature = null;
  }

  tick(now) {
    const age = this.seenAge == null ? null : this.seenAge + (now - this.seenAt);
    setText(this.seen, age == null ? "" : `last heard ${formatAge(age)} ago`);
  }
}

export class FleetView {
  /** `handlers`: onLogs(key), onControl(key, verb, button). */
  constructor(container, handlers) {
    this.container = container;
    this.handlers = handlers;
    this.blocks = new Map(); // host -> HostBlock
    this.heads = new Map(); // group key -> GroupHead
    this.observer =
      typeof IntersectionObserver === "function"
        ? new IntersectionObserver((entries) => this.near(entries), {
            rootMargin: `${NEAR_PX}px 0px`,
          })
        : null;
    this.commandFor = () => null;
    this.waiting = new Set(); // blocks near the viewport whose rows are not made yet
    this.pumping = 0;
  }

  /** Draw `view` (FleetModel.view), with `changes` (FleetModel.takeChanges) since the last;
   * `changes.commandTargets`: the "host/name" whose command had news. */
  render(view, changes, commandFor, grouped) {
    this.commandFor = commandFor;
    for (const host of changes.removedHosts) {
      const block = this.blocks.get(host);
      if (!block) continue;
      block.element.remove();
      this.observer?.unobserve(block.element);
      this.waiting.delete(block);
      this.blocks.delete(host);
    }
    for (const key of changes.removed) this.blockOf(key)?.forget(key);
    if (changes.all) for (const block of this.blocks.values()) block.allDirty = true;
    for (const key of changes.services) this.blockOf(key)?.mark(key);
    for (const key of changes.commandTargets ?? []) this.blockOf(key)?.mark(key);

    const wanted = [];
    let budget = window.innerHeight + NEAR_PX; // blocks above this have their rows made now
    for (const group of view.groups) {
      if (grouped) {
        let head = this.heads.get(group.key);
        if (!head) this.heads.set(group.key, (head = new GroupHead(group.key)));
        head.update(group);
        wanted.push(head.element);
      }
      for (const hostView of group.hosts) {
        let block = this.blocks.get(hostView.key);
        if (!block) {
          block = new HostBlock(hostView.key, this.handlers);
          this.blocks.set(hostView.key, block);
          this.observer?.observe(block.element);
        }
        block.setView(hostView, commandFor);
        if (!block.built && (budget > 0 || !this.observer)) block.build(commandFor);
        budget -= HEAD_PX + ROW_PX * hostView.shown;
        wanted.push(block.element);
      }
    }
    if (!grouped) for (const head of this.heads.values()) head.element.remove();
    placeChildren(this.container, wanted);
  }

  blockOf(key) {
    return this.blocks.get(key.slice(0, key.indexOf("/")));
  }

  /** Blocks come near the viewport: their rows are made, ROWS_PER_FRAME a frame, in the
   * order they came near, so that a fast scroll spreads the work instead of stalling. */
  near(entries) {
    for (const entry of entries) {
      const block = this.blocks.get(entry.target.dataset.host);
      if (!block || block.built) continue;
      if (entry.isIntersecting) this.waiting.add(block);
      else this.waiting.delete(block);
    }
    this.pump();
  }

  pump() {
    if (this.pumping || this.waiting.size === 0) return;
    this.pumping = requestAnimationFrame(() => {
      this.pumping = 0;
      const [block] = this.waiting;
      if (this.blocks.get(block.hostView?.key) !== block) {
        this.waiting.delete(block);
      } else if (!block.built) {
        block.build(this.commandFor, ROWS_PER_FRAME);
      } else if (block.incomplete) {
        block.refresh(this.commandFor, ROWS_PER_FRAME);
      }
      if (block.built && !block.incomplete) {
        this.waiting.delete(block);
        this.observer.unobserve(block.element);
      }
      this.pump();
    });
  }

  /** The row of a service, when made. */
  row(key) {
    return this.blockOf(key)?.rows.get(key) ?? null;
  }

  tick(now) {
    for (const block of this.blocks.values()) if (block.element.isConnected) block.tick(now);
  }
}
