// The streamed continuation, baseline vs steered, with its controls: length, temperature, seed, and whether
// end-of-text stops it (greedy decoding often ends at once; the note under the text says so and what to try).
import { h, clear } from "./dom.js";

/** @param {import("./context.js").Context} ctx */
export function createContinuation(ctx) {
  const { model } = ctx;
  const noteEl = h("div", { class: "qscope-muted qscope-cont-note", dataset: { qscope: "continuation-note" } });
  /** @param {"continuation_tokens" | "temperature" | "seed" | "stop_at_eos"} name @param {any} value */
  const send = (name, value) => ctx.safe("continuation.controls", () => { model.set(name, value); model.save_changes(); });
  const lengthIn = /** @type {HTMLInputElement} */ (h("input", {
    type: "number", min: "0", max: "512", step: "8", class: "qscope-num-input", dataset: { qscope: "continuation-tokens" },
    "aria-label": "continuation length in tokens",
    onchange: () => send("continuation_tokens", Math.max(0, Math.min(512, Math.round(Number(lengthIn.value) || 0)))),
  }));
  const tempIn = /** @type {HTMLInputElement} */ (h("input", {
    type: "number", min: "0", max: "5", step: "0.1", class: "qscope-num-input", dataset: { qscope: "temperature" },
    "aria-label": "sampling temperature (0 = greedy)",
    onchange: () => send("temperature", Math.max(0, Number(tempIn.value) || 0)),
  }));
  const seedIn = /** @type {HTMLInputElement} */ (h("input", {
    type: "number", step: "1", class: "qscope-num-input", dataset: { qscope: "seed" }, "aria-label": "sampling seed",
    onchange: () => send("seed", Math.round(Number(seedIn.value) || 0)),
  }));
  const eosIn = /** @type {HTMLInputElement} */ (h("input", {
    type: "checkbox", dataset: { qscope: "stop-at-eos" },
    onchange: () => send("stop_at_eos", eosIn.checked),
  }));
  const controls = h("div", { class: "qscope-cont-controls" }, [
    h("label", { class: "qscope-inline" }, ["tokens ", lengthIn]),
    h("label", { class: "qscope-inline" }, ["temperature ", tempIn]),
    h("label", { class: "qscope-inline" }, ["seed ", seedIn]),
    h("label", { class: "qscope-check", title: "untick to continue past the end-of-text token" }, [eosIn, " stop at end of text"]),
  ]);
  function syncControls() {
    const active = document.activeElement;
    if (active !== lengthIn) lengthIn.value = String(model.get("continuation_tokens") ?? 0);
    if (active !== tempIn) tempIn.value = String(model.get("temperature") ?? 0);
    if (active !== seedIn) seedIn.value = String(model.get("seed") ?? 0);
    eosIn.checked = model.get("stop_at_eos") !== false;
  }
  // ---- the streamed continuation
  const contBase = h("div", { class: "qscope-cont-text", dataset: { qscope: "continuation-baseline" } });
  const contSteer = h("div", { class: "qscope-cont-text", dataset: { qscope: "continuation-steered" } });
  const contCols = h("div", { class: "qscope-cont-cols" }, [
    h("div", { class: "qscope-cont-col" }, [h("div", { class: "qscope-col-title", text: "baseline" }), contBase]),
    h("div", { class: "qscope-cont-col" }, [h("div", { class: "qscope-col-title", text: "steered" }), contSteer]),
  ]);
  const contEl = h("div", { class: "qscope-continuation", dataset: { qscope: "continuation" } }, [
    h("div", { class: "qscope-section-title", text: "continuation" }),
    controls,
    contCols,
    noteEl,
  ]);
  /** @param {number} [seq] the result drawn (or being drawn) */
  function drawContinuation(seq = ctx.guard.drawn) {
    const c = model.get("continuation") || {};
    const off = Number(model.get("continuation_tokens") ?? 0) <= 0;
    contCols.hidden = off;
    contEl.dataset.off = String(off);
    const fresh = Number(c.seq) === seq;
    contEl.dataset.seq = String(c.seq ?? "");
    contEl.dataset.done = String(fresh && Boolean(c.done));
    const fill = (/** @type {HTMLElement} */ box, /** @type {string} */ text) => {
      clear(box);
      if (!fresh) {
        box.append(h("span", { class: "qscope-muted", text: "generating…" }));
        return;
      }
      const t = String(text ?? "");
      box.append(t || (c.done ? h("span", { class: "qscope-muted", text: "(empty)" }) : ""));
      if (!c.done) box.append(h("span", { class: "qscope-cursor", "aria-hidden": "true", text: "▍" }));
    };
    fill(contBase, c.baseline ?? "");
    fill(contSteer, c.steered ?? "");
    noteEl.textContent = fresh && c.note ? String(c.note) : "";
    syncControls();
  }


  ctx.onResult("continuation", (seq) => drawContinuation(seq));
  for (const name of ["continuation", "continuation_tokens", "temperature", "seed", "stop_at_eos"]) {
    ctx.on(`change:${name}`, "continuation", () => drawContinuation());
  }
  drawContinuation();
  return contEl;
}
