// Per-frame coalescing: many calls within one animation frame run the callback once, with the latest value.
// Falls back to setTimeout(16 ms) where requestAnimationFrame is missing (tests, hidden documents).

/** @param {() => void} cb @returns {() => void} cancel */
export function nextFrame(cb) {
  const raf = globalThis.requestAnimationFrame;
  const hidden = typeof document !== "undefined" && document.visibilityState === "hidden";
  if (typeof raf === "function" && !hidden) {
    const id = raf(cb);
    return () => globalThis.cancelAnimationFrame?.(id);
  }
  const id = setTimeout(cb, 16);
  return () => clearTimeout(id);
}

/**
 * `push(v)` records v; `fn(latest)` runs at most once per frame. `flush()` runs it now if something is
 * pending (slider release, teardown), so the last value is always delivered.
 * @template T
 * @param {(value: T) => void} fn
 */
export function coalescer(fn) {
  /** @type {{value: T} | null} */
  let pending = null;
  /** @type {(() => void) | null} */
  let cancel = null;
  const run = () => {
    cancel = null;
    if (!pending) return;
    const { value } = pending;
    pending = null;
    fn(value);
  };
  return {
    /** @param {T} value */
    push(value) {
      pending = { value };
      if (!cancel) cancel = nextFrame(run);
    },
    flush() {
      if (cancel) cancel();
      cancel = null;
      run();
    },
    cancel() {
      if (cancel) cancel();
      cancel = null;
      pending = null;
    },
    get pending() {
      return pending != null;
    },
  };
}

/**
 * Debounce: `fn` runs `ms` after the last call. `flush()` runs it now if pending.
 * @template {any[]} A
 * @param {(...args: A) => void} fn @param {number} ms
 */
export function debounce(fn, ms) {
  /** @type {ReturnType<typeof setTimeout> | null} */
  let id = null;
  /** @type {A | null} */
  let args = null;
  const call = (/** @type {A} */ ...a) => {
    args = a;
    if (id != null) clearTimeout(id);
    id = setTimeout(() => { id = null; const x = args; args = null; if (x) fn(...x); }, ms);
  };
  call.flush = () => {
    if (id != null) clearTimeout(id);
    id = null;
    const x = args;
    args = null;
    if (x) fn(...x);
  };
  call.cancel = () => { if (id != null) clearTimeout(id); id = null; args = null; };
  return call;
}
