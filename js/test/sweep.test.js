import { describe, it, expect } from "vitest";
import { FakeModel, explorerState, edit, mount } from "./fake-model.js";
import { editText } from "../src/sweep.js";

const row = (over = {}) => ({
  strength: 4, metric: "feature_act", specific: false, n_prompts: 4, feature_mean: 1.5, baseline_mean: 0.25,
  random_direction_mean: 0.5, other_feature_mean: 0.75, margin_vs_baseline: 1.25, margin_vs_random_direction: 1,
  margin_vs_other_feature: 0.75, perplexity_feature: 9, perplexity_baseline: 8, ...over,
});
const settings = { layer: 1, feature: 11, prompts: ["In the beginning", "The weather today is"], strengths: [2, 4],
  seeds: [0], max_new_tokens: 8, controls: ["random_direction", "other_feature"], note: "" };
const done = { state: "done", layer: 1, feature: 11, done: 24, total: 24, error: "", settings,
  rows: [row({ strength: 2, feature_mean: 0.5 }), row({ strength: 2, metric: "promoted_logprob", feature_mean: -3 }),
    row({ strength: 4, specific: true, feature_mean: 3 }), row({ strength: 4, metric: "promoted_logprob", feature_mean: -2 })] };

describe("steering sweep", () => {
  it("each steering block has a sweep button that asks Python for a sweep of that feature", async () => {
    const model = new FakeModel(explorerState({ _view: "steering", edits: [edit(), edit({ feature: 5 })] }));
    const { $$ } = await mount(model);
    const buttons = $$("button[data-qscope='sweep']");
    expect(buttons.map((b) => b.dataset.feature)).toEqual(["11", "5"]);
    buttons[1].click();
    expect(model.get("sweep_request")).toEqual({ layer: 1, feature: 5, nonce: 1 });
    buttons[1].click();  // a second click is a new request (re-run from the view as it is now)
    expect(model.get("sweep_request").nonce).toBe(2);
    expect(model.saves).toBe(2);
  });

  it("no sweep button in a view without the sweep panel", async () => {
    const model = new FakeModel(explorerState({ _view: "steering", _panels: ["steering"], edits: [edit()] }));
    const { $$ } = await mount(model);
    expect($$("button[data-qscope='sweep']").length).toBe(0);
    expect($$("[data-qscope='sweep-panel']").length).toBe(0);
  });

  it("draws the summary: one row per strength, effect beside baseline and each control, specific or not", async () => {
    const model = new FakeModel(explorerState({ edits: [edit()], sweep_result: done }));
    const { $, $$ } = await mount(model);
    const panel = $("[data-qscope='sweep-panel']");
    expect(panel.dataset.state).toBe("done");
    const heads = $$("[data-qscope='sweep-table'] th").map((x) => x.textContent);
    expect(heads).toEqual(["metric", "strength", "feature", "baseline", "random dir.", "other feature", "specific"]);
    const rows = $$("[data-qscope='sweep-row']");
    expect(rows.map((r) => [r.dataset.metric, r.dataset.strength, r.dataset.specific])).toEqual([
      ["feature_act", "2", "false"], ["feature_act", "4", "true"], ["promoted_logprob", "2", "false"], ["promoted_logprob", "4", "false"]]);
    expect([...rows[1].querySelectorAll("td")].map((td) => td.textContent)).toEqual(["feature act.", "4", "3", "0.25", "0.5", "0.75", "yes"]);
    expect($("[data-qscope='sweep-status']").textContent).toContain("L1 #11 (add, every token) on 2 prompts, 8 tokens: specific (feature act.)");
  });

  it("shows progress with a cancel button while running; cancel clears the request", async () => {
    const model = new FakeModel(explorerState({ edits: [edit()], sweep_request: { layer: 1, feature: 11, nonce: 1 },
      sweep_result: { state: "running", layer: 1, feature: 11, done: 6, total: 24, settings, rows: [] } }));
    const { $ } = await mount(model);
    expect($("[data-qscope='sweep-status']").textContent).toContain("running 6/24 generations");
    expect($("[data-qscope='sweep-panel'] progress").getAttribute("value")).toBe("6");
    $("button[data-qscope='sweep-cancel']").click();
    expect(model.get("sweep_request")).toEqual({});
    model.update({ sweep_result: { ...model.get("sweep_result"), state: "cancelled" } });
    expect($("[data-qscope='sweep-panel']").dataset.state).toBe("cancelled");
    expect($("[data-qscope='sweep-table']")).toBeNull();
  });

  it("an error from Python is shown in the panel", async () => {
    const model = new FakeModel(explorerState({ sweep_result: { state: "error", layer: 1, feature: 11, error: "no strength to sweep L1/11 at" } }));
    const { $ } = await mount(model);
    expect($("[data-qscope='sweep-error']").textContent).toContain("no strength to sweep");
  });
});

