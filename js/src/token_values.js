// What the heatmap colours each token by, computed in the page from the shipped sparse codes, exactly as the
// kernel computes `token_values` (qscope_widgets/widgets/panels.py: token_values, _scale_max). Colour-by and the
// selected feature repaint with these at once; the kernel's result then confirms them bit for bit.

/**
 * What Python's `token_values` will be for this colour-by, computed from the shipped codes (null when the codes
 * cannot say, e.g. no codes yet). A feature's activation is its value where it is among a token's top k, else 0.
 * @param {{tokens: string[], k: number, ids: Int32Array, codes: Float32Array, recon: Float32Array<ArrayBuffer>}} s
 * @param {string} colorBy @param {number} feature @returns {Float32Array<ArrayBuffer> | null}
 */
export function localValues(s, colorBy, feature) {
  const n = s.tokens.length, k = s.k;
  if (colorBy === "monitor") return null;  // the monitor's score needs the kernel (token_colouring)
  if (colorBy === "error") return s.recon.length === n ? s.recon : null;
  if (!(k > 0) || s.ids.length < n * k || s.codes.length < n * k) return null;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    if (colorBy === "feature" && feature >= 0) {
      for (let j = i * k; j < (i + 1) * k; j++) if (s.ids[j] === feature && s.codes[j] !== 0) { out[i] = s.codes[j]; break; }
    } else out[i] = s.codes[i * k];
  }
  return out;
}

/** Python's colour-scale top: max |value| over the tokens but the first (an attention sink); 1 when that is 0.
 * @param {Float32Array} values */
export function scaleMax(values) {
  let m = 0;
  for (let i = values.length > 1 ? 1 : 0; i < values.length; i++) if (Number.isFinite(values[i])) m = Math.max(m, Math.abs(values[i]));
  return m > 0 ? Math.fround(m) : 1;
}

