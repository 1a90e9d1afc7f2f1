// The Explorer: prompt box, status line, and the four components in a responsive grid.
import { h } from "./dom.js";
import { createHeatmap } from "./heatmap.js";
import { createSidebar } from "./sidebar.js";
import { createSteering } from "./steering.js";
import { createLayers } from "./layers.js";
import { createStatus } from "./status.js";

/** The prompt box: Enter (without Shift) or leaving the box sets `prompt`; typing alone sends nothing.
 * @param {import("./context.js").Context} ctx */
export function createPrompt(ctx) {
  const { model } = ctx;
  const box = /** @type {HTMLTextAreaElement} */ (h("textarea", {
    class: "qscope-prompt", dataset: { qscope: "prompt" }, rows: "2", spellcheck: "false",
    "aria-label": "prompt", placeholder: "Type a prompt, then Enter",
  }));
  const commit = () => ctx.safe("prompt", () => {
    if (box.value === String(model.get("prompt") ?? "")) return;
    model.set("prompt", box.value);
    model.save_changes();
  });
  box.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); commit(); }
  });
  box.addEventListener("blur", commit);
  const sync = () => { if (document.activeElement !== box) box.value = String(model.get("prompt") ?? ""); };
  ctx.on("change:prompt", "prompt", sync);
  sync();
  return box;
}

/** @param {import("./context.js").Context} ctx @param {HTMLElement} root */
export function renderExplorer(ctx, root) {
  const panel = (/** @type {string} */ area, /** @type {HTMLElement} */ child) =>
    h("section", { class: `qscope-panel qscope-area-${area}` }, [child]);
  root.append(
    h("div", { class: "qscope-top" }, [createPrompt(ctx), createStatus(ctx)]),
    h("div", { class: "qscope-grid" }, [
      panel("heatmap", createHeatmap(ctx)),
      panel("sidebar", createSidebar(ctx)),
      panel("layers", createLayers(ctx)),
      panel("steering", createSteering(ctx)),
    ]),
  );
}
