// Attribution: which features (layer x position) made the model predict `attribution_target` at the selected token
// (else the last). Python computes everything (widgets/attribution_panel.py); this draws it: a target box, a
// layer x position grid (diverging colours, binary float32 `attribution_grid`), the ranked nodes (error nodes
// marked), an SVG graph (layers as rows, positions as columns, node size by |attribution|, strongest edges) and a
// "verify" button whose answer (estimate vs exact ablation, Spearman) Python writes to `attribution_check`.
import { openFeature } from "./open_feature.js";
import { h, clear, visibleToken, fmt } from "./dom.js";
import { cellColor, diverging, css } from "./colors.js";
import { toFloat32 } from "./buffers.js";

const SVG_W = 640, ROW_H = 46, PAD = 28, R_MAX = 11, R_MIN = 3;

/** @param {import("./context.js").Context} ctx */
export function createAttribution(ctx) {
  const { model } = ctx;
  const el = h("div", { class: "qscope-attr", dataset: { qscope: "attribution" } });

  // ---- target box (an input: Python validates it; a refused value comes back with the error in the status line)
  const target = /** @type {HTMLInputElement} */ (h("input", {
    type: "text", class: "qscope-attr-target", placeholder: "target token, e.g. ' earth'",
    "aria-label": "attribution target token", dataset: { qscope: "attribution-target" },
  }));
  target.value = String(model.get("attribution_target") ?? "");
  const commit = () => ctx.safe("attribution.target", () => {
    if (target.value === String(model.get("attribution_target") ?? "")) return;
    model.set("attribution_target", target.value);
    // a typed target explains the prediction the next-token panel shows (the explorer keeps that position)
    if (model.get("attribution_position") !== undefined) {
      model.set("attribution_position", Number((model.get("next_tokens") || {}).position ?? -1));
    }
    model.save_changes();
  });
  target.addEventListener("change", commit);
  target.addEventListener("keydown", (ev) => { if (ev.key === "Enter") { ev.preventDefault(); commit(); } });
  const summary = h("div", { class: "qscope-attr-summary", dataset: { qscope: "attribution-summary" } });
  const grid = h("div", { class: "qscope-attr-grid-wrap" });
  const list = h("div", { class: "qscope-attr-list" });
  const graph = h("div", { class: "qscope-attr-graph", dataset: { qscope: "attribution-graph" } });
  const nInput = /** @type {HTMLInputElement} */ (h("input", {
    type: "number", min: "2", max: "200", value: "10", class: "qscope-attr-n", "aria-label": "nodes to verify",
    dataset: { qscope: "verify-n" },
  }));
  const verifyBtn = h("button", {
    class: "qscope-btn", text: "verify", dataset: { qscope: "verify" },
    title: "exactly ablate the top-n feature nodes and compare with the estimates",
    onclick: () => ctx.safe("attribution.verify", () => model.send({ type: "verify", n: Math.round(Number(nInput.value) || 10) })),
  });
  const check = h("div", { class: "qscope-attr-check", dataset: { qscope: "verify-result" } });
  el.append(
    h("div", { class: "qscope-section-title" }, ["attribution of ", target]),
    summary, grid, h("div", { class: "qscope-attr-cols" }, [list, graph]),
    h("div", { class: "qscope-attr-verify" }, ["top ", nInput, " ", verifyBtn, check]),
  );

  /** @param {number} layer @param {number} feature */
  const select = (layer, feature) => ctx.safe("attribution.select", () => {
    if (feature >= 0) openFeature(ctx, layer, feature);
  });

  function draw() {
    const a = model.get("attribution") || {};
    if (document.activeElement !== target) target.value = String(model.get("attribution_target") ?? "");
    clear(summary); clear(grid); clear(list); clear(graph);
    if (!a.shape) {
      summary.append(h("span", { class: "qscope-muted", text: "type a target token (or click a predicted next token) to see which features predict it" }));
      drawCheck();
      return;
    }
    const tokens = a.tokens || [];
    const pos = Number(a.position ?? -1);
    summary.append(
      h("span", { text: `${a.target} at #${pos} ` }),
      h("span", { class: "qscope-mono" }, [visibleToken(String(tokens[pos] ?? "")).node]),
      h("span", { class: "qscope-muted", text: ` · metric ${fmt(Number(a.metric))} · ${a.method}` }),
      h("span", { dataset: { qscope: "error-share" }, text: ` · error share ${(Number(a.error_share) * 100).toFixed(1)}%` }),
    );
    drawGrid(a);
    drawList(a);
    drawGraph(a);
    drawCheck();
  }

  /** @param {import("./model").AttributionData} a */
  function drawGrid(a) {
    const [rows, cols] = /** @type {[number, number]} */ (a.shape);
    const vals = toFloat32(model.get("attribution_grid"));
    if (vals.length !== rows * cols) throw new Error(`attribution_grid holds ${vals.length} values, expected ${rows} x ${cols}`);
    const range = /** @type {[number, number]} */ (a.range || [-1, 1]);
    const tokens = a.tokens || [];
    const head = h("tr", {}, [h("th", { text: "layer" }),
      ...Array.from({ length: cols }, (_, p) => h("th", { class: "qscope-mono" }, [visibleToken(String(tokens[p] ?? "")).node]))]);
    const body = (a.layers || []).map((layer, i) => h("tr", {}, [h("th", { text: `L${layer}` }),
      ...Array.from({ length: cols }, (_, p) => {
        const v = vals[i * cols + p];
        const c = cellColor(v, range, "diverging");
        return h("td", {
          class: "qscope-attr-cell", title: `L${layer} #${p}: ${fmt(v)}`,
          dataset: { layer, position: p, value: v }, style: c ? { backgroundColor: c.bg, color: c.fg } : {},
        });
      })]));
    grid.append(h("table", { class: "qscope-attr-grid", dataset: { qscope: "attribution-grid" } }, [head, ...body]));
  }

  /** @param {import("./model").AttributionData} a */
  function drawList(a) {
    const rows = a.top || [];
    list.append(h("div", { class: "qscope-col-title", text: "top nodes" }), ...rows.map((n) => h("div", {
      class: `qscope-attr-node${n.kind === "error" ? " qscope-attr-error" : ""}`,
      dataset: { qscope: "attribution-node", kind: n.kind, layer: n.layer, position: n.position, feature: n.feature, attribution: n.attribution },
      tabindex: n.kind === "feature" ? "0" : null,
      title: n.kind === "feature" ? "select this feature" : "reconstruction error: what the SAE does not explain",
      onclick: () => select(n.layer, n.feature),
      onkeydown: (/** @type {KeyboardEvent} */ ev) => { if (ev.key === "Enter") select(n.layer, n.feature); },
    }, [
      h("span", { class: "qscope-num", text: fmt(n.attribution) }),
      h("span", { class: "qscope-mono", text: ` L${n.layer} #${n.position} ` }),
      h("span", { class: "qscope-mono" }, [visibleToken(n.token).node]),
      n.kind === "feature" ? h("button", {
        class: "qscope-btn qscope-attr-pin", text: "pin", title: "pin to the explorer's steering sliders",
        dataset: { qscope: "attribution-pin", layer: n.layer, feature: n.feature },
        onclick: (/** @type {Event} */ ev) => { ev.stopPropagation(); ctx.safe("attribution.pin", () => model.send({ type: "pin", layer: n.layer, feature: n.feature })); },
      }) : "",
      h("span", { text: n.kind === "error" ? " error" : ` f${n.feature} ${n.label || ""}` }),
    ])));
  }

  /** @param {import("./model").AttributionData} a */
  function drawGraph(a) {
    const g = a.graph || { nodes: [], edges: [] };
    if (!g.nodes.length) return;
    const layers = [...new Set(g.nodes.map((n) => n.layer))].sort((x, y) => y - x);  // target (top layer) first
    const cols = Math.max(1, Number((a.shape || [0, 1])[1]));  // columns line up with the grid's positions
    const W = SVG_W, H = PAD * 2 + ROW_H * Math.max(0, layers.length - 1), colW = (W - 2 * PAD) / cols;
    const x = (/** @type {number} */ p) => PAD + colW * (p + 0.5);
    const y = (/** @type {number} */ l) => PAD + ROW_H * layers.indexOf(l);
    const feat = g.nodes.filter((n) => n.kind !== "target");
    const maxA = Math.max(1e-12, ...feat.map((n) => Math.abs(n.attribution)));
    // nodes sharing a (layer, position) cell are spread sideways within the column
    const key = (/** @type {import("./model").AttributionNode} */ n) => `${n.layer}/${n.position}`;
    /** @type {Map<string, number>} */
    const count = new Map();
    for (const n of g.nodes) count.set(key(n), (count.get(key(n)) || 0) + 1);
    /** @type {Map<string, number>} */
    const seen = new Map();
    /** @type {Map<string, [number, number]>} */
    const at = new Map();
    for (const n of g.nodes) {
      const i = seen.get(key(n)) || 0, m = count.get(key(n)) || 1;
      seen.set(key(n), i + 1);
      const step = Math.min(2 * R_MAX, (colW * 1.6) / m);
      at.set(String(n.id), [x(n.position) + (i - (m - 1) / 2) * step, y(n.layer)]);
    }
    const maxW = Math.max(1e-12, ...g.edges.map((e) => Math.abs(e[2])));
    const svg = h("svg:svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": "attribution graph" });
    for (const l of layers) {
      svg.append(h("svg:text", { x: 2, y: y(l) + 4, class: "qscope-attr-axis", text: l === Math.max(...layers) && g.nodes.some((n) => n.kind === "target" && n.layer === l) ? "out" : `L${l}` }));
    }
    for (const [s, t, w] of g.edges) {
      const p = at.get(s), q = at.get(t);
      if (!p || !q) continue;
      svg.append(h("svg:line", {
        x1: p[0], y1: p[1], x2: q[0], y2: q[1], class: `qscope-attr-edge ${w >= 0 ? "qscope-pos" : "qscope-neg"}`,
        "stroke-width": (0.5 + 3.5 * Math.abs(w) / maxW).toFixed(2), dataset: { source: s, target: t, weight: w },
      }));
    }
    for (const n of g.nodes) {
      const [cx, cy] = /** @type {[number, number]} */ (at.get(String(n.id)));
      const isTarget = n.kind === "target";
      const r = isTarget ? R_MAX : R_MIN + (R_MAX - R_MIN) * Math.sqrt(Math.abs(n.attribution) / maxA);
      const fill = isTarget ? null : css(diverging(n.attribution / maxA));
      const node = h("svg:circle", {
        cx: cx.toFixed(1), cy: cy.toFixed(1), r: r.toFixed(2),
        class: `qscope-attr-gnode qscope-attr-${n.kind}`, style: fill ? { fill } : {},
        dataset: { qscope: "graph-node", id: n.id, kind: n.kind, layer: n.layer, feature: n.feature },
        onclick: () => select(n.layer, n.feature),
      }, [h("svg:title", { text: isTarget ? `${n.label}: ${fmt(n.activation)}` : `${n.id} ${n.label || ""}: ${fmt(n.attribution)}` })]);
      svg.append(node);
    }
    graph.append(h("div", { class: "qscope-col-title", text: `graph: ${g.nodes.length - 1} nodes, ${g.edges.length} edges` }), svg);
  }

  function drawCheck() {
    const c = model.get("attribution_check") || {};
    clear(check);
    if (c.running) { check.append(h("span", { class: "qscope-muted", text: " ablating…" })); return; }
    if (c.error) { check.append(h("span", { class: "qscope-attr-errmsg", text: ` ${c.error}` })); return; }
    if (c.rows == null) return;
    const sp = c.spearman == null ? "–" : fmt(c.spearman);
    check.append(
      h("span", { dataset: { qscope: "spearman" }, text: ` Spearman ${sp}` }),
      h("span", { class: "qscope-muted", text: ` · Pearson ${c.pearson == null ? "–" : fmt(c.pearson)} over ${c.n} feature nodes` }),
      h("table", { class: "qscope-attr-check-table" }, [
        h("tr", {}, ["node", "estimate", "true effect"].map((t) => h("th", { text: t }))),
        ...c.rows.map((r) => h("tr", { dataset: { qscope: "verify-row" } }, [
          h("td", { class: "qscope-mono", text: `L${r.layer} #${r.position} f${r.feature}` }),
          h("td", { class: "qscope-num", text: fmt(r.estimate) }), h("td", { class: "qscope-num", text: fmt(r.true_effect) }),
        ])),
      ]),
    );
  }

  ctx.onResult("attribution", () => draw());
  ctx.on("change:attribution_check", "attribution.check", () => drawCheck());
  draw();
  return el;
}
