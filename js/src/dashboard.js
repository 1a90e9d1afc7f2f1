// A feature's dashboard: everything the feature index knows about one feature (label, stats, histogram, token
// lists, top contexts and sampled contexts by activation range), a box to try your own text, and contexts that
// open in the explorer when clicked. Drawn by the standalone FeatureDashboard (_view "feature", trait `data`) and
// by the Explorer's `dashboard` panel (trait `dashboard`): both get the same dict from Python
// (widgets/dashboard_data.py `feature_data`).
import { cellColor } from "./colors.js";
import { h, clear, fmt, pct, visibleToken, featureUrl } from "./dom.js";
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

/** What a click on a context sends back: just enough to rebuild its text. @param {any} c */
export function contextPayload(c) {
  /** @type {Record<string, any>} */
  const out = { tokens: (c.tokens || []).map(String), center: Number(c.center) };
  if (Array.isArray(c.token_ids) && c.token_ids.length) out.token_ids = c.token_ids.map(Number);
  return out;
}

/**
 * One context row: tokens shaded by the feature's activation, the activating token in <mark>. With `onOpen`,
 * a click (or Enter / Space) opens it in the explorer.
 * @param {any} c @param {number} max @param {{kind?: string, onOpen?: (c: any) => void}} [opts]
 */
