// A tiny stand-in for the browser's DOM, enough for the dashboard's modules to build and update
// their elements under node (no npm packages). Imported first by each test file: the modules
// touch `document` and `localStorage` at load time.
//
// It parses no HTML: `innerHTML` on a <template> only keeps plain text (the markup path of
// logpanel's renderLines is the browser tests' to check, in a real Chromium).

class FakeNode {
  constructor(nodeType) {
    this.nodeType = nodeType;
    this.parentNode = null;
  }

  remove() {
    if (!this.parentNode) return;
    const siblings = this.parentNode.childNodes;
    siblings.splice(siblings.indexOf(this), 1);
    this.parentNode = null;
  }
}

export class FakeText extends FakeNode {
  constructor(data) {
    super(3);
    this.data = String(data);
  }

  get textContent() {
    return this.data;
  }
}

class ClassList {
  constructor() {
    this.names = new Set();
  }

  add(...names) {
    for (const name of names) this.names.add(name);
  }

  remove(...names) {
    for (const name of names) this.names.delete(name);
  }

  contains(name) {
    return this.names.has(name);
  }

  toggle(name, force) {
    const on = force === undefined ? !this.names.has(name) : Boolean(force);
    if (on) this.names.add(name);
    else this.names.delete(name);
    return on;
  }

  [Symbol.iterator]() {
    return this.names.values();
  }
}

export class FakeElement extends FakeNode {
  constructor(localName, namespaceURI = null) {
    super(1);
    this.localName = localName;
    this.namespaceURI = namespaceURI;
    this.childNodes = [];
    this.attributes = new Map();
    this.classList = new ClassList();
    this.dataset = {};
    this.listeners = new Map();
    this.hidden = false;
    this.title = "";
    this.offsetWidth = 0;
    this.value = "";
    this.disabled = false;
    this.scrollTop = 0;
    this.scrollHeight = 0;
    this.clientHeight = 0;
    const properties = new Map();
    this.style = {
      properties,
      setProperty: (name, value) => properties.set(name, value),
      getPropertyValue: (name) => properties.get(name) ?? "",
    };
    if (localName === "template") this.content = new FakeElement("#fragment");
  }

  get tagName() {
    return this.localName.toUpperCase();
  }

  get children() {
    return this.childNodes.filter((node) => node.nodeType === 1);
  }

  get childElementCount() {
    return this.children.length;
  }

  get firstElementChild() {
    return this.children[0] ?? null;
  }

  /** A <select>'s options, inside optgroups too. */
  get options() {
    return this.querySelectorAll("option");
  }

  get textContent() {
    return this.childNodes.map((node) => node.textContent).join("");
  }

  set textContent(text) {
    this.replaceChildren();
    if (text !== "") this.append(String(text));
  }

  set innerHTML(markup) {
    if (/[<&]/.test(markup)) throw new Error("fakedom parses no markup");
    this.textContent = markup;
  }

  append(...nodes) {
    for (const node of nodes) {
      const child = typeof node === "string" ? new FakeText(node) : node;
      child.remove();
      child.parentNode = this;
      this.childNodes.push(child);
    }
  }

  replaceChildren(...nodes) {
    for (const child of [...this.childNodes]) child.remove();
    this.append(...nodes);
  }

  setAttribute(name, value) {
    const text = String(value);
    this.attributes.set(name, text);
    if (name === "class") {
      this.classList = new ClassList();
      this.classList.add(...text.split(/\s+/).filter(Boolean));
    }
    if (name.startsWith("data-")) {
      const key = name.slice(5).replace(/-([a-z])/g, (_, c) => c.toUpperCase());
      this.dataset[key] = text;
    }
    if (name === "hidden") this.hidden = true;
  }

  getAttribute(name) {
    return this.attributes.get(name) ?? null;
  }

  addEventListener(type, listener) {
    if (!this.listeners.has(type)) this.listeners.set(type, []);
    this.listeners.get(type).push(listener);
  }

  dispatch(type, event = {}) {
    for (const listener of this.listeners.get(type) ?? []) listener(event);
  }

  /** Descendants, depth first. */
  *descendants() {
    for (const child of this.children) {
      yield child;
      yield* child.descendants();
    }
  }

  /** Only ".class" and "tag" selectors, which is all the modules and the tests ask. */
  querySelectorAll(selector) {
    const match = selector.startsWith(".")
      ? (el) => el.classList.contains(selector.slice(1))
      : (el) => el.localName === selector;
    return [...this.descendants()].filter(match);
  }

  querySelector(selector) {
    return this.querySelectorAll(selector)[0] ?? null;
  }
}

/** A range over siblings (all logpanel's trimming asks): from one child to another, inclusive. */
class FakeRange {
  setStartBefore(node) {
    this.start = node;
  }

  setEndAfter(node) {
    this.end = node;
  }

  deleteContents() {
    const siblings = this.start.parentNode.childNodes;
    const from = siblings.indexOf(this.start);
    const to = siblings.indexOf(this.end);
    for (const node of siblings.slice(from, to + 1)) node.remove();
  }
}

/** Animation frames run when a test says so: `frames.run()` runs the ones asked so far. */
export const frames = {
  queue: [],
  run() {
    const due = this.queue;
    this.queue = [];
    for (const callback of due) callback(0);
    return due.length;
  },
};

class FakeStorage {
  constructor() {
    this.items = new Map();
  }

  getItem(key) {
    return this.items.has(key) ? this.items.get(key) : null;
  }

  setItem(key, value) {
    this.items.set(key, String(value));
  }

  removeItem(key) {
    this.items.delete(key);
  }
}

// The data block the server writes into the page (web/dashboard.py server_constants; a Python
// test checks the page carries those values): the values the modules read through shared.js.
const serverConstants = new FakeElement("script");
serverConstants.append(
  new FakeText(
    JSON.stringify({
      snapshot_events: 100,
      close: { unauthorised: 4401, bad_request: 4400, refusals_from: 4400, refusals_below: 4500 },
    }),
  ),
);

globalThis.Node = { TEXT_NODE: 3, ELEMENT_NODE: 1 };
globalThis.document = {
  createElement: (tag) => new FakeElement(tag),
  createElementNS: (namespace, tag) => new FakeElement(tag, namespace),
  createTextNode: (data) => new FakeText(data),
  getElementById: (id) => (id === "server-constants" ? serverConstants : null),
  createRange: () => new FakeRange(),
};
globalThis.requestAnimationFrame = (callback) => frames.queue.push(callback);
globalThis.localStorage = new FakeStorage();
globalThis.location = { href: "http://127.0.0.1:8080/", protocol: "http:" };
