// The typed anywidget model: every synced trait with its JS type. `tsc --noEmit --checkJs` (npm test) checks each
// `model.get` / `model.set` against it, and tests/test_widget_contract.py checks these names against the Python
// traits and docs/widget-contract.md, so the three cannot drift apart.

/** Binary traits (Python `bytes`) arrive as DataViews. */
export type Binary = DataView | ArrayBuffer | null;

/** One pinned feature / steering edit (docs/widget-contract.md). */
export interface Edit {
  layer: number; feature: number; strength: number; mode: string; enabled: boolean; label: string;
  min: number; max: number; step?: number; default: number; typical: number; range_mode?: string;
  [bookkeeping: string]: unknown;
}

/** One attribution node (docs/widget-contract.md, panel `attribution`). */
export interface AttributionNode {
  id?: string; layer: number; position: number; token: string; feature: number; label: string;
  activation: number; attribution: number; kind: string;
}

export interface AttributionData {
  target?: string; position?: number; method?: string; metric?: number; error_share?: number; layers?: number[];
  shape?: [number, number]; tokens?: string[]; range?: [number, number]; top?: AttributionNode[];
  graph?: { nodes: AttributionNode[]; edges: Array<[string, string, number]> };
}

export interface Traits {
  // every view
  _view: string;
  _panels: string[];
  prompt: string;
  layer: number;
  edits: Edit[];
  request_seq: number;
  result_seq: number;
  status: { busy?: boolean; stage?: string; latency_ms?: number; error?: string; seq?: number; done_seq?: number;
            forward?: boolean; panels?: string[]; message?: string; pinned?: boolean };
  n_layers: number;
  sae_layers: number[];
  d_sae: number;
  feature_url: string;
  // view inputs
  selected_token: number;
  selected_feature: number;
  color_by: string;
  diff: boolean;
  search_query: string;
  steer_positions: string;
  continuation_tokens: number;
  temperature: number;
  seed: number;
  stop_at_eos: boolean;
  // heatmap
  tokens: string[];
  k: number;
  codes_ids: Binary;
  codes_values: Binary;
  token_values: Binary;
  recon_error: Binary;
  diff_values: Binary;
  value_range: number[];
  diff_caption: string;
  feature_labels: Record<string, string>;
  monitor: { features?: Array<[number, number]>; weights?: number[]; threshold?: number | null; reduce?: string; skip_first?: boolean };
  // compare
  prompt_b: string;
  compare_rows: Array<{ layer: number; feature: number; label: string; rate_a: number; rate_b: number; difference: number;
                        presets: Record<string, number> }>;
  compare_feature: number;
  tokens_a: string[];
  values_a: Binary;
  tokens_b: string[];
  values_b: Binary;
  compare_range: number[];
  // sidebar
  sidebar: Array<Record<string, any>>;
  sidebar_title: string;
  search_results: Array<Record<string, any>>;
  search_error: string;
  // next tokens, continuation
  next_tokens: { position?: number; token?: string; baseline?: Array<[string, number]>; steered?: Array<[string, number]> };
  continuation: { seq?: number; baseline?: string; steered?: string; done?: boolean; note?: string };
  // sweep (steering_eval of a pinned feature vs its controls)
  sweep_request: { layer?: number; feature?: number; nonce?: number; prompts?: string[]; strengths?: number[];
                   seeds?: number[]; max_new_tokens?: number; controls?: string[] };
  sweep_result: Record<string, any>;
  // layers
  layer_chart: Binary;
  layer_state: string[];
  // attribution
  attribution_target: string;
  attribution_position: number;
  attribution_grid: Binary;
  attribution: AttributionData;
  attribution_check: { n?: number; spearman?: number | null; pearson?: number | null; metric?: number; target?: string;
                       position?: number; running?: boolean; error?: string;
                       rows?: Array<{ layer: number; position: number; feature: number; estimate: number; true_effect: number }> };
  // FeatureDashboard
  feature: number;
  data: Record<string, any>;
  // dashboard (panel and FeatureDashboard)
  dashboard: Record<string, any>;
  dashboard_text: string;
  dashboard_try: { text?: string; layer?: number; feature?: number; tokens?: string[]; acts?: number[];
                   token_ids?: number[]; center?: number; position?: number; activation?: number; error?: string };
}

export interface Model {
  get<K extends keyof Traits>(name: K): Traits[K] | undefined;
  set<K extends keyof Traits>(name: K, value: Traits[K]): void;
  save_changes(): void;
  on(event: string, cb: (...args: any[]) => void): void;
  off(event?: string | null, cb?: ((...args: any[]) => void) | null): void;
  send(content: any, callbacks?: any, buffers?: any[]): void;
}
