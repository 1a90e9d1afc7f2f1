// qscope-widgets front end: one ES module for anywidget. `render` dispatches on the model's `_view`.
import "./style.css";
import { Context } from "./context.js";
import { h } from "./dom.js";
import { renderExplorer, renderPanels } from "./explorer.js";
import { renderDashboard } from "./dashboard.js";
import { createStatus } from "./status.js";
import { installKeys } from "./keys.js";

/** @typedef {(ctx: Context, root: HTMLElement) => void} ViewRenderer */

/** Views with a layout of their own; every other `_view` draws its `_panels` in order. @type {Record<string, ViewRenderer>} */
const LAYOUTS = {
  explorer: renderExplorer,
  feature: renderDashboard,
};

/**
 * anywidget's render: build the view into `el`, return the cleanup that removes every model listener.
 * @param {{model: import("./context.js").Model, el: HTMLElement}} args
 */
function render({ model, el }) {
  const view = String(model.get("_view") || "explorer");
  const root = h("div", { class: "qscope", dataset: { qscopeView: view, resultSeq: "", stale: "false" } });
  el.append(root);
  const ctx = new Context(model, root);
  const renderer = LAYOUTS[view] || renderPanels;
  ctx.safe("render", () => renderer(ctx, root));
  installKeys(root);
  if (ctx.errors.has("render") && !root.querySelector("[data-qscope='status']")) {
    // the view itself failed to build: still show why, in a status line
    root.append(createStatus(ctx));
  }
  ctx.start();
  return () => {
    ctx.dispose();
    root.remove();
  };
}

export default { render };