export function contextEl(c, max, opts = {}) {
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
  const open = opts.onOpen;
  const row = h("div", {
    class: `qscope-context${open ? " qscope-clickable" : ""}`,
    dataset: { qscope: "context", rank: c.rank, kind: opts.kind || "top" },
    role: open ? "button" : null, tabindex: open ? "0" : null,
    title: open ? "open this context in the explorer (its text as the prompt, the activating token selected)" : null,
  }, [h("span", { class: "qscope-num qscope-context-act", text: fmt(Number(c.activation)) }), text]);
  if (open) {
    row.addEventListener("click", () => open(c));
    row.addEventListener("keydown", (ev) => {
      if (ev.target === row && (ev.key === "Enter" || ev.key === " ")) { ev.preventDefault(); open(c); }
    });
  }
  return row;
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

/** The colour-scale top of a card's contexts. @param {any} d */
export function cardMax(d) {
  const rows = [...(d.contexts || []), ...(d.bands || []).flatMap((/** @type {any} */ b) => b.contexts || [])];
  return Math.max(Number(d.max_activation) || 0, ...rows.flatMap((c) => (c.acts || []).map(Number).filter(Number.isFinite)));
}

/**
 * The sampled contexts in activation bands (highest first), or the note saying why there are none.
 * @param {any} d @param {number} max @param {(c: any) => void} onOpen
 */
function bandsEl(d, max, onOpen) {
  const bands = /** @type {any[]} */ (d.bands || []);
  const note = String(d.bands_note || "");
  const wrap = h("div", { class: "qscope-section qscope-bands", dataset: { qscope: "bands" } }, [
    h("div", { class: "qscope-section-title", text: "by activation range (random sample)" }),
  ]);
  if (!bands.length) {
    wrap.append(h("div", { class: "qscope-muted", dataset: { qscope: "bands-note" }, text: note || "no sampled contexts" }));
    return wrap;
  }
  for (const b of bands) {
    const ctxs = /** @type {any[]} */ (b.contexts || []);
    wrap.append(h("div", { class: "qscope-band", dataset: { qscope: "band", lo: b.lo, hi: b.hi } }, [
      h("div", { class: "qscope-band-head" }, [
        h("span", { class: "qscope-band-label", text: String(b.label || "") }),
        h("span", { class: "qscope-muted", text: ` · ${Number(b.count) || 0} sampled · ${fmt(Number(b.min))}–${fmt(Number(b.max))}` }),
      ]),
      ...(ctxs.length ? ctxs.map((c) => contextEl(c, max, { kind: "band", onOpen }))
        : [h("div", { class: "qscope-muted", text: "none sampled in this range" })]),
    ]));
  }
  return wrap;
}

/**
 * The card's nodes (everything but the try box).
 * @param {any} d the dashboard dict
 * @param {{layer: number, feature: number, url: string, onPin: () => void, onOpen: (c: any) => void}} o
 * @returns {HTMLElement[]}
 */
function cardNodes(d, o) {
  /** @type {HTMLElement[]} */
  const out = [];
  const pin = h("button", {
    type: "button", class: "qscope-btn qscope-primary", dataset: { qscope: "pin" }, title: "pin into the explorer's steering",
    onclick: o.onPin,
  }, ["pin to explorer"]);
  out.push(h("div", { class: "qscope-dash-head" }, [
    h("span", { class: "qscope-dash-id qscope-mono", text: `L${o.layer} #${o.feature}` }),
    o.url ? h("a", { class: "qscope-link", href: o.url, target: "_blank", rel: "noopener noreferrer" }, ["feature page ↗"]) : null,
    pin,
  ]));
  if (!Object.keys(d).length || d.label == null) {
    out.push(h("div", { class: "qscope-muted", text: "no index data for this feature" }));
    return out;
  }
  if (d.explanation) out.push(h("div", { class: "qscope-explanation", text: String(d.explanation) }));
  out.push(h("div", { class: d.explanation ? "qscope-label qscope-muted" : "qscope-label", text: String(d.label || "") }));
  if (d.scored_label != null) {  // the index's scored label (index/labels.py) with its detection F1 and weak flag
    const scored = d.label_score != null && Number.isFinite(Number(d.label_score));
    out.push(h("div", { class: "qscope-scored-label", dataset: { qscope: "scored-label" } }, [
      h("span", { class: "qscope-muted", text: "scored label " }),
      h("span", { class: "qscope-label", text: scored ? String(d.scored_label) : String(d.label || "") }),
      " ", ...labelScoreBadges(d),
      !scored && d.label_weak !== true ? h("span", { class: "qscope-muted", text: " (unscored)" }) : null,
    ]));
  }

  const q = d.quantiles || {};
  const stat = (/** @type {string} */ k, /** @type {string} */ v, /** @type {string} */ t) =>
    h("div", { class: "qscope-stat", title: t }, [h("span", { class: "qscope-muted", text: k }), h("span", { class: "qscope-num", text: v })]);
  out.push(h("div", { class: "qscope-stats", dataset: { qscope: "stats" } }, [
    stat("density", pct(Number(d.density)), "fraction of scanned tokens where it fires"),
    stat("count", String(d.count ?? "–"), "tokens where it fired"),
    stat("mean", fmt(Number(d.mean_activation)), "mean activation when firing"),
    stat("max", fmt(Number(d.max_activation)), "largest activation seen"),
    stat("q50", fmt(Number(q.q50)), "median activation when firing"),
    stat("q90", fmt(Number(q.q90)), "90th percentile"),
    stat("q99", fmt(Number(q.q99)), "99th percentile"),
  ]));

  let logCounts = true;
  const logBox = /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", dataset: { qscope: "log-counts" } }));
  logBox.checked = logCounts;
  const histWrap = h("div", { class: "qscope-hist-wrap" }, [histogramSvg(d.hist, logCounts)]);
  logBox.addEventListener("change", () => {
    logCounts = logBox.checked;
    clear(histWrap);
    histWrap.append(histogramSvg(d.hist, logCounts));
  });
  out.push(h("div", { class: "qscope-section" }, [
    h("div", { class: "qscope-section-title" }, ["activation histogram ", h("label", { class: "qscope-check qscope-muted" }, [logBox, " log counts"])]),
    histWrap,
  ]));

  out.push(h("div", { class: "qscope-token-lists" }, [
    tokenList("fires on", (d.top_tokens || []).slice(0, 10), "qscope-top-tokens"),
    tokenList("promotes", d.promoted || [], "qscope-promoted"),
    tokenList("suppresses", d.suppressed || [], "qscope-suppressed"),
  ]));

  const groups = Object.entries(d.groups || {});
  if (groups.length) {
    out.push(h("div", { class: "qscope-section qscope-groups" }, [
      h("div", { class: "qscope-section-title", text: "share of activation by corpus group" }),
      ...groups.map(([g, share]) => h("div", { class: "qscope-row-bar" }, [
        h("span", { class: "qscope-group-name", text: g }),
        h("span", { class: "qscope-bar" }, [h("span", { class: "qscope-bar-fill", style: { width: `${Math.max(0, Math.min(1, Number(share))) * 100}%` } })]),
        h("span", { class: "qscope-num", text: pct(Number(share)) }),
      ])),
    ]));
  }

  const contexts = /** @type {any[]} */ (d.contexts || []);
  const max = cardMax(d);
  out.push(h("div", { class: "qscope-context-cols" }, [
    h("div", { class: "qscope-section qscope-contexts" }, [
      h("div", { class: "qscope-section-title", text: `top contexts (${contexts.length})` }),
      ...(contexts.length ? contexts.map((c) => contextEl(c, max, { kind: "top", onOpen: o.onOpen }))
        : [h("div", { class: "qscope-muted", text: "no contexts" })]),
    ]),
    bandsEl(d, max, o.onOpen),
  ]));
  return out;
}

export const EMPTY_TEXT = "the text to try is empty: type a sentence to see where this feature fires on it";

/**
 * The try-your-own box: Enter (without Shift) or the button sets `dashboard_text`; the row Python sends back
 * (`dashboard_try`) is drawn by `draw`, only for the result the view draws (never a stale one).
 * @param {import("./context.js").Context} ctx @param {(c: any) => void} onOpen @param {() => number} max
 */
function createTryBox(ctx, onOpen, max) {
  const { model } = ctx;
  const box = /** @type {HTMLTextAreaElement} */ (h("textarea", {
    class: "qscope-try-text", dataset: { qscope: "try-text" }, rows: "2", spellcheck: "false",
    "aria-label": "try your own text", placeholder: "Try your own text: Enter runs it (Shift+Enter: new line)",
  }));
  const error = h("div", { class: "qscope-error", dataset: { qscope: "try-error" }, role: "alert" });
  const result = h("div", { class: "qscope-try-result", dataset: { qscope: "try-result" } });
  const submit = () => ctx.safe("dashboard.try", () => {
    const text = box.value;
    if (!text.trim()) {  // said here at once; Python says the same for a text of only spaces
      error.textContent = EMPTY_TEXT;
      clear(result);
      if (model.get("dashboard_text")) { model.set("dashboard_text", ""); model.save_changes(); }
      return;
    }
    error.textContent = "";
    if (text === model.get("dashboard_text")) return;  // already run: its row is shown
    result.dataset.pending = "true";
    model.set("dashboard_text", text);
    model.save_changes();
  });
  box.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); submit(); }
  });
  const run = h("button", { type: "button", class: "qscope-btn", dataset: { qscope: "try-run" }, onclick: submit }, ["run"]);
  const el = h("div", { class: "qscope-section qscope-try", dataset: { qscope: "try" } }, [
    h("div", { class: "qscope-section-title", text: "try your own text" }),
    h("div", { class: "qscope-try-row" }, [box, run]), error, result,
  ]);

  function draw() {
    const row = /** @type {any} */ (model.get("dashboard_try") || {});
    const text = String(model.get("dashboard_text") ?? "");
    if (document.activeElement !== box && text && box.value !== text) box.value = text;
    clear(result);
    delete result.dataset.pending;
    if (!row || !Object.keys(row).length) { if (error.textContent !== EMPTY_TEXT) error.textContent = ""; return; }
    error.textContent = row.error ? String(row.error) : "";
    if (row.error || !row.tokens) return;
    const where = Number(row.center);
    const fires = Number(row.activation) > 0;
    result.append(
      h("div", { class: "qscope-muted qscope-try-summary", dataset: { qscope: "try-summary" } }, fires ? [
        `max ${fmt(Number(row.activation))} on `,
        h("span", { class: "qscope-mono" }, [visibleToken(String((row.tokens || [])[where] ?? "")).node]),
        ` (token ${where})`,
      ] : [`does not fire on this text (max 0 over ${(row.tokens || []).length} tokens)`]),
      contextEl(row, Math.max(max(), Number(row.activation) || 0), { kind: "try", onOpen }),
    );
  }
  return { el, draw };
}

