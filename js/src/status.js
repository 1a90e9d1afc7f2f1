// The status line: busy spinner, stage, last latency, and errors inline (Python's `status.error` and any JS
// error caught while drawing). The widget never goes dead: errors are shown here and the next draw recovers.
import { h } from "./dom.js";
import { isStale } from "./seq.js";

/** @param {import("./context.js").Context} ctx */
export function createStatus(ctx) {
  const { model } = ctx;
  const spinner = h("span", { class: "qscope-spinner", "aria-hidden": "true" });
  const stage = h("span", { class: "qscope-stage" });
  const latency = h("span", { class: "qscope-latency" });
  const error = h("span", { class: "qscope-error", dataset: { qscope: "error" }, role: "alert" });
  const el = h("div", { class: "qscope-status", dataset: { qscope: "status", busy: "false" }, "aria-live": "polite" },
    [spinner, stage, latency, error]);

  const draw = () => {
    const s = model.get("status") || {};
    const busy = Boolean(s.busy) || isStale(model);
    el.dataset.busy = String(busy);
    stage.textContent = busy ? (s.stage ? `${s.stage}…` : "working…") : (s.message || s.stage || "ready");
    const ms = Number(s.latency_ms);
    latency.textContent = Number.isFinite(ms) && ms > 0 ? `${Math.round(ms)} ms` : "";
    const parts = [];
    if (s.error) parts.push(String(s.error));
    for (const [name, e] of ctx.errors) parts.push(`JS error in ${name}: ${e.message || e}`);
    error.textContent = parts.join(" · ");
    el.classList.toggle("qscope-has-error", parts.length > 0);
  };
  ctx.on("change:status", "status", draw);
  ctx.on("change:request_seq", "status", draw);
  ctx.on("change:result_seq", "status", draw);
  ctx.errorWatchers.push(draw);
  draw();
  return el;
}
