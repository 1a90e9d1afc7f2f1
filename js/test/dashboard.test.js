import { describe, it, expect } from "vitest";
import { FakeModel, mount, explorerState, edit } from "./fake-model.js";

const edges = Array.from({ length: 13 }, (_, i) => 10 ** (-3 + i / 2)); // 1e-3 .. 1e3, 12 bins
const data = (over = {}) => ({
  layer: 3, feature: 2360, label: "God / LORD → unto, hath", explanation: "", density: 0.0021, count: 532,
  mean_activation: 2.1, max_activation: 9.5, quantiles: { q50: 1.8, q90: 4.1, q99: 8 },
  hist: { edges, counts: [0, 0, 0, 1, 5, 40, 300, 150, 30, 6, 0, 0] },
  top_tokens: [" God", " LORD"], promoted: [" unto", " hath"], suppressed: [" the"], groups: { bible: 0.9, python: 0.1 },
  contexts: [
    { rank: 0, activation: 9.5, document: 1, position: 10, tokens: ["In", " the", " beginning", " God", " created"], acts: [0, 0, 0.5, 9.5, 1], center: 3 },
    { rank: 1, activation: 7, document: 2, position: 3, tokens: ["the", " LORD", " said"], acts: [0, 7, 0], center: 1 },
  ],
  url: "https://example.org/3/2360",
  ...over,
});
const state = (over = {}) => ({ _view: "feature", layer: 3, feature: 2360, data: data(), status: {}, ...over });

describe("feature dashboard", () => {
  it("shows label, stats, histogram, token lists, groups and contexts", async () => {
    const model = new FakeModel(state());
    const { $, $$ } = await mount(model);
    const dash = $("[data-qscope='feature-dashboard']");
    expect(dash).not.toBeNull();
    expect(dash.textContent).toContain("L3 #2360");
    expect(dash.textContent).toContain("God / LORD → unto, hath");
    const stats = $("[data-qscope='stats']").textContent;
    expect(stats).toContain("0.21%");
    expect(stats).toContain("9.5");
    expect(stats).toContain("q99");
    const svg = $("svg[data-qscope='histogram']");
    // only the bins holding counts (3..9 of 12): the axis fits the data, labelled at its ends
    expect(svg.querySelectorAll("rect").length).toBe(7);
    const xt = [...svg.querySelectorAll("[data-qscope='x-tick']")].map((t) => t.textContent);
    expect(xt[0]).toBe("0.032");
    expect(xt.at(-1)).toBe("100");
    expect([...svg.querySelectorAll("[data-qscope='y-tick']")].map((t) => t.textContent)).toEqual(["0", "300"]);
    expect($(".qscope-promoted").textContent).toContain("·unto");
    expect($(".qscope-suppressed").textContent).toContain("·the");
    expect($(".qscope-groups").textContent).toContain("bible");
    expect($("a.qscope-link").getAttribute("href")).toBe("https://example.org/3/2360");
    const ctx = $$("[data-qscope='context']");
    expect(ctx.length).toBe(2);
    expect(ctx[0].querySelector("mark").textContent).toBe("·God");
    expect(ctx[1].querySelector("mark").textContent).toBe("·LORD");
    // per-token shading by acts: the centre is the top of the scale, zero is unfilled
    const toks = ctx[0].querySelectorAll(".qscope-ctx-token");
    expect(toks[3].style.backgroundColor).toBe("rgb(102, 37, 6)");
    expect(toks[0].style.backgroundColor).toBe("");
    expect(toks[2].style.backgroundColor).not.toBe("");
  });

  it("histogram counts switch between log and linear", async () => {
    const model = new FakeModel(state());
    const { $ } = await mount(model);
    const heights = () => [...$("svg[data-qscope='histogram']").querySelectorAll("rect")].map((r) => Number(r.getAttribute("height")));
    expect($("svg[data-qscope='histogram']").dataset.scale).toBe("log");
    const logH = heights();
    const box = $("input[data-qscope='log-counts']");
    box.checked = false;
    box.dispatchEvent(new Event("change"));
    expect($("svg[data-qscope='histogram']").dataset.scale).toBe("linear");
    const linH = heights();
    expect(Math.max(...linH)).toBeCloseTo(90);
    expect(linH[0]).toBeLessThan(logH[0]); // a count of 1 is tiny on a linear scale
  });

  it("the explanation comes first when attached; pin sends {type: 'pin'}", async () => {
    const model = new FakeModel(state({ data: data({ explanation: "References to God in the KJV", url: "" }) }));
    const { $, $$ } = await mount(model);
    expect($(".qscope-explanation").textContent).toBe("References to God in the KJV");
    expect($$("a.qscope-link").length).toBe(0);
    $("button[data-qscope='pin']").click();
    expect(model.sent).toEqual([{ type: "pin" }]);
  });

  it("redraws on new data, shows status errors, copes with empty data", async () => {
    const model = new FakeModel(state({ data: {} }));
    const { $, $$ } = await mount(model);
    expect($("[data-qscope='feature-dashboard']").textContent).toContain("no index data");
    model.update({ data: data({ contexts: [], hist: { edges, counts: new Array(12).fill(0) } }) });
    expect($("[data-qscope='feature-dashboard']").textContent).toContain("no contexts");
    expect($("svg[data-qscope='histogram']").textContent).toContain("no activations");
    expect($$("[data-qscope='context']").length).toBe(0);
    model.update({ status: { busy: false, error: "FeatureIndexError: no index attached" } });
    expect($("[data-qscope='error']").textContent).toBe("FeatureIndexError: no index attached");
  });
});

