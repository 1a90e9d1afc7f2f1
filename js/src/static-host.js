// Static host: runs any of our anywidget views in a plain page, with no kernel and no network.
//
// Python (qscope_widgets/export) writes a snapshot of a widget's synced traits (JSON; `bytes` traits as
// {"$bytes": base64}) plus optional "variants": pre-computed output traits keyed by input values (e.g. the
// explorer's outputs for each saved layer, token and feature). This module builds an anywidget-compatible model
// (get / set / on / off / save_changes / send; binary traits as DataViews, as ipywidgets hands them over) from
// it, calls the view's own `render`, and answers a `save_changes` from the saved data when it can. What it cannot
// answer (a new prompt, a steering edit, a search, a layer that was not saved) is put back and explained in a
// "needs a live kernel" note: the page never pretends to compute.
import widget from "./index.js";
import { h, clear } from "./dom.js";

/**
 * @typedef {object} Variant   output traits that hold when every `key` input has that value
 * @property {Record<string, any>} key
 * @property {Record<string, any>} state
 *
 * @typedef {object} Snapshot
 * @property {number} format           1
 * @property {string} [title]
 * @property {Record<string, any>} state      every synced trait, as saved
 * @property {Variant[]} [variants]
 * @property {string[]} [local]        inputs the view handles alone (accepted, nothing recomputed)
 * @property {Record<string, Record<string, any>>} [resets]  inputs a change of `trait` resets (as Python does)
 * @property {string[]} [seq]          counters bumped once per answered change (the explorer's request/result seq)
 * @property {string} [note]           what the page can do without a kernel (shown above the view)
 * @property {Record<string, string>} [kernel_notes]  per input: why changing it needs the kernel
 */

/** base64 -> Uint8Array @param {string} b64 */
export function fromBase64(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Turn {"$bytes": base64} leaves into DataViews (what ipywidgets gives a view for a `bytes` trait). @param {any} v @returns {any} */
export function decodeValue(v) {
  if (Array.isArray(v)) return v.map(decodeValue);
  if (v && typeof v === "object") {
    if (typeof v.$bytes === "string" && Object.keys(v).length === 1) {
      const u8 = fromBase64(v.$bytes);
      return new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
    }
    /** @type {Record<string, any>} */
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = decodeValue(x);
    return out;
  }
  return v;
}

/** The snapshot in a `<script type="application/json">` (plain JSON) or `application/gzip+base64` element. @param {Element} script @returns {Promise<Snapshot>} */
export async function readSnapshot(script) {
  const text = (script.textContent || "").trim();
  if (script.getAttribute("type") !== "application/gzip+base64") return JSON.parse(text);
  if (typeof DecompressionStream !== "function") {
    throw new Error("this browser cannot decompress the saved data (DecompressionStream is missing); open the file in a current Chrome, Edge, Firefox or Safari");
  }
  const stream = new Blob([fromBase64(text)]).stream().pipeThrough(new DecompressionStream("gzip"));
  return JSON.parse(await new Response(stream).text());
}

/** Value equality for trait values (JSON-like; DataViews compared by bytes). @param {any} a @param {any} b @returns {boolean} */
export function same(a, b) {
  if (a === b) return true;
  if (a instanceof DataView && b instanceof DataView) {
    if (a.byteLength !== b.byteLength) return false;
    for (let i = 0; i < a.byteLength; i++) if (a.getUint8(i) !== b.getUint8(i)) return false;
    return true;
  }
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => same(x, b[i]));
  if (a && b && typeof a === "object" && typeof b === "object" && !Array.isArray(a) && !Array.isArray(b)) {
    const ka = Object.keys(a), kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => same(a[k], b[k]));
  }
  return false;
}

/** @param {any} v */
const show = (v) => (typeof v === "string" ? JSON.stringify(v) : JSON.stringify(v) ?? String(v));

