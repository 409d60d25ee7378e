// The token, as every page (the dashboard, the history page, the hub's pages) asks for it:
// what the stored one allows (GET /api/v1/auth), and the page's token dialog (#token-dialog,
// #token-form, #token-input, #token-text). The token itself is kept by api.js.

import { api, Backoff } from "./api.js";
import { byId, sleep } from "./dom.js";

/** What the stored token allows: `{token_required, scope}`, scope "none" when a token is
 * needed and the stored one is not it. A server without the route allows everything; while
 * it cannot be reached, `onDown(message)` is told and it is asked again after a backoff. */
export async function readAuth(onDown) {
  const backoff = new Backoff(1000, 10000);
  for (;;) {
    try {
      return await api("/api/v1/auth");
    } catch (error) {
      if (error.status === 404) return { token_required: false, scope: "control" };
      if (error.status === 401) return { token_required: true, scope: "none" };
      onDown(error.message);
      await sleep(backoff.next());
    }
  }
}

/** Show the token dialog saying `message`; resolves with the token typed (never empty). */
export function askToken(message) {
  const dialog = byId("token-dialog");
  const form = byId("token-form");
  const input = byId("token-input");
  byId("token-text").textContent = message;
  input.value = "";
  return new Promise((resolve) => {
    form.onsubmit = (event) => {
      event.preventDefault(); // no navigation: the CSP allows no form submission anyway
      const token = input.value.trim();
      if (!token) return;
      dialog.close();
      resolve(token);
    };
    dialog.oncancel = (event) => event.preventDefault(); // nothing works without it
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
}
