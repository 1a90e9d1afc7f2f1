// A tiny stand-in for anywidget's model: get / set / on / off / save_changes / send, recording every call.
// Binary traits hold DataViews (deliberately misaligned, as ipywidgets may hand them over).

/** float32 little-endian bytes as a DataView at an odd offset. @param {number[]} xs */
export function f32(xs) {
  const buf = new ArrayBuffer(xs.length * 4 + 3);
  const dv = new DataView(buf, 3, xs.length * 4);
  xs.forEach((x, i) => dv.setFloat32(i * 4, x, true));
  return dv;
}

/** int32 little-endian bytes as a DataView at an odd offset. @param {number[]} xs */
export function i32(xs) {
  const buf = new ArrayBuffer(xs.length * 4 + 1);
  const dv = new DataView(buf, 1, xs.length * 4);
  xs.forEach((x, i) => dv.setInt32(i * 4, x, true));
  return dv;
}

export class FakeModel {
  /** @param {Record<string, any>} state */
  constructor(state = {}) {
    this.state = { ...state };
    /** @type {Map<string, Set<Function>>} */
    this.listeners = new Map();
    /** @type {Array<[string, any]>} */
    this.sets = [];
    this.saves = 0;
    /** @type {Array<Record<string, any>>} what each save_changes sent (the traits set since the last one) */
    this.saved = [];
    /** @type {Record<string, any>} */
    this.dirty = {};
    /** @type {any[]} */
    this.sent = [];
  }
  /** @param {string} name */
  get(name) { return this.state[name]; }
  /** JS-side set: records the call; fires change events like Backbone. @param {string} name @param {any} value */
  set(name, value) {
    this.sets.push([name, value]);
    this.dirty[name] = value;
    this.state[name] = value;
    this.emit(`change:${name}`);
  }
  save_changes() {
    this.saves += 1;
    this.saved.push(this.dirty);
    this.dirty = {};
  }
  /** @param {any} content */
  send(content) { this.sent.push(content); }
  /** @param {string} event @param {Function} cb */
  on(event, cb) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(cb);
  }
  /** @param {string} [event] @param {Function} [cb] */
  off(event, cb) {
    if (!event) { this.listeners.clear(); return; }
    if (!cb) { this.listeners.delete(event); return; }
    this.listeners.get(event)?.delete(cb);
  }
  /** @param {string} event */
  emit(event) { for (const cb of [...(this.listeners.get(event) || [])]) cb(); }
  /** Python-side update: set all traits first, then fire their change events (as one hold_sync message does). */
  update(/** @type {Record<string, any>} */ patch) {
    Object.assign(this.state, patch);
    for (const name of Object.keys(patch)) this.emit(`change:${name}`);
  }
  listenerCount() { let n = 0; for (const s of this.listeners.values()) n += s.size; return n; }
}

/** The panels of each Python view class (qscope_widgets/widgets/explorer.py). */
export const VIEW_PANELS = /** @type {Record<string, string[]>} */ ({
  explorer: ["heatmap", "sidebar", "layers", "steering", "next_tokens", "continuation", "sweep", "dashboard", "attribution"],
  heatmap: ["heatmap"], sidebar: ["sidebar"], layers: ["layers"], steering: ["steering", "next_tokens", "continuation", "sweep"],
  compare: ["compare", "steering"],
});

/** A realistic explorer state: 4 tokens, k=3, layers 0..3 with SAEs on 1..3. */
export function explorerState(over = {}) {
  const view = /** @type {any} */ (over)._view || "explorer";
  return {
    _view: "explorer",
    _panels: VIEW_PANELS[view] || [],
    prompt: "In the beginning",
    layer: 1,
    selected_token: -1,
    selected_feature: -1,
    color_by: "strongest",
    diff: false,
    edits: [],
    search_query: "",
    continuation_tokens: 8,
    request_seq: 1,
    result_seq: 1,
    tokens: ["In", " the", " beginning", "\n"],
    k: 3,
    codes_ids: i32([5, 7, 9, 5, 2, 0, 11, 5, 3, 1, 0, 0]),
    codes_values: f32([2.5, 1.25, 0.5, 0.1, 0.05, 0, 4, 1, 0.5, 0.3, 0, 0]),
    token_values: f32([2.5, 0.1, 4, 0]),
    diff_values: f32([]),
    value_range: [0, 4],
    sidebar: [
      { feature: 11, activation: 4, label: "creation", density: 0.002, contexts: ["God created", "the heaven"], pinned: false },
      { feature: 5, activation: 2.5, label: "article", density: 0.05, contexts: ["the", "a"], pinned: true },
    ],
    sidebar_title: "whole prompt",
    search_results: [],
    next_tokens: { baseline: [[" God", 0.5], [" the", 0.2]], steered: [] },
    continuation: { seq: 1, baseline: " God created", steered: " God created", done: true },
    layer_chart: f32([NaN, NaN, NaN, NaN, 1, 20, 0.1, 4, 2, 30, 0.2, 5, 0, 10, NaN, 3]),
    layer_state: ["none", "ready", "unloaded", "loading"],
    status: { busy: false, stage: "done", latency_ms: 42.4, error: "", seq: 1 },
    n_layers: 4,
    sae_layers: [1, 2, 3],
    d_sae: 16,
    feature_url: "https://example.org/{layer}/{feature}",
    ...over,
  };
}

export function edit(over = {}) {
  return {
    layer: 1, feature: 11, strength: 0, mode: "add", enabled: true, label: "creation",
    min: -8, max: 8, default: 0, typical: 4, range_mode: "add", ...over,
  };
}

/** render a view into a fresh element attached to the document */
export async function mount(model) {
  const { default: widget } = await import("../src/index.js");
  const render = widget.render;
  const el = document.createElement("div");
  document.body.append(el);
  const cleanup = render({ model, el });
  return { el, cleanup, $: (/** @type {string} */ s) => el.querySelector(s), $$: (/** @type {string} */ s) => [...el.querySelectorAll(s)] };
}
