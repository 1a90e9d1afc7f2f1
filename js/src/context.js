// One render's shared state: the model listeners it registered (all removed by dispose), the stale-result
// guard, the drawers of a new result, and the JS errors caught while drawing (shown in the status line).
import { SeqGuard, isStale } from "./seq.js";

/** @typedef {import("./model").Model} Model  the anywidget model, typed trait by trait (src/model.d.ts) */

export class Context {
  /** @param {Model} model @param {HTMLElement} root */
  constructor(model, root) {
    this.model = model;
    this.root = root;
    this.guard = new SeqGuard();
    /** @type {Array<[string, (...a: any[]) => void]>} */
    this.listeners = [];
    /** @type {Array<() => void>} */
    this.cleanups = [];
    /** @type {Array<[string, (seq: number) => void]>} */
    this.resultDrawers = [];
    /** @type {Map<string, Error>} */
    this.errors = new Map();
    /** @type {Array<() => void>} */
    this.errorWatchers = [];
    this.disposed = false;
  }

  /**
   * Run `fn`; a throw is recorded under `name` (and shown in the status line) instead of killing the widget.
   * A later successful run under the same name clears it.
   * @param {string} name @param {() => void} fn
   */
  safe(name, fn) {
    try {
      fn();
      if (this.errors.delete(name)) this.errorsChanged();
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      this.errors.set(name, e);
      console.error(`qscope-widgets: ${name} failed`, e);
      this.errorsChanged();
    }
  }

  errorsChanged() {
    for (const w of this.errorWatchers) {
      try { w(); } catch (e) { console.error("qscope-widgets: status line failed", e); }
    }
  }

  /** Listen to a model event (removed on dispose); the handler runs under `safe`. @param {string} event @param {string} name @param {(...a: any[]) => void} fn */
  on(event, name, fn) {
    const wrapped = (/** @type {any[]} */ ...args) => { if (!this.disposed) this.safe(name, () => fn(...args)); };
    this.model.on(event, wrapped);
    this.listeners.push([event, wrapped]);
  }

  /** Register a drawer of new results (called in registration order when result_seq grows). @param {string} name @param {(seq: number) => void} fn */
  onResult(name, fn) {
    this.resultDrawers.push([name, fn]);
  }

  /** @param {() => void} fn */
  onCleanup(fn) {
    this.cleanups.push(fn);
  }

  /** The result_seq the model holds now. */
  resultSeq() {
    return Number(this.model.get("result_seq") ?? 0);
  }

  /** Draw the model's result if it is newer than the one drawn; then stamp the root. */
  drawResult() {
    const seq = this.resultSeq();
    if (!this.guard.isNewer(seq)) return false;
    for (const [name, fn] of this.resultDrawers) this.safe(name, () => fn(seq));
    this.guard.mark(seq);
    this.root.dataset.resultSeq = String(seq);
    return true;
  }

  /** True when the model's current outputs belong to the drawn result or a newer one (not a late, older one). */
  current() {
    return this.guard.isCurrent(this.resultSeq());
  }

  updateStale() {
    this.root.dataset.stale = String(isStale(this.model));
  }

  /** Wire the result and stale listeners and draw the first result. */
  start() {
    this.on("change:result_seq", "result", () => { this.drawResult(); this.updateStale(); });
    this.on("change:request_seq", "stale", () => this.updateStale());
    this.on("change:status", "stale", () => this.updateStale());
    this.drawResult();
    this.updateStale();
  }

  /** Remove every model listener this render added and run the components' cleanups. */
  dispose() {
    if (this.disposed) return;
    for (const fn of this.cleanups.splice(0).reverse()) {
      try { fn(); } catch (e) { console.error("qscope-widgets: cleanup failed", e); }
    }
    this.disposed = true;
    for (const [event, fn] of this.listeners.splice(0)) this.model.off(event, fn);
  }
}
