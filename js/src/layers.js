// Layer scrubber: a range input over the SAE layers (its value is the layer number, snapped to the nearest SAE
// layer) and one cell per decoder layer with a mini bar chart from `layer_chart` and its `layer_state`.
import { toFloat32 } from "./buffers.js";
import { h, clear, fmt } from "./dom.js";
import { coalescer } from "./frame.js";

import { CHART_COLUMNS } from "./constants.js";

/** how each `layer_chart` column is shown, with Okabe-Ito (colour-blind safe) colours */
const SHOWN = /** @type {Record<string, {name: string, color: string}>} */ ({
  feature_act: { name: "feature activation", color: "#0072B2" },
  l0: { name: "L0 (active features)", color: "#E69F00" },
  recon_error: { name: "reconstruction error", color: "#009E73" },
  top_act: { name: "top activation", color: "#CC79A7" },
});
/** the columns of a `layer_chart` row, in the order Python writes them (contract.json) */
export const METRICS = CHART_COLUMNS.map((key) => ({ key, ...(SHOWN[key] || { name: key, color: "#888" }) }));

/** @param {number} a @param {number} b */
const gcd = (a, b) => (b ? gcd(b, a % b) : a);

/** @param {number[]} layers sorted @param {number} v */
export function nearestLayer(layers, v) {
  let best = layers[0];
  for (const l of layers) if (Math.abs(l - v) < Math.abs(best - v)) best = l;
  return best;
}

/** @param {import("./context.js").Context} ctx */
export function createLayers(ctx) {
  const { model } = ctx;

  const slider = /** @type {HTMLInputElement} */ (h("input", {
    type: "range", class: "qscope-range", dataset: { qscope: "layer" }, "aria-label": "layer",
  }));
  const sliderLabel = h("output", { class: "qscope-num qscope-readout" });
  const cellsEl = h("div", { class: "qscope-layer-cells", role: "group", "aria-label": "layers" });
  const legend = h("div", { class: "qscope-layer-legend" }, METRICS.map((m) => h("span", { class: "qscope-key" }, [
    h("span", { class: "qscope-swatch", style: { backgroundColor: m.color } }), m.name,
  ])));
  const el = h("div", { class: "qscope-layers", dataset: { qscope: "layers" } }, [
    h("div", { class: "qscope-layer-head" }, [h("span", { class: "qscope-section-title", text: "layer" }), slider, sliderLabel]),
    cellsEl, legend,
  ]);

  /** @type {HTMLButtonElement[]} */
  let cells = [];
  let chart = new Float32Array(0);

  const saeLayers = () => /** @type {number[]} */ ((model.get("sae_layers") || []).map(Number)).sort((a, b) => a - b);

  const sendLayer = coalescer((/** @type {number} */ layer) => ctx.safe("layers.set", () => {
    if (Number(model.get("layer")) === layer) return;
    model.set("layer", layer);
    model.save_changes();
  }));
  ctx.onCleanup(() => sendLayer.flush());

  slider.addEventListener("input", () => ctx.safe("layers.slider", () => {
    const layers = saeLayers();
    if (!layers.length) return;
    const layer = nearestLayer(layers, Number(slider.value));
    slider.value = String(layer);
    sliderLabel.textContent = `L${layer}`;
    markLayer(layer);
    sendLayer.push(layer);
  }));
  slider.addEventListener("change", () => sendLayer.flush());

  function buildCells() {
    const n = Number(model.get("n_layers") || 0);
    const layers = saeLayers();
    slider.disabled = layers.length < 2;
    slider.min = String(layers[0] ?? 0);
    slider.max = String(layers[layers.length - 1] ?? 0);
    const gaps = layers.slice(1).map((l, i) => l - layers[i]);
    slider.step = String(gaps.length ? gaps.reduce(gcd) || 1 : 1);
    clear(cellsEl);
    cells = [];
    for (let L = 0; L < n; L++) {
      const cell = /** @type {HTMLButtonElement} */ (h("button", {
        type: "button", class: "qscope-layer-cell", dataset: { qscope: "layer-cell", layer: L },
        onclick: () => ctx.safe("layers.click", () => {
          if (cell.disabled) return;
          sendLayer.cancel();
          if (Number(model.get("layer")) !== L) { model.set("layer", L); model.save_changes(); }
          markLayer(L);
        }),
      }, [
        h("span", { class: "qscope-bars", "aria-hidden": "true" },
          METRICS.map((m) => h("span", { class: "qscope-mini", style: { backgroundColor: m.color } }))),
        h("span", { class: "qscope-layer-name", text: `L${L}` }),
        h("span", { class: "qscope-spinner qscope-cell-spinner", "aria-hidden": "true" }),
      ]));
      cells.push(cell);
      cellsEl.append(cell);
    }
    drawStates();
    drawChart();
    markLayer(Number(model.get("layer")));
  }

  function drawStates() {
    const states = /** @type {string[]} */ (model.get("layer_state") || []);
    const sae = new Set(saeLayers());
    cells.forEach((cell, L) => {
      const state = states[L] || (sae.has(L) ? "unloaded" : "none");
      cell.dataset.state = state;
      cell.disabled = state === "none";
      cell.setAttribute("aria-busy", String(state === "loading"));
      describe(cell, L);
    });
  }

  /** @param {HTMLButtonElement} cell @param {number} L */
  function describe(cell, L) {
    const row = METRICS.map((m, j) => `${m.name}: ${fmt(chart[L * 4 + j])}`).join(", ");
    const state = cell.dataset.state || "";
    const what = state === "none" ? "no SAE" : state === "loading" ? "SAE loading" : state === "unloaded" ? "SAE not loaded yet" : "";
    cell.title = `layer ${L}${what ? ` (${what})` : ""}${state === "none" ? "" : ` · ${row}`}`;
    cell.setAttribute("aria-label", cell.title);
  }

  function drawChart() {
    chart = toFloat32(model.get("layer_chart"));
    const n = cells.length;
    const max = METRICS.map((_, j) => {
      let m = 0;
      for (let L = 0; L < n; L++) { const v = chart[L * 4 + j]; if (Number.isFinite(v)) m = Math.max(m, Math.abs(v)); }
      return m;
    });
    cells.forEach((cell, L) => {
      cell.querySelectorAll(".qscope-mini").forEach((bar, j) => {
        const v = chart[L * 4 + j];
        const b = /** @type {HTMLElement} */ (bar);
        const ok = Number.isFinite(v);
        b.dataset.value = String(ok ? v : NaN);
        b.classList.toggle("qscope-nan", !ok);
        b.style.height = ok && max[j] > 0 ? `${Math.max(4, (Math.abs(v) / max[j]) * 100)}%` : "";
      });
      describe(cell, L);
    });
  }

  /** @param {number} layer */
  function markLayer(layer) {
    cells.forEach((cell, L) => {
      cell.classList.toggle("qscope-selected", L === layer);
      cell.setAttribute("aria-pressed", String(L === layer));
    });
    if (!sendLayer.pending) slider.value = String(layer);
    sliderLabel.textContent = `L${layer}`;
  }

  ctx.onResult("layers", drawChart);
  ctx.on("change:layer_chart", "layers", () => { if (ctx.current()) drawChart(); });
  ctx.on("change:layer_state", "layers.state", drawStates);
  ctx.on("change:layer", "layers.layer", () => markLayer(Number(model.get("layer"))));
  ctx.on("change:n_layers", "layers.build", buildCells);
  ctx.on("change:sae_layers", "layers.build", buildCells);
  buildCells();
  return el;
}
