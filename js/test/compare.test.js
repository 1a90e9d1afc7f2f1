import { describe, it, expect } from "vitest";
import { FakeModel, explorerState, f32, mount } from "./fake-model.js";

const row = (feature, diff, over = {}) => ({
  layer: 1, feature, label: `f${feature}`, rate_a: 0.5, rate_b: 0.5 - diff, difference: diff,
  presets: { "0.5x": 0.5 * diff * 10, "2x": 2 * diff * 10, "10x": 10 * diff * 10 }, ...over,
});

const compareState = (over = {}) => explorerState({
  _view: "compare", prompt: "In the beginning", prompt_b: "The market fell",
  tokens_a: ["In", " the", " beginning"], values_a: f32([0, 2, 4]),
  tokens_b: ["The", " market", " fell"], values_b: f32([0, 0, 1]),
  compare_rows: [row(11, 0.6), row(5, 0.25), row(7, -0.4)], compare_feature: 11, compare_range: [0, 4],
  ...over,
});

describe("compare view", () => {
  it("draws both prompts' tokens with the exact float32 values on one colour scale", async () => {
    const model = new FakeModel(compareState());
    const { $, $$ } = await mount(model);
    expect($(".qscope").dataset.qscopeView).toBe("compare");
    const a = $$("[data-qscope='strip-a'] span.qscope-token");
    const b = $$("[data-qscope='strip-b'] span.qscope-token");
    expect(a.map((s) => s.dataset.value)).toEqual(["0", "2", "4"]);
    expect(b.map((s) => s.dataset.value)).toEqual(["0", "0", "1"]);
    expect(a[2].style.backgroundColor).toBe("rgb(102, 37, 6)"); // 4 = the top of the shared range
    expect(b[2].style.backgroundColor).not.toBe(a[2].style.backgroundColor); // 1 of 4: lighter
    expect(a[0].style.backgroundColor).toBe(""); // 0: no fill
    expect($("[data-qscope='legend']").textContent).toContain("feature 11 (f11)");
  });

  it("lists the ranked rows in order and marks the feature colouring the strips", async () => {
    const model = new FakeModel(compareState());
    const { $$ } = await mount(model);
    const rows = $$("tr[data-qscope='compare-row']");
    expect(rows.map((r) => r.dataset.feature)).toEqual(["11", "5", "7"]);
    expect(rows.map((r) => r.dataset.selected)).toEqual(["true", "false", "false"]);
    expect(rows[2].textContent).toContain("-0.4");
  });

  it("a row click selects its feature; a pin button sends pin_preset without selecting", async () => {
    const model = new FakeModel(compareState());
    const { $$ } = await mount(model);
    $$("tr[data-qscope='compare-row']")[1].click();
    expect(model.get("selected_feature")).toBe(5);
    expect(model.saves).toBe(1);
    const pin = $$("button[data-qscope='compare-pin'][data-feature='7'][data-preset='10x']")[0];
    pin.click();
    expect(model.sent).toEqual([{ type: "pin_preset", layer: 1, feature: 7, preset: "10x" }]);
    expect(model.get("selected_feature")).toBe(5); // the pin did not also select the row
    expect(pin.title).toContain("-40");
  });

  it("the second prompt box sets prompt_b on Enter; a new result redraws", async () => {
    const model = new FakeModel(compareState({ prompt_b: "", compare_rows: [], tokens_b: [], values_b: f32([]) }));
    const { $, $$ } = await mount(model);
    expect($("[data-qscope='compare-empty']").textContent).toContain("second prompt");
    const box = /** @type {HTMLTextAreaElement} */ ($("textarea[data-qscope='prompt-b']"));
    box.value = "The market fell";
    box.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    expect(model.get("prompt_b")).toBe("The market fell");
    model.update({ compare_rows: [row(3, 0.9)], compare_feature: 3, tokens_b: ["The", " market"],
      values_b: f32([0, 3]), result_seq: 2 });
    expect($$("tr[data-qscope='compare-row']").map((r) => r.dataset.feature)).toEqual(["3"]);
    expect($$("[data-qscope='strip-b'] span.qscope-token").map((s) => s.dataset.value)).toEqual(["0", "3"]);
    expect($("[data-qscope='compare-empty']").textContent).toBe("");
  });

  it("draws the steering sliders of its own edits beside the list", async () => {
    const model = new FakeModel(compareState({ edits: [{ layer: 1, feature: 11, strength: 12, mode: "add", enabled: true,
      label: "f11", min: -20, max: 20, default: 0, typical: 4, range_mode: "add" }] }));
    const { $$ } = await mount(model);
    expect($$("input[data-qscope='strength'][data-feature='11']").length).toBe(1);
  });
});

describe("heatmap coloured by a monitor", () => {
  it("waits for the kernel's monitor scores instead of repainting from the codes, and says what it shows", async () => {
    const model = new FakeModel(explorerState({ _view: "heatmap" }));
    const { $, $$ } = await mount(model);
    const values = () => $$("[data-qscope='heatmap'] span.qscope-token").map((s) => s.dataset.value);
    const before = values();
    model.set("color_by", "monitor");
    expect(values()).toEqual(before); // the strongest-feature codes cannot say what the monitor scores
    model.update({ token_values: f32([0, 0.25, 1, 0.5]), value_range: [0, 1], result_seq: 2 });
    expect(values()).toEqual(["0", "0.25", "1", "0.5"]);
    expect($("[data-qscope='legend']").textContent).toContain("monitor score");
  });
});
