import { describe, it, expect } from "vitest";
import { FakeModel, explorerState, f32, mount } from "./fake-model.js";

const tokens = ($$) => $$("[data-qscope='heatmap'] span.qscope-token");

describe("token heatmap", () => {
  it("draws one span per token with the exact float32 values and colours from the buffers", async () => {
    const model = new FakeModel(explorerState({ _view: "heatmap" }));
    const { $, $$ } = await mount(model);
    const spans = tokens($$);
    expect(spans.map((s) => s.dataset.index)).toEqual(["0", "1", "2", "3"]);
    expect(spans.map((s) => s.dataset.value)).toEqual(["2.5", String(Math.fround(0.1)), "4", "0"]);
    expect(spans[2].style.backgroundColor).toBe("rgb(102, 37, 6)"); // the top of the sequential scale
    expect(spans[3].style.backgroundColor).toBe(""); // 0: no fill
    expect(spans[2].style.color).toBe("#fff"); // white text on the darkest brown
    expect($(".qscope").dataset.resultSeq).toBe("1");
    expect($(".qscope").dataset.qscopeView).toBe("heatmap");
  });

  it("shows whitespace visibly: '·' for spaces, '⏎' for newlines", async () => {
    const model = new FakeModel(explorerState({ _view: "heatmap" }));
    const { $$ } = await mount(model);
    const spans = tokens($$);
    expect(spans[1].textContent).toBe("·the");
    expect(spans[3].textContent).toBe("⏎");
    expect(spans[1].querySelector(".qscope-ws")).not.toBeNull();
  });

  it("click selects a token, a second click deselects", async () => {
    const model = new FakeModel(explorerState({ _view: "heatmap" }));
    const { $$ } = await mount(model);
    tokens($$)[2].click();
    expect(model.get("selected_token")).toBe(2);
    expect(model.saves).toBe(1);
    expect(tokens($$)[2].classList.contains("qscope-selected")).toBe(true);
    expect(tokens($$)[2].getAttribute("aria-selected")).toBe("true");
    tokens($$)[2].click();
    expect(model.get("selected_token")).toBe(-1);
    expect(model.saves).toBe(2);
  });

  it("keyboard: tokens are focusable, arrows move the selection, Enter / Space toggle it", async () => {
    const model = new FakeModel(explorerState({ _view: "heatmap" }));
    const { $$ } = await mount(model);
    const spans = tokens($$);
    expect(spans.filter((s) => s.tabIndex === 0).length).toBe(1);
    const key = (el, k) => el.dispatchEvent(new KeyboardEvent("keydown", { key: k, bubbles: true }));
    key(spans[0], "Enter");
    expect(model.get("selected_token")).toBe(0);
    key(spans[0], "ArrowRight");
    expect(model.get("selected_token")).toBe(1);
    expect(document.activeElement).toBe(tokens($$)[1]);
    expect(tokens($$)[1].tabIndex).toBe(0);
    key(spans[1], "End");
    expect(model.get("selected_token")).toBe(3);
    key(spans[3], " ");
    expect(model.get("selected_token")).toBe(-1);
    key(spans[3], "ArrowLeft");
    expect(model.get("selected_token")).toBe(2);
  });

  it("the tooltip lists the token's top features with known labels", async () => {
    const model = new FakeModel(explorerState({ _view: "heatmap" }));
    const { $, $$ } = await mount(model);
    tokens($$)[2].dispatchEvent(new MouseEvent("mouseover", { bubbles: true }));
    const tip = $("[data-qscope='tooltip']");
    expect(tip.hidden).toBe(false);
    const rows = [...tip.querySelectorAll("tr")].map((r) => r.textContent);
    expect(rows).toEqual(["#11creation4", "#5article1", "#30.5"]);
  });

  it("a late, older result is not drawn; a newer one is", async () => {
    const model = new FakeModel(explorerState({ _view: "heatmap", request_seq: 5, result_seq: 5 }));
    const { $, $$ } = await mount(model);
    model.update({ tokens: ["old"], token_values: f32([1]), result_seq: 3 });
    expect(tokens($$).map((s) => s.textContent)).toEqual(["In", "·the", "·beginning", "⏎"]);
    expect($(".qscope").dataset.resultSeq).toBe("5");
    model.update({ request_seq: 6 });
    expect($(".qscope").dataset.stale).toBe("true");
    model.update({ tokens: ["new", "er"], token_values: f32([1, 2]), value_range: [0, 2], result_seq: 6 });
    expect(tokens($$).map((s) => s.textContent)).toEqual(["new", "er"]);
    expect(tokens($$).map((s) => s.dataset.value)).toEqual(["1", "2"]);
    expect($(".qscope").dataset.resultSeq).toBe("6");
    expect($(".qscope").dataset.stale).toBe("false");
  });

  it("diff mode colours by diff_values on a diverging scale; the legend says so", async () => {
    const model = new FakeModel(explorerState({ _view: "heatmap", diff_values: f32([-2, 0, 1, 0.5]) }));
    const { $, $$ } = await mount(model);
    const box = $("input[data-qscope='diff']");
    expect(box.disabled).toBe(false);
    box.checked = true;
    box.dispatchEvent(new Event("change"));
    expect(model.get("diff")).toBe(true);
    expect(model.saved.at(-1)).toEqual({ diff: true });
    const spans = tokens($$);
    expect(spans.map((s) => s.dataset.value)).toEqual(["-2", "0", "1", "0.5"]);
    expect(spans[0].style.backgroundColor).toBe("rgb(33, 102, 172)"); // the blue end
    expect(spans[1].style.backgroundColor).toBe("");
    expect($(".qscope-heatmap").dataset.scale).toBe("diverging");
    expect($(".qscope-legend").textContent).toContain("steered − baseline");
  });

  it("colour-by select sets color_by; the legend names the feature", async () => {
    const model = new FakeModel(explorerState({ _view: "heatmap" }));
    const { $ } = await mount(model);
    expect($(".qscope-legend").textContent).toContain("strongest feature");
    const sel = $("select[data-qscope='color-by']");
    sel.value = "error";
    sel.dispatchEvent(new Event("change"));
    expect(model.saved.at(-1)).toEqual({ color_by: "error" });
    model.update({ color_by: "feature", selected_feature: 11, result_seq: 2, request_seq: 2 });
    expect($(".qscope-legend").textContent).toContain("feature 11 activation (creation)");
  });

  it("the cleanup removes every model listener", async () => {
    const model = new FakeModel(explorerState({ _view: "heatmap" }));
    const { cleanup, el } = await mount(model);
    expect(model.listenerCount()).toBeGreaterThan(0);
    cleanup();
    expect(model.listenerCount()).toBe(0);
    expect(el.querySelector(".qscope")).toBeNull();
  });
});