/** An anywidget model over a snapshot. */
export class StaticModel {
  /** @param {Snapshot} snap @param {{onNote?: (msg: string) => void}} [opts] */
  constructor(snap, opts = {}) {
    this.snap = snap;
    /** @type {Record<string, any>} */
    this.base = decodeValue(snap.state || {});
    /** @type {Array<{key: Record<string, any>, state: Record<string, any>}>} */
    this.variants = (snap.variants || []).map((v) => ({ key: v.key || {}, state: decodeValue(v.state || {}) }));
    /** inputs that select a variant */
    this.keyed = new Set(this.variants.flatMap((v) => Object.keys(v.key)));
    this.local = new Set(snap.local || []);
    this.resets = snap.resets || {};
    this.seqTraits = snap.seq || [];
    /** @type {Record<string, any>} the values views see */
    this.state = { ...this.base };
    /** @type {Record<string, any>} the last state answered from saved data (what a refused change returns to) */
    this.committed = { ...this.base };
    /** @type {Set<string>} */
    this.dirty = new Set();
    /** @type {Map<string, Set<(...a: any[]) => void>>} */
    this.handlers = new Map();
    this.onNote = opts.onNote || (() => {});
    /** every note shown, for tests */
    /** @type {string[]} */
    this.notes = [];
    /** @type {Promise<void> | null} */
    this.answering = null;
  }

  /** @param {string} name */
  get(name) { return this.state[name]; }

  /** @param {string} name @param {any} value */
  set(name, value) {
    if (same(this.state[name], value)) return;
    this.state[name] = value;
    this.dirty.add(name);
    this.emit(`change:${name}`, value);
    this.emit("change");
  }

  /** @param {string} event @param {(...a: any[]) => void} cb */
  on(event, cb) {
    for (const ev of event.split(/\s+/).filter(Boolean)) {
      if (!this.handlers.has(ev)) this.handlers.set(ev, new Set());
      /** @type {Set<any>} */ (this.handlers.get(ev)).add(cb);
    }
  }

  /** @param {string | null} [event] @param {((...a: any[]) => void) | null} [cb] */
  off(event, cb) {
    if (!event) { this.handlers.clear(); return; }
    for (const ev of event.split(/\s+/).filter(Boolean)) {
      const set = this.handlers.get(ev);
      if (!set) continue;
      if (cb) set.delete(cb); else set.clear();
    }
  }

  /** @param {string} event @param {...any} args */
  emit(event, ...args) {
    for (const cb of [...(this.handlers.get(event) || [])]) {
      try { cb(...args); } catch (e) { console.error(`qscope-widgets static: a ${event} handler failed`, e); }
    }
  }

  /** A message to Python (pin a feature, pick a search result): there is no Python here. @param {any} content */
  send(content) {
    const what = content && typeof content === "object" && content.type ? `“${content.type}”` : "this action";
    this.note(`${what} needs a live kernel: this is a saved snapshot. Open the notebook in Jupyter and run it to do this.`);
  }

  /** @param {string} msg */
  note(msg) {
    this.notes.push(msg);
    this.onNote(msg);
  }

  /** The saved variants that hold for `inputs`, least specific first. @param {Record<string, any>} inputs */
  matching(inputs) {
    return this.variants
      .map((v, i) => ({ v, i }))
      .filter(({ v }) => Object.entries(v.key).every(([k, x]) => same(inputs[k], x)))
      .sort((a, b) => Object.keys(a.v.key).length - Object.keys(b.v.key).length || a.i - b.i)
      .map(({ v }) => v);
  }

  /** The values a keyed input takes in the saved data. @param {string} name */
  savedValues(name) {
    const vals = [];
    for (const v of this.variants) if (name in v.key && !vals.some((x) => same(x, v.key[name]))) vals.push(v.key[name]);
    return vals;
  }

  /** Put `names` back to their committed values, telling the views. @param {Iterable<string>} names */
  revert(names) {
    const changed = [];
    for (const n of names) {
      if (!same(this.state[n], this.committed[n])) { this.state[n] = this.committed[n]; changed.push(n); }
    }
    for (const n of changed) this.emit(`change:${n}`, this.state[n]);
    if (changed.length) this.emit("change");
  }

  /**
   * Answer the pending changes from the saved data, or put them back and say why. Asynchronous, as the kernel's
   * answer is: a view that updates itself right after `save_changes()` must not overwrite the answer.
   * @returns {Promise<void>}
   */
  save_changes() {
    if (!this.answering) {
      this.answering = Promise.resolve().then(() => {
        this.answering = null;
        this.answer();
      });
    }
    return this.answering;
  }

