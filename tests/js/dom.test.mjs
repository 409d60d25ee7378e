// dom.js: the formatters people read on the page, and `h` / `setText`, which put text in as text.
import "./fakedom.js";

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  formatAge,
  formatCount,
  formatDuration,
  formatPercent,
  formatSize,
  formatTime,
  h,
  setText,
  sleep,
} from "../../src/heartwatch/web/static/dom.js";

test("formatDuration: tenths below 100 s, then whole units, two at most and no zero", () => {
  // The daemon's style (core/units.py format_duration; tests/test_durations.py compares).
  assert.equal(formatDuration(0), "0.0 s");
  assert.equal(formatDuration(0.44), "0.4 s");
  assert.equal(formatDuration(9.94), "9.9 s");
  assert.equal(formatDuration(10), "10.0 s");
  assert.equal(formatDuration(42.9), "42.9 s");
  assert.equal(formatDuration(99.94), "99.9 s");
  assert.equal(formatDuration(100), "1 min 40 s");
  assert.equal(formatDuration(185), "3 min 5 s");
  assert.equal(formatDuration(600), "10 min");
  assert.equal(formatDuration(3599), "59 min 59 s");
  assert.equal(formatDuration(3600), "1 h");
  assert.equal(formatDuration(2 * 3600 + 4 * 60 + 59), "2 h 4 min");
  assert.equal(formatDuration(86400), "1 d");
  assert.equal(formatDuration(3 * 86400 + 3600 + 5), "3 d 1 h");
});

test("formatDuration: nothing known is a dash, negative is zero", () => {
  for (const unknown of [null, undefined, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.equal(formatDuration(unknown), "–");
  }
  assert.equal(formatDuration(-5), "0.0 s");
});

test("formatAge: whole seconds, '<1 s' below one, then as formatDuration", () => {
  assert.equal(formatAge(null), "–");
  assert.equal(formatAge(0), "<1 s");
  assert.equal(formatAge(0.99), "<1 s");
  assert.equal(formatAge(1), "1 s");
  assert.equal(formatAge(59.9), "59 s");
  assert.equal(formatAge(65), "65 s");
  assert.equal(formatAge(99.9), "99 s");
  assert.equal(formatAge(125), "2 min 5 s");
});

test("formatTime: a clock time today, with the date on another day", () => {
  const now = Date.now() / 1000;
  const today = formatTime(now);
  const lastYear = formatTime(now - 400 * 86400);
  assert.match(today, /\d{1,2}\D\d{2}\D\d{2}/);
  assert.ok(lastYear.length > today.length, `${lastYear} should carry a date beside ${today}`);
});

test("formatSize and formatPercent: the daemon's sizes (tests/test_dashboard_sizes.py), CPU shares", () => {
  assert.equal(formatSize(512), "512 B");
  assert.equal(formatSize(1536), "1.5 KB");
  assert.equal(formatSize(2 * 1024 ** 3), "2 GB");
  assert.equal(formatSize(null), "–");
  assert.equal(formatPercent(0.44), "0.4 %");
  assert.equal(formatPercent(99.6), "100 %");
  assert.equal(formatPercent(180.2), "180 %");
  assert.equal(formatPercent(undefined), "–");
});

test("formatCount: a dash for nothing, grouped digits otherwise", () => {
  assert.equal(formatCount(null), "–");
  assert.equal(formatCount(undefined), "–");
  assert.equal(formatCount(0), "0");
  assert.equal(formatCount(1234567), (1234567).toLocaleString());
});

test("h: attributes, handlers and children; strings stay text, never markup", () => {
  let clicked = 0;
  const element = h(
    "div",
    { class: "a b", "data-state": "running", hidden: true, skipped: false, gone: null },
    "<img src=x>",
    null,
    false,
    [h("span", {}, "inner")],
  );
  const button = h("button", { onclick: () => clicked++ });
  button.dispatch("click");
  assert.equal(clicked, 1);
  assert.equal(element.getAttribute("hidden"), "");
  assert.equal(element.getAttribute("skipped"), null);
  assert.equal(element.getAttribute("gone"), null);
  assert.equal(element.dataset.state, "running");
  assert.ok(element.classList.contains("b"));
  assert.equal(element.childNodes.length, 2);
  assert.equal(element.childNodes[0].nodeType, 3); // a text node holding the markup as text
  assert.equal(element.textContent, "<img src=x>inner");
  assert.equal(element.querySelector("img"), null);
});

test("setText touches the element only when the text changed", () => {
  const element = h("span", {}, "same");
  const node = element.childNodes[0];
  setText(element, "same");
  assert.equal(element.childNodes[0], node);
  setText(element, "other");
  assert.equal(element.textContent, "other");
  assert.notEqual(element.childNodes[0], node);
});

test("sleep resolves", async () => {
  assert.equal(await sleep(0), undefined);
});
