// Feature labels the front end knows: `feature_labels` (every feature among the prompt's codes at the layer in
// view, sent with the heatmap), then the sidebar rows, the steering edits, the search results. The heatmap's
// tooltip shows them beside feature ids.
import { h } from "./dom.js";

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

/** Weak-label threshold text for tooltips (index/labels.py WEAK_BELOW, detection F1 on held-out text). */
const SCORE_TITLE = "label score: detection F1 of this label on held-out text (how well what it names predicts where the feature fires)";

/**
 * The score beside a label and a "weak label" tag, from a row's / card's `label_score` and `label_weak`
 * (`null`/absent: the index has no label scores, nothing is drawn).
 * @param {{label_score?: number | null, label_weak?: boolean | null}} row
 * @returns {HTMLElement[]}
 */
export function labelScoreBadges(row) {
  /** @type {HTMLElement[]} */
  const out = [];
  const score = row?.label_score;
  if (score != null && Number.isFinite(Number(score))) {
    out.push(h("span", { class: "qscope-lscore qscope-num", dataset: { qscope: "label-score" }, text: Number(score).toFixed(2), title: SCORE_TITLE }));
  }
  if (row?.label_weak === true) {
    out.push(h("span", {
      class: "qscope-weak", dataset: { qscope: "weak-label" }, text: "weak label",
      title: score != null ? "this label predicts where the feature fires poorly on held-out text (F1 < 0.4)" : "unscored: the feature fires too rarely on held-out text to score its label",
    }));
  }
  return out;
}
