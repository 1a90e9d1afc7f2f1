import { describe, it, expect, vi, beforeEach, afterEach } from "vitest";
import { FakeModel, explorerState, edit, mount } from "./fake-model.js";
import { niceStep } from "../src/steering.js";

let raf;
beforeEach(() => {
  // tests use the setTimeout(16 ms) fallback of the per-frame coalescer
  raf = globalThis.requestAnimationFrame;
  // @ts-ignore
  delete globalThis.requestAnimationFrame;
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
  globalThis.requestAnimationFrame = raf;
});

const twoEdits = () => [edit(), edit({ layer: 2, feature: 7, label: "biblical", strength: 3, min: -10, max: 10, default: 0 })];
const slider = ($, l = 1, f = 11) => $(`input[type=range][data-qscope='strength'][data-layer='${l}'][data-feature='${f}']`);

describe("steering sliders", () => {
  it("draws one block per edit with range, readout, mode, enabled, reset and unpin", async () => {
    const model = new FakeModel(explorerState({ _view: "steering", edits: twoEdits() }));
    const { $, $$ } = await mount(model);
    expect($$("[data-qscope='edit']").length).toBe(2);
    const s = slider($, 2, 7);
    expect([s.min, s.max, s.value]).toEqual(["-10", "10", "3"]);
    expect(s.step).toBe("0.1");
    expect($$("select[data-qscope='mode']").map((m) => m.value)).toEqual(["add", "add"]);
    expect($$("input[data-qscope='enabled']").every((c) => c.checked)).toBe(true);
    expect($$("button[data-qscope='reset']").length).toBe(2);
    expect($$("button[data-qscope='unpin']").length).toBe(2);
    expect($$("[data-qscope='edit']")[1].textContent).toContain("L2 #7 biblical");
  });

  it("coalesces many input events in one frame into one save with the last value", async () => {
    const model = new FakeModel(explorerState({ _view: "steering", edits: twoEdits() }));
    const { $ } = await mount(model);
    const s = slider($);
    for (const v of [1, 2, 3, 4, 5.5]) {
      s.value = String(v);
      s.dispatchEvent(new Event("input"));
    }
    expect(model.saves).toBe(0);
    expect($(".qscope-readout").textContent).toBe("5.5");
    vi.advanceTimersByTime(16);
    expect(model.saves).toBe(1);
    const sent = model.saved[0].edits;
    expect(sent[0].strength).toBe(5.5);
    expect(sent[0].range_mode).toBe("add"); // every other key kept
    expect(sent[1]).toEqual(twoEdits()[1]);
    // a second burst -> a second single save
    s.value = "6"; s.dispatchEvent(new Event("input"));
    s.value = "7"; s.dispatchEvent(new Event("input"));
    vi.advanceTimersByTime(16);
    expect(model.saves).toBe(2);
    expect(model.saved[1].edits[0].strength).toBe(7);
    vi.advanceTimersByTime(100);
    expect(model.saves).toBe(2);
  });

  it("sends the last value at once on release (change) and never an older one after it", async () => {
    const model = new FakeModel(explorerState({ _view: "steering", edits: twoEdits() }));
    const { $ } = await mount(model);
    const s = slider($);
    s.value = "2"; s.dispatchEvent(new Event("input"));
    s.value = "2.5"; s.dispatchEvent(new Event("input"));
    s.dispatchEvent(new Event("change"));
    expect(model.saves).toBe(1);
    expect(model.saved[0].edits[0].strength).toBe(2.5);
    vi.advanceTimersByTime(50);
    expect(model.saves).toBe(1);
  });

  it("uses requestAnimationFrame when present", async () => {
    const frames = [];
    globalThis.requestAnimationFrame = (cb) => { frames.push(cb); return frames.length; };
    globalThis.cancelAnimationFrame = () => {};
    const model = new FakeModel(explorerState({ _view: "steering", edits: twoEdits() }));
    const { $ } = await mount(model);
    const s = slider($);
    for (const v of [1, 2, 3]) { s.value = String(v); s.dispatchEvent(new Event("input")); }
    expect(frames.length).toBe(1);
    frames[0]();
    expect(model.saves).toBe(1);
    expect(model.saved[0].edits[0].strength).toBe(3);
  });

  it("a Python echo does not move a slider the user is dragging", async () => {
    const model = new FakeModel(explorerState({ _view: "steering", edits: twoEdits() }));
    const { $ } = await mount(model);
    const s = slider($);
    s.dispatchEvent(new Event("pointerdown"));
    s.value = "4"; s.dispatchEvent(new Event("input"));
    vi.advanceTimersByTime(16);
    s.value = "6"; s.dispatchEvent(new Event("input"));
    model.update({ edits: [edit({ strength: 4 }), twoEdits()[1]] }); // echo of the first frame
    expect(s.value).toBe("6");
    expect(slider($)).toBe(s); // same element: the drag is not interrupted
    s.dispatchEvent(new Event("pointerup"));
    s.dispatchEvent(new Event("change"));
    expect(model.saved.at(-1).edits[0].strength).toBe(6);
    model.update({ edits: [edit({ strength: 6 }), twoEdits()[1]] });
    model.update({ edits: [edit({ strength: 1 }), twoEdits()[1]] }); // Python sets it
    expect(s.value).toBe("1");
  });

  it("mode, enabled, reset and unpin each send one edits update", async () => {
    const model = new FakeModel(explorerState({ _view: "steering", edits: twoEdits() }));
    const { $, $$ } = await mount(model);
    const mode = $$("select[data-qscope='mode']")[1];
    mode.value = "clamp";
    mode.dispatchEvent(new Event("change"));
    expect(model.saves).toBe(1);
    expect(model.get("edits")[1].mode).toBe("clamp");
    expect(model.get("edits")[1].strength).toBe(3); // Python rescales on a mode switch (range_mode)

    const en = $$("input[data-qscope='enabled']")[0];
    en.checked = false;
    en.dispatchEvent(new Event("change"));
    expect(model.saves).toBe(2);
    expect(model.get("edits")[0].enabled).toBe(false);
    expect($$("[data-qscope='edit']")[0].classList.contains("qscope-disabled")).toBe(true);

    $$("button[data-qscope='reset']")[1].click();
    expect(model.saves).toBe(3);
    expect(model.get("edits")[1].strength).toBe(0);
    expect(slider($, 2, 7).value).toBe("0");

    $$("button[data-qscope='unpin']")[0].click();
    expect(model.saves).toBe(4);
    expect(model.get("edits").map((e) => e.feature)).toEqual([7]);
    expect($$("[data-qscope='edit']").length).toBe(1);
  });

  it("a pending slider value is folded into a mode change (one save, nothing lost)", async () => {
    const model = new FakeModel(explorerState({ _view: "steering", edits: twoEdits() }));
    const { $, $$ } = await mount(model);
    const s = slider($);
    s.value = "5"; s.dispatchEvent(new Event("input"));
    const en = $$("input[data-qscope='enabled']")[1];
    en.checked = false;
    en.dispatchEvent(new Event("change"));
    vi.advanceTimersByTime(50);
    expect(model.saves).toBe(1);
    expect(model.saved[0].edits.map((e) => [e.strength, e.enabled])).toEqual([[5, true], [3, false]]);
  });

  it("next tokens: baseline vs steered columns with bars; steered only with an active edit", async () => {
    const nt = { baseline: [[" God", 0.5], [" the", 0.25]], steered: [[" LORD", 0.6], [" God", 0.1]] };
    const model = new FakeModel(explorerState({ _view: "steering", next_tokens: nt, edits: [] }));
    const { $ } = await mount(model);
    const next = $("[data-qscope='next-tokens']");
    expect(next.querySelectorAll(".qscope-next-col").length).toBe(1);
    model.update({ edits: twoEdits(), request_seq: 2 });
    model.update({ result_seq: 2 });
    const cols = next.querySelectorAll(".qscope-next-col");
    expect(cols.length).toBe(2);
    expect(cols[1].textContent).toContain("LORD");
    expect(cols[1].querySelector(".qscope-new").dataset.token).toBe(" LORD");
    expect(cols[0].querySelector(".qscope-bar-fill").style.width).toBe("100%");
    expect(cols[0].textContent).toContain("50.0%");
  });

  it("continuation shows only for the drawn result, with a cursor while streaming", async () => {
    const model = new FakeModel(explorerState({
      _view: "steering", result_seq: 3, request_seq: 3,
      continuation: { seq: 2, baseline: "stale text", steered: "stale", done: true },
    }));
    const { $ } = await mount(model);
    const cont = $("[data-qscope='continuation']");
    expect(cont.textContent).not.toContain("stale");
    expect($("[data-qscope='continuation-steered']").textContent).toBe("generating…");
    model.update({ continuation: { seq: 3, baseline: " God", steered: " LORD", done: false } });
    expect($("[data-qscope='continuation-steered']").textContent).toBe(" LORD▍");
    expect(cont.dataset.done).toBe("false");
    model.update({ continuation: { seq: 3, baseline: " God created", steered: " LORD said", done: true } });
    expect($("[data-qscope='continuation-baseline']").textContent).toBe(" God created");
    expect(cont.dataset.done).toBe("true");
    model.update({ continuation: { seq: 3, baseline: "", steered: "x", done: true } });
    expect($("[data-qscope='continuation-baseline']").textContent).toContain("empty");
    expect($("[data-qscope='continuation-note']").textContent).toBe("");
    model.update({ continuation: { seq: 3, baseline: "", steered: "", done: true, note: "the model ends the text right away" } });
    expect($("[data-qscope='continuation-note']").textContent).toContain("ends the text");
    model.update({ continuation_tokens: 0 });
    expect(cont.dataset.off).toBe("true");  // the text hides; the controls stay, to turn it back on
    expect(/** @type {HTMLElement} */ (cont.querySelector(".qscope-cont-cols")).hidden).toBe(true);
    expect($("[data-qscope='continuation-tokens']")).not.toBeNull();
  });

  it("empty edits show a hint once", async () => {
    const model = new FakeModel(explorerState({ _view: "steering", edits: [] }));
    const { $$ } = await mount(model);
    model.update({ edits: [] });
    model.update({ edits: [] });
    expect($$(".qscope-empty").filter((e) => !e.hidden).length).toBe(1);
    model.update({ edits: [edit()] });
    expect($$(".qscope-empty").filter((e) => !e.hidden).length).toBe(0);
  });

  it("niceStep gives round steps", () => {
    expect(niceStep(-8, 8)).toBe(0.1);
    expect(niceStep(0, 1)).toBe(0.005);
    expect(niceStep(0, 0)).toBe(0.01);
  });
});