describe("label scores", () => {
  it("sidebar rows show the label score and tag weak labels; rows without scores show neither", async () => {
    const model = new FakeModel(explorerState({ _view: "sidebar", sidebar: [
      { feature: 11, activation: 4, label: "creation", label_score: 0.873, label_weak: false, density: 0.002, contexts: [], pinned: false },
      { feature: 5, activation: 2.5, label: "article", label_score: 0.12, label_weak: true, density: 0.05, contexts: [], pinned: false },
      { feature: 7, activation: 1, label: "plain", label_score: null, label_weak: null, density: 0.05, contexts: [], pinned: false },
    ] }));
    const { $$ } = await mount(model);
    const rows = $$("[data-qscope='feature-row']");
    expect(rows[0].querySelector("[data-qscope='label-score']").textContent).toBe("0.87");
    expect(rows[0].querySelector("[data-qscope='weak-label']")).toBeNull();
    expect(rows[1].querySelector("[data-qscope='label-score']").textContent).toBe("0.12");
    expect(rows[1].querySelector("[data-qscope='weak-label']").textContent).toBe("weak label");
    expect(rows[2].querySelector("[data-qscope='label-score'], [data-qscope='weak-label']")).toBeNull();
  });

  it("search results carry the score too, in the order Python sent (best label first)", async () => {
    const model = new FakeModel(explorerState({ _view: "sidebar", search_query: "which", search_results: [
      { layer: 1, feature: 3, label: "that → which", label_score: 0.91, label_weak: false, density: 0.01, max_activation: 4 },
      { layer: 1, feature: 9, label: ", → which", label_score: 0.2, label_weak: true, density: 0.01, max_activation: 9 },
    ] }));
    const { $$ } = await mount(model);
    const res = $$("[data-qscope='search-result']");
    expect(res.map((r) => r.querySelector("[data-qscope='label-score']").textContent)).toEqual(["0.91", "0.20"]);
    expect(res[1].querySelector("[data-qscope='weak-label']")).not.toBeNull();
  });

  it("the dashboard shows the scored label with its score, and marks an unscored one weak", async () => {
    const base = { layer: 3, feature: 1, label: "the → same", explanation: "", density: 0.01, count: 5, quantiles: {}, hist: { edges: [], counts: [] }, contexts: [] };
    let model = new FakeModel({ _view: "feature", layer: 3, feature: 1, status: {},
      data: { ...base, scored_label: "the (in bible text) → same", label_score: 0.66, label_weak: false } });
    let m = await mount(model);
    const scored = m.$("[data-qscope='scored-label']");
    expect(scored.textContent).toContain("the (in bible text) → same");
    expect(scored.querySelector("[data-qscope='label-score']").textContent).toBe("0.66");
    model = new FakeModel({ _view: "feature", layer: 3, feature: 1, status: {},
      data: { ...base, scored_label: "(does not fire on the fit text)", label_score: null, label_weak: true } });
    m = await mount(model);
    expect(m.$("[data-qscope='scored-label'] [data-qscope='weak-label']")).not.toBeNull();
    expect(m.$("[data-qscope='scored-label'] [data-qscope='label-score']")).toBeNull();
  });
});

describe("what the sweep steered", () => {
  it("names the pinned edit's mode and positions", () => {
    expect(editText({ mode: "clamp", positions: "generated" })).toBe("(clamp, generated tokens)");
    expect(editText({ mode: "ablate", positions: [-1] })).toBe("(ablate, token -1 from the prompt end)");
    expect(editText({ positions: null })).toBe("(add, every token)");
  });
});