/**
 * The dashboard's element over one model: the card from `cardTrait`, the try box, clicks on contexts.
 * @param {import("./context.js").Context} ctx
 * @param {{card: () => any, layerFeature: () => [number, number], onPin: () => void,
 *          openMessage: (c: any) => Record<string, any>, emptyText?: () => string}} o
 */
function dashboardElement(ctx, o) {
  const { model } = ctx;
  const body = h("div", { class: "qscope-dash-body" });
  const onOpen = (/** @type {any} */ c) => ctx.safe("dashboard.open", () => model.send(o.openMessage(contextPayload(c))));
  const tryBox = createTryBox(ctx, onOpen, () => cardMax(o.card() || {}));
  const el = h("div", { class: "qscope-dashboard", dataset: { qscope: "feature-dashboard" } }, [body, tryBox.el]);
  function draw() {
    const d = o.card() || {};
    clear(body);
    const [layer, feature] = o.layerFeature();
    const empty = !Object.keys(d).length && o.emptyText ? o.emptyText() : "";
    el.dataset.feature = empty ? "" : String(feature);
    tryBox.el.hidden = Boolean(empty);
    if (empty) {
      body.append(h("div", { class: "qscope-muted qscope-dash-empty", dataset: { qscope: "dashboard-empty" }, text: empty }));
      return;
    }
    const url = String(d.url || "") || featureUrl(String(model.get("feature_url") || ""), layer, feature);
    body.append(...cardNodes(d, { layer, feature, url, onPin: () => ctx.safe("dashboard.pin", o.onPin), onOpen }));
  }
  return { el, draw, drawTry: tryBox.draw };
}

