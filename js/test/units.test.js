import { describe, it, expect } from "vitest";
import { toFloat32, toInt32, codesRow, copyBytes } from "../src/buffers.js";
import { cellColor, contrast, hexToRgb, sequential, diverging, textColor } from "../src/colors.js";
import { SeqGuard, isStale } from "../src/seq.js";
import { f32, i32 } from "./fake-model.js";

describe("buffers", () => {
  it("reads misaligned DataViews as float32 / int32 copies", () => {
    const dv = f32([1.5, -2, 0.1]);
    expect(dv.byteOffset % 4).not.toBe(0);
    const a = toFloat32(dv);
    expect(a).toBeInstanceOf(Float32Array);
    expect([...a]).toEqual([1.5, -2, Math.fround(0.1)]);
    expect(a.buffer).not.toBe(dv.buffer);
    expect([...toInt32(i32([3, -1, 2147483647]))]).toEqual([3, -1, 2147483647]);
  });
  it("treats missing / odd inputs as empty or truncated", () => {
    expect(toFloat32(undefined).length).toBe(0);
    expect(toFloat32(null).length).toBe(0);
    expect(toFloat32(new DataView(new ArrayBuffer(7))).length).toBe(1);
    expect([...toFloat32([1, 2])]).toEqual([1, 2]);
    expect(copyBytes(new Uint8Array([1, 2, 3]).subarray(1)).byteLength).toBe(2);
  });
  it("codesRow keeps the non-zero codes of one token", () => {
    const ids = new Int32Array([5, 7, 9, 1, 0, 0]);
    const vals = new Float32Array([3, 2, 0, 1, 0, 0]);
    expect(codesRow(ids, vals, 3, 0)).toEqual([[5, 3], [7, 2]]);
    expect(codesRow(ids, vals, 3, 1)).toEqual([[1, 1]]);
    expect(codesRow(ids, vals, 0, 0)).toEqual([]);
  });
});

describe("colours", () => {
  it("sequential runs light to dark (YlOrBr), diverging blue to orange", () => {
    expect(sequential(0)).toEqual(hexToRgb("#ffffe5"));
    expect(sequential(1)).toEqual(hexToRgb("#662506"));
    const [r0, , b0] = diverging(-1);
    const [r1, , b1] = diverging(1);
    expect(b0).toBeGreaterThan(r0);
    expect(r1).toBeGreaterThan(b1);
  });
  it("picks the text colour with the higher contrast, always >= 4.5:1 on the scales", () => {
    for (let t = 0; t <= 1; t += 0.05) {
      for (const rgb of [sequential(t), diverging(2 * t - 1)]) {
        const fg = textColor(rgb) === "#000" ? [0, 0, 0] : [255, 255, 255];
        expect(contrast(rgb, /** @type {any} */ (fg))).toBeGreaterThanOrEqual(4.5);
      }
    }
  });
  it("cellColor leaves zero / NaN / below-range unfilled", () => {
    expect(cellColor(0, [0, 4], "sequential")).toBeNull();
    expect(cellColor(NaN, [0, 4], "sequential")).toBeNull();
    expect(cellColor(0, [-1, 1], "diverging")).toBeNull();
    expect(cellColor(4, [0, 4], "sequential")?.t).toBe(1);
    expect(cellColor(-1, [-1, 1], "diverging")?.t).toBe(-1);
    expect(cellColor(1, [0, 0], "diverging")).toBeNull();
  });
});

describe("seq guard", () => {
  it("draws strictly newer results only", () => {
    const g = new SeqGuard();
    expect(g.isNewer(0)).toBe(true);
    g.mark(5);
    expect(g.isNewer(4)).toBe(false);
    expect(g.isNewer(5)).toBe(false);
    expect(g.isCurrent(5)).toBe(true);
    expect(g.isNewer(6)).toBe(true);
    g.mark(3);
    expect(g.drawn).toBe(5);
  });
  it("is stale while result_seq < request_seq", () => {
    const m = { s: /** @type {any} */ ({ request_seq: 3, result_seq: 2 }), get(/** @type {string} */ k) { return this.s[k]; } };
    expect(isStale(m)).toBe(true);
    m.s.result_seq = 3;
    expect(isStale(m)).toBe(false);
  });
});
