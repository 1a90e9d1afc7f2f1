// Steering sweep (issue 14): the result of `scope.steering_eval` for one pinned feature, run by Python on the
// widget's worker (qscope_widgets/widgets/sweep_panel.py). The sweep buttons live on the steering blocks
// (steering.js, `requestSweep`); this panel draws `sweep_result`: progress while it runs (with a cancel button),
// then a compact table of the feature's effect beside baseline and each control, per metric and strength, and
// whether it is specific (beats baseline and every control by more than two standard errors over prompts).
import { h, clear, fmt } from "./dom.js";

const CONTROL_TEXT = /** @type {Record<string, string>} */ ({ random_direction: "random dir.", other_feature: "other feature" });

/**
 * Ask Python to sweep one feature (defaults filled in from the view as it is now; the nonce makes a second click
 * re-run it after the prompt changed).
 * @param {import("./context.js").Model} model @param {number} layer @param {number} feature
 */
export function requestSweep(model, layer, feature) {
  const prev = model.get("sweep_request") || {};
  model.set("sweep_request", { layer, feature, nonce: Number(prev.nonce || 0) + 1 });
  model.save_changes();
}

/** @param {import("./context.js").Model} model */
export function cancelSweep(model) {
  model.set("sweep_request", {});
  model.save_changes();
}

const METRIC_TEXT = /** @type {Record<string, string>} */ ({
  feature_act: "feature act.", promoted_logprob: "log p(promoted)",
});
const METRIC_TITLE = /** @type {Record<string, string>} */ ({
  feature_act: "the feature's own activation on an unsteered re-run of the generated text",
  promoted_logprob: "mean log-probability of the tokens the feature's decoder direction promotes most, under the steering",
});

/** The metrics that are specific at some strength, in table order. @param {any[]} rows */
export function specificMetrics(rows) {
  return [...new Set(rows.filter((r) => r.specific).map((r) => String(r.metric)))];
}

/** The table of summary rows: one per metric x strength. @param {any[]} rows @param {string[]} controls */
export function sweepTable(rows, controls) {
  const sorted = [...rows].sort((a, b) => String(a.metric).localeCompare(String(b.metric)) || Number(a.strength) - Number(b.strength));
  const head = ["metric", "strength", "feature", "baseline", ...controls.map((c) => CONTROL_TEXT[c] || c), "specific"];
  return h("table", { class: "qscope-sweep-table", dataset: { qscope: "sweep-table" } }, [
    h("thead", {}, [h("tr", {}, head.map((x) => h("th", { text: x })))]),
    h("tbody", {}, sorted.map((r) => h("tr", { dataset: { qscope: "sweep-row", metric: String(r.metric), strength: Number(r.strength), specific: String(Boolean(r.specific)) } }, [
      h("td", { class: "qscope-sweep-metric", text: METRIC_TEXT[r.metric] || String(r.metric), title: METRIC_TITLE[r.metric] || "" }),
      h("td", { class: "qscope-num", text: fmt(Number(r.strength)) }),
      h("td", { class: "qscope-num", text: fmt(Number(r.feature_mean)) }),
      h("td", { class: "qscope-num", text: fmt(Number(r.baseline_mean)) }),
      ...controls.map((c) => h("td", { class: "qscope-num", text: fmt(Number(r[`${c}_mean`])), title: `lead over ${c}: ${fmt(Number(r[`margin_vs_${c}`]))}` })),
      h("td", { class: r.specific ? "qscope-sweep-yes" : "qscope-muted", text: r.specific ? "yes" : "no" }),
    ]))),
  ]);
}

/**
 * What the sweep steered: the pinned edit's mode and positions ("add, every token", "clamp, generated tokens",
 * "ablate, token -1 from the prompt end").
 * @param {Record<string, any>} set
 */
export function editText(set) {
  const pos = set.positions;
  const where = pos == null ? "every token" : pos === "generated" ? "generated tokens"
    : `token${Array.isArray(pos) && pos.length > 1 ? "s" : ""} ${Array.isArray(pos) ? pos.join(", ") : String(pos)} from the prompt end`;
  return `(${String(set.mode || "add")}, ${where})`;
}

/** @param {import("./context.js").Context} ctx */
export function createSweep(ctx) {
  const { model } = ctx;
  const body = h("div", { class: "qscope-sweep-body" });
  const el = h("div", { class: "qscope-sweep", dataset: { qscope: "sweep-panel" } }, [
    h("div", { class: "qscope-section-title", text: "sweep vs controls" }), body,
  ]);

  function draw() {
    const s = /** @type {Record<string, any>} */ (model.get("sweep_result") || {});
    const state = String(s.state || "");
    el.dataset.state = state || "idle";
    clear(body);
    if (!state) {
      body.append(h("div", { class: "qscope-muted", text: "Sweep a pinned feature (its “sweep” button) to compare its effect with a random direction and another feature at the same norm." }));
      return;
    }
    const set = s.settings || {};
    const who = `L${Number(s.layer)} #${Number(s.feature)}`;
    const prompts = /** @type {string[]} */ (set.prompts || []);
    const controls = /** @type {string[]} */ (set.controls || []);
    const line = h("div", { class: "qscope-sweep-status", dataset: { qscope: "sweep-status" } });
    body.append(line);
    if (state === "running" || state === "waiting") {
      const total = Number(s.total || 0), done = Number(s.done || 0);
      line.append(h("span", { text: `${who}: ${state === "waiting" ? "paused for newer work, resumes after it" : "running"} ${total ? `${done}/${total} generations` : "…"}` }));
      if (total) line.append(h("progress", { max: String(total), value: String(done) }));
      line.append(
        h("button", { type: "button", class: "qscope-btn", dataset: { qscope: "sweep-cancel" }, onclick: () => ctx.safe("sweep.cancel", () => cancelSweep(model)) }, ["cancel"]),
      );
      return;
    }
    if (state === "error") {
      line.append(h("span", { class: "qscope-error", role: "alert", dataset: { qscope: "sweep-error" }, text: `${who}: ${String(s.error || "failed")}` }));
      return;
    }
    if (state === "cancelled") {
      line.append(h("span", { class: "qscope-muted", text: `${who}: cancelled` }));
      return;
    }
    const rows = /** @type {any[]} */ (s.rows || []);
    const specific = specificMetrics(rows).map((m) => METRIC_TEXT[m] || m);
    line.append(h("span", {
      text: `${who} ${editText(set)} on ${prompts.length} prompt${prompts.length === 1 ? "" : "s"}, ${Number(set.max_new_tokens || 0)} tokens: ${specific.length ? `specific (${specific.join(", ")})` : "not specific"}`,
      title: prompts.map((p) => `• ${p}`).join("\n"),
    }));
    body.append(sweepTable(rows, controls));
    if (set.note) body.append(h("div", { class: "qscope-muted", text: String(set.note) }));
  }

  ctx.on("change:sweep_result", "sweep", draw);
  draw();
  return el;
}
