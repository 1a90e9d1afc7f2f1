// Constants shared with Python, from their one source: qscope_widgets/widgets/contract.json (bundled by esbuild).
import contract from "../../qscope_widgets/widgets/contract.json";

/** @type {string[]} what the heatmap colours tokens by */
export const COLOR_BY = contract.color_by;
/** @type {Record<string, string>} */
export const COLOR_BY_LABELS = contract.color_by_labels;
/** @type {string[]} steering modes */
export const MODES = contract.modes;
/** @type {string[]} the columns of a `layer_chart` row, in order */
export const CHART_COLUMNS = contract.chart_columns;
/** @type {number} a diff below this share of the largest |diff| is drawn unfilled */
export const DIFF_UNFILLED_FRACTION = contract.diff_unfilled_fraction;
/** @type {number} a slider's range holds about this many steps */
export const SLIDER_POSITIONS = contract.slider_positions;
/** @type {string[]} where the explorer's edits apply */
export const STEER_POSITIONS = contract.steer_positions;
/** @type {number} */
export const MAX_CONTINUATION_TOKENS = contract.max_continuation_tokens;
