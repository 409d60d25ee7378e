// A list of the fleet's recent events, as the agent's timeline shows them (the words are
// timeline.js's describe): the first page from GET /api/v1/events, then each
// {"type": "event"} message of /ws/events on top, every event once (keyed by its host, boot
// and seq: the stream's may also be in the first page, both read after the same commit),
// at most `limit` kept. Only the journal's kinds and the commands' replies are listed, not
// the per-minute counts, which are numbers for the history rather than news.

import { api } from "/agent-static/api.js";
import { formatTime, h } from "/agent-static/dom.js";
import { EVENT_KINDS } from "/agent-static/pictures.js";
import { describe } from "/agent-static/timeline.js";

export const LISTED_KINDS = [...EVENT_KINDS, "reply"];

const eventKey = (event) => `${event.host}/${event.boot}/${event.seq}`;

export class EventList {
  /** `host`: only that host's events (its page), whose items then leave the host out. */
  constructor(list, empty, { limit = 100, host = null, onError = () => {} } = {}) {
    this.list = list;
    this.empty = empty;
    this.limit = limit;
    this.host = host;
    this.onError = onError;
    this.shown = new Set(); // eventKey of each item listed
  }

  /** The newest page; what the stream brought meanwhile and the page does not hold stays on
   * top. */
  async load() {
    const query = new URLSearchParams({ limit: String(this.limit) });
    if (this.host) query.set("host", this.host);
    for (const kind of LISTED_KINDS) query.append("kind", kind);
    try {
      const { events } = await api(`/api/v1/events?${query}`);
      const fetched = new Set(events.map(eventKey));
      const kept = [...this.list.children].filter((item) => !fetched.has(item.dataset.key));
      this.shown = new Set(kept.map((item) => item.dataset.key));
      this.list.replaceChildren(...kept, ...events.map((event) => this.item(event)));
      this.trim();
    } catch (error) {
      this.onError(error);
    }
    this.showEmpty();
  }

  /** One event from the stream (ignored when not of a listed kind, or listed already). */
  add(event) {
    if (!event || !LISTED_KINDS.includes(event.kind)) return;
    if (this.host && event.host !== this.host) return;
    if (this.shown.has(eventKey(event))) return;
    this.list.prepend(this.item(event));
    this.trim();
    this.showEmpty();
  }

  trim() {
    while (this.list.childElementCount > this.limit) {
      this.shown.delete(this.list.lastElementChild.dataset.key);
      this.list.lastElementChild.remove();
    }
  }

  showEmpty() {
    this.empty.hidden = this.list.childElementCount > 0;
  }

  item(event) {
    const key = eventKey(event);
    this.shown.add(key);
    const iso = new Date(event.at * 1000).toISOString();
    const kind = event.kind ?? event.type;
    const words = kind === "reply" ? `command reply: ${event.state ?? "?"}` : describe(event);
    const who = event.service ?? "heartwatch";
    return h(
      "li",
      { class: `ev kind-${kind}`, "data-state": event.state || "", "data-key": key },
      h(
        "time",
        { datetime: iso, title: `${iso} · boot ${event.boot ?? "?"}` },
        formatTime(event.at),
      ),
      h("span", { class: "ev-service" }, this.host ? who : `${event.host}/${who}`),
      h("span", { class: "ev-what" }, words),
      event.reason && kind !== "daemon" ? h("span", { class: "ev-why" }, event.reason) : null,
    );
  }
}
