// Steering panel: one slider block per entry of `edits` (strength, mode, on/off, reset, unpin), the next-token
// top-10 baseline vs steered, and the streamed continuation. Slider drags are coalesced to at most one
// `edits` update per animation frame, always with the latest value; releasing the slider sends it at once.
import { h, clear, fmt, visibleToken } from "./dom.js";
import { coalescer } from "./frame.js";

const MODES = ["add", "clamp", "ablate"];

/** @param {any} e */
const keyOf = (e) => `${Number(e.layer)}/${Number(e.feature)}`;

/** A round step giving ~200 positions over the range. @param {number} lo @param {number} hi */
export function niceStep(lo, hi) {
  const span = Math.abs(hi - lo);
  if (!(span > 0) || !Number.isFinite(span)) return 0.01;
  const raw = span / 200;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

/** @param {import("./context.js").Context} ctx */
export function createSteering(ctx) {
  const { model } = ctx;

  /** latest strength per edit key, not yet sent */
  const pending = new Map();
  /** edit keys whose slider the pointer holds (Python's echo must not move it) */
  const dragging = new Set();
  /** @type {Map<string, {block: HTMLElement, slider: HTMLInputElement, readout: HTMLElement, mode: HTMLSelectElement, enabled: HTMLInputElement, label: HTMLElement}>} */
  let blocks = new Map();

  /**
   * Send the whole `edits` list once: pending strengths folded in, then `mutate` applied. Entries are always new
   * objects (the model compares by value; mutating the old list would send nothing).
   * @param {(list: any[]) => any[]} [mutate]
   */
  function commit(mutate) {
    let list = (/** @type {any[]} */ (model.get("edits") || [])).map((e) => {
      const k = keyOf(e);
      return pending.has(k) ? { ...e, strength: pending.get(k) } : { ...e };
    });
    pending.clear();
    if (mutate) list = mutate(list);
    model.set("edits", list);
    model.save_changes();
  }
  const frame = coalescer(() => ctx.safe("steering.send", () => commit()));
  ctx.onCleanup(() => frame.flush());

  /** @param {string} k @param {(e: any) => any} patch */
  const patchOne = (k, patch) => { frame.cancel(); commit((list) => list.map((e) => (keyOf(e) === k ? patch(e) : e))); };

  const editsEl = h("div", { class: "qscope-edits", dataset: { qscope: "edits" } });
  const emptyEl = h("div", { class: "qscope-muted qscope-empty", text: "No steering edits. Pin a feature from the sidebar to steer with it." });

  /** @param {any} e */
  function buildBlock(e) {
    const k = keyOf(e);
    const layer = Number(e.layer), feature = Number(e.feature);
    const label = h("span", { class: "qscope-edit-label" });
    const slider = /** @type {HTMLInputElement} */ (h("input", {
      type: "range", class: "qscope-range", dataset: { qscope: "strength", layer, feature },
      "aria-label": `strength of layer ${layer} feature ${feature}`,
    }));
    const readout = h("output", { class: "qscope-num qscope-readout", dataset: { qscope: "strength-value" } });
    const mode = /** @type {HTMLSelectElement} */ (h("select", {
      class: "qscope-select", dataset: { qscope: "mode", layer, feature }, "aria-label": "steering mode",
    }, MODES.map((m) => h("option", { value: m, text: m }))));
    const enabled = /** @type {HTMLInputElement} */ (h("input", {
      type: "checkbox", dataset: { qscope: "enabled", layer, feature }, "aria-label": "edit enabled",
    }));
    const reset = h("button", {
      type: "button", class: "qscope-btn", dataset: { qscope: "reset", layer, feature }, title: "reset the strength to its default",
    }, ["reset"]);
    const unpin = h("button", {
      type: "button", class: "qscope-btn", dataset: { qscope: "unpin", layer, feature }, title: "remove this edit",
      "aria-label": `unpin layer ${layer} feature ${feature}`,
    }, ["✕"]);

    slider.addEventListener("input", () => ctx.safe("steering.slider", () => {
      const v = Number(slider.value);
      pending.set(k, v);
      readout.textContent = fmt(v);
      frame.push(null);
    }));
    slider.addEventListener("change", () => { dragging.delete(k); ctx.safe("steering.send", () => frame.flush()); });
    slider.addEventListener("pointerdown", () => dragging.add(k));
    const release = () => { dragging.delete(k); };
    slider.addEventListener("pointerup", release);
    slider.addEventListener("pointercancel", release);
    mode.addEventListener("change", () => ctx.safe("steering.mode", () => patchOne(k, (x) => ({ ...x, mode: mode.value }))));
    enabled.addEventListener("change", () => ctx.safe("steering.enabled", () => patchOne(k, (x) => ({ ...x, enabled: enabled.checked }))));
    reset.addEventListener("click", () => ctx.safe("steering.reset", () => {
      pending.delete(k);
      dragging.delete(k);
      patchOne(k, (x) => ({ ...x, strength: Number(x.default ?? 0) }));
      updateAll();
    }));
    unpin.addEventListener("click", () => ctx.safe("steering.unpin", () => {
      pending.delete(k);
      frame.cancel();
      commit((list) => list.filter((x) => keyOf(x) !== k));
    }));

    const block = h("div", { class: "qscope-edit", dataset: { qscope: "edit", layer, feature } }, [
      h("div", { class: "qscope-edit-head" }, [label, unpin]),
      h("div", { class: "qscope-edit-slider" }, [slider, readout]),
      h("div", { class: "qscope-edit-controls" }, [
        mode, h("label", { class: "qscope-check" }, [enabled, " on"]), reset,
      ]),
    ]);
    return { block, slider, readout, mode, enabled, label };
  }

  /** bring a block in line with its entry, without touching a slider the user is dragging */
  function updateBlock(/** @type {any} */ b, /** @type {any} */ e) {
    const k = keyOf(e);
    const lo = Number(e.min ?? 0), hi = Number(e.max ?? 1);
    const step = e.step != null ? Number(e.step) : niceStep(lo, hi);
    b.label.textContent = `L${e.layer} #${e.feature}${e.label ? ` ${e.label}` : ""}`;
    b.label.title = String(e.label || "");
    b.slider.min = String(lo);
    b.slider.max = String(hi);
    b.slider.step = String(step);
    const busy = dragging.has(k) || pending.has(k);
    const strength = busy ? pending.get(k) ?? Number(b.slider.value) : Number(e.strength ?? 0);
    if (!busy) b.slider.value = String(strength);
    b.readout.textContent = fmt(strength);
    b.mode.value = MODES.includes(e.mode) ? e.mode : "add";
    b.enabled.checked = e.enabled !== false;
    b.block.classList.toggle("qscope-disabled", e.enabled === false);
    b.block.title = e.typical ? `typical activation ${fmt(Number(e.typical))}` : "";
  }

  function updateAll() {
    const edits = /** @type {any[]} */ (model.get("edits") || []);
    const keys = edits.map(keyOf);
    const same = keys.length === blocks.size && keys.every((k, i) => [...blocks.keys()][i] === k);
    if (!same) {
      for (const k of [...pending.keys()]) if (!keys.includes(k)) pending.delete(k);
      const old = blocks;
      blocks = new Map();
      clear(editsEl);
      for (const e of edits) {
        const k = keyOf(e);
        const b = old.get(k) || buildBlock(e);  // keep a block (and a slider in the user's hand) when it survives
        blocks.set(k, b);
        editsEl.append(b.block);
      }
    }
    edits.forEach((e) => updateBlock(blocks.get(keyOf(e)), e));
    emptyEl.hidden = edits.length > 0;
  }

  // ---- next tokens: baseline vs steered
  const nextEl = h("div", { class: "qscope-next", dataset: { qscope: "next-tokens" } });
  /** @param {string} title @param {any[]} rows @param {Set<string>} other */
  function column(title, rows, other) {
    const maxP = Math.max(1e-9, ...rows.map((r) => Number(r[1]) || 0));
    return h("div", { class: "qscope-next-col" }, [
      h("div", { class: "qscope-col-title", text: title }),
      ...rows.map(([tok, p]) => h("div", {
        class: `qscope-next-row${other.has(String(tok)) ? "" : " qscope-new"}`, dataset: { token: String(tok), prob: String(p) },
      }, [
        h("span", { class: "qscope-mono qscope-next-tok" }, [visibleToken(String(tok)).node]),
        h("span", { class: "qscope-bar" }, [h("span", { class: "qscope-bar-fill", style: { width: `${(Number(p) / maxP) * 100}%` } })]),
        h("span", { class: "qscope-num", text: `${(Number(p) * 100).toFixed(1)}%` }),
      ])),
    ]);
  }
  function drawNext() {
    const nt = model.get("next_tokens") || {};
    const base = /** @type {any[]} */ (nt.baseline || []), steer = /** @type {any[]} */ (nt.steered || []);
    const active = (model.get("edits") || []).some((/** @type {any} */ e) => e.enabled !== false);
    clear(nextEl);
    nextEl.append(h("div", { class: "qscope-section-title", text: "next token" }));
    const cols = h("div", { class: "qscope-next-cols" }, [column("baseline", base, new Set(steer.map((r) => String(r[0]))))]);
    if (active && steer.length) cols.append(column("steered", steer, new Set(base.map((r) => String(r[0])))));
    nextEl.append(cols);
    if (!base.length) nextEl.append(h("div", { class: "qscope-muted", text: "no prediction yet" }));
  }

  // ---- the streamed continuation
  const contBase = h("div", { class: "qscope-cont-text", dataset: { qscope: "continuation-baseline" } });
  const contSteer = h("div", { class: "qscope-cont-text", dataset: { qscope: "continuation-steered" } });
  const contEl = h("div", { class: "qscope-continuation", dataset: { qscope: "continuation" } }, [
    h("div", { class: "qscope-section-title", text: "continuation" }),
    h("div", { class: "qscope-cont-cols" }, [
      h("div", { class: "qscope-cont-col" }, [h("div", { class: "qscope-col-title", text: "baseline" }), contBase]),
      h("div", { class: "qscope-cont-col" }, [h("div", { class: "qscope-col-title", text: "steered" }), contSteer]),
    ]),
  ]);
  /** @param {number} [seq] the result drawn (or being drawn) */
  function drawContinuation(seq = ctx.guard.drawn) {
    const c = model.get("continuation") || {};
    const off = Number(model.get("continuation_tokens") ?? 0) <= 0;
    contEl.hidden = off;
    const fresh = Number(c.seq) === seq;
    contEl.dataset.seq = String(c.seq ?? "");
    contEl.dataset.done = String(fresh && Boolean(c.done));
    const fill = (/** @type {HTMLElement} */ box, /** @type {string} */ text) => {
      clear(box);
      if (!fresh) {
        box.append(h("span", { class: "qscope-muted", text: "generating…" }));
        return;
      }
      const t = String(text ?? "");
      box.append(t || (c.done ? h("span", { class: "qscope-muted", text: "(empty: end of text first)" }) : ""));
      if (!c.done) box.append(h("span", { class: "qscope-cursor", "aria-hidden": "true", text: "▍" }));
    };
    fill(contBase, c.baseline);
    fill(contSteer, c.steered);
  }

  const side = h("div", { class: "qscope-steer-side" }, [nextEl, contEl]);
  const el = h("div", { class: "qscope-steering", dataset: { qscope: "steering" } }, [
    h("div", { class: "qscope-edits-wrap" }, [h("div", { class: "qscope-section-title", text: "steering" }), emptyEl, editsEl]),
    side,
  ]);

  ctx.onResult("steering", (seq) => { drawNext(); drawContinuation(seq); });
  ctx.on("change:edits", "steering.edits", () => { updateAll(); if (ctx.current()) drawNext(); });
  ctx.on("change:next_tokens", "steering", () => { if (ctx.current()) drawNext(); });
  ctx.on("change:continuation", "steering.continuation", () => drawContinuation());
  ctx.on("change:continuation_tokens", "steering.continuation", () => drawContinuation());
  updateAll();
  return el;
}
