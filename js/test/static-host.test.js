import { describe, expect, it } from "vitest";
import { StaticModel, decodeValue, mountSnapshot, readSnapshot } from "../src/static-host.js";

const b64 = (/** @type {number[]} */ xs) => Buffer.from(new Float32Array(xs).buffer).toString("base64");

/** A snapshot with two saved layers and per-token sidebars, like the explorer's. */
function snap() {
  return {
    format: 1,
    state: { layer: 3, selected_token: -1, prompt: "p", result_seq: 5, request_seq: 5, values: { $bytes: b64([1, 2]) }, title: "L3 all" },
    variants: [
      { key: { layer: 3 }, state: { values: { $bytes: b64([1, 2]) } } },
      { key: { layer: 5 }, state: { values: { $bytes: b64([7, 8]) } } },
      { key: { layer: 3, selected_token: -1 }, state: { title: "L3 all" } },
      { key: { layer: 3, selected_token: 1 }, state: { title: "L3 t1" } },
      { key: { layer: 5, selected_token: -1 }, state: { title: "L5 all" } },
      { key: { layer: 5, selected_token: 1 }, state: { title: "L5 t1" } },
    ],
    local: ["diff"],
    resets: { layer: { selected_token: -1 } },
    seq: ["request_seq", "result_seq"],
    kernel_notes: { prompt: "Running a new prompt" },
  };
}

const floats = (/** @type {DataView} */ dv) => [...new Float32Array(dv.buffer.slice(dv.byteOffset, dv.byteOffset + dv.byteLength))];

describe("static host model", () => {
  it("decodes $bytes leaves into DataViews", () => {
    const v = decodeValue({ a: [{ $bytes: b64([1.5]) }], b: 2 });
    expect(v.a[0]).toBeInstanceOf(DataView);
    expect(floats(v.a[0])).toEqual([1.5]);
    expect(v.b).toBe(2);
  });

  it("answers a saved layer and token from the variants, bumping the seq counters once", async () => {
    const m = new StaticModel(snap());
    /** @type {string[]} */
    const events = [];
    m.on("change:values", () => events.push("values"));
    m.on("change:result_seq", () => events.push(`seq ${m.get("result_seq")} ${m.get("title")}`));
    m.set("selected_token", 1);
    await m.save_changes();
    expect(m.get("title")).toBe("L3 t1");
    m.set("layer", 5);
    await m.save_changes();
    expect(m.get("selected_token")).toBe(-1); // the reset Python's observer would do
    expect(m.get("title")).toBe("L5 all");
    expect(floats(m.get("values"))).toEqual([7, 8]);
    expect(m.get("request_seq")).toBe(7);
    expect(events).toEqual(["seq 6 L3 t1", "values", "seq 7 L5 all"]); // values before the seq that draws them
    expect(m.notes).toEqual([]);
  });

  it("puts back a layer that was not saved and says which are", async () => {
    const m = new StaticModel(snap());
    let seen = 0;
    m.on("change:layer", () => { seen += 1; });
    m.set("layer", 9);
    await m.save_changes();
    expect(m.get("layer")).toBe(3);
    expect(seen).toBe(2); // the set, then the revert
    expect(m.notes[0]).toMatch(/layer = 9 is not in this snapshot's saved data \(saved: 3, 5\)/);
  });

  it("says a new prompt or a message needs a live kernel, and keeps local toggles", async () => {
    const m = new StaticModel(snap());
    m.set("prompt", "new");
    await m.save_changes();
    expect(m.get("prompt")).toBe("p");
    expect(m.notes.at(-1)).toMatch(/Running a new prompt needs a live kernel/);
    m.send({ type: "pin", layer: 3, feature: 1 });
    expect(m.notes.at(-1)).toMatch(/“pin” needs a live kernel/);
    m.set("diff", true);
    await m.save_changes();
    expect(m.get("diff")).toBe(true);
    expect(m.notes.length).toBe(2);
  });

  it("off removes a listener", () => {
    const m = new StaticModel(snap());
    let n = 0;
    const cb = () => { n += 1; };
    m.on("change:diff", cb);
    m.off("change:diff", cb);
    m.set("diff", true);
    expect(n).toBe(0);
  });

  it("reads plain JSON data scripts and mounts a view with its note bar", async () => {
    const script = document.createElement("script");
    script.type = "application/json";
    script.textContent = JSON.stringify({ format: 1, state: { _view: "feature", layer: 1, feature: 2, data: {}, status: {} }, note: "saved" });
    const s = await readSnapshot(script);
    const el = document.createElement("div");
    const { model, dispose } = mountSnapshot(el, s);
    expect(el.querySelector("[data-qscope='static-note']")?.textContent).toContain("saved");
    expect(el.querySelector("[data-qscope='feature-dashboard']")).not.toBeNull();
    /** @type {HTMLElement} */ (el.querySelector("[data-qscope='pin']")).click();
    await Promise.resolve();
    expect(model.notes[0]).toMatch(/needs a live kernel/);
    expect(/** @type {HTMLElement} */ (el.querySelector("[data-qscope='kernel-note']")).hidden).toBe(false);
    dispose();
  });
});
