import { describe, it, expect, vi, afterEach } from "vitest";
import { FakeModel, explorerState, mount } from "./fake-model.js";

afterEach(() => vi.useRealTimers());

describe("feature sidebar", () => {
  it("draws one row per feature with label, bar, density, two contexts and a link", async () => {
    const model = new FakeModel(explorerState({ _view: "sidebar" }));
    const { $, $$ } = await mount(model);
    const rows = $$("[data-qscope='sidebar'] [data-qscope='feature-row']");
    expect(rows.map((r) => r.dataset.feature)).toEqual(["11", "5"]);
    expect(rows[0].textContent).toContain("creation");
    expect(rows[0].querySelectorAll(".qscope-context-preview").length).toBe(2);
    expect(rows[0].querySelector(".qscope-bar-fill").style.width).toBe("100%");
    expect(rows[1].querySelector(".qscope-bar-fill").style.width).toBe("62.5%");
    expect(rows[0].querySelector("a").getAttribute("href")).toBe("https://example.org/1/11");
    expect(rows[0].textContent).toContain("density 0.2%");
    expect($(".qscope-sidebar-title").textContent).toBe("whole prompt");
  });

  it("no link when feature_url is empty", async () => {
    const model = new FakeModel(explorerState({ _view: "sidebar", feature_url: "" }));
    const { $$ } = await mount(model);
    expect($$("[data-qscope='feature-row'] a").length).toBe(0);
  });

  it("clicking a row selects the feature and colours by it", async () => {
    const model = new FakeModel(explorerState({ _view: "sidebar" }));
    const { $$ } = await mount(model);
    $$("[data-qscope='feature-row']")[1].click();
    expect(model.saved).toEqual([{ selected_feature: 5, color_by: "feature" }]);
    expect($$("[data-qscope='feature-row']")[1].classList.contains("qscope-selected")).toBe(true);
  });

  it("pin sends a pin message and does not select the row; a pinned row's button is disabled", async () => {
    const model = new FakeModel(explorerState({ _view: "sidebar" }));
    const { $$ } = await mount(model);
    const [pin11, pin5] = $$("[data-qscope='feature-row'] button[data-qscope='pin']");
    pin11.click();
    expect(model.sent).toEqual([{ type: "pin", layer: 1, feature: 11 }]);
    expect(model.saves).toBe(0);
    expect(pin5.disabled).toBe(true);
  });

  it("search is debounced (~200 ms) and sends only the last query", async () => {
    vi.useFakeTimers();
    const model = new FakeModel(explorerState({ _view: "sidebar" }));
    const { $ } = await mount(model);
    const box = $("input[data-qscope='search']");
    for (const q of ["c", "cr", "cre", "crea"]) {
      box.value = q;
      box.dispatchEvent(new Event("input"));
      vi.advanceTimersByTime(50);
    }
    expect(model.saves).toBe(0);
    vi.advanceTimersByTime(199);
    expect(model.saves).toBe(1);
    expect(model.saved).toEqual([{ search_query: "crea" }]);
    box.value = "2360";
    box.dispatchEvent(new Event("input"));
    box.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
    expect(model.saved.at(-1)).toEqual({ search_query: "2360" });
    vi.advanceTimersByTime(500);
    expect(model.saves).toBe(2);
  });

  it("search results are listed; clicking one on another layer sends open_feature", async () => {
    const model = new FakeModel(explorerState({ _view: "sidebar" }));
    const { $, $$ } = await mount(model);
    expect($("[data-qscope='search-results']").hidden).toBe(true);
    model.update({
      search_query: "god",
      search_results: [{ layer: 3, feature: 2360, label: "God / LORD", density: 0.001, max_activation: 9.5 }],
    });
    const res = $$("[data-qscope='search-result']");
    expect(res.length).toBe(1);
    expect(res[0].textContent).toContain("L3 #2360");
    res[0].click();
    expect(model.sent).toEqual([{ type: "open_feature", layer: 3, feature: 2360 }]);
    model.update({ search_results: [] });
    expect($("[data-qscope='search-results']").textContent).toContain("no features match");
  });

  it("example-search results show how strongly each feature fires on the phrase", async () => {
    const model = new FakeModel(explorerState({ _view: "sidebar" }));
    const { $$ } = await mount(model);
    model.update({
      search_query: '"the LORD said"',
      search_results: [{ layer: 3, feature: 7, label: "LORD", density: 0.01, max_activation: 40, activation: 12.5 },
                       { layer: 3, feature: 8, label: "said", density: 0.02, max_activation: 30 }],
    });
    const res = $$("[data-qscope='search-result']");
    expect(res[0].textContent).toContain("fires 12.5");
    expect(res[1].textContent).not.toContain("fires");
  });

  it("rows follow new results but not older ones", async () => {
    const model = new FakeModel(explorerState({ _view: "sidebar", result_seq: 4, request_seq: 4 }));
    const { $$ } = await mount(model);
    model.update({ sidebar: [{ feature: 99, activation: 1, label: "x", density: 0, contexts: [] }], result_seq: 2 });
    expect($$("[data-qscope='feature-row']").map((r) => r.dataset.feature)).toEqual(["11", "5"]);
    model.update({ sidebar: [{ feature: 42, activation: 1, label: "y", density: 0, contexts: [] }], sidebar_title: "token 2", result_seq: 5 });
    expect($$("[data-qscope='feature-row']").map((r) => r.dataset.feature)).toEqual(["42"]);
    // Python refreshing the same result (e.g. a pinned flag) redraws
    model.update({ sidebar: [{ feature: 42, activation: 1, label: "y", density: 0, contexts: [], pinned: true }] });
    expect($$("button[data-qscope='pin']")[0].disabled).toBe(true);
  });
});
