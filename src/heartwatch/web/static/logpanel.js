// The live log panel: one websocket (/ws/logs/{service} or /ws/logs?path=…) at a time.
//
// Safety. Lines come as `format=html`: the daemon escapes each line and turns only colour codes
// into <span class="ansi-…"> and its own notices into <span class="hw-marker">. The page still
// does not trust that markup. It is parsed in an inert document (a <template>'s content: no
// script runs, no image loads, no handler fires) and rebuilt here from text nodes and <span>s
// that keep only known class names and #rrggbb colours; anything else is kept as its text. (256-colour and true-colour
// codes arrive as style attributes, which the page's CSP refuses in markup; set through the
// CSSOM they are allowed.) And the CSP allows no inline script, so even markup that got
// through could not run. Three layers: the daemon escapes, the page rebuilds, the CSP forbids.
//
// Filtering is the daemon's `grep` (a reconnect when the filter changes): the initial lines are
// filtered too, so matches from before the page opened show up, and a busy log sends only
// what matches.
//
// Size and cost. At most MAX_LINES lines are kept in the DOM (the oldest go, in batches), and
// as many while paused, so a tab left open for days stays small. Lines are shown in batches,
// a few times a second, when the browser paints: a busy log costs one layout per batch.

import { Backoff, wsUrl } from "./api.js";
import { isRefusal, serverConstants } from "./shared.js";
import { formatCount, h } from "./dom.js";

export const MAX_LINES = 2000;
const INITIAL_LINES = 500;
const GREP_DELAY_MS = 400;
const BOTTOM_SLACK_PX = 8;
const FLUSH_DELAY_MS = 250;
const TRIM_BATCH = 250;
const TAIL_KEPT = 3; // lines remembered to find where to resume after a reconnect

const CLASS_ALLOWED =
  /^(?:ansi-(?:fg|bg)-(?:1[0-5]|[0-9])|ansi-(?:bold|dim|italic|underline|strike|inverse)|hw-marker)$/;
