// qscope-widgets front end: one ES module for anywidget. `render` dispatches on the model's `_view`.
import "./style.css";
import { Context } from "./context.js";
import { h } from "./dom.js";
import { renderExplorer } from "./explorer.js";
import { renderDashboard } from "./dashboard.js";
import { createHeatmap } from "./heatmap.js";
import { createSidebar } from "./sidebar.js";
import { createSteering } from "./steering.js";
import { createLayers } from "./layers.js";
import { createStatus } from "./status.js";

/** @typedef {(ctx: Context, root: HTMLElement) => void} ViewRenderer */

/** a single component with a compact status line (errors stay visible even without the explorer) */
const single = (/** @type {(ctx: Context) => HTMLElement} */ make) => /** @type {ViewRenderer} */ ((ctx, root) => {
  root.append(make(ctx), createStatus(ctx));
});

/** @type {Record<string, ViewRenderer>} */
export const VIEWS = {
  explorer: renderExplorer,
  heatmap: single(createHeatmap),
  sidebar: single(createSidebar),
  steering: single(createSteering),
  layers: single(createLayers),
  feature: renderDashboard,
};

/**
 * anywidget's render: build the view into `el`, return the cleanup that removes every model listener.
 * @param {{model: import("./context.js").Model, el: HTMLElement}} args
 */
export function render({ model, el }) {
  const view = String(model.get("_view") || "explorer");
  const root = h("div", { class: "qscope", dataset: { qscopeView: view, resultSeq: "", stale: "false" } });
  el.append(root);
  const ctx = new Context(model, root);
  const renderer = VIEWS[view];
  ctx.safe("render", () => {
    if (!renderer) throw new Error(`unknown _view ${JSON.stringify(view)}`);
    renderer(ctx, root);
  });
  if (ctx.errors.has("render") && !root.querySelector("[data-qscope='status']")) {
    // the view itself failed to build: still show why, in a status line
    root.append(createStatus(ctx));
  }
  if (view !== "feature") ctx.start();
  return () => {
    ctx.dispose();
    root.remove();
  };
}

export default { render };
