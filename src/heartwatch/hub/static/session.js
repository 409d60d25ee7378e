// The hub pages' credentials: what the stored token allows (GET /api/v1/auth, as on the
// agent's dashboard), the token prompt, and the link indicator. The token is the agent page's
// (api.js keeps it in local storage); controls stay hidden (body.read-only) until the answer
// says they are allowed.

import { auth, storeToken } from "/agent-static/api.js";
import { byId } from "/agent-static/dom.js";
import { askToken, readAuth } from "/agent-static/token.js";

let pending = null;

/** Find out what the stored token allows, asking for one if needed; one run at a time. */
export function reauthenticate() {
  pending ??= authenticate().finally(() => {
    pending = null;
  });
  return pending;
}

async function authenticate() {
  for (;;) {
    const answer = await readAuth((why) => setLink("down", `hub unreachable: ${why}`));
    if (answer.scope !== "none") {
      auth.required = Boolean(answer.token_required);
      auth.scope = answer.scope;
      storeToken(auth.required ? auth.token : "");
      document.body.classList.toggle("read-only", auth.scope !== "control");
      byId("forget-token").hidden = !auth.token;
      return;
    }
    auth.token = await askToken(
      auth.token
        ? "That token was refused. Enter a valid token for this hub."
        : "This hub needs a token. It is kept in this browser's local storage.",
    );
  }
}


/** The header's link indicator: "live", or "down" with what is known. */
export function setLink(state, text) {
  const link = byId("link");
  link.dataset.link = state;
  link.textContent = text;
}

export function showNotice(text) {
  byId("notice-text").textContent = text;
  byId("notice").hidden = false;
}

/** The buttons every hub page has: dismiss the notice, forget the token. */
export function wireCommonButtons() {
  byId("notice-close").addEventListener("click", () => {
    byId("notice").hidden = true;
  });
  byId("forget-token").addEventListener("click", () => {
    storeToken("");
    location.reload();
  });
}

/** A confirmation dialog (#confirm): resolves true on OK. `count`: the OK button stays off
 * until that number is typed into #confirm-count (a bulk action on the whole fleet).
 * `onOk(finish)`: called on OK instead of closing, to check again before closing. */
export function confirmDialog({ title, text, ok, verb, count = null, onOk = null }) {
  const dialog = byId("confirm");
  const okButton = byId("confirm-ok");
  const countField = byId("confirm-count-field");
  const countInput = byId("confirm-count");
  byId("confirm-title").textContent = title;
  byId("confirm-text").textContent = text;
  okButton.textContent = ok;
  okButton.dataset.verb = verb;
  countField.hidden = count == null;
  countInput.value = "";
  okButton.disabled = count != null;
  if (count != null) byId("confirm-count-label").textContent = `Type ${count} to confirm`;
  countInput.oninput = () => {
    okButton.disabled = count != null && countInput.value.trim() !== String(count);
  };
  return new Promise((resolve) => {
    const finish = (answer) => {
      okButton.onclick = byId("confirm-cancel").onclick = dialog.onclose = null;
      countInput.oninput = null;
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    okButton.onclick = () => (onOk ? onOk(finish) : finish(true));
    byId("confirm-cancel").onclick = () => finish(false);
    dialog.onclose = () => finish(false); // Escape
    dialog.showModal();
    (count != null ? countInput : byId("confirm-cancel")).focus();
  });
}