/** The standalone FeatureDashboard (_view "feature"). @param {import("./context.js").Context} ctx @param {HTMLElement} root */
export function renderDashboard(ctx, root) {
  const { model } = ctx;
  const dash = dashboardElement(ctx, {
    card: () => model.get("data") || {},
    layerFeature: () => {
      const d = model.get("data") || {};
      return [Number(d.layer ?? model.get("layer")), Number(d.feature ?? model.get("feature"))];
    },
    onPin: () => model.send({ type: "pin" }),
    openMessage: (c) => ({ type: "open_context", context: c }),
  });
  root.append(dash.el, createStatus(ctx));
  ctx.on("change:data", "dashboard", dash.draw);
  ctx.safe("dashboard", dash.draw);
  ctx.onResult("dashboard.try", dash.drawTry);
  ctx.on("change:dashboard_try", "dashboard.try", () => { if (ctx.current()) dash.drawTry(); });
}

/** The Explorer's `dashboard` panel: the selected feature's dashboard. @param {import("./context.js").Context} ctx */
export function createDashboard(ctx) {
  const { model } = ctx;
  const cur = () => {
    const d = model.get("dashboard") || {};
    return /** @type {[number, number]} */ ([Number(d.layer ?? model.get("layer")), Number(d.feature ?? model.get("selected_feature"))]);
  };
  const dash = dashboardElement(ctx, {
    card: () => model.get("dashboard") || {},
    layerFeature: cur,
    onPin: () => { const [layer, feature] = cur(); model.send({ type: "pin", layer, feature }); },
    openMessage: (c) => { const [layer, feature] = cur(); return { type: "open_context", layer, feature, context: c }; },
    emptyText: () => {
      const f = Number(model.get("selected_feature") ?? -1);
      return f < 0 ? "Click a feature to see its dashboard: a sidebar row, a feature in a token's tooltip, a search result, or a pinned feature's name."
        : `loading the dashboard of L${Number(model.get("layer"))} #${f}… (a page saved without a kernel has only the dashboard shown when it was saved)`;
    },
  });
  // a result that left the dashboard as it was (a token click) keeps the drawn card: its histogram toggle, its
  // scroll position, no DOM rebuilt; the selected feature without a card ("loading…") is redrawn
  /** @type {any} */
  let drawnCard = null;
  /** @type {any} */
  let drawnTry = null;
  const drawCard = () => {
    const d = model.get("dashboard");
    const key = Object.keys(d || {}).length ? d : `${model.get("selected_feature")}`;
    if (key !== drawnCard) { drawnCard = key; dash.draw(); }
  };
  const drawTry = () => {
    const row = model.get("dashboard_try");
    if (row !== drawnTry) { drawnTry = row; dash.drawTry(); }
  };
  ctx.onResult("dashboard", () => { drawCard(); drawTry(); });
  ctx.on("change:dashboard", "dashboard", () => { if (ctx.current()) drawCard(); });
  ctx.on("change:dashboard_try", "dashboard.try", () => { if (ctx.current()) drawTry(); });
  ctx.on("change:selected_feature", "dashboard", () => { if (!Object.keys(model.get("dashboard") || {}).length) drawCard(); });
  return dash.el;
}
