// Feature labels the front end knows: `feature_labels` (every feature among the prompt's codes at the layer in
// view, sent with the heatmap), then the sidebar rows, the steering edits, the search results. The heatmap's
// tooltip shows them beside feature ids.

/**
 * @param {import("./model").Model} model
 * @param {number} layer
 * @returns {Map<number, string>}
 */
export function knownLabels(model, layer) {
  /** @type {Map<number, string>} */
  const out = new Map();
  const add = (/** @type {any} */ row, /** @type {boolean} */ sameLayer) => {
    if (!row || !sameLayer || row.label == null || row.label === "") return;
    const f = Number(row.feature);
    if (Number.isInteger(f) && !out.has(f)) out.set(f, String(row.label));
  };
  const all = model.get("feature_labels") || {};
  for (const [f, label] of Object.entries(all)) if (label) out.set(Number(f), String(label));
  for (const row of model.get("sidebar") || []) add(row, true);
  for (const row of model.get("edits") || []) add(row, Number(row?.layer) === layer);
  for (const row of model.get("search_results") || []) add(row, Number(row?.layer) === layer);
  return out;
}
