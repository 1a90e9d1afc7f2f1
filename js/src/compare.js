// Compare view: two prompt boxes, both prompts' tokens coloured by one contrast feature (`values_a` / `values_b`
// over `compare_range`, with the heatmap's colour scale), and the ranked difference list (`compare_rows`) with a
// pin button per steering preset. A row click colours the strips by that feature (`selected_feature`); a pin asks
// Python (`pin_preset`) to add the edit at the preset's strength, which Python computes from the contrast.
import { toFloat32 } from "./buffers.js";
import { cellColor, gradient } from "./colors.js";
import { h, clear, visibleToken, fmt, pct } from "./dom.js";

const PRESETS = ["0.5x", "2x", "10x"];

/** A prompt box bound to one trait: Enter (without Shift) or leaving the box sets it.
 * @param {import("./context.js").Context} ctx @param {"prompt" | "prompt_b"} trait @param {string} hook @param {string} label */
function promptBox(ctx, trait, hook, label) {
  const { model } = ctx;
  const box = /** @type {HTMLTextAreaElement} */ (h("textarea", {
    class: "qscope-prompt", dataset: { qscope: hook }, rows: "2", spellcheck: "false", "aria-label": label,
    placeholder: `${label}, then Enter`,
  }));
  const commit = () => ctx.safe(`compare.${trait}`, () => {
    if (box.value === String(model.get(trait) ?? "")) return;
    model.set(trait, box.value);
    model.save_changes();
  });
  box.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); commit(); }
  });
  box.addEventListener("blur", commit);
  const sync = () => { if (document.activeElement !== box) box.value = String(model.get(trait) ?? ""); };
  ctx.on(`change:${trait}`, `compare.${trait}`, sync);
  sync();
  return box;
}

/** @param {import("./context.js").Context} ctx */
export function createCompare(ctx) {
  const { model } = ctx;
  const boxA = promptBox(ctx, "prompt", "prompt-a", "first prompt (a)");
  const boxB = promptBox(ctx, "prompt_b", "prompt-b", "second prompt (b)");
  const stripA = h("div", { class: "qscope-tokens", dataset: { qscope: "strip-a" }, "aria-label": "prompt a tokens" });
  const stripB = h("div", { class: "qscope-tokens", dataset: { qscope: "strip-b" }, "aria-label": "prompt b tokens" });
  const caption = h("span", { class: "qscope-legend-caption" });
  const legendLo = h("span", { class: "qscope-legend-lo" });
  const legendHi = h("span", { class: "qscope-legend-hi" });
  const legend = h("div", { class: "qscope-legend", dataset: { qscope: "legend" } },
    [caption, legendLo, h("span", { class: "qscope-legend-bar", style: { backgroundImage: gradient("sequential") } }), legendHi]);
  const body = h("tbody");
  const table = h("table", { class: "qscope-table", dataset: { qscope: "compare-table" } }, [
    h("thead", {}, [h("tr", {}, ["layer", "feature", "label", "rate a", "rate b", "difference", "pin (steer)"]
      .map((c) => h("th", { text: c })))]),
    body,
  ]);
  const empty = h("div", { class: "qscope-muted", dataset: { qscope: "compare-empty" } });
  const el = h("div", { class: "qscope-compare", dataset: { qscope: "compare" } }, [
    h("div", { class: "qscope-compare-prompts" }, [boxA, boxB]),
    legend,
    h("div", { class: "qscope-compare-strip" }, [h("span", { class: "qscope-muted", text: "a " }), stripA]),
    h("div", { class: "qscope-compare-strip" }, [h("span", { class: "qscope-muted", text: "b " }), stripB]),
    empty, table,
  ]);

  /** @param {HTMLElement} strip @param {string[]} tokens @param {Float32Array} values @param {[number, number]} range */
  function drawStrip(strip, tokens, values, range) {
    clear(strip);
    tokens.forEach((tok, i) => {
      const v = i < values.length ? values[i] : NaN;
      const c = cellColor(v, range, "sequential");
      strip.append(h("span", {
        class: `qscope-token${c ? " qscope-lit" : ""}`, dataset: { index: i, value: String(v) },
        style: c ? { backgroundColor: c.bg, color: c.fg } : {}, title: `${tok} ${fmt(v)}`,
      }, [visibleToken(tok).node]));
    });
  }

  function draw() {
    const rows = model.get("compare_rows") || [];
    const feature = Number(model.get("compare_feature") ?? -1);
    const r = model.get("compare_range") || [0, 1];
    const range = /** @type {[number, number]} */ ([Number(r[0]), Number(r[1])]);
    drawStrip(stripA, (model.get("tokens_a") || []).map(String), toFloat32(model.get("values_a")), range);
    drawStrip(stripB, (model.get("tokens_b") || []).map(String), toFloat32(model.get("values_b")), range);
    const row = rows.find((x) => x.feature === feature);
    caption.textContent = feature >= 0 ? `feature ${feature}${row && row.label ? ` (${row.label})` : ""} activation` : "";
    legendLo.textContent = fmt(range[0]);
    legendHi.textContent = fmt(range[1]);
    legend.hidden = feature < 0;
    empty.textContent = !String(model.get("prompt_b") || "").trim() ? "type a second prompt to compare"
      : rows.length ? "" : "no feature fires on either prompt at this layer";
    clear(body);
    for (const x of rows) {
      const selected = x.feature === feature;
      body.append(h("tr", {
        class: selected ? "qscope-selected" : "", dataset: { qscope: "compare-row", feature: x.feature, selected: String(selected) },
        tabindex: "0", title: "colour both prompts by this feature",
        onclick: () => ctx.safe("compare.select", () => { model.set("selected_feature", x.feature); model.save_changes(); }),
        onkeydown: (/** @type {KeyboardEvent} */ ev) => {
          if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); model.set("selected_feature", x.feature); model.save_changes(); }
        },
      }, [
        h("td", { class: "qscope-num", text: String(x.layer) }),
        h("td", { class: "qscope-mono", text: `#${x.feature}` }),
        h("td", { text: x.label || "" }),
        h("td", { class: "qscope-num", text: pct(x.rate_a) }),
        h("td", { class: "qscope-num", text: pct(x.rate_b) }),
        h("td", { class: "qscope-num", text: fmt(x.difference) }),
        h("td", {}, PRESETS.map((p) => h("button", {
          class: "qscope-button", type: "button", text: p,
          title: `pin at strength ${fmt((x.presets || {})[p])}`,
          dataset: { qscope: "compare-pin", layer: x.layer, feature: x.feature, preset: p },
          onclick: (/** @type {Event} */ ev) => ctx.safe("compare.pin", () => {
            ev.stopPropagation();
            model.send({ type: "pin_preset", layer: x.layer, feature: x.feature, preset: p });
          }),
        }))),
      ]));
    }
  }

  ctx.onResult("compare", draw);
  return el;
}
