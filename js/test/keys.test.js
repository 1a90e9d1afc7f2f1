import { describe, it, expect } from "vitest";
import { FakeModel, explorerState, edit, f32, mount } from "./fake-model.js";
import { visibleToken } from "../src/dom.js";
import { isStale } from "../src/seq.js";
import { steeringCode } from "../src/steering.js";

/** dispatch a keydown inside the widget and report whether it reached the document (JupyterLab's shortcuts) */
function reachesDocument(/** @type {Element} */ el, /** @type {KeyboardEventInit} */ init) {
  let reached = false;
  const spy = () => { reached = true; };
  document.addEventListener("keydown", spy);
  el.dispatchEvent(new KeyboardEvent("keydown", { bubbles: true, cancelable: true, ...init }));
  document.removeEventListener("keydown", spy);
  return reached;
}

describe("keys stay inside the widget (defect 1)", () => {
  it("Shift+Enter and Enter in the prompt box never reach the notebook; Enter submits, Shift+Enter does not", async () => {
    const model = new FakeModel(explorerState());
    const { $ } = await mount(model);
    const box = $("textarea[data-qscope='prompt']");
    box.value = "line one";
    expect(reachesDocument(box, { key: "Enter", shiftKey: true })).toBe(false);
    expect(model.get("prompt")).toBe("In the beginning");  // a newline, not a submit
    expect(reachesDocument(box, { key: "Enter" })).toBe(false);
    expect(model.get("prompt")).toBe("line one");
    expect(reachesDocument(box, { key: "a" })).toBe(false);
  });

  it("arrows on a steering or layer slider stay inside; Escape on a button still reaches the notebook", async () => {
    const model = new FakeModel(explorerState({ edits: [edit()] }));
    const { $ } = await mount(model);
    expect(reachesDocument($("input[data-qscope='strength']"), { key: "ArrowRight" })).toBe(false);
    expect(reachesDocument($("input[data-qscope='layer']"), { key: "ArrowLeft" })).toBe(false);
    expect(reachesDocument($("button[data-qscope='reset']"), { key: "Escape" })).toBe(true);
    expect(reachesDocument($("button[data-qscope='reset']"), { key: "s", ctrlKey: true })).toBe(true);
  });

  it("arrow keys on tokens keep moving after a redraw: focus survives a view-only result", async () => {
    const model = new FakeModel(explorerState({ _view: "heatmap" }));
    const { $$ } = await mount(model);
    const spans = () => $$("span.qscope-token");
    spans()[0].focus();
    expect(reachesDocument(spans()[0], { key: "ArrowRight" })).toBe(false);
    expect(model.get("selected_token")).toBe(1);
    model.update({ token_values: f32([1, 2, 3, 0]), request_seq: 2, result_seq: 2 });  // the redraw
    expect(document.activeElement).toBe(spans()[1]);
    spans()[1].dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowRight", bubbles: true, cancelable: true }));
    expect(model.get("selected_token")).toBe(2);
    model.update({ tokens: ["A", " new", " prompt", "!", "?"], token_values: f32([1, 2, 3, 0, 1]),
      codes_ids: new DataView(new ArrayBuffer(0)), codes_values: new DataView(new ArrayBuffer(0)), request_seq: 3, result_seq: 3 });
    expect(spans().includes(/** @type {any} */ (document.activeElement))).toBe(true);  // rebuilt spans keep focus
  });
});

describe("first-use defects in the front end", () => {
  it("a newline sharing a token with the next line's indentation keeps the line break (defect 6)", () => {
    const div = document.createElement("div");
    div.append(visibleToken(":\n    ", { breaks: true }).node);
    expect(div.querySelectorAll("br").length).toBe(1);
    expect(div.textContent).toBe(":⏎····");
    const plain = document.createElement("div");
    plain.append(visibleToken(":\n    ").node);
    expect(plain.querySelectorAll("br").length).toBe(0);  // lists (sidebar, next tokens) stay one line
  });

  it("the heatmap draws code with its line structure", async () => {
    const model = new FakeModel(explorerState({ _view: "heatmap", tokens: ["def", " f", "():", "\n    ", "return"] ,
      token_values: f32([1, 1, 1, 1, 1]) }));
    const { $ } = await mount(model);
    expect($("[data-qscope='heatmap']").querySelectorAll("br").length).toBe(1);
  });

  it("a failed request is finished too: the old result is not stale for good (defect 2)", () => {
    const m = new FakeModel({ request_seq: 5, result_seq: 4, status: { done_seq: 4 } });
    expect(isStale(m)).toBe(true);
    m.update({ status: { done_seq: 5, error: "PromptError: the prompt is empty" } });
    expect(isStale(m)).toBe(false);
  });

  it("the module is anywidget's current form: a default export with render, no named render (defect 7)", async () => {
    const mod = await import("../src/index.js");
    expect(typeof mod.default.render).toBe("function");
    expect(/** @type {any} */ (mod).render).toBeUndefined();
  });

  it("copy as code writes the enabled edits and their positions", () => {
    const m = new FakeModel({ prompt: 'say "hi"', steer_positions: "selected", selected_token: 2,
      edits: [edit({ layer: 3, feature: 7, strength: 2.5 }), edit({ feature: 9, enabled: false })] });
    const code = steeringCode(m);
    expect(code).toContain("SteeringEdit(layer=3, feature=7, strength=2.5, mode=\"add\", positions=[2]),");
    expect(code).not.toContain("feature=9");
    expect(code).toContain('scope.run("say \\"hi\\"", steering=edits)');
  });

  it("a search error is shown by the search box", async () => {
    const model = new FakeModel(explorerState({ _view: "sidebar", search_query: "xyz", search_error: "QScopeError: no index" }));
    const { $ } = await mount(model);
    expect($("[data-qscope='search-error']").textContent).toContain("no index");
  });
});

