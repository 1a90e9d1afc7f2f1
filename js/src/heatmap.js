// Token heatmap: the prompt's tokens as inline spans coloured by `token_values` (or `diff_values` in diff mode)
// over `value_range`; a tooltip with each token's top features; click / keyboard selection -> `selected_token`.
import { toFloat32, toInt32, codesRow } from "./buffers.js";
import { cellColor, gradient } from "./colors.js";
import { h, clear, visibleToken, fmt } from "./dom.js";
import { knownLabels } from "./labels.js";
import { openFeature } from "./open_feature.js";

import { COLOR_BY, COLOR_BY_LABELS } from "./constants.js";
import { localValues, scaleMax } from "./token_values.js";

/** ms the tooltip stays after the pointer leaves the tokens (long enough to reach its feature rows) */
export const TOOLTIP_GRACE_MS = 250;

/** @param {import("./context.js").Context} ctx */
export function createHeatmap(ctx) {
  const { model } = ctx;

  /** what the last drawn result holds (a late, older result never replaces it) */
  let snap = {
    tokens: /** @type {string[]} */ ([]),
    k: 0,
    ids: new Int32Array(0),
    codes: new Float32Array(0),
    values: new Float32Array(0),
    recon: new Float32Array(0),
    diffs: new Float32Array(0),
    range: /** @type {[number, number]} */ ([0, 1]),
    colorBy: "strongest",
    feature: -1,
    layer: 0,
  };
  /** @type {HTMLElement[]} */
  let spans = [];
  let focusIndex = 0;
  /** @type {string[]} the tokens the spans were built for */
  let prevTokens = [];

  const colorSelect = /** @type {HTMLSelectElement} */ (h("select", {
    class: "qscope-select", dataset: { qscope: "color-by" }, "aria-label": "colour tokens by",
    onchange: () => ctx.safe("heatmap.color_by", () => {
      model.set("color_by", colorSelect.value);
      model.save_changes();
    }),
  }, COLOR_BY.map((v) => h("option", { value: v, text: COLOR_BY_LABELS[v] || v }))));
  const diffBox = /** @type {HTMLInputElement} */ (h("input", {
    type: "checkbox", dataset: { qscope: "diff" },
    onchange: () => ctx.safe("heatmap.diff", () => {
      model.set("diff", diffBox.checked);
      model.save_changes();
      paint();
    }),
  }));
  const diffLabel = h("label", { class: "qscope-check", title: "colour by steered − baseline" }, [diffBox, " diff"]);

  const legendBar = h("span", { class: "qscope-legend-bar" });
  const legendLo = h("span", { class: "qscope-legend-lo" });
  const legendHi = h("span", { class: "qscope-legend-hi" });
  const legendCaption = h("span", { class: "qscope-legend-caption" });
  const legend = h("div", { class: "qscope-legend", dataset: { qscope: "legend" } },
    [legendCaption, legendLo, legendBar, legendHi]);

  const controls = h("div", { class: "qscope-controls" },
    [h("label", { class: "qscope-inline" }, ["colour by ", colorSelect]), diffLabel, legend]);
  const tokensEl = h("div", {
    class: "qscope-tokens", role: "listbox", "aria-label": "prompt tokens", "aria-orientation": "horizontal",
    dataset: { qscopeKeys: "tokens" },  // keys.js hands it its arrow keys even where the notebook cancels them
  });
  const tooltip = h("div", { class: "qscope-tooltip", role: "tooltip", hidden: true, dataset: { qscope: "tooltip" } });
  const el = h("div", { class: "qscope-heatmap", dataset: { qscope: "heatmap" } }, [controls, tokensEl, tooltip]);

  const diffMode = () => Boolean(model.get("diff")) && snap.diffs.length > 0 && snap.diffs.length === snap.tokens.length;

  /** @returns {{values: Float32Array, range: [number, number], scale: "sequential" | "diverging"}} */
  function scaleNow() {
    if (diffMode()) {
      let m = 0;
      for (const d of snap.diffs) if (Number.isFinite(d)) m = Math.max(m, Math.abs(d));
      return { values: snap.diffs, range: [-m, m], scale: "diverging" };
    }
    let range = snap.range;
    if (!(range[0] >= 0)) {  // a diff range left over from a diff-mode result: rescale the magnitudes
      let m = 0;
      for (const v of snap.values) if (Number.isFinite(v)) m = Math.max(m, v);
      range = [0, m];
    }
    return { values: snap.values, range, scale: "sequential" };
  }

  function caption() {
    if (diffMode()) return String(model.get("diff_caption") || "steered − baseline");
    if (snap.colorBy === "feature") {
      if (snap.feature < 0) return "feature activation (select a feature)";
      const label = knownLabels(model, snap.layer).get(snap.feature);
      return `feature ${snap.feature} activation${label ? ` (${label})` : ""}`;
    }
    if (snap.colorBy === "error") return "reconstruction error";
    if (snap.colorBy === "monitor") return "monitor score (1 = at its threshold)";
    return "strongest feature";
  }

  /** colours, data-value attributes and the legend, from the snapshot and the diff toggle */
  function paint() {
    el.dataset.paints = String(Number(el.dataset.paints || 0) + 1);
    const { values, range, scale } = scaleNow();
    spans.forEach((span, i) => {
      const v = i < values.length ? values[i] : NaN;
      span.dataset.value = String(v);
      const c = cellColor(v, range, scale);
      span.style.backgroundColor = c ? c.bg : "";
      span.style.color = c ? c.fg : "";
      span.classList.toggle("qscope-lit", Boolean(c));
      span.setAttribute("aria-label", `${snap.tokens[i]} ${fmt(v)}`);
    });
    legendBar.style.backgroundImage = gradient(scale);
    legendLo.textContent = fmt(range[0]);
    legendHi.textContent = fmt(range[1]);
    legendCaption.textContent = caption();
    el.dataset.scale = scale;
    diffBox.checked = Boolean(model.get("diff"));
    diffBox.disabled = snap.diffs.length === 0 && !model.get("diff");
    diffLabel.title = diffBox.disabled ? "diff needs an active steering edit" : "colour by steered − baseline";
  }

  function markSelection() {
    const sel = Number(model.get("selected_token"));
    spans.forEach((span, i) => {
      const on = i === sel;
      span.classList.toggle("qscope-selected", on);
      span.setAttribute("aria-selected", String(on));
    });
    if (sel >= 0 && sel < spans.length) focusIndex = sel;
    if (focusIndex >= spans.length) focusIndex = Math.max(0, spans.length - 1);
    spans.forEach((span, i) => { span.tabIndex = i === focusIndex ? 0 : -1; });
  }

  /** @param {number} i */
  function select(i) {
    const cur = Number(model.get("selected_token"));
    const next = i === cur ? -1 : i;
    model.set("selected_token", next);
    model.save_changes();
    markSelection();
  }

  /** @param {number} i @param {boolean} [moveSelection] */
  function focusToken(i, moveSelection = false) {
    if (!spans.length) return;
    i = Math.max(0, Math.min(spans.length - 1, i));
    focusIndex = i;
    spans.forEach((span, j) => { span.tabIndex = j === i ? 0 : -1; });
    spans[i].focus();
    if (moveSelection && Number(model.get("selected_token")) !== i) {
      model.set("selected_token", i);
      model.save_changes();
      markSelection();
    }
  }

  /** @param {number} i @param {HTMLElement} span */
  function showTooltip(i, span) {
    const { values } = scaleNow();
    const labels = knownLabels(model, snap.layer);
    const rows = codesRow(snap.ids, snap.codes, snap.k, i).slice(0, 8);
    clear(tooltip);
    tooltip.append(
      h("div", { class: "qscope-tooltip-head" }, [
        h("span", { class: "qscope-mono" }, [visibleToken(snap.tokens[i]).node]),
        h("span", { class: "qscope-muted", text: ` #${i} · ${diffMode() ? "Δ " : ""}${fmt(values[i])}` }),
      ]),
      rows.length
        ? h("table", { class: "qscope-tooltip-table" }, rows.map(([f, v]) => h("tr", {
          class: "qscope-clickable", dataset: { qscope: "tooltip-feature", feature: f },
          title: `open feature ${f}: colour by it and show its dashboard`,
          onclick: () => ctx.safe("heatmap.open", () => { openFeature(ctx, snap.layer, f); hideTooltip(); }),
        }, [
          h("td", { class: "qscope-mono", text: `#${f}` }),
          h("td", { class: "qscope-tooltip-label", text: labels.get(f) || "" }),
          h("td", { class: "qscope-num", text: fmt(v) }),
        ])))
        : h("div", { class: "qscope-muted", text: "no active features" }),
    );
    tooltip.hidden = false;
    const box = el.getBoundingClientRect();
    const r = span.getBoundingClientRect();
    tooltip.style.left = `${Math.max(0, r.left - box.left)}px`;
    tooltip.style.top = `${r.bottom - box.top + 4}px`;
  }
  /** @type {ReturnType<typeof setTimeout> | null} */
  let hideTimer = null;
  const keepTooltip = () => { if (hideTimer != null) clearTimeout(hideTimer); hideTimer = null; };
  const hideTooltip = () => { keepTooltip(); tooltip.hidden = true; };
  /** leaving the tokens: hide a moment later, so the pointer can reach the tooltip's feature rows */
  const hideSoon = () => { keepTooltip(); hideTimer = setTimeout(hideTooltip, TOOLTIP_GRACE_MS); };
  tooltip.addEventListener("mouseenter", keepTooltip);
  tooltip.addEventListener("mouseleave", hideTooltip);
  ctx.onCleanup(keepTooltip);

  /** a new result: rebuild the spans from the buffers */
  function draw() {
    const tokens = (model.get("tokens") || []).map(String);
    const range = model.get("value_range") || [0, 1];
    snap = {
      tokens,
      k: Number(model.get("k") || 0),
      ids: toInt32(model.get("codes_ids")),
      codes: toFloat32(model.get("codes_values")),
      values: toFloat32(model.get("token_values")),
      recon: toFloat32(model.get("recon_error")),
      diffs: toFloat32(model.get("diff_values")),
      range: [Number(range[0]), Number(range[1])],
      colorBy: String(model.get("color_by") || "strongest"),
      feature: Number(model.get("selected_feature") ?? -1),
      layer: Number(model.get("layer") ?? 0),
    };
    hideTooltip();
    const sameTokens = tokens.length === spans.length && tokens.length > 0 && tokens.every((tok, i) => tok === prevTokens[i]);
    if (!sameTokens) {  // a view-only change keeps the spans (and the keyboard focus on them)
      const hadFocus = tokensEl.contains(document.activeElement);
      clear(tokensEl);
      spans = tokens.map((tok, i) => {
        const { node } = visibleToken(tok, { breaks: true });
        const span = h("span", {
          class: "qscope-token", role: "option", tabindex: "-1", dataset: { index: i },
        }, [node]);
        tokensEl.append(span);
        return span;
      });
      if (!tokens.length) tokensEl.append(h("span", { class: "qscope-muted", text: "no tokens yet" }));
      if (hadFocus && spans.length) {
        focusIndex = Math.min(focusIndex, spans.length - 1);
        spans[focusIndex].focus({ preventScroll: true });
      }
    }
    prevTokens = tokens;
    colorSelect.value = snap.colorBy;
    paint();
    markSelection();
  }

  // One set of delegated listeners on the container: they survive redraws.
  const indexOf = (/** @type {EventTarget | null} */ t) => {
    const span = /** @type {HTMLElement | null} */ (t instanceof Element ? t.closest(".qscope-token") : null);
    return span && tokensEl.contains(span) ? Number(span.dataset.index) : -1;
  };
  tokensEl.addEventListener("click", (ev) => ctx.safe("heatmap.click", () => {
    const i = indexOf(ev.target);
    if (i >= 0) { focusIndex = i; select(i); }
  }));
  /** @param {{key: string, target: EventTarget | null, preventDefault(): void}} ev */
  const onKey = (ev) => ctx.safe("heatmap.keys", () => {
    const i = indexOf(ev.target);
    if (i < 0) return;
    const sel = Number(model.get("selected_token"));
    const moves = /** @type {Record<string, number>} */ ({ ArrowRight: i + 1, ArrowDown: i + 1, ArrowLeft: i - 1, ArrowUp: i - 1, Home: 0, End: spans.length - 1 });
    if (ev.key in moves) {
      ev.preventDefault();
      focusToken(moves[ev.key], true);
    } else if (ev.key === "Enter" || ev.key === " " || ev.key === "Spacebar") {
      ev.preventDefault();
      select(i);
    } else if (ev.key === "Escape" && sel >= 0) {
      ev.preventDefault();
      model.set("selected_token", -1);
      model.save_changes();
      markSelection();
    }
  });
  tokensEl.addEventListener("keydown", onKey);
  // the same keys when keys.js took them in the window's capture phase (Notebook 7 cancels arrow keys before
  // they reach the page's elements): detail = {key}
  tokensEl.addEventListener("qscope-key", (ev) => onKey({
    key: String(/** @type {CustomEvent} */ (ev).detail?.key || ""), target: ev.target, preventDefault: () => {},
  }));
  const over = (/** @type {Event} */ ev) => ctx.safe("heatmap.tooltip", () => {
    const i = indexOf(ev.target);
    if (i >= 0) { keepTooltip(); showTooltip(i, spans[i]); }
  });
  tokensEl.addEventListener("mouseover", over);
  tokensEl.addEventListener("focusin", over);
  tokensEl.addEventListener("mouseleave", hideSoon);
  tokensEl.addEventListener("focusout", hideTooltip);

  /** colour-by or the selected feature changed: repaint now from the shipped codes (the kernel's result follows
   * with the same numbers) */
  function repaintLocally() {
    const colorBy = String(model.get("color_by") || "strongest");
    const feature = Number(model.get("selected_feature") ?? -1);
    if (Number(model.get("layer")) !== snap.layer) return;  // codes of another layer: wait for the kernel
    const values = localValues(snap, colorBy, feature);
    if (!values) return;
    snap = { ...snap, values, range: [0, scaleMax(values)], colorBy, feature };
    colorSelect.value = colorBy;
    paint();
  }

  ctx.onResult("heatmap", draw);
  ctx.on("change:selected_feature", "heatmap.local", repaintLocally);
  ctx.on("change:selected_token", "heatmap.selection", markSelection);
  ctx.on("change:diff", "heatmap.paint", paint);
  ctx.on("change:color_by", "heatmap.color_by", () => { colorSelect.value = String(model.get("color_by") || "strongest"); repaintLocally(); });
  return el;
}
