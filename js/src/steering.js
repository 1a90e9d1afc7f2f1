// Steering panel: one slider block per entry of `edits` (strength, mode, on/off, reset, unpin), the next-token
// top-10 baseline vs steered, and the streamed continuation. Slider drags are coalesced to at most one
// `edits` update per animation frame, always with the latest value; releasing the slider sends it at once.
import { h, clear, fmt, visibleToken } from "./dom.js";
import { coalescer } from "./frame.js";
import { requestSweep } from "./sweep.js";
import { openFeature } from "./open_feature.js";

import { MODES, SLIDER_POSITIONS, STEER_POSITIONS } from "./constants.js";

/** @param {any} e */
const keyOf = (e) => `${Number(e.layer)}/${Number(e.feature)}`;

/** A round step giving ~SLIDER_POSITIONS positions over the range (Python sends `step`; this is the fallback).
 * @param {number} lo @param {number} hi */
export function niceStep(lo, hi) {
  const span = Math.abs(hi - lo);
  if (!(span > 0) || !Number.isFinite(span)) return 0.01;
  const raw = span / SLIDER_POSITIONS;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

/** A Python literal: numbers as written, strings JSON-quoted (valid Python for these). @param {any} x */
const py = (x) => (typeof x === "string" ? JSON.stringify(x) : String(x));

/**
 * The enabled edits as Python that reproduces the steered run ("copy as code").
 * @param {import("./context.js").Model} model @returns {string}
 */
export function steeringCode(model) {
  const edits = /** @type {any[]} */ (model.get("edits") || []).filter((e) => e.enabled !== false);
  const where = String(model.get("steer_positions") || "all");
  const sel = Number(model.get("selected_token") ?? -1);
  const pos = where === "generated" ? ', positions="generated"' : where === "selected" && sel >= 0 ? `, positions=[${sel}]` : "";
  const lines = edits.map((e) => `    SteeringEdit(layer=${Number(e.layer)}, feature=${Number(e.feature)}, strength=${Number(e.strength)}, mode=${py(String(e.mode || "add"))}${pos}),`);
  return ["from qscope_widgets import SteeringEdit", "", "edits = [", ...lines, "]",
    `trace = scope.run(${py(String(model.get("prompt") ?? ""))}, steering=edits)`, ""].join("\n");
}

/** @param {import("./context.js").Context} ctx */
export function createSteering(ctx) {
  const { model } = ctx;

  /** latest strength per edit key, not yet sent */
  const pending = new Map();
  /** edit keys whose slider the pointer holds (Python's echo must not move it) */
  const dragging = new Set();
  /** @type {Map<string, {block: HTMLElement, slider: HTMLInputElement, readout: HTMLElement, mode: HTMLSelectElement, enabled: HTMLInputElement, label: HTMLElement}>} */
  let blocks = new Map();

  /**
   * Send the whole `edits` list once: pending strengths folded in, then `mutate` applied. Entries are always new
   * objects (the model compares by value; mutating the old list would send nothing).
   * @param {(list: any[]) => any[]} [mutate]
   */
  function commit(mutate) {
    let list = (/** @type {any[]} */ (model.get("edits") || [])).map((e) => {
      const k = keyOf(e);
      return pending.has(k) ? { ...e, strength: pending.get(k) } : { ...e };
    });
    pending.clear();
    if (mutate) list = mutate(list);
    model.set("edits", list);
    model.save_changes();
  }
  const frame = coalescer(() => ctx.safe("steering.send", () => commit()));
  ctx.onCleanup(() => frame.flush());

  /** @param {string} k @param {(e: any) => any} patch */
  const patchOne = (k, patch) => { frame.cancel(); commit((list) => list.map((e) => (keyOf(e) === k ? patch(e) : e))); };

  const editsEl = h("div", { class: "qscope-edits", dataset: { qscope: "edits" } });

  // where the edits apply, and "copy as code"
  const POSITION_TEXT = /** @type {Record<string, string>} */ ({ all: "all tokens", selected: "selected token", generated: "generated only" });
  const positions = /** @type {HTMLSelectElement} */ (h("select", {
    class: "qscope-select", dataset: { qscope: "steer-positions" }, "aria-label": "where the edits apply",
    onchange: () => ctx.safe("steering.positions", () => { model.set("steer_positions", positions.value); model.save_changes(); }),
  }, STEER_POSITIONS.map((p) => h("option", { value: p, text: POSITION_TEXT[p] || p }))));
  const codeEl = /** @type {HTMLElement} */ (h("pre", { class: "qscope-code", dataset: { qscope: "code" }, hidden: true }));
  const copy = h("button", {
    type: "button", class: "qscope-btn", dataset: { qscope: "copy-code" }, title: "the current edits as Python (copied to the clipboard)",
    onclick: () => ctx.safe("steering.copy", () => {
      const text = steeringCode(model);
      codeEl.textContent = text;
      codeEl.hidden = false;
      globalThis.navigator?.clipboard?.writeText(text).catch(() => {});
    }),
  }, ["copy as code"]);
  const toolbar = h("div", { class: "qscope-edit-controls qscope-steer-toolbar" }, [
    h("label", { class: "qscope-inline" }, ["apply to ", positions]), copy,
  ]);
  const syncPositions = () => { positions.value = String(model.get("steer_positions") || "all"); };
  ctx.on("change:steer_positions", "steering.positions", syncPositions);
  syncPositions();
  const emptyEl = h("div", { class: "qscope-muted qscope-empty", text: "No steering edits. Pin a feature from the sidebar to steer with it." });

  /** @param {any} e */
  function buildBlock(e) {
    const k = keyOf(e);
    const layer = Number(e.layer), feature = Number(e.feature);
    const label = h("button", {  // the pinned feature's name opens it (select, colour, dashboard)
      type: "button", class: "qscope-edit-label qscope-linklike", dataset: { qscope: "edit-open", layer, feature },
      onclick: () => ctx.safe("steering.open", () => openFeature(ctx, layer, feature)),
    });
    const slider = /** @type {HTMLInputElement} */ (h("input", {
      type: "range", class: "qscope-range", dataset: { qscope: "strength", layer, feature },
      "aria-label": `strength of layer ${layer} feature ${feature}`,
    }));
    const readout = h("output", { class: "qscope-num qscope-readout", dataset: { qscope: "strength-value" } });
    const mode = /** @type {HTMLSelectElement} */ (h("select", {
      class: "qscope-select", dataset: { qscope: "mode", layer, feature }, "aria-label": "steering mode",
    }, MODES.map((m) => h("option", { value: m, text: m }))));
    const enabled = /** @type {HTMLInputElement} */ (h("input", {
      type: "checkbox", dataset: { qscope: "enabled", layer, feature }, "aria-label": "edit enabled",
    }));
    const reset = h("button", {
      type: "button", class: "qscope-btn", dataset: { qscope: "reset", layer, feature }, title: "reset the strength to its default",
    }, ["reset"]);
    const unpin = h("button", {
      type: "button", class: "qscope-btn", dataset: { qscope: "unpin", layer, feature }, title: "remove this edit",
      "aria-label": `unpin layer ${layer} feature ${feature}`,
    }, ["✕"]);

    slider.addEventListener("input", () => ctx.safe("steering.slider", () => {
      const v = Number(slider.value);
      pending.set(k, v);
      readout.textContent = fmt(v);
      frame.push(null);
    }));
    slider.addEventListener("change", () => { dragging.delete(k); ctx.safe("steering.send", () => frame.flush()); });
    slider.addEventListener("pointerdown", () => dragging.add(k));
    const release = () => { dragging.delete(k); };
    slider.addEventListener("pointerup", release);
    slider.addEventListener("pointercancel", release);
    mode.addEventListener("change", () => ctx.safe("steering.mode", () => patchOne(k, (x) => ({ ...x, mode: mode.value }))));
    enabled.addEventListener("change", () => ctx.safe("steering.enabled", () => patchOne(k, (x) => ({ ...x, enabled: enabled.checked }))));
    reset.addEventListener("click", () => ctx.safe("steering.reset", () => {
      pending.delete(k);
      dragging.delete(k);
      patchOne(k, (x) => ({ ...x, strength: Number(x.default ?? 0) }));
      updateAll();
    }));
    unpin.addEventListener("click", () => ctx.safe("steering.unpin", () => {
      pending.delete(k);
      frame.cancel();
      commit((list) => list.filter((x) => keyOf(x) !== k));
    }));

    // the view has a sweep panel: steering_eval of this feature against its controls (runs in Python)
    const sweep = (model.get("_panels") || []).includes("sweep") ? h("button", {
      type: "button", class: "qscope-btn", dataset: { qscope: "sweep", layer, feature },
      title: "sweep: this feature's steering (add) at 0.5/1/2x its strength vs a random direction and another feature of the same norm, on this prompt and a few neutral ones",
      onclick: () => ctx.safe("steering.sweep", () => { frame.flush(); requestSweep(model, layer, feature); }),
    }, ["sweep"]) : null;

    const block = h("div", { class: "qscope-edit", dataset: { qscope: "edit", layer, feature } }, [
      h("div", { class: "qscope-edit-head" }, [label, sweep, unpin]),
      h("div", { class: "qscope-edit-slider" }, [slider, readout]),
      h("div", { class: "qscope-edit-controls" }, [
        mode, h("label", { class: "qscope-check" }, [enabled, " on"]), reset,
      ]),
    ]);
    return { block, slider, readout, mode, enabled, label };
  }

  /** bring a block in line with its entry, without touching a slider the user is dragging */
  function updateBlock(/** @type {any} */ b, /** @type {any} */ e) {
    const k = keyOf(e);
    const lo = Number(e.min ?? 0), hi = Number(e.max ?? 1);
    const step = e.step != null ? Number(e.step) : niceStep(lo, hi);
    b.label.textContent = `L${e.layer} #${e.feature}${e.label ? ` ${e.label}` : ""}`;
    b.label.title = `open L${e.layer} #${e.feature}${e.label ? ` (${e.label})` : ""}: colour by it and show its dashboard`;
    b.slider.min = String(lo);
    b.slider.max = String(hi);
    b.slider.step = String(step);
    const busy = dragging.has(k) || pending.has(k);
    const strength = busy ? pending.get(k) ?? Number(b.slider.value) : Number(e.strength ?? 0);
    if (!busy) b.slider.value = String(strength);
    b.readout.textContent = fmt(strength);
    b.mode.value = MODES.includes(e.mode) ? e.mode : "add";
    b.enabled.checked = e.enabled !== false;
    b.block.classList.toggle("qscope-disabled", e.enabled === false);
    b.block.title = e.typical ? `typical activation ${fmt(Number(e.typical))}` : "";
  }

  function updateAll() {
    const edits = /** @type {any[]} */ (model.get("edits") || []);
    const keys = edits.map(keyOf);
    const same = keys.length === blocks.size && keys.every((k, i) => [...blocks.keys()][i] === k);
    if (!same) {
      for (const k of [...pending.keys()]) if (!keys.includes(k)) pending.delete(k);
      const old = blocks;
      blocks = new Map();
      clear(editsEl);
      for (const e of edits) {
        const k = keyOf(e);
        const b = old.get(k) || buildBlock(e);  // keep a block (and a slider in the user's hand) when it survives
        blocks.set(k, b);
        editsEl.append(b.block);
      }
    }
    edits.forEach((e) => updateBlock(blocks.get(keyOf(e)), e));
    emptyEl.hidden = edits.length > 0;
  }

  const el = h("div", { class: "qscope-steering", dataset: { qscope: "steering" } }, [
    h("div", { class: "qscope-edits-wrap" }, [h("div", { class: "qscope-section-title", text: "steering" }), emptyEl, editsEl, toolbar, codeEl]),
  ]);

  ctx.on("change:edits", "steering.edits", () => updateAll());
  updateAll();
  return el;
}
