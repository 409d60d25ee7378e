// logpanel.js: what the panel keeps and shows as frames come, without a socket: batching,
// pausing, trimming to MAX_LINES, resuming after a reconnect, and what a close means.
import "./fakedom.js";

import assert from "node:assert/strict";
import { test } from "node:test";

import { h } from "../../src/heartwatch/web/static/dom.js";
import { LogPanel, MAX_LINES, renderLines } from "../../src/heartwatch/web/static/logpanel.js";

function panel({ onUnauthorized = async () => {} } = {}) {
  const elements = {
    view: h("div"),
    source: h("select"),
    grep: h("input"),
    follow: h("button"),
    clear: h("button"),
    newLines: h("button"),
    status: h("span"),
  };
  const logPanel = new LogPanel(elements, { onUnauthorized, onTarget: () => {} });
  logPanel.scheduleFlush = () => {}; // the tests flush when they want
  return logPanel;
}

const shown = (p) => p.view.children.map((line) => line.textContent);
const numbers = (from, to) => Array.from({ length: to - from }, (_, i) => String(from + i));

test("renderLines: plain lines become one text-only <div class=line> each", () => {
  const lines = renderLines(["one", "", "three"]);
  assert.deepEqual(
    lines.map((line) => [line.localName, [...line.classList].join(" "), line.textContent]),
    [
      ["div", "line", "one"],
      ["div", "line", ""],
      ["div", "line", "three"],
    ],
  );
  assert.ok(lines.every((line) => line.childNodes.every((node) => node.nodeType === 3)));
});

test("a frame's lines are shown at the next flush, in order", () => {
  const p = panel();
  p.receiveFrame("a\nb");
  p.receiveFrame("c");
  assert.deepEqual(shown(p), []);
  p.flush();
  assert.deepEqual(shown(p), ["a", "b", "c"]);
  assert.equal(p.newLines.hidden, true);
});

test("at most MAX_LINES wait for a flush; the view trims the oldest in a batch", () => {
  const p = panel();
  p.receiveFrame(numbers(0, MAX_LINES + 500).join("\n"));
  assert.equal(p.incoming.length, MAX_LINES);
  assert.equal(p.incomingCount, MAX_LINES + 500);
  p.flush();
  assert.deepEqual(shown(p), numbers(500, MAX_LINES + 500));
  p.receiveFrame("next");
  p.flush();
  // Over the bound by one: trimmed down 250 below it, so the next trims are far apart.
  assert.equal(p.view.childElementCount, MAX_LINES - 250);
  assert.equal(shown(p).at(-1), "next");
  assert.equal(shown(p)[0], String(MAX_LINES + 500 - (MAX_LINES - 251)));
});

test("paused: lines are held and counted, shown in order on resume", () => {
  const p = panel();
  p.setFollowing(false);
  assert.equal(p.follow.textContent, "Follow");
  assert.equal(p.follow.getAttribute("aria-pressed"), "false");
  p.receiveFrame("held one\nheld two");
  p.flush();
  p.receiveFrame("held three");
  p.flush();
  assert.deepEqual(shown(p), []);
  assert.equal(p.newLines.hidden, false);
  assert.equal(p.newLines.textContent, "3 new lines · follow");
  p.newLines.dispatch("click");
  assert.deepEqual(shown(p), ["held one", "held two", "held three"]);
  assert.equal(p.newLines.hidden, true);
  assert.equal(p.follow.textContent, "Pause");
});

test("paused for long: the newest MAX_LINES are held, all are counted", () => {
  const p = panel();
  p.setFollowing(false);
  for (let i = 0; i < 3; i++) {
    p.receiveFrame(numbers(i * MAX_LINES, (i + 1) * MAX_LINES).join("\n"));
    p.flush();
  }
  assert.equal(p.pending.length, MAX_LINES);
  assert.equal(p.pending[0], String(2 * MAX_LINES));
  assert.equal(p.newLines.textContent, `${(3 * MAX_LINES).toLocaleString()} new lines · follow`);
});

test("scrolled up while following: new lines are counted below, not scrolled to", () => {
  const p = panel();
  p.receiveFrame("a");
  p.flush();
  Object.assign(p.view, { scrollHeight: 1000, clientHeight: 100, scrollTop: 200 });
  p.view.dispatch("scroll");
  assert.equal(p.stuck, false);
  p.receiveFrame("b\nc");
  p.flush();
  assert.equal(p.newLines.textContent, "↓ 2 new lines");
  assert.equal(p.view.scrollTop, 200);
  p.newLines.dispatch("click");
  assert.equal(p.stuck, true);
  assert.equal(p.view.scrollTop, p.view.scrollHeight);
  assert.equal(p.newLines.hidden, true);
});

test("after a reconnect, the lines already shown are skipped", () => {
  const p = panel();
  p.receiveFrame("1\n2\n3\n4");
  p.flush();
  assert.deepEqual(p.tail, ["2", "3", "4"]);
  p.resync = true;
  p.receiveFrame("1\n2\n3\n4\n5\n6");
  p.flush();
  assert.deepEqual(shown(p), ["1", "2", "3", "4", "5", "6"]);
  // Nothing new since: nothing shown twice.
  p.resync = true;
  p.receiveFrame("4\n5\n6");
  p.flush();
  assert.deepEqual(shown(p), ["1", "2", "3", "4", "5", "6"]);
});

test("after a reconnect that lost the overlap, a marker says lines may be missing", () => {
  const p = panel();
  p.receiveFrame("1\n2\n3");
  p.flush();
  p.resync = true;
  const after = p.afterOverlap(["90", "91"]);
  assert.equal(after.length, 3);
  assert.match(after[0], /reconnected: lines may be missing/);
  assert.deepEqual(after.slice(1), ["90", "91"]);
  // A short tail matched at the end of a frame.
  assert.deepEqual(p.afterOverlap(["2", "3"]), []);
  assert.deepEqual(p.afterOverlap(["3", "x"]), ["x"]);
});

test("clear empties the view and whatever was waiting or held", () => {
  const p = panel();
  p.receiveFrame("a");
  p.flush();
  p.setFollowing(false);
  p.receiveFrame("b");
  p.flush();
  p.receiveFrame("c");
  p.clear.dispatch("click");
  assert.deepEqual([p.view.childElementCount, p.pending.length, p.incoming.length], [0, 0, 0]);
  assert.equal(p.newLines.hidden, true);
});

test("a close: a refusal stands and says why; a drop reconnects after the backoff", () => {
  const p = panel();
  p.closed({ code: 4403, reason: "cross-origin websocket refused" });
  assert.equal(p.status.textContent, "refused: cross-origin websocket refused");
  assert.ok(p.status.classList.contains("problem"));
  assert.equal(p.retryTimer, 0, "no reconnection after a refusal");
  p.grepValue = "[";
  p.closed({ code: 4400, reason: "" });
  assert.equal(p.status.textContent, "bad filter: code 4400");
  p.closed({ code: 1006, reason: "" });
  clearTimeout(p.retryTimer); // no socket here to reconnect with
  assert.match(p.status.textContent, /^disconnected; reconnecting in \d s$/);
});

test("a close for a missing token asks for one, then reconnects", async () => {
  let asked = 0;
  const p = panel({ onUnauthorized: async () => asked++ });
  const reconnects = [];
  p.connect = (resync) => reconnects.push(resync);
  p.closed({ code: 4401, reason: "token required" });
  assert.equal(p.status.textContent, "a token is needed");
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(asked, 1);
  assert.deepEqual(reconnects, [true]);
});