const COLOUR_ALLOWED = /^\s*(color|background-color)\s*:\s*(#[0-9a-fA-F]{6})\s*$/;

// One template, reused: its content belongs to an inert document of its own.
const inert = document.createElement("template");

/** The last MAX_LINES of `lines`: more could never be shown. */
function keepLast(lines) {
  return lines.length > MAX_LINES ? lines.slice(-MAX_LINES) : lines;
}

/** A frame's lines (raw HTML strings from the daemon) as <div class="line"> elements. */
export function renderLines(rawLines) {
  const joined = rawLines.join("\n");
  if (!/[<&]/.test(joined)) return rawLines.map((text) => lineElement([text]));
  // Style attributes are renamed before parsing: the inert document still applies the page's
  // CSP, which would refuse (and report) each one. `<span` cannot come from a line's text,
  // which the daemon escapes.
  const markup = joined.replace(/<span((?: class="[^"<>]*")?) style="/g, '<span$1 data-colour="');
  inert.innerHTML = markup;
  const body = inert.content;
  const lines = [];
  let parts = [];
  for (const node of body.childNodes) {
    if (node.nodeType === Node.TEXT_NODE) {
      const pieces = node.data.split("\n");
      pieces.forEach((piece, i) => {
        if (i > 0) {
          lines.push(lineElement(parts));
          parts = [];
        }
        if (piece) parts.push(piece);
      });
    } else {
      parts.push(rebuild(node));
    }
  }
  lines.push(lineElement(parts));
  return lines;
}

function lineElement(parts) {
  const line = h("div", { class: "line" }, ...parts);
  if (line.querySelector(".hw-marker")) line.classList.add("marker");
  return line;
}

/** A node of the inert document as a safe node of this one. */
function rebuild(node) {
  if (node.nodeType === Node.TEXT_NODE) return document.createTextNode(node.data);
  if (node.nodeType !== Node.ELEMENT_NODE || node.localName !== "span") {
    return document.createTextNode(node.textContent || "");
  }
  const span = document.createElement("span");
  for (const name of node.classList) if (CLASS_ALLOWED.test(name)) span.classList.add(name);
  for (const declaration of (node.getAttribute("data-colour") || "").split(";")) {
    const match = COLOUR_ALLOWED.exec(declaration);
    if (match) span.style.setProperty(match[1], match[2]);
  }
  for (const child of node.childNodes) span.append(rebuild(child));
  return span;
}

/** The daemon's websocket path for a service's log. */
export const serviceLogPath = (name) => `/ws/logs/${encodeURIComponent(name)}`;

export class LogPanel {
  constructor(elements, { onUnauthorized, onTarget, servicePath = serviceLogPath }) {
    Object.assign(this, elements); // view, source, grep, follow, clear, newLines, status
    this.onUnauthorized = onUnauthorized;
    this.onTarget = onTarget;
    this.servicePath = servicePath; // a service's name -> its websocket's path (the hub's differ)
    this.target = ""; // "service:<name>" or "file:<path>"
    this.socket = null;
    this.generation = 0; // bumped per connection: late callbacks of an old socket are ignored
    this.backoff = new Backoff(300, 5000);
    this.retryTimer = 0;
    this.following = true;
    this.incoming = []; // lines received, waiting for the next batch to be shown
    this.incomingCount = 0; // how many (more than kept, if many)
    this.flushTimer = 0;
    this.pending = []; // lines held while paused
    this.pendingCount = 0; // lines received while paused (more than kept, if many)
    this.unseen = 0; // lines added below while the reader is scrolled up
    this.stuck = true; // the view is at its bottom: new lines scroll it
    this.tail = []; // the last raw lines received
    this.resync = false; // the next frame follows a reconnect: skip what was shown already
    this.grepValue = "";
    this.grepTimer = 0;

    this.source.addEventListener("change", () => this.select(this.source.value));
    this.grep.addEventListener("input", () => {
      clearTimeout(this.grepTimer);
      this.grepTimer = setTimeout(() => this.setGrep(this.grep.value.trim()), GREP_DELAY_MS);
    });
    this.follow.addEventListener("click", () => this.setFollowing(!this.following));
    this.clear.addEventListener("click", () => this.clearView());
    this.newLines.addEventListener("click", () => {
      if (!this.following) this.setFollowing(true);
      else this.scrollToBottom();
    });
    this.view.addEventListener("scroll", () => {
      const view = this.view;
      this.stuck = view.scrollHeight - view.scrollTop - view.clientHeight <= BOTTOM_SLACK_PX;
      if (this.stuck) this.unseen = 0;
      this.updateBadge();
    });
  }

  /** Fill the log chooser: services' logs, then files (GET /api/v1/logs). */
  setSources(logs) {
    // The daemon's own log (kind "daemon", named "@daemon") is listed with the services.
    const services = logs.filter((l) => l.kind === "service" || l.kind === "daemon");
    const files = logs.filter((l) => l.kind === "file");
    const groups = [];
    if (services.length) {
      groups.push(
        h(
          "optgroup",
          { label: "services" },
          services.map((l) =>
            h(
              "option",
              { value: `${l.kind}:${l.name}` },
              l.kind === "daemon" ? "heartwatch (daemon)" : l.name,
            ),
          ),
        ),
      );
    }
    if (files.length) {
      groups.push(
        h(
          "optgroup",
          { label: "files" },
          files.map((l) => h("option", { value: `file:${l.name}` }, l.name)),
        ),
      );
    }
    const values = logs.map((l) => `${l.kind}:${l.name}`);
    const before = [...this.source.options].map((o) => o.value);
    if (before.length !== values.length || before.some((v, i) => v !== values[i])) {
      this.source.replaceChildren(...groups);
    }
    if (this.target && !values.includes(this.target)) {
      this.source.append(h("option", { value: this.target }, this.target.replace(/^\w+:/, "")));
    }
    this.source.value = this.target;
  }

  select(target) {
    if (target === this.target) return;
    this.target = target;
    this.source.value = target;
    this.onTarget?.(target);
    this.clearView();
    this.tail = [];
    this.connect(false);
  }

  setGrep(value) {
    if (value === this.grepValue) return;
    this.grepValue = value;
    this.clearView();
    this.tail = [];
    this.connect(false);
  }

  /** (Re)open the websocket; `resync`: after a drop, skip the initial lines already shown. */
  connect(resync) {
    this.disconnect();
    if (!this.target) return;
    const generation = ++this.generation;
    const [kind, ...rest] = this.target.split(":");
    const name = rest.join(":");
    const params = { lines: INITIAL_LINES, format: "html", grep: this.grepValue };
    const url =
      kind === "file"
        ? wsUrl("/ws/logs", { path: name, ...params })
        : wsUrl(this.servicePath(name), params);
    this.resync = resync && this.tail.length > 0;
    const socket = new WebSocket(url);
    this.socket = socket;
    this.setStatus("connecting…");
    socket.addEventListener("open", () => {
      if (generation !== this.generation) return;
      this.backoff.reset();
      this.describe();
    });
    socket.addEventListener("message", (message) => {
      if (generation === this.generation && typeof message.data === "string") {
        this.receiveFrame(message.data);
      }
    });
    socket.addEventListener("close", (event) => {
      if (generation !== this.generation) return;
      this.socket = null;
      this.closed(event);
    });
  }

  disconnect() {
    clearTimeout(this.retryTimer);
    this.generation++;
    if (this.socket) {
      this.socket.close(1000);
      this.socket = null;
    }
  }

  closed(event) {
    const { unauthorised, bad_request: badRequest } = serverConstants().close;
    if (event.code === unauthorised) {
      this.setStatus("a token is needed");
      this.onUnauthorized().then(() => this.connect(true));
      return;
    }
    if (isRefusal(event.code)) {
      const what = event.code === badRequest && this.grepValue ? "bad filter" : "refused";
      this.setStatus(`${what}: ${event.reason || `code ${event.code}`}`, true);
      return; // a refusal stands until the choice changes
    }
    const delay = this.backoff.next();
    this.setStatus(`disconnected; reconnecting in ${Math.ceil(delay / 1000)} s`, true);
    this.retryTimer = setTimeout(() => this.connect(true), delay);
  }

  receiveFrame(frame) {
    let raw = frame.split("\n");
    if (this.resync) {
      this.resync = false;
      raw = this.afterOverlap(raw);
    }
    if (!raw.length) return;
    this.tail = [...this.tail, ...raw.slice(-TAIL_KEPT)].slice(-TAIL_KEPT);
    this.incoming = keepLast(this.incoming.concat(raw));
    this.incomingCount += raw.length;
    this.scheduleFlush();
  }

  /** Lines are shown in batches, at most every FLUSH_DELAY_MS and only when the browser paints:
   * a log writing hundreds of lines a second costs one layout per batch, not one per line, and
   * a hidden tab does no work at all (what waits is capped at MAX_LINES). */
  scheduleFlush() {
    if (this.flushTimer) return;
    this.flushTimer = setTimeout(() => {
      requestAnimationFrame(() => {
        this.flushTimer = 0;
        this.flush();
      });
    }, FLUSH_DELAY_MS);
  }

  flush() {
    const raw = this.incoming;
    const received = this.incomingCount;
    this.incoming = [];
    this.incomingCount = 0;
    if (!raw.length) return;
    if (this.following) this.show(raw, received);
    else this.hold(raw, received);
  }

  /** The lines of the first frame after a reconnect that were not shown before it. */
  afterOverlap(raw) {
    const tail = this.tail;
    for (let end = raw.length - 1; end >= 0; end--) {
      const n = Math.min(tail.length, end + 1);
      let same = true;
      for (let k = 1; k <= n && same; k++) same = raw[end - k + 1] === tail[tail.length - k];
      if (same) return raw.slice(end + 1);
    }
    // Not found: more was written meanwhile than the initial lines hold, or the file changed.
    return ['<span class="hw-marker">[dashboard] reconnected: lines may be missing</span>', ...raw];
  }

  /** Paused: keep the newest lines (as the daemon sent them) and count them all. */
  hold(raw, received) {
    this.pending = keepLast(this.pending.concat(raw));
    this.pendingCount += received;
    this.updateBadge();
  }

  show(raw, received) {
    const stuck = this.stuck;
    this.view.append(...renderLines(raw));
    this.trimView();
    if (stuck) this.scrollToBottom();
    else this.unseen += received;
    this.updateBadge();
    this.describe();
  }

  /** Over MAX_LINES, drop the oldest down to MAX_LINES - TRIM_BATCH: removing lines at the top
   * moves every line below, so it is done now and then in a batch, not at every append. */
  trimView() {
    const count = this.view.childElementCount;
    if (count <= MAX_LINES) return;
    const excess = count - (MAX_LINES - TRIM_BATCH);
    const range = document.createRange();
    range.setStartBefore(this.view.firstElementChild);
    range.setEndAfter(this.view.children[excess - 1]);
    range.deleteContents();
  }

  setFollowing(following) {
    this.following = following;
    this.follow.textContent = following ? "Pause" : "Follow";
    this.follow.setAttribute("aria-pressed", String(following));
    if (following && this.pending.length) {
      const raw = this.pending;
      this.pending = [];
      this.stuck = true;
      this.show(raw, raw.length);
    }
    this.pendingCount = 0;
    this.updateBadge();
    this.describe();
  }

  scrollToBottom() {
    this.view.scrollTop = this.view.scrollHeight;
    this.stuck = true;
    this.unseen = 0;
    this.updateBadge();
  }

  clearView() {
    this.view.replaceChildren();
    this.incoming = [];
    this.incomingCount = 0;
    this.pending = [];
    this.pendingCount = 0;
    this.unseen = 0;
    this.stuck = true;
    this.updateBadge();
    this.describe();
  }

  updateBadge() {
    const badge = this.newLines;
    if (!this.following && this.pendingCount > 0) {
      badge.textContent = `${formatCount(this.pendingCount)} new lines · follow`;
      badge.hidden = false;
    } else if (this.following && !this.stuck && this.unseen > 0) {
      badge.textContent = `↓ ${formatCount(this.unseen)} new lines`;
      badge.hidden = false;
    } else {
      badge.hidden = true;
    }
  }

  describe() {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return;
    const name = this.target.replace(/^\w+:/, "");
    const grep = this.grepValue ? ` matching /${this.grepValue}/` : "";
    const count = this.view.childElementCount;
    const shown = `${formatCount(count)} line${count === 1 ? "" : "s"} shown`;
    this.setStatus(`${this.following ? "following" : "paused"} ${name}${grep} · ${shown}`);
  }

  setStatus(text, problem = false) {
    this.status.textContent = text;
    this.status.classList.toggle("problem", problem);
  }
}
