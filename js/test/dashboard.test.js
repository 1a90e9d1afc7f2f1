import { describe, it, expect } from "vitest";
import { FakeModel, mount } from "./fake-model.js";

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
