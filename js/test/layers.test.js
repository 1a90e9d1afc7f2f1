import { describe, it, expect, vi, beforeEach, afterEach } from "vitest";
import { FakeModel, explorerState, f32, mount } from "./fake-model.js";
import { nearestLayer } from "../src/layers.js";

let raf;
beforeEach(() => {
  raf = globalThis.requestAnimationFrame;
  // @ts-ignore
  delete globalThis.requestAnimationFrame;
  vi.useFakeTimers();
});
afterEach(() => { vi.useRealTimers(); globalThis.requestAnimationFrame = raf; });

const cells = ($$) => $$("[data-qscope='layer-cell']");

describe("layer scrubber", () => {
  it("one cell per layer with its state; 'none' is disabled, 'loading' spins", async () => {
    const model = new FakeModel(explorerState({ _view: "layers" }));
    const { $$ } = await mount(model);
    const c = cells($$);
    expect(c.map((x) => [x.dataset.layer, x.dataset.state])).toEqual([["0", "none"], ["1", "ready"], ["2", "unloaded"], ["3", "loading"]]);
    expect(c[0].disabled).toBe(true);
    expect(c[3].getAttribute("aria-busy")).toBe("true");
    expect(c[1].classList.contains("qscope-selected")).toBe(true);
    expect(c.every((x) => x.tagName === "BUTTON")).toBe(true); // keyboard reachable
    model.update({ layer_state: ["none", "ready", "ready", "ready"] });
    expect(cells($$)[3].dataset.state).toBe("ready");
  });

  it("mini bars from layer_chart, scaled per metric; NaN shows as not computed", async () => {
    const model = new FakeModel(explorerState({ _view: "layers" }));
    const { $$ } = await mount(model);
    const bars = (L) => [...cells($$)[L].querySelectorAll(".qscope-mini")];
    expect(bars(0).every((b) => b.classList.contains("qscope-nan"))).toBe(true);
    expect(bars(2).map((b) => b.style.height)).toEqual(["100%", "100%", "100%", "100%"]);
    expect(bars(1)[0].style.height).toBe("50%");
    expect(bars(3)[2].classList.contains("qscope-nan")).toBe(true);
    expect(bars(2).map((b) => b.dataset.value)).toEqual(["2", "30", String(Math.fround(0.2)), "5"]);
    expect(cells($$)[1].title).toContain("feature activation: 1");
  });

  it("clicking a cell sets layer; a disabled cell does nothing", async () => {
    const model = new FakeModel(explorerState({ _view: "layers" }));
    const { $$ } = await mount(model);
    cells($$)[2].click();
    expect(model.saved).toEqual([{ layer: 2 }]);
    expect(cells($$)[2].getAttribute("aria-pressed")).toBe("true");
    cells($$)[0].click();
    expect(model.saves).toBe(1);
  });

  it("the range spans the SAE layers, its value is the layer, snapped to the nearest SAE layer", async () => {
    const model = new FakeModel(explorerState({ _view: "layers", n_layers: 8, sae_layers: [2, 4, 6], layer: 4, layer_state: [] }));
    const { $, $$ } = await mount(model);
    const r = $("input[type=range][data-qscope='layer']");
    expect([r.min, r.max, r.step, r.value]).toEqual(["2", "6", "2", "4"]);
    expect(cells($$).map((c) => c.dataset.state)).toEqual(["none", "none", "unloaded", "none", "unloaded", "none", "unloaded", "none"]);
    r.value = "6"; r.dispatchEvent(new Event("input"));
    r.value = "2"; r.dispatchEvent(new Event("input"));
    expect(model.saves).toBe(0);
    vi.advanceTimersByTime(16);
    expect(model.saved).toEqual([{ layer: 2 }]);
    model.update({ layer: 6 });
    expect(r.value).toBe("6");
    expect(nearestLayer([2, 4, 9], 7)).toBe(9);
  });

  it("an older chart result is ignored", async () => {
    const model = new FakeModel(explorerState({ _view: "layers", result_seq: 4, request_seq: 4 }));
    const { $$ } = await mount(model);
    model.update({ layer_chart: f32(new Array(16).fill(1)), result_seq: 3 });
    expect(cells($$)[0].querySelector(".qscope-mini").classList.contains("qscope-nan")).toBe(true);
  });
});
