// Commands from a hub page: POSTed to /api/v1/commands (in requests of at most 500 targets),
// kept in the page's FleetModel, whose rows show each one's news (sent → accepted → done,
// failed, refused, expired or unanswered). The news comes as {"type": "command"} messages on
// /ws/events; while that stream is down, or silent about a command for a while, the page asks
// GET /api/v1/commands/{id} itself, a few at a time.

import { api } from "/agent-static/api.js";
import { chunks, isPending } from "./fleet-model.js";
import { monotonic } from "./fleet-view.js";
import { confirmDialog, showNotice } from "./session.js";

const POLL_AT_ONCE = 20; // commands asked about per round
const QUIET_COMMAND_S = 10; // a command without news this long is asked about, stream or not

export const VERB_TEXT = {
  restart: "stopped and started again by its host's agent (with the services that require it)",
  stop: "stopped by its host's agent (after the services that require it)",
  start: "started by its host's agent (after the services it requires)",
  reload: "asked to read its configuration again",
};

export const capital = (word) => word[0].toUpperCase() + word.slice(1);

export class Commands {
  /** `changed()`: the model has news to draw. */
  constructor(model, changed) {
    this.model = model;
    this.changed = changed;
    this.newsAt = new Map(); // command id -> monotonic seconds of its last news
  }

  /** A {"type": "command"} message was applied: the stream speaks of this one. */
  heard(command) {
    if (command?.id) this.newsAt.set(command.id, monotonic());
  }

  /** POST `verb` for `targets` ("host/service", or "host" for reload); the commands issued.
   * A refused request stops the rest and throws (ApiError: the hub's reason). */
  async issue(targets, verb) {
    const issued = [];
    for (const part of chunks(targets)) {
      const body = { targets: part, verb };
      const answer = await api("/api/v1/commands", { method: "POST", body });
      for (const command of answer.commands || []) {
        this.model.putCommand(command);
        this.heard(command);
        issued.push(command);
      }
      this.changed();
    }
    return issued;
  }

  /** One target's button: confirmed, then sent; a refusal shown in the notice. */
  async controlOne(target, verb, button) {
    const confirmed = await confirmDialog({
      title: `${capital(verb)} ${target}?`,
      text: `${target} will be ${VERB_TEXT[verb]}.`,
      ok: capital(verb),
      verb,
    });
    if (!confirmed) return;
    button.disabled = true;
    try {
      await this.issue([target], verb);
    } catch (error) {
      showNotice(`${verb} ${target}: ${error.describe?.() ?? error.message}`);
    } finally {
      button.disabled = false;
    }
  }

  /** Ask about commands still waiting: all of them while the stream is down (`live` false),
   * else those it has said nothing about for a while. */
  async poll(live) {
    const now = Date.now() / 1000;
    const waiting = [...this.model.commands.values()].filter(
      (command) =>
        isPending(command, now) &&
        (!live || monotonic() - (this.newsAt.get(command.id) ?? 0) > QUIET_COMMAND_S),
    );
    for (const command of waiting.slice(0, POLL_AT_ONCE)) {
      this.heard(command);
      try {
        const fresh = await api(`/api/v1/commands/${encodeURIComponent(command.id)}`);
        if (fresh.status !== command.status || fresh.reason !== command.reason) {
          this.model.putCommand(fresh);
          this.changed();
        }
      } catch {
        break; // the hub is away: the next round asks again
      }
    }
  }
}
