// Tiny DOM helpers shared by the components (no framework: the widget draws what Python sends).

/**
 * Create an element. `attrs`: `class`, `text`, `dataset` (object), `style` (object), `on*` listeners
 * (function values), booleans (set when true), anything else as an attribute.
 * @param {string} tag
 * @param {Record<string, any>} [attrs]
 * @param {Array<Node | string | null | undefined | false>} [children]
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, children = []) {
  const el = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === "class") el.setAttribute("class", String(value));
    else if (key === "text") el.textContent = String(value);
    else if (key === "dataset") for (const [d, v] of Object.entries(value)) { if (v != null) /** @type {HTMLElement} */ (el).dataset[d] = String(v); }
    else if (key === "style") Object.assign(/** @type {HTMLElement} */ (el).style, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children) if (child != null && child !== false) el.append(child);
  return /** @type {HTMLElement} */ (el);
}

/** Remove all children. @param {Element} el */
export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
}

/**
 * A token string with whitespace made visible but subtle: spaces as '·', newlines as '⏎', tabs as '→'.
 * Returns a fragment of text nodes and `span.qscope-ws` markers, plus whether the token ends a line.
 * With `breaks`, every newline is also a real line break inside the fragment, so a token like "\n    " (a
 * newline sharing a token with the next line's indentation, common in code) keeps the line structure.
 * @param {string} text @param {{breaks?: boolean}} [opts]
 * @returns {{node: DocumentFragment, newline: boolean}}
 */
export function visibleToken(text, opts = {}) {
  const frag = document.createDocumentFragment();
  let plain = "";
  const flush = () => { if (plain) frag.append(plain); plain = ""; };
  const marks = /** @type {Record<string, string>} */ ({ " ": "·", "\n": "⏎", "\t": "→", "\r": "␍", "\u00a0": "·" });
  for (const ch of String(text ?? "")) {
    if (ch in marks) {
      flush();
      frag.append(h("span", { class: "qscope-ws", "aria-hidden": "true", text: marks[ch] }));
      if (ch === "\n" && opts.breaks) frag.append(h("br"));
    } else plain += ch;
  }
  flush();
  if (!frag.childNodes.length) frag.append(h("span", { class: "qscope-ws", text: "∅" }));
  return { node: frag, newline: !opts.breaks && /\n$/.test(String(text ?? "")) };
}

/** A short, readable number. @param {number} x @param {number} [digits] */
export function fmt(x, digits = 3) {
  if (x == null || Number.isNaN(x)) return "–";
  if (!Number.isFinite(x)) return x > 0 ? "∞" : "-∞";
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return x.toExponential(1);
  return String(Number(x.toPrecision(digits)));
}

/** A density (fraction of tokens) as a percentage. @param {number} d */
export function pct(d) {
  if (d == null || !Number.isFinite(d)) return "–";
  if (d === 0) return "0%";
  const p = d * 100;
  return p < 0.01 ? `${p.toExponential(1)}%` : `${Number(p.toPrecision(2))}%`;
}

/** Fill a feature-page template: "{layer}" and "{feature}". @param {string} tpl @param {number} layer @param {number} feature */
export function featureUrl(tpl, layer, feature) {
  if (!tpl) return "";
  return tpl.replaceAll("{layer}", String(layer)).replaceAll("{feature}", String(feature));
}
