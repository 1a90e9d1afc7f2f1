// Keys typed inside a widget stay inside it. JupyterLab / Notebook 7 listen for shortcuts on the document in the
// bubble phase, so without this Shift+Enter in the prompt box runs the cell and an arrow on a focused slider
// moves the notebook's cell selection. One keydown listener on the widget root stops those keys there, after the
// widget's own handlers ran (Enter submits, Shift+Enter is a newline, arrows move sliders and the token selection).

const NAV = new Set(["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Home", "End", "PageUp", "PageDown",
  "Enter", " ", "Spacebar", "Tab", "Backspace", "Delete"]);

/** Elements whose keys are all the widget's own (text fields, selects, sliders, number boxes). @param {Element} el */
export function ownsAllKeys(el) {
  const tag = el.tagName;
  return tag === "TEXTAREA" || tag === "SELECT" || tag === "INPUT" || (el instanceof HTMLElement && el.isContentEditable);
}

/**
 * Whether a keydown inside the widget must not reach the notebook's shortcuts.
 * Escape is let through (it leaves the cell in JupyterLab) unless the widget used it; so are Ctrl/Cmd
 * shortcuts on non-text elements (save, undo cells).
 * @param {KeyboardEvent} ev
 */
export function keepInside(ev) {
  const target = /** @type {Element | null} */ (ev.target instanceof Element ? ev.target : null);
  if (!target) return false;
  if (ev.defaultPrevented) return true;  // a widget handler used it
  if (ev.key === "Escape") return false;
  if (ownsAllKeys(target)) return true;
  if ((ev.ctrlKey || ev.metaKey) && ev.key !== "Enter") return false;
  return NAV.has(ev.key) || ev.key.length === 1;
}

const RANGE_STEPS = /** @type {Record<string, number>} */ ({ ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1, PageUp: 10, PageDown: -10 });

/**
 * Notebook 7 cancels arrow keys in the capture phase, before the widget sees them, so a focused slider would not
 * move: when the browser's own handling was cancelled, move the slider here (and fire input + change as a hand
 * would). Where the key was not cancelled (JupyterLab) the browser moves it and this does nothing.
 * @param {KeyboardEvent} ev
 */
export function moveRangeIfCancelled(ev) {
  if (ev.defaultPrevented) moveRange(ev);
}

/** Move a focused range input by the key, as the browser would; true when the key was a slider key.
 * @param {KeyboardEvent} ev */
function moveRange(ev) {
  const el = ev.target;
  if (!(el instanceof HTMLInputElement) || el.type !== "range") return false;
  const before = el.value;
  if (ev.key === "Home") el.value = el.min;
  else if (ev.key === "End") el.value = el.max;
  else if (ev.key in RANGE_STEPS) {
    const lo = Number(el.min || 0), hi = Number(el.max || 100);
    const step = Number(el.step) > 0 ? Number(el.step) : 1;
    const k = Math.round((Number(el.value) - lo) / step) + RANGE_STEPS[ev.key];
    el.value = String(Math.min(hi, Math.max(lo, lo + k * step)));
  } else return false;
  if (el.value !== before) {
    el.dispatchEvent(new Event("input", { bubbles: true }));
    el.dispatchEvent(new Event("change", { bubbles: true }));
  }
  return true;
}

/**
 * Notebook 7 cancels and stops arrow keys in the document's capture phase, so they never reach a slider inside
 * a widget. The window's capture phase runs before that: a slider key on a widget's slider is handled there
 * (the slider moves, input + change fire) and goes no further, in every notebook front end alike.
 * @param {KeyboardEvent} ev
 */
function onWindowKeydown(ev) {
  const el = ev.target;
  if (handOwnedKey(ev)) return;
  if (!(el instanceof HTMLInputElement) || el.type !== "range" || !el.closest(".qscope")) return;
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (moveRange(ev)) { ev.preventDefault(); ev.stopPropagation(); }
}

/** Keys a `[data-qscope-keys]` element (the heatmap's tokens) handles itself. */
const OWNED_KEYS = new Set(["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Home", "End", "Enter", " ", "Spacebar"]);

/**
 * Notebook 7 matches its command-mode shortcuts (ArrowUp / ArrowDown move the cell selection) in the document's
 * capture phase, before a focused token sees the key. For an element inside a widget marked
 * `[data-qscope-keys]`, the key is taken here, in the window's capture phase, and handed to it as a
 * `qscope-key` event (detail: {key}), the same in every notebook front end. True when the key was taken.
 * @param {KeyboardEvent} ev
 */
export function handOwnedKey(ev) {
  const el = ev.target;
  if (!(el instanceof Element) || ownsAllKeys(el) || !OWNED_KEYS.has(ev.key)) return false;
  if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.isComposing) return false;
  const owner = el.closest("[data-qscope-keys]");
  if (!owner || !owner.closest(".qscope")) return false;
  ev.preventDefault();
  ev.stopPropagation();
  el.dispatchEvent(new CustomEvent("qscope-key", { bubbles: true, detail: { key: ev.key, shiftKey: ev.shiftKey } }));
  return true;
}

/** @param {HTMLElement} root */
export function installKeys(root) {
  const g = /** @type {any} */ (globalThis);
  if (!g.__qscopeWindowKeys && typeof window !== "undefined") {  // once per page, for every widget
    g.__qscopeWindowKeys = true;
    window.addEventListener("keydown", onWindowKeydown, true);
  }
  // Lumino (JupyterLab 4 / Notebook 7) skips shortcuts whose match would pass through this attribute; not
  // enough alone (selectors that match the focused element itself still fire), hence the listeners below too.
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  const stop = (/** @type {Event} */ ev) => { if (keepInside(/** @type {KeyboardEvent} */ (ev))) ev.stopPropagation(); };
  root.addEventListener("keydown", (ev) => { moveRangeIfCancelled(ev); stop(ev); });
  root.addEventListener("keypress", stop);
  root.addEventListener("keyup", stop);
}
