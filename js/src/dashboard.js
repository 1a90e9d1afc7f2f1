// FeatureDashboard (_view "feature"): everything the feature index knows about one feature.
import { cellColor } from "./colors.js";
import { h, clear, fmt, pct, visibleToken } from "./dom.js";
import { createStatus } from "./status.js";
import { labelScoreBadges } from "./labels.js";

/**
 * The activation histogram as inline SVG. The x axis covers only the bins that hold counts (the index's bins
 * span 0.001..1000 for every feature; a feature firing at 3..60 gets an axis of 3..60), ticked at round values;
 * the y axis is labelled with 0 and the top count.
 * @param {{edges?: number[], counts?: number[]}} hist @param {boolean} logCounts
 */
export function histogramSvg(hist, logCounts) {
  const allCounts = (hist?.counts || []).map(Number);
  const allEdges = (hist?.edges || []).map(Number);
  const W = 320, H = 90, padB = 14, padL = 34;
  const svg = h("svg:svg", {
    viewBox: `0 0 ${W + padL} ${H + padB}`, width: "100%", class: "qscope-hist", dataset: { qscope: "histogram", scale: logCounts ? "log" : "linear" },
    role: "img", "aria-label": `activation histogram (${logCounts ? "log" : "linear"} counts)`,
    preserveAspectRatio: "none",
  });
  const first = allCounts.findIndex((c) => c > 0);
  let last = -1;
  allCounts.forEach((c, i) => { if (c > 0) last = i; });
  if (first < 0 || allEdges.length !== allCounts.length + 1) {
    svg.append(h("svg:text", { x: (W + padL) / 2, y: H / 2, "text-anchor": "middle", class: "qscope-svg-text", text: "no activations recorded" }));
    return svg;
  }
  const counts = allCounts.slice(first, last + 1);
  const edges = allEdges.slice(first, last + 2);
  const n = counts.length;
  const f = (/** @type {number} */ c) => (logCounts ? Math.log10(1 + c) : c);
  const maxCount = Math.max(...counts);
  const top = f(maxCount);
  const bw = W / n;
  const g = h("svg:g", { transform: `translate(${padL},0)` });
  counts.forEach((c, i) => {
    const bh = (f(c) / top) * H;
    const rect = h("svg:rect", {
      x: (i * bw).toFixed(2), y: (H - bh).toFixed(2), width: Math.max(0.5, bw - 0.5).toFixed(2), height: bh.toFixed(2),
      class: "qscope-hist-bar", dataset: { count: c },
    });
    rect.append(h("svg:title", { text: `${fmt(edges[i])} – ${fmt(edges[i + 1])}: ${c}` }));
    g.append(rect);
  });
  // x ticks: the ends of the shown range and up to three edges between them
  const ticks = new Set([0, n]);
  const step = Math.max(1, Math.round(n / 4));
  for (let i = step; i < n - step / 2; i += step) ticks.add(i);
  for (const i of [...ticks].sort((a, b) => a - b)) {
    g.append(h("svg:line", { x1: i * bw, x2: i * bw, y1: H, y2: H + 3, class: "qscope-svg-axis" }));
    const anchor = i === 0 ? "start" : i === n ? "end" : "middle";
    g.append(h("svg:text", { x: i * bw, y: H + padB - 1, "text-anchor": anchor, class: "qscope-svg-text", dataset: { qscope: "x-tick" }, text: fmt(edges[i], 2) }));
  }
  g.append(h("svg:line", { x1: 0, x2: W, y1: H, y2: H, class: "qscope-svg-axis" }));
  // y axis: 0 and the top count
  g.append(h("svg:line", { x1: 0, x2: 0, y1: 0, y2: H, class: "qscope-svg-axis" }));
  svg.append(g,
    h("svg:text", { x: padL - 3, y: H, "text-anchor": "end", class: "qscope-svg-text", dataset: { qscope: "y-tick" }, text: "0" }),
    h("svg:text", { x: padL - 3, y: 8, "text-anchor": "end", class: "qscope-svg-text", dataset: { qscope: "y-tick" }, text: fmt(maxCount) }));
  return svg;
}

/** One top context: tokens shaded by the feature's activation, the activating token in <mark>.
 * @param {any} c @param {number} max */
export function contextEl(c, max) {
  const tokens = (c.tokens || []).map(String);
  const acts = (c.acts || []).map(Number);
  const center = Number(c.center);
  const text = h("span", { class: "qscope-context-text" });
  tokens.forEach((/** @type {string} */ tok, /** @type {number} */ i) => {
    const { node } = visibleToken(tok);
    const color = cellColor(acts[i], [0, max], "sequential");
    const attrs = {
      class: "qscope-ctx-token", dataset: { act: acts[i] }, title: fmt(acts[i]),
      style: color ? { backgroundColor: color.bg, color: color.fg } : {},
    };
    text.append(h(i === center ? "mark" : "span", attrs, [node]));
  });
  return h("div", { class: "qscope-context", dataset: { qscope: "context", rank: c.rank } }, [
    h("span", { class: "qscope-num qscope-context-act", text: fmt(Number(c.activation)) }), text,
  ]);
}

/** @param {string} title @param {string[]} items @param {string} cls */
function tokenList(title, items, cls) {
  return h("div", { class: `qscope-token-list ${cls}` }, [
    h("div", { class: "qscope-col-title", text: title }),
    h("div", {}, items.length
      ? items.map((t) => h("span", { class: "qscope-chip qscope-mono" }, [visibleToken(String(t)).node]))
      : [h("span", { class: "qscope-muted", text: "–" })]),
  ]);
}