  answer() {
    const dirty = [...this.dirty];
    this.dirty.clear();
    if (!dirty.length) return;
    const live = dirty.filter((n) => !this.keyed.has(n) && !this.local.has(n));
    if (live.length) {
      this.revert(live);
      const why = live.map((n) => this.snap.kernel_notes?.[n]).filter(Boolean);
      this.note(`${why.length ? why.join(" ") : `Changing ${live.join(", ")}`} needs a live kernel: this is a saved ` +
        "snapshot. Open the notebook in Jupyter and run it to do this.");
    }
    const keyed = dirty.filter((n) => this.keyed.has(n));
    const localOnly = dirty.filter((n) => this.local.has(n) && !this.keyed.has(n));
    for (const n of localOnly) this.committed[n] = this.state[n];
    if (!keyed.length) return;

    // what Python's observers do on such a change (e.g. a new layer clears the selected feature)
    /** @type {Record<string, any>} */
    const inputs = { ...this.state };
    for (const n of keyed) for (const [k, v] of Object.entries(this.resets[n] || {})) inputs[k] = v;
    const found = this.matching(inputs);
    const missing = keyed.filter((n) => !found.some((v) => n in v.key));
    if (missing.length) {
      this.revert(keyed);
      this.note(missing.map((n) => {
        const saved = this.savedValues(n).map(show).join(", ");
        return `${n} = ${show(inputs[n])} is not in this snapshot's saved data (saved: ${saved}); computing it needs a live kernel.`;
      }).join(" "));
      return;
    }
    /** @type {Record<string, any>} */
    const next = { ...this.base, ...inputs };
    for (const v of found) Object.assign(next, v.state);
    for (const s of this.seqTraits) next[s] = Number(this.committed[s] ?? 0) + 1;
    const changed = Object.keys(next).filter((k) => !same(next[k], this.state[k]));
    this.state = next;
    this.committed = { ...next };
    // every value first, then the events (as one ipywidgets message with many keys), the seq counters last
    const order = [...changed.filter((k) => !this.seqTraits.includes(k)), ...changed.filter((k) => this.seqTraits.includes(k))];
    for (const k of order) this.emit(`change:${k}`, next[k]);
    if (order.length) this.emit("change");
  }
}

/**
 * Render a snapshot into `el`: the note bar, then the view exactly as a notebook draws it.
 * @param {HTMLElement} el @param {Snapshot} snap
 * @returns {{model: StaticModel, dispose: () => void}}
 */
export function mountSnapshot(el, snap) {
  const msg = h("div", { class: "qscope-static-msg", dataset: { qscope: "kernel-note" }, role: "status", hidden: true });
  const bar = h("div", { class: "qscope-static-note", dataset: { qscope: "static-note" } }, [
    h("span", { text: snap.note || "Saved snapshot: no kernel. What needs the model is disabled." }), msg,
  ]);
  let timer = /** @type {ReturnType<typeof setTimeout> | null} */ (null);
  const model = new StaticModel(snap, {
    onNote: (text) => {
      msg.textContent = text;
      msg.hidden = false;
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => { msg.hidden = true; }, 12000);
    },
  });
  const host = h("div", { class: "qscope-static-view" });
  el.append(bar, host);
  const dispose = widget.render({ model, el: host });
  return { model, dispose: () => { if (timer) clearTimeout(timer); dispose(); clear(el); } };
}

/** Mount every `[data-qscope-static]` element of the page from the data script it names. */
export async function mountAll(doc = document) {
  /** @type {Array<{model: StaticModel, dispose: () => void}>} */
  const out = [];
  for (const el of /** @type {HTMLElement[]} */ ([...doc.querySelectorAll("[data-qscope-static]")])) {
    if (el.dataset.mounted === "true") continue;
    el.dataset.mounted = "true";
    try {
      const script = doc.getElementById(String(el.dataset.qscopeStatic));
      if (!script) throw new Error(`the data of ${el.dataset.qscopeStatic} is missing from the page`);
      out.push(mountSnapshot(el, await readSnapshot(script)));
      el.dataset.ready = "true";
    } catch (err) {
      console.error("qscope-widgets static:", err);
      el.append(h("div", { class: "qscope-static-error", dataset: { qscope: "static-error" },
        text: `qscope-widgets: this snapshot cannot be shown: ${err instanceof Error ? err.message : err}` }));
      el.dataset.ready = "error";
    }
  }
  return out;
}

export default { mountAll, mountSnapshot, StaticModel, readSnapshot, decodeValue };
