// Next tokens: the top predictions, baseline vs steered, from the position Python says (`next_tokens.position`:
// the selected token, else the last one). Redrawn with each result; a redraw never moves focus.
import { h, clear, visibleToken } from "./dom.js";

/** @param {import("./context.js").Context} ctx */
export function createNextTokens(ctx) {
  const { model } = ctx;
  // ---- next tokens: baseline vs steered
  const nextEl = h("div", { class: "qscope-next", dataset: { qscope: "next-tokens" } });
  // in a view with an attribution panel, clicking a predicted token makes it the attribution target, at the
  // position this prediction is made from (one message: Python sees target and position together)
  const attributable = model.get("attribution_target") !== undefined;
  /** @param {string} tok */
  const attribute = (tok) => ctx.safe("next_tokens.attribute", () => {
    model.set("attribution_target", tok);
    if (model.get("attribution_position") !== undefined) {
      model.set("attribution_position", Number((model.get("next_tokens") || {}).position ?? -1));
    }
    model.save_changes();
  });
  /** @param {string} title @param {any[]} rows @param {Set<string>} other */
  function column(title, rows, other) {
    const maxP = Math.max(1e-9, ...rows.map((r) => Number(r[1]) || 0));
    return h("div", { class: "qscope-next-col" }, [
      h("div", { class: "qscope-col-title", text: title }),
      ...rows.map(([tok, p]) => h("div", {
        class: `qscope-next-row${other.has(String(tok)) ? "" : " qscope-new"}${attributable ? " qscope-clickable" : ""}`,
        dataset: { token: String(tok), prob: String(p) },
        tabindex: attributable ? "0" : null, title: attributable ? "attribute this token" : null,
        onclick: attributable ? () => attribute(String(tok)) : null,
        onkeydown: attributable ? (/** @type {KeyboardEvent} */ ev) => { if (ev.key === "Enter") attribute(String(tok)); } : null,
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
    const pos = Number(nt.position ?? -1);
    nextEl.append(h("div", { class: "qscope-section-title" }, [
      "next token",
      pos >= 0 ? h("span", { class: "qscope-muted", text: ` after #${pos} ` }) : "",
      pos >= 0 ? h("span", { class: "qscope-mono qscope-muted" }, [visibleToken(String(nt.token ?? "")).node]) : "",
    ]));
    const cols = h("div", { class: "qscope-next-cols" }, [column("baseline", base, new Set(steer.map((r) => String(r[0]))))]);
    if (active && steer.length) cols.append(column("steered", steer, new Set(base.map((r) => String(r[0])))));
    nextEl.append(cols);
    if (!base.length) nextEl.append(h("div", { class: "qscope-muted", text: "no prediction yet" }));
  }


  ctx.onResult("next_tokens", () => drawNext());
  ctx.on("change:edits", "next_tokens", () => { if (ctx.current()) drawNext(); });
  ctx.on("change:next_tokens", "next_tokens", () => { if (ctx.current()) drawNext(); });
  drawNext();
  return nextEl;
}