/** @param {import("./context.js").Context} ctx @param {HTMLElement} root */
export function renderDashboard(ctx, root) {
  const { model } = ctx;
  let logCounts = true;
  const body = h("div", { class: "qscope-dash-body" });
  const el = h("div", { class: "qscope-dashboard", dataset: { qscope: "feature-dashboard" } }, [body, createStatus(ctx)]);
  root.append(el);

  function draw() {
    const d = model.get("data") || {};
    const layer = Number(d.layer ?? model.get("layer")), feature = Number(d.feature ?? model.get("feature"));
    clear(body);
    const pin = h("button", {
      type: "button", class: "qscope-btn qscope-primary", dataset: { qscope: "pin" }, title: "pin into the linked explorer's steering",
      onclick: () => ctx.safe("dashboard.pin", () => model.send({ type: "pin" })),
    }, ["pin to explorer"]);
    const url = String(d.url || "");
    body.append(h("div", { class: "qscope-dash-head" }, [
      h("span", { class: "qscope-dash-id qscope-mono", text: `L${layer} #${feature}` }),
      url ? h("a", { class: "qscope-link", href: url, target: "_blank", rel: "noopener noreferrer" }, ["feature page ↗"]) : null,
      pin,
    ]));
    if (!Object.keys(d).length || d.label == null) {
      body.append(h("div", { class: "qscope-muted", text: "no index data for this feature" }));
      return;
    }
    if (d.explanation) body.append(h("div", { class: "qscope-explanation", text: String(d.explanation) }));
    body.append(h("div", { class: d.explanation ? "qscope-label qscope-muted" : "qscope-label", text: String(d.label || "") }));
    if (d.scored_label != null) {  // the index's scored label (index/labels.py) with its detection F1 and weak flag
      const scored = d.label_score != null && Number.isFinite(Number(d.label_score));
      body.append(h("div", { class: "qscope-scored-label", dataset: { qscope: "scored-label" } }, [
        h("span", { class: "qscope-muted", text: "scored label " }),
        h("span", { class: "qscope-label", text: scored ? String(d.scored_label) : String(d.label || "") }),
        " ", ...labelScoreBadges(d),
        !scored && d.label_weak !== true ? h("span", { class: "qscope-muted", text: " (unscored)" }) : null,
      ]));
    }

    const q = d.quantiles || {};
    const stat = (/** @type {string} */ k, /** @type {string} */ v, /** @type {string} */ t) =>
      h("div", { class: "qscope-stat", title: t }, [h("span", { class: "qscope-muted", text: k }), h("span", { class: "qscope-num", text: v })]);
    body.append(h("div", { class: "qscope-stats", dataset: { qscope: "stats" } }, [
      stat("density", pct(Number(d.density)), "fraction of scanned tokens where it fires"),
      stat("count", String(d.count ?? "–"), "tokens where it fired"),
      stat("mean", fmt(Number(d.mean_activation)), "mean activation when firing"),
      stat("max", fmt(Number(d.max_activation)), "largest activation seen"),
      stat("q50", fmt(Number(q.q50)), "median activation when firing"),
      stat("q90", fmt(Number(q.q90)), "90th percentile"),
      stat("q99", fmt(Number(q.q99)), "99th percentile"),
    ]));

    const logBox = /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", dataset: { qscope: "log-counts" } }));
    logBox.checked = logCounts;
    const histWrap = h("div", { class: "qscope-hist-wrap" }, [histogramSvg(d.hist, logCounts)]);
    logBox.addEventListener("change", () => ctx.safe("dashboard.hist", () => {
      logCounts = logBox.checked;
      clear(histWrap);
      histWrap.append(histogramSvg(d.hist, logCounts));
    }));
    body.append(h("div", { class: "qscope-section" }, [
      h("div", { class: "qscope-section-title" }, ["activation histogram ", h("label", { class: "qscope-check qscope-muted" }, [logBox, " log counts"])]),
      histWrap,
    ]));

    body.append(h("div", { class: "qscope-token-lists" }, [
      tokenList("fires on", (d.top_tokens || []).slice(0, 10), "qscope-top-tokens"),
      tokenList("promotes", d.promoted || [], "qscope-promoted"),
      tokenList("suppresses", d.suppressed || [], "qscope-suppressed"),
    ]));

    const groups = Object.entries(d.groups || {});
    if (groups.length) {
      body.append(h("div", { class: "qscope-section qscope-groups" }, [
        h("div", { class: "qscope-section-title", text: "share of activation by corpus group" }),
        ...groups.map(([g, share]) => h("div", { class: "qscope-row-bar" }, [
          h("span", { class: "qscope-group-name", text: g }),
          h("span", { class: "qscope-bar" }, [h("span", { class: "qscope-bar-fill", style: { width: `${Math.max(0, Math.min(1, Number(share))) * 100}%` } })]),
          h("span", { class: "qscope-num", text: pct(Number(share)) }),
        ])),
      ]));
    }

    const contexts = /** @type {any[]} */ (d.contexts || []);
    const max = Math.max(Number(d.max_activation) || 0, ...contexts.flatMap((c) => (c.acts || []).map(Number).filter(Number.isFinite)));
    body.append(h("div", { class: "qscope-section qscope-contexts" }, [
      h("div", { class: "qscope-section-title", text: `top contexts (${contexts.length})` }),
      ...(contexts.length ? contexts.map((c) => contextEl(c, max)) : [h("div", { class: "qscope-muted", text: "no contexts" })]),
    ]));
  }

  ctx.on("change:data", "dashboard", draw);
  ctx.safe("dashboard", draw);
}
