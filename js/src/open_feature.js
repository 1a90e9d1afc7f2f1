// The common "open feature": every place a feature appears in a view (a sidebar row, a token's tooltip, a search
// result, a pinned slider's name, an attribution node) opens it the same way. On the layer in view the inputs are
// set here (the heatmap repaints at once, the kernel then recomputes only the panels that read them, no forward);
// on another layer the kernel is asked (`{"type": "open_feature"}`), because a layer change resets the selected
// feature there. A view with a dashboard panel shows the feature's dashboard and scrolls it into view.

/**
 * @param {import("./context.js").Context} ctx
 * @param {number} layer
 * @param {number} feature
 * @param {{reveal?: boolean}} [opts]  reveal: scroll the view's dashboard into sight (default true)
 */
export function openFeature(ctx, layer, feature, opts = {}) {
  const { model } = ctx;
  const hasSelection = model.get("selected_feature") !== undefined;
  if (hasSelection && Number(model.get("layer")) === layer) {
    model.set("selected_feature", feature);
    if (model.get("color_by") !== undefined) model.set("color_by", "feature");
    model.save_changes();
  } else {
    model.send({ type: "open_feature", layer, feature });
  }
  if (opts.reveal !== false) revealDashboard(ctx);
}

/** Scroll the view's dashboard panel into sight (nothing when the view has none). @param {import("./context.js").Context} ctx */
export function revealDashboard(ctx) {
  const el = /** @type {HTMLElement | null} */ (ctx.root.querySelector("[data-qscope-panel='dashboard']"));
  if (el && typeof el.scrollIntoView === "function") el.scrollIntoView({ block: "nearest", behavior: "smooth" });
}
