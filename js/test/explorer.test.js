import { describe, it, expect, vi } from "vitest";
import { FakeModel, explorerState, f32, mount } from "./fake-model.js";

describe("explorer", () => {
  it("composes heatmap, sidebar, layers, steering, prompt and status under one root", async () => {
    const model = new FakeModel(explorerState());
    const { $, $$ } = await mount(model);
    const root = $("div.qscope[data-qscope-view='explorer']");
    expect(root.dataset.resultSeq).toBe("1");
    for (const hook of ["heatmap", "sidebar", "layers", "steering", "status", "prompt", "next-tokens", "continuation"]) {
      expect($$(`[data-qscope='${hook}']`).length, hook).toBe(1);
    }
    expect($("[data-qscope='status']").dataset.busy).toBe("false");
    expect($("[data-qscope='status']").textContent).toContain("42 ms");
  });

  it("the prompt is sent on Enter or blur, not per keystroke", async () => {
    const model = new FakeModel(explorerState());
    const { $ } = await mount(model);
    const box = $("[data-qscope='prompt']");
    expect(box.value).toBe("In the beginning");
    box.focus();
    box.value = "In the beginning God";
    box.dispatchEvent(new Event("input"));
    expect(model.saves).toBe(0);
    box.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
    expect(model.saved).toEqual([{ prompt: "In the beginning God" }]);
    box.value = "Once upon a time";
    box.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", shiftKey: true }));
    expect(model.saves).toBe(1);
    box.dispatchEvent(new Event("blur"));
    expect(model.saved.at(-1)).toEqual({ prompt: "Once upon a time" });
    box.dispatchEvent(new Event("blur"));
    expect(model.saves).toBe(2); // unchanged text: nothing sent
  });

  it("status: busy while a request is pending, Python errors inline, then recovery", async () => {
    const model = new FakeModel(explorerState());
    const { $, $$ } = await mount(model);
    const status = $("[data-qscope='status']");
    model.update({ request_seq: 2, status: { busy: true, stage: "running", latency_ms: 0, error: "", seq: 2 } });
    expect(status.dataset.busy).toBe("true");
    expect(status.textContent).toContain("running");
    expect($(".qscope").dataset.stale).toBe("true");
    model.update({ result_seq: 2, status: { busy: false, stage: "error", latency_ms: 5, error: "UnknownLayerError: layer 9 has no SAE", seq: 2 } });
    expect(status.dataset.busy).toBe("false");
    expect($("[data-qscope='error']").textContent).toBe("UnknownLayerError: layer 9 has no SAE");
    // the widget keeps working
    $$("span.qscope-token")[0].click();
    expect(model.get("selected_token")).toBe(0);
    model.update({ status: { busy: false, stage: "done", latency_ms: 7, error: "", seq: 3 } });
    expect($("[data-qscope='error']").textContent).toBe("");
  });

  it("a JS error while drawing is shown in the status line and cleared by the next good draw", async () => {
    const spy = vi.spyOn(console, "error").mockImplementation(() => {});
    const model = new FakeModel(explorerState());
    const { $, $$ } = await mount(model);
    // a malformed result: `sidebar` rows that are not objects make the sidebar throw
    model.update({ sidebar: [null], request_seq: 2, result_seq: 2 });
    expect($("[data-qscope='error']").textContent).toMatch(/JS error in sidebar/);
    expect(spy).toHaveBeenCalled();
    // the other components still drew result 2
    expect($(".qscope").dataset.resultSeq).toBe("2");
    model.update({ sidebar: [{ feature: 3, activation: 1, label: "ok", density: 0, contexts: [] }], request_seq: 3, result_seq: 3 });
    expect($("[data-qscope='error']").textContent).toBe("");
    expect($$("[data-qscope='feature-row']").length).toBe(1);
  });

  it("an unknown _view still renders an error instead of a dead cell", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    const model = new FakeModel(explorerState({ _view: "nope", _panels: [] }));
    const { $ } = await mount(model);
    expect($("[data-qscope='error']").textContent).toContain("declares no panels");
    const model2 = new FakeModel(explorerState({ _view: "nope", _panels: ["heatmap", "not_built"] }));
    const m2 = await mount(model2);
    expect(m2.$("[data-qscope='error']").textContent).toContain("no front-end component for panel \"not_built\"");
    expect(m2.$("[data-qscope='heatmap']")).not.toBeNull();  // the panels that exist still draw
  });

  it("sidebar selection recolours: color_by feature + selected_feature are sent together", async () => {
    const model = new FakeModel(explorerState());
    const { $$ } = await mount(model);
    $$("[data-qscope='feature-row']")[0].click();
    expect(model.saved.at(-1)).toEqual({ selected_feature: 11, color_by: "feature" });
    model.update({ token_values: f32([0, 0, 4, 0]), request_seq: 2, result_seq: 2 });
    expect($$("span.qscope-token").map((t) => t.dataset.value)).toEqual(["0", "0", "4", "0"]);
    expect($$("span.qscope-token.qscope-lit").map((t) => t.dataset.index)).toEqual(["2"]);
    expect($$(".qscope-legend")[0].textContent).toContain("feature 11 activation (creation)");
  });

  it("cleanup removes every model listener, for every view", async () => {
    for (const view of ["explorer", "heatmap", "sidebar", "steering", "layers", "feature"]) {
      const model = new FakeModel(explorerState({ _view: view, data: {} }));
      const { cleanup } = await mount(model);
      expect(model.listenerCount(), view).toBeGreaterThan(0);
      cleanup();
      expect(model.listenerCount(), view).toBe(0);
    }
  });

  it("two views of one model draw independently", async () => {
    const model = new FakeModel(explorerState());
    const a = await mount(model);
    const b = await mount(model);
    model.update({ tokens: ["x"], token_values: f32([1]), value_range: [0, 1], request_seq: 2, result_seq: 2 });
    expect(a.$$("span.qscope-token").length).toBe(1);
    expect(b.$$("span.qscope-token").length).toBe(1);
    a.cleanup();
    model.update({ tokens: ["x", "y"], token_values: f32([1, 1]), request_seq: 3, result_seq: 3 });
    expect(b.$$("span.qscope-token").length).toBe(2);
  });
});

