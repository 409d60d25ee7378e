// Small DOM and formatting helpers. Text always goes in as text (text nodes, textContent),
// never as markup: nothing the daemon or a log sends can become an element by accident.

const SVG_NS = "http://www.w3.org/2000/svg";

/** An element with attributes (`class`, `data-*`, `on<event>` handlers) and children. */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  setAttributes(element, attrs);
  element.append(...children.flat().filter((child) => child != null && child !== false));
  return element;
}

/** An SVG element with attributes. */
export function svg(tag, attrs = {}, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  setAttributes(element, attrs);
  element.append(...children);
  return element;
}

function setAttributes(element, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
}

/** Set text only when it changed: a ticking page then touches the DOM once a second at most. */
export function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

export function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A duration in seconds as people read it, as the daemon writes it (core/units.py
 * format_duration; tests/test_durations.py holds the two to the same output): tenths below
 * 100 s ("4.2 s", "61.2 s"), then whole units, two at most and no zero ("3 min 5 s", "10 min",
 * "2 h 4 min", "3 d 1 h"). */
export function formatDuration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, seconds);
  if (Math.round(s * 10) / 10 < 100) return `${s.toFixed(1)} s`;
  const minutes = Math.floor(s / 60);
  if (minutes < 60) return twoUnits(minutes, "min", Math.floor(s) % 60, "s");
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return twoUnits(hours, "h", minutes % 60, "min");
  return twoUnits(Math.floor(hours / 24), "d", hours % 24, "h");
}

function twoUnits(big, bigUnit, small, smallUnit) {
  return small ? `${big} ${bigUnit} ${small} ${smallUnit}` : `${big} ${bigUnit}`;
}

/** An age that ticks once a second: whole seconds ("<1 s" below one) while formatDuration
 * would show tenths, then as formatDuration. */
export function formatAge(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "–";
  if (seconds < 1) return "<1 s";
  if (seconds < 100) return `${Math.floor(seconds)} s`;
  return formatDuration(seconds);
}

const TIME = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});
const DATE_TIME = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});

/** A Unix time (seconds) as a clock time, with the date when it is not today. */
export function formatTime(unixSeconds) {
  const date = new Date(unixSeconds * 1000);
  const today = new Date().toDateString() === date.toDateString();
  return (today ? TIME : DATE_TIME).format(date);
}

const SIZE_NAMES = ["KB", "MB", "GB", "TB"];

/** Bytes as people read them, as the daemon writes them (core/units.py format_size): powers
 * of 1024, one decimal below 100 and no ".0" ("512 B", "1.5 KB", "2.1 GB", "640 MB"). */
export function formatSize(bytes) {
  if (bytes == null || !Number.isFinite(bytes)) return "–";
  let value = Math.max(0, bytes);
  let name = "";
  for (const unit of SIZE_NAMES) {
    if (value < 1024) break;
    value /= 1024;
    name = unit;
  }
  if (!name) return `${Math.trunc(value)} B`;
  if (Math.round(value * 10) / 10 >= 100) return `${value.toFixed(0)} ${name}`;
  return `${Number(value.toFixed(1))} ${name}`;
}

/** A CPU share: whole percents from 10, one decimal below ("0.4 %", "12 %", "180 %"). */
export function formatPercent(percent) {
  if (percent == null || !Number.isFinite(percent)) return "–";
  return percent >= 10 ? `${Math.round(percent)} %` : `${Number(percent.toFixed(1))} %`;
}

export function formatCount(n) {
  return n == null ? "–" : Number(n).toLocaleString();
}
