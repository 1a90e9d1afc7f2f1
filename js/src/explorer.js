// Views: the Explorer's layout (prompt box, status line, panels in a responsive grid), and the generic layout
// any other view gets from its `_panels` list (one section per panel, then a status line).
import { h } from "./dom.js";
import { createStatus } from "./status.js";
import { createPanel, panelNames } from "./panels.js";

/** The prompt box: Enter (without Shift) or leaving the box sets `prompt`; Shift+Enter is a newline.
 * @param {import("./context.js").Context} ctx */
export function createPrompt(ctx) {
  const { model } = ctx;
  const box = /** @type {HTMLTextAreaElement} */ (h("textarea", {
    class: "qscope-prompt", dataset: { qscope: "prompt" }, rows: "2", spellcheck: "false",
    "aria-label": "prompt", placeholder: "Type a prompt, then Enter (Shift+Enter: new line)",
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

/** @param {string} area @param {HTMLElement[]} children */
const section = (area, children) => h("section", { class: `qscope-panel qscope-area-${area}` }, children);

/** @param {import("./context.js").Context} ctx @param {HTMLElement} root */
export function renderExplorer(ctx, root) {
  const names = new Set(panelNames(ctx.model));
  const make = (/** @type {string} */ name) => (names.has(name) ? createPanel(ctx, name) : null);
  const side = [make("next_tokens"), make("continuation")].filter((x) => x != null);
  const steer = make("steering");
  root.append(
    h("div", { class: "qscope-top" }, [createPrompt(ctx), createStatus(ctx)]),
    h("div", { class: "qscope-grid" }, [
      names.has("heatmap") ? section("heatmap", [/** @type {HTMLElement} */ (make("heatmap"))]) : null,
      names.has("sidebar") ? section("sidebar", [/** @type {HTMLElement} */ (make("sidebar"))]) : null,
      names.has("layers") ? section("layers", [/** @type {HTMLElement} */ (make("layers"))]) : null,
      steer || side.length ? section("steering", [h("div", { class: "qscope-steering-wrap" }, [
        steer, side.length ? h("div", { class: "qscope-steer-side" }, side) : null,
      ]), ...[make("sweep")].filter((x) => x != null)]) : null,
      names.has("dashboard") ? section("dashboard", [/** @type {HTMLElement} */ (make("dashboard"))]) : null,
      names.has("attribution") ? section("attribution", [/** @type {HTMLElement} */ (make("attribution"))]) : null,
    ]),
  );
}

/** Any other view: its panels in order, then a compact status line (errors stay visible).
 * @param {import("./context.js").Context} ctx @param {HTMLElement} root */
export function renderPanels(ctx, root) {
  const names = panelNames(ctx.model);
  if (!names.length) throw new Error(`view ${JSON.stringify(ctx.model.get("_view"))} declares no panels`);
  for (const name of names) ctx.safe(`render.${name}`, () => root.append(createPanel(ctx, name)));
  root.append(createStatus(ctx));
}
