// Colour-blind-safe scales: a pale-to-dark yellow-orange-brown (sequential, for magnitudes: lightness carries the
// value, so a weak activation stays faint instead of the darkest, most salient colour as with viridis on a light
// page) and a blue-white-orange diverging scale (for steered - baseline). Text on a coloured token is black or white, whichever has the higher contrast.
import { DIFF_UNFILLED_FRACTION } from "./constants.js";

/** @typedef {[number, number, number]} RGB */

/** ColorBrewer YlOrBr, 9 classes: single-hue-family, monotone in lightness, colour-blind safe */
const YL_OR_BR = ["#ffffe5", "#fff7bc", "#fee391", "#fec44f", "#fe9929", "#ec7014", "#cc4c02", "#993404", "#662506"];
/** blue (negative) -> near white (0) -> orange (positive); from ColorBrewer RdBu / PuOr, both colour-blind safe */
const BLUE_ORANGE = ["#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fee0b6", "#fdb863", "#e08214", "#b35806"];

/** @param {string} hex @returns {RGB} */
export function hexToRgb(hex) {
  const h = hex.replace("#", "");
  return [parseInt(h.slice(0, 2), 16), parseInt(h.slice(2, 4), 16), parseInt(h.slice(4, 6), 16)];
}

const SEQ = YL_OR_BR.map(hexToRgb);
const DIV = BLUE_ORANGE.map(hexToRgb);

/** @param {RGB[]} stops @param {number} t in [0, 1] @returns {RGB} */
function interpolate(stops, t) {
  const x = Math.min(1, Math.max(0, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  const a = stops[i], b = stops[i + 1];
  return /** @type {RGB} */ ([0, 1, 2].map((c) => Math.round(a[c] + (b[c] - a[c]) * f)));
}

/** Sequential colour for t in [0, 1]. @param {number} t @returns {RGB} */
export const sequential = (t) => interpolate(SEQ, t);

/** Diverging colour for t in [-1, 1] (0 is the neutral middle). @param {number} t @returns {RGB} */
export const diverging = (t) => interpolate(DIV, (Math.min(1, Math.max(-1, t)) + 1) / 2);

/** @param {RGB} rgb */
export const css = (rgb) => `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;

/** WCAG relative luminance. @param {RGB} rgb */
export function luminance(rgb) {
  const lin = rgb.map((v) => {
    const c = v / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
}

/** WCAG contrast ratio between two colours. @param {RGB} a @param {RGB} b */
export function contrast(a, b) {
  const la = luminance(a), lb = luminance(b);
  return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
}

/** "#000" or "#fff", whichever reads better on `bg`. @param {RGB} bg */
export function textColor(bg) {
  return contrast(bg, [0, 0, 0]) >= contrast(bg, [255, 255, 255]) ? "#000" : "#fff";
}

/**
 * The fill of one heatmap cell, or null for "no fill" (value 0 / below the scale / not a number): the token then
 * keeps the theme's own colours, so an unlit prompt reads as plain text in light and dark themes.
 * @param {number} value
 * @param {[number, number]} range  [lo, hi]
 * @param {"sequential" | "diverging"} scale
 * @returns {{bg: string, fg: string, t: number} | null}
 */
export function cellColor(value, range, scale) {
  if (!Number.isFinite(value)) return null;
  let [lo, hi] = range;
  if (!Number.isFinite(lo)) lo = 0;
  if (!Number.isFinite(hi)) hi = lo;
  if (scale === "diverging") {
    const m = Math.max(Math.abs(lo), Math.abs(hi));
    if (!(m > 0)) return null;
    const t = Math.max(-1, Math.min(1, value / m));
    if (Math.abs(t) < DIFF_UNFILLED_FRACTION) return null;
    const rgb = diverging(t);
    return { bg: css(rgb), fg: textColor(rgb), t };
  }
  if (value <= lo || value === 0) return null;
  const t = hi > lo ? Math.min(1, (value - lo) / (hi - lo)) : 1;
  const rgb = sequential(t);
  return { bg: css(rgb), fg: textColor(rgb), t };
}

/** A CSS gradient of a scale, left to right, for legends. @param {"sequential" | "diverging"} scale */
export function gradient(scale) {
  const stops = scale === "diverging" ? BLUE_ORANGE : YL_OR_BR;
  return `linear-gradient(to right, ${stops.join(", ")})`;
}
