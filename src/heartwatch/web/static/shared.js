// What the page shares with the server (a snapshot's size, websocket close codes): written by
// the server into the page's data block (web/dashboard.py server_constants), never copied here,
// so that each has one home. Read when first needed, not at load.

let constants = null;

/** The server's constants: { snapshot_events, close: { unauthorised, bad_request,
 * refusals_from, refusals_below } }. */
export function serverConstants() {
  if (constants === null) {
    const block = document.getElementById("server-constants");
    if (!block) throw new Error("the page has no #server-constants (the server writes it)");
    constants = JSON.parse(block.textContent);
  }
  return constants;
}

/** Whether a websocket close is a refusal, which stands until something changes. */
export function isRefusal(code) {
  const { refusals_from: from, refusals_below: below } = serverConstants().close;
  return code >= from && code < below;
}