const withIds = (c, ids) => ({ ...c, token_ids: ids });
const bands = [
  { lo: 0.75, hi: 1, label: "75-100% of max", min: 7.125, max: 9.5, count: 4,
    contexts: [withIds({ rank: 0, activation: 9, document: 5, position: 2, tokens: ["the", " LORD"], acts: [0, 9], center: 1 }, [10, 11])] },
  { lo: 0.5, hi: 0.75, label: "50-75% of max", min: 4.75, max: 7.125, count: 0, contexts: [] },
  { lo: 0.25, hi: 0.5, label: "25-50% of max", min: 2.375, max: 4.75, count: 9,
    contexts: [withIds({ rank: 3, activation: 3, document: 6, position: 1, tokens: [" God", " said"], acts: [3, 0], center: 0 }, [12, 13])] },
];

describe("contexts by activation range, try your own text, open a context", () => {
  it("draws each band with its label, count and contexts beside the top contexts", async () => {
    const model = new FakeModel(state({ data: data({ bands, bands_note: "" }) }));
    const { $, $$ } = await mount(model);
    const drawn = $$("[data-qscope='band']");
    expect(drawn.map((b) => b.dataset.lo)).toEqual(["0.75", "0.5", "0.25"]);
    expect(drawn[0].textContent).toContain("75-100% of max");
    expect(drawn[0].textContent).toContain("4 sampled");
    expect(drawn[1].textContent).toContain("none sampled in this range");
    expect($$("[data-qscope='context'][data-kind='band']").length).toBe(2);
    expect($$("[data-qscope='context'][data-kind='top']").length).toBe(2);
    expect($("[data-qscope='bands-note']")).toBeNull();
  });

  it("an index without samples shows the top contexts and says why there are no bands", async () => {
    const model = new FakeModel(state({ data: data({ bands: [], bands_note: "this index has no sampled contexts" }) }));
    const { $, $$ } = await mount(model);
    expect($("[data-qscope='bands-note']").textContent).toBe("this index has no sampled contexts");
    expect($$("[data-qscope='context'][data-kind='top']").length).toBe(2);
  });

  it("a click (or Enter) on a context sends it to open in the explorer, ids included when known", async () => {
    const model = new FakeModel(state({ data: data({ bands, bands_note: "" }) }));
    const { $$ } = await mount(model);
    $$("[data-qscope='context'][data-kind='top']")[1].click();
    expect(model.sent.at(-1)).toEqual({ type: "open_context", context: { tokens: ["the", " LORD", " said"], center: 1 } });
    const band = $$("[data-qscope='context'][data-kind='band']")[0];
    band.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true, cancelable: true }));
    expect(model.sent.at(-1)).toEqual({ type: "open_context", context: { tokens: ["the", " LORD"], center: 1, token_ids: [10, 11] } });
  });

  it("the try box sets dashboard_text on Enter, says at once when it is empty, and draws only the newest row", async () => {
    const model = new FakeModel(state({ request_seq: 0, result_seq: 0 }));
    const { $, $$ } = await mount(model);
    const box = $("textarea[data-qscope='try-text']");
    box.value = "   ";
    box.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true, cancelable: true }));
    expect($("[data-qscope='try-error']").textContent).toContain("the text to try is empty");
    expect(model.saves).toBe(0);
    box.value = "And God said";
    box.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", shiftKey: true, bubbles: true, cancelable: true }));
    expect(model.saves).toBe(0);  // Shift+Enter is a newline
    $("button[data-qscope='try-run']").click();
    expect(model.saved.at(-1)).toEqual({ dashboard_text: "And God said" });
    expect($("[data-qscope='try-error']").textContent).toBe("");
    const row = { text: "And God said", layer: 3, feature: 2360, tokens: ["And", " God", " said"], acts: [0, 7.5, 1],
      token_ids: [1, 2, 3], center: 1, position: 1, activation: 7.5, error: "" };
    model.update({ dashboard_try: row, request_seq: 2, result_seq: 2 });
    expect($("[data-qscope='try-summary']").textContent).toContain("max 7.5");
    const tryRow = $("[data-qscope='context'][data-kind='try']");
    expect(tryRow.querySelector("mark").textContent).toBe("·God");
    tryRow.click();
    expect(model.sent.at(-1)).toEqual({ type: "open_context", context: { tokens: row.tokens, center: 1, token_ids: [1, 2, 3] } });
    model.update({ dashboard_try: { text: "old", error: "PromptError: stale" }, result_seq: 1 });  // a late, older result
    expect($("[data-qscope='try-error']").textContent).toBe("");
    expect($$("[data-qscope='context'][data-kind='try']").length).toBe(1);
    model.update({ dashboard_try: { text: "x x", error: "PromptError: the text to try cannot run: too long" }, request_seq: 3, result_seq: 3 });
    expect($("[data-qscope='try-error']").textContent).toContain("too long");
    expect($$("[data-qscope='context'][data-kind='try']").length).toBe(0);
  });
});

