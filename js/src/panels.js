// The front end's panel registry: one component per Python panel (qscope_widgets/widgets/panels.py), same name.
// A view draws the panels its model lists in `_panels`; adding a panel is one component and one line here.
import { createHeatmap } from "./heatmap.js";
import { createSidebar } from "./sidebar.js";
import { createSteering } from "./steering.js";
import { createNextTokens } from "./next_tokens.js";
import { createContinuation } from "./continuation.js";
import { createLayers } from "./layers.js";
import { createAttribution } from "./attribution.js";
import { createCompare } from "./compare.js";
import { createSweep } from "./sweep.js";
import { createDashboard } from "./dashboard.js";

/** @typedef {(ctx: import("./context.js").Context) => HTMLElement} PanelComponent */

/** @type {Record<string, PanelComponent>} */
export const PANELS = {
  heatmap: createHeatmap,
  sidebar: createSidebar,
  layers: createLayers,
  steering: createSteering,
  next_tokens: createNextTokens,
  continuation: createContinuation,
  attribution: createAttribution,
  compare: createCompare,
  sweep: createSweep,
  dashboard: createDashboard,
};

/**
 * Register a panel component (for views added outside this bundle's core, e.g. attribution / contrast).
 * @param {string} name @param {PanelComponent} component
 */
export function registerPanel(name, component) {
  PANELS[name] = component;
}

/**
 * The component of a panel, or a visible placeholder naming the missing one (a Python panel without JS).
 * @param {import("./context.js").Context} ctx @param {string} name @returns {HTMLElement}
 */
export function createPanel(ctx, name) {
  const make = PANELS[name];
  if (!make) throw new Error(`no front-end component for panel ${JSON.stringify(name)}`);
  const el = make(ctx);
  el.dataset.qscopePanel = name;
  return el;
}

/** The panels of the built-in views, for widget state saved before views listed `_panels` (old notebooks). */
export const DEFAULT_PANELS = /** @type {Record<string, string[]>} */ ({
  explorer: ["heatmap", "sidebar", "layers", "steering", "next_tokens", "continuation", "sweep", "dashboard", "attribution"],
  heatmap: ["heatmap"], sidebar: ["sidebar"], layers: ["layers"], steering: ["steering", "next_tokens", "continuation", "sweep"],
});

/** The panel names the model declares (`_panels`), in order. @param {import("./context.js").Model} model @returns {string[]} */
export function panelNames(model) {
  const names = model.get("_panels");
  if (Array.isArray(names)) return names.map(String);
  return DEFAULT_PANELS[String(model.get("_view") || "explorer")] || [];
}