describe("view-only changes repaint in the page at once", () => {
  it("colour-by and a selected feature repaint from the shipped codes before the kernel answers", async () => {
    const model = new FakeModel(explorerState({ _view: "heatmap", recon_error: f32([0.5, 0.25, 0.125, 1]) }));
    const { $, $$ } = await mount(model);
    const values = () => $$("span.qscope-token").map((t) => Number(t.dataset.value));
    const paints = Number($("[data-qscope='heatmap']").dataset.paints);
    const select = $("select[data-qscope='color-by']");
    select.value = "error";
    select.dispatchEvent(new Event("change"));
    expect(values()).toEqual([0.5, 0.25, 0.125, 1]);
    expect(Number($("[data-qscope='heatmap']").dataset.paints)).toBe(paints + 1);
    model.set("selected_feature", 5);  // token 0 has feature 5 at 2.5, token 1 at 0.1, token 2 at 1 (codes)
    select.value = "feature";
    select.dispatchEvent(new Event("change"));
    expect(values()).toEqual([2.5, Math.fround(0.1), 1, 0]);
    select.value = "strongest";
    select.dispatchEvent(new Event("change"));
    expect(values()).toEqual([2.5, Math.fround(0.1), 4, Math.fround(0.3)]);  // each token's first code
    expect(model.get("result_seq")).toBe(1);  // all of it without a kernel result
  });
});

describe("saved widget state from before `_panels`", () => {
  it("an explorer without `_panels` draws its default panels", async () => {
    const state = explorerState();
    delete (/** @type {any} */ (state))._panels;
    const { $ } = await mount(new FakeModel(state));
    for (const p of ["heatmap", "sidebar", "layers", "steering", "next-tokens", "continuation", "sweep-panel"]) {
      expect($(`[data-qscope='${p}']`)).not.toBeNull();
    }
  });
});

describe("labels", () => {
  it("the tooltip labels any feature the kernel sent a label for, not only the sidebar's", async () => {
    const model = new FakeModel(explorerState({ _view: "heatmap", feature_labels: { 9: "nine", 7: "seven" } }));
    const { $, $$ } = await mount(model);
    $$("span.qscope-token")[0].dispatchEvent(new Event("mouseover", { bubbles: true }));
    const text = $("[data-qscope='tooltip']").textContent;
    expect(text).toContain("nine");
    expect(text).toContain("seven");
  });
});

describe("search results", () => {
  it("a feature found by search can be pinned", async () => {
    const model = new FakeModel(explorerState({ _view: "sidebar", search_query: "lord",
      search_results: [{ layer: 2, feature: 42, label: "LORD", density: 0.01, max_activation: 9 }] }));
    const { $ } = await mount(model);
    $("button[data-qscope='search-pin']").click();
    expect(model.sent.at(-1)).toEqual({ type: "pin", layer: 2, feature: 42 });
    $("button[data-qscope='search-result']").click();
    expect(model.sent.at(-1)).toEqual({ type: "open_feature", layer: 2, feature: 42 });
  });
});

describe("sliders where the notebook cancels arrow keys (Notebook 7)", () => {
  it("a cancelled arrow still moves the focused slider and sends the value", async () => {
    const model = new FakeModel(explorerState({ edits: [edit()] }));
    const { $ } = await mount(model);
    const cancel = (/** @type {Event} */ e) => e.preventDefault();
    document.addEventListener("keydown", cancel, true);
    try {
      const layer = $("input[data-qscope='layer']");
      const before = layer.value;
      layer.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowRight", bubbles: true, cancelable: true }));
      expect(layer.value).not.toBe(before);
    } finally {
      document.removeEventListener("keydown", cancel, true);
    }
  });
});

describe("token keys where the notebook takes arrow keys first (Notebook 7)", () => {
  it("ArrowDown / ArrowRight / Home on a focused token move the selection though the document's capture phase eats them", async () => {
    const model = new FakeModel(explorerState({ _view: "heatmap" }));
    const { $$ } = await mount(model);
    let eaten = 0;
    // Notebook 7: its command-mode shortcuts (ArrowDown: select the next cell) run in the document's capture phase
    const notebook = (/** @type {KeyboardEvent} */ e) => { eaten += 1; e.preventDefault(); e.stopPropagation(); };
    document.addEventListener("keydown", notebook, true);
    try {
      const spans = () => $$("span.qscope-token");
      spans()[0].focus();
      spans()[0].dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowDown", bubbles: true, cancelable: true }));
      expect(model.get("selected_token")).toBe(1);
      expect(document.activeElement).toBe(spans()[1]);
      spans()[1].dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowRight", bubbles: true, cancelable: true }));
      expect(model.get("selected_token")).toBe(2);
      spans()[2].dispatchEvent(new KeyboardEvent("keydown", { key: "Home", bubbles: true, cancelable: true }));
      expect(model.get("selected_token")).toBe(0);
      expect(eaten).toBe(0);  // the notebook never saw them
      spans()[0].dispatchEvent(new KeyboardEvent("keydown", { key: "s", ctrlKey: true, bubbles: true, cancelable: true }));
      expect(eaten).toBe(1);  // its own shortcuts still reach it
    } finally {
      document.removeEventListener("keydown", notebook, true);
    }
  });
});
