// The attribution panel against the fake model: grid from the binary buffer, ranked nodes (error nodes marked),
// the SVG graph, selecting a feature, the target box and the verify round trip's messages.
import { describe, it, expect } from "vitest";
import { FakeModel, explorerState, f32, mount } from "./fake-model.js";

const node = (layer, position, feature, attribution, kind = "feature", token = " the") => ({
  id: kind === "error" ? `L${layer}/P${position}/err` : `L${layer}/P${position}/F${feature}`,
  layer, position, token, feature, label: kind === "error" ? "reconstruction error" : `f${feature}`,
  activation: 3, attribution, kind,
});

function attrState(over = {}) {
  const top = [node(2, 3, -1, 1.5, "error"), node(1, 3, 11, 1.2), node(1, 2, 5, -0.8), node(2, 1, 7, 0.2)];
  return explorerState({
    _view: "attribution", _panels: ["heatmap", "next_tokens", "attribution"],
    attribution_target: " earth",
    // 2 layers x 4 positions, row-major
    attribution_grid: f32([0, 0, -0.8, 1.2, 0, 0.2, 0, 1.5]),
    attribution: {
      target: "logit(' earth')", position: 3, method: "grad_x_act", metric: 5.5, error_share: 0.25,
      layers: [1, 2], shape: [2, 4], tokens: ["In", " the", " beginning", "\n"], range: [-1.5, 1.5], top,
      graph: { nodes: [...top, { ...node(3, 3, -1, 5.5, "target"), id: "target" }],
               edges: [["L1/P3/F11", "L2/P3/err", 0.9], ["L1/P2/F5", "target", -0.8], ["L2/P3/err", "target", 1.5]] },
    },
    attribution_check: {},
    ...over,
  });
}