describe("the Explorer's dashboard panel", () => {
  it("asks for a click with no feature; shows the selected feature's dashboard; its pin and contexts carry layer and feature", async () => {
    const model = new FakeModel(explorerState());
    const { $, $$ } = await mount(model);
    const panel = $("[data-qscope-panel='dashboard']");
    expect(panel).not.toBeNull();
    expect(panel.textContent).toContain("Click a feature to see its dashboard");
    model.update({ selected_feature: 2360, layer: 3, dashboard: data({ bands, bands_note: "" }), dashboard_try: {}, request_seq: 2, result_seq: 2 });
    expect(panel.querySelector(".qscope-dash-id").textContent).toBe("L3 #2360");
    expect(panel.querySelector("a.qscope-link").getAttribute("href")).toBe("https://example.org/3/2360");
    panel.querySelector("button[data-qscope='pin']").click();
    expect(model.sent.at(-1)).toEqual({ type: "pin", layer: 3, feature: 2360 });
    $$("[data-qscope-panel='dashboard'] [data-qscope='context']")[0].click();
    expect(model.sent.at(-1)).toMatchObject({ type: "open_context", layer: 3, feature: 2360 });
  });

  it("a feature in a token's tooltip, a search result and a pinned feature's name open it", async () => {
    const model = new FakeModel(explorerState({ edits: [edit({ layer: 2, feature: 42, label: "LORD" })],
      search_query: "god", search_results: [{ layer: 1, feature: 9, label: "x", density: 0.1, max_activation: 1 }] }));
    const { $, $$ } = await mount(model);
    $$("span.qscope-token")[0].dispatchEvent(new Event("mouseover", { bubbles: true }));
    const rows = $$("[data-qscope='tooltip-feature']");
    expect(rows.map((r) => r.dataset.feature)).toEqual(["5", "7", "9"]);
    rows[1].click();  // same layer: set here (the heatmap repaints at once), no message
    expect(model.saved.at(-1)).toEqual({ selected_feature: 7, color_by: "feature" });
    expect($("[data-qscope='tooltip']").hidden).toBe(true);
    $("button[data-qscope='search-result']").click();
    expect(model.saved.at(-1)).toEqual({ selected_feature: 9, color_by: "feature" });
    $("button[data-qscope='edit-open']").click();  // another layer: the kernel switches layer, then feature
    expect(model.sent.at(-1)).toEqual({ type: "open_feature", layer: 2, feature: 42 });
  });

  it("a saved page without the clicked feature's dashboard says so instead of showing another's", async () => {
    const model = new FakeModel(explorerState({ selected_feature: 11, dashboard: {} }));
    const { $ } = await mount(model);
    expect($("[data-qscope='dashboard-empty']").textContent).toContain("loading the dashboard of L1 #11");
  });
});

describe("the dashboard panel redraws only what changed", () => {
  it("a result that keeps the card (a token click) rebuilds no DOM; a new card does", async () => {
    const model = new FakeModel(explorerState({ selected_feature: 2360, layer: 3, dashboard: data(), dashboard_try: {} }));
    const { $ } = await mount(model);
    const before = $("[data-qscope-panel='dashboard'] .qscope-dash-head");
    model.update({ selected_token: 2, request_seq: 2, result_seq: 2 });
    expect($("[data-qscope-panel='dashboard'] .qscope-dash-head")).toBe(before);
    model.update({ dashboard: data({ feature: 7, label: "seven" }), request_seq: 3, result_seq: 3 });
    expect($("[data-qscope-panel='dashboard'] .qscope-dash-head")).not.toBe(before);
    expect($("[data-qscope-panel='dashboard']").textContent).toContain("seven");
  });
});

describe("try your own text that the feature ignores", () => {
  it("says it does not fire instead of naming a token", async () => {
    const model = new FakeModel(state({ request_seq: 1, result_seq: 1,
      dashboard_try: { text: "abc", tokens: ["a", "b"], acts: [0, 0], center: 0, activation: 0, error: "" } }));
    const { $ } = await mount(model);
    expect($("[data-qscope='try-summary']").textContent).toBe("does not fire on this text (max 0 over 2 tokens)");
  });
});
