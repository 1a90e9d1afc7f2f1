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

/** @param {HTMLElement} root */
export function installKeys(root) {
  const stop = (/** @type {Event} */ ev) => { if (keepInside(/** @type {KeyboardEvent} */ (ev))) ev.stopPropagation(); };
  root.addEventListener("keydown", stop);
  root.addEventListener("keypress", stop);
  root.addEventListener("keyup", stop);
}