describe("attribution panel", () => {
  it("draws the layer x position grid from the float32 buffer, coloured on the diverging scale", async () => {
    const { $, $$ } = await mount(new FakeModel(attrState()));
    const cells = $$("[data-qscope='attribution-grid'] td.qscope-attr-cell");
    expect(cells.length).toBe(8);
    expect(cells.map((c) => Number(c.dataset.value))).toEqual([0, 0, Math.fround(-0.8), Math.fround(1.2), 0, Math.fround(0.2), 0, 1.5]);
    expect(cells[7].style.backgroundColor).toBe("rgb(179, 88, 6)"); // +max: the orange end
    expect(cells[2].style.backgroundColor).not.toBe(""); // negative: blue side
    expect(cells[0].style.backgroundColor).toBe(""); // 0: no fill, so the theme shows through
    expect($("[data-qscope='attribution-summary']").textContent).toContain("logit(' earth') at #3");
    expect($("[data-qscope='error-share']").textContent).toContain("25.0%");
  });

  it("ranks the nodes and marks error nodes; clicking a feature node selects it, an error node does nothing", async () => {
    const model = new FakeModel(attrState());
    const { $$ } = await mount(model);
    const rows = $$("[data-qscope='attribution-node']");
    expect(rows.map((r) => r.dataset.kind)).toEqual(["error", "feature", "feature", "feature"]);
    expect(rows[0].classList.contains("qscope-attr-error")).toBe(true);
    rows[0].click();
    expect(model.sent).toEqual([]);
    rows[1].click(); // on the layer in view: the common "open feature" sets the inputs itself (no message)
    expect(model.get("selected_feature")).toBe(11);
    expect(model.sent).toEqual([]);
    expect(rows[0].querySelector("[data-qscope='attribution-pin']")).toBeNull(); // an error node cannot be pinned
    rows[2].querySelector("[data-qscope='attribution-pin']").click();
    expect(model.sent.at(-1)).toEqual({ type: "pin", layer: 1, feature: 5 });
    expect(model.sent.length).toBe(1); // the pin click does not also select
    expect(model.get("selected_feature")).toBe(11);
  });

  it("draws the graph as SVG: a node per graph node sized by |attribution|, an edge per edge", async () => {
    const model = new FakeModel(attrState());
    const { $, $$ } = await mount(model);
    const circles = $$("[data-qscope='attribution-graph'] circle");
    expect(circles.length).toBe(5);
    const r = Object.fromEntries(circles.map((c) => [c.dataset.id, Number(c.getAttribute("r"))]));
    expect(r["L2/P3/err"]).toBeGreaterThan(r["L1/P3/F11"]);
    expect(r["L1/P3/F11"]).toBeGreaterThan(r["L2/P1/F7"]);
    expect($$("[data-qscope='attribution-graph'] line").length).toBe(3);
    expect($("[data-qscope='attribution-graph'] line.qscope-neg").dataset.weight).toBe("-0.8");
    // layers as rows: the target row is above layer 2, which is above layer 1
    const cy = Object.fromEntries(circles.map((c) => [c.dataset.id, Number(c.getAttribute("cy"))]));
    expect(cy.target).toBeLessThan(cy["L2/P3/err"]);
    expect(cy["L2/P3/err"]).toBeLessThan(cy["L1/P3/F11"]);
    circles.find((c) => c.dataset.id === "L1/P2/F5").dispatchEvent(new MouseEvent("click", { bubbles: true }));
    expect(model.get("selected_feature")).toBe(5);
    circles.find((c) => c.dataset.id === "L2/P1/F7").dispatchEvent(new MouseEvent("click", { bubbles: true }));
    expect(model.sent).toEqual([{ type: "open_feature", layer: 2, feature: 7 }]); // another layer: the kernel switches
  });

  it("the target box sets attribution_target; an empty attribution shows a hint, no grid", async () => {
    const model = new FakeModel(attrState({ attribution_target: "", attribution: {}, attribution_grid: f32([]) }));
    const { $, $$ } = await mount(model);
    expect($$("td.qscope-attr-cell").length).toBe(0);
    expect($("[data-qscope='attribution-summary']").textContent).toContain("type a target token");
    const box = $("[data-qscope='attribution-target']");
    box.value = " God";
    box.dispatchEvent(new Event("change"));
    expect(model.get("attribution_target")).toBe(" God");
    expect(model.saves).toBe(1);
  });

  it("verify sends n to Python and shows the answer it writes back (Spearman and the table)", async () => {
    const model = new FakeModel(attrState());
    const { $, $$ } = await mount(model);
    $("[data-qscope='verify-n']").value = "5";
    $("[data-qscope='verify']").click();
    expect(model.sent).toEqual([{ type: "verify", n: 5 }]);
    model.update({ attribution_check: { running: true } });
    expect($("[data-qscope='verify-result']").textContent).toContain("ablating");
    model.update({ attribution_check: { n: 2, spearman: 1, pearson: 0.97, metric: 5.5, rows: [
      { layer: 1, position: 3, feature: 11, estimate: 1.2, true_effect: 1.4 },
      { layer: 1, position: 2, feature: 5, estimate: -0.8, true_effect: -0.7 }] } });
    expect($("[data-qscope='spearman']").textContent).toBe(" Spearman 1");
    expect($$("[data-qscope='verify-row']").length).toBe(2);
  });

  it("clicking a predicted next token makes it the target here, and does nothing in the explorer", async () => {
    const model = new FakeModel(attrState());
    const { $$ } = await mount(model);
    const rows = $$("[data-qscope='next-tokens'] .qscope-next-row");
    expect(rows.map((r) => r.dataset.token)).toEqual([" God", " the"]);
    rows[0].click();
    expect(model.get("attribution_target")).toBe(" God");
    expect(model.saves).toBe(1);
    const ex = new FakeModel(explorerState());
    const mounted = await mount(ex);
    mounted.$$("[data-qscope='next-tokens'] .qscope-next-row")[0].click();
    expect(ex.sets).toEqual([]);
    expect(ex.get("attribution_target")).toBeUndefined();
  });
});

describe("attribution panel in the explorer", () => {
  const withAttribution = (over = {}) => explorerState({
    _panels: ["heatmap", "sidebar", "layers", "steering", "next_tokens", "continuation", "sweep", "attribution"],
    attribution_target: "", attribution_position: -1, attribution: {}, attribution_grid: f32([]), attribution_check: {},
    next_tokens: { position: 2, token: " beginning", baseline: [[" God", 0.5], [" the", 0.2]], steered: [] },
    sweep: {}, sweep_result: {}, steer_positions: "all", ...over,
  });

  it("is drawn in the explorer's layout, full width, with a hint until a prediction is clicked", async () => {
    const { $ } = await mount(new FakeModel(withAttribution()));
    const section = $(".qscope-area-attribution");
    expect(section).not.toBeNull();
    expect(section.querySelector("[data-qscope-panel='attribution']")).not.toBeNull();
    expect($("[data-qscope='attribution-summary']").textContent).toContain("click a predicted next token");
  });

  it("a click on a next-token row sends the target and the prediction's position in one message", async () => {
    const model = new FakeModel(withAttribution());
    const { $$ } = await mount(model);
    $$("[data-qscope='next-tokens'] .qscope-next-row")[1].click();
    expect(model.saved).toEqual([{ attribution_target: " the", attribution_position: 2 }]);
  });

  it("a typed target also takes the position the next-token panel shows", async () => {
    const model = new FakeModel(withAttribution());
    const { $ } = await mount(model);
    const box = $("[data-qscope='attribution-target']");
    box.value = " God";
    box.dispatchEvent(new Event("change"));
    expect(model.saved).toEqual([{ attribution_target: " God", attribution_position: 2 }]);
  });
});
