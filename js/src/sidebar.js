// Feature sidebar: the top features of the selected token (or the whole prompt), each row with its label,
// activation bar, density and two context previews; click a row to colour the heatmap by it, pin it into the
// steering sliders, or search features by id / label text.
import { h, clear, fmt, pct, featureUrl } from "./dom.js";
import { debounce } from "./frame.js";
import { labelScoreBadges } from "./labels.js";
import { openFeature } from "./open_feature.js";

export const SEARCH_DEBOUNCE_MS = 200;

/** @param {import("./context.js").Context} ctx */
export function createSidebar(ctx) {
  const { model } = ctx;

  const title = h("div", { class: "qscope-sidebar-title" });
  const search = /** @type {HTMLInputElement} */ (h("input", {
    type: "search", class: "qscope-search", dataset: { qscope: "search" }, placeholder: 'search: 2360, L3/2360, label, "phrase"', title: 'a feature id (2360, L3/2360), label text, or a quoted phrase: the features that fire on it',
    "aria-label": "search features", autocomplete: "off", spellcheck: "false",
  }));
  const results = h("div", { class: "qscope-search-results", dataset: { qscope: "search-results" } });
  const rowsEl = h("div", { class: "qscope-feature-rows", role: "list" });
  const el = h("div", { class: "qscope-sidebar", dataset: { qscope: "sidebar" } }, [search, results, title, rowsEl]);

  const sendQuery = debounce((/** @type {string} */ q) => ctx.safe("sidebar.search", () => {
    if (q === model.get("search_query")) return;
    model.set("search_query", q);
    model.save_changes();
  }), SEARCH_DEBOUNCE_MS);
  search.addEventListener("input", () => sendQuery(search.value));
  search.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") { ev.preventDefault(); sendQuery(search.value); sendQuery.flush(); }
    if (ev.key === "Escape") { search.value = ""; sendQuery(""); sendQuery.flush(); }
  });
  ctx.onCleanup(() => sendQuery.cancel());

  /** @param {number} feature */
  function selectFeature(feature) {
    const cur = Number(model.get("selected_feature"));
    model.set("selected_feature", feature);
    model.set("color_by", "feature");
    model.save_changes();
    if (cur !== feature) markSelected();
  }

  function markSelected() {
    const sel = Number(model.get("selected_feature"));
    for (const row of rowsEl.querySelectorAll("[data-qscope='feature-row']")) {
      const on = Number(/** @type {HTMLElement} */ (row).dataset.feature) === sel;
      row.classList.toggle("qscope-selected", on);
      row.setAttribute("aria-current", String(on));
    }
  }

  function drawRows() {
    const rows = /** @type {any[]} */ (model.get("sidebar") || []);
    const layer = Number(model.get("layer") ?? 0);
    const url = String(model.get("feature_url") || "");
    title.textContent = String(model.get("sidebar_title") || "");
    clear(rowsEl);
    if (!rows.length) {
      rowsEl.append(h("div", { class: "qscope-muted", text: "no active features" }));
      return;
    }
    const maxAct = Math.max(1e-12, ...rows.map((r) => Number(r.activation) || 0));
    for (const r of rows) {
      const f = Number(r.feature);
      const act = Number(r.activation) || 0;
      const href = featureUrl(url, layer, f);
      const contexts = /** @type {string[]} */ ((r.contexts || []).slice(0, 2));
      const pin = h("button", {
        type: "button", class: "qscope-btn qscope-pin", dataset: { qscope: "pin", feature: f },
        title: r.pinned ? "pinned in the steering panel" : "pin into the steering panel",
        "aria-label": `pin feature ${f}`, disabled: Boolean(r.pinned),
        onclick: (/** @type {Event} */ ev) => ctx.safe("sidebar.pin", () => {
          ev.stopPropagation();
          model.send({ type: "pin", layer, feature: f });
        }),
      }, [r.pinned ? "pinned" : "pin"]);
      const row = h("div", {
        class: "qscope-feature-row", role: "listitem", tabindex: "0", dataset: { qscope: "feature-row", feature: f },
        title: "colour the prompt by this feature",
        onclick: () => ctx.safe("sidebar.select", () => selectFeature(f)),
        onkeydown: (/** @type {KeyboardEvent} */ ev) => {
          if (ev.target === ev.currentTarget && (ev.key === "Enter" || ev.key === " ")) {
            ev.preventDefault();
            ctx.safe("sidebar.select", () => selectFeature(f));
          }
        },
      }, [
        h("div", { class: "qscope-row-head" }, [
          h("span", { class: "qscope-fid qscope-mono", text: `#${f}` }),
          h("span", { class: "qscope-flabel", text: r.label || "(no label)", title: r.label || "" }),
          ...labelScoreBadges(r),
          href ? h("a", {
            class: "qscope-link", href, target: "_blank", rel: "noopener noreferrer", title: "feature page",
            "aria-label": `open feature ${f} page`, onclick: (/** @type {Event} */ ev) => ev.stopPropagation(),
          }, ["↗"]) : null,
          pin,
        ]),
        h("div", { class: "qscope-row-bar" }, [
          h("span", { class: "qscope-bar" }, [
            h("span", { class: "qscope-bar-fill", style: { width: `${Math.max(0, Math.min(100, (act / maxAct) * 100))}%` } }),
          ]),
          h("span", { class: "qscope-num", text: fmt(act) }),
          h("span", { class: "qscope-muted qscope-density", text: `density ${pct(Number(r.density))}`, title: "fraction of corpus tokens where it fires" }),
        ]),
        ...contexts.map((c) => h("div", { class: "qscope-context-preview", text: String(c), title: String(c) })),
      ]);
      rowsEl.append(row);
    }
    markSelected();
  }

  function drawResults() {
    const rows = /** @type {any[]} */ (model.get("search_results") || []);
    const q = String(model.get("search_query") || "");
    clear(results);
    if (!q) { results.hidden = true; return; }
    results.hidden = false;
    const err = String(model.get("search_error") || "");
    if (err) {  // said by the search box, not only in the status line
      results.append(h("div", { class: "qscope-error qscope-search-error", dataset: { qscope: "search-error" }, role: "alert", text: err }));
      return;
    }
    if (!rows.length) {
      results.append(h("div", { class: "qscope-muted", text: `no features match “${q}”` }));
      return;
    }
    for (const r of rows) {
      const layer = Number(r.layer), feature = Number(r.feature);
      const pick = h("button", {
        type: "button", class: "qscope-search-result", dataset: { qscope: "search-result", layer, feature },
        title: "open this feature (select it, colour by it, show its dashboard)",
        onclick: () => ctx.safe("sidebar.search", () => openFeature(ctx, layer, feature)),
      }, [
        h("span", { class: "qscope-mono", text: `L${layer} #${feature}` }),
        h("span", { class: "qscope-flabel", text: r.label || "" }),
        ...labelScoreBadges(r),
        h("span", {
          class: "qscope-muted",
          text: `${r.activation != null ? `fires ${fmt(Number(r.activation))}${r.token != null ? ` on “${String(r.token)}”` : ""} · ` : ""}max ${fmt(Number(r.max_activation))} · ${pct(Number(r.density))}`,
        }),
      ]);
      const pin = h("button", {
        type: "button", class: "qscope-btn", dataset: { qscope: "search-pin", layer, feature }, title: "pin to steer",
        "aria-label": `pin layer ${layer} feature ${feature}`,
        onclick: () => ctx.safe("sidebar.search", () => model.send({ type: "pin", layer, feature })),
      }, ["pin"]);
      results.append(h("div", { class: "qscope-search-row" }, [pick, pin]));
    }
  }

  const syncQuery = () => {
    const q = String(model.get("search_query") || "");
    if (document.activeElement !== search && search.value !== q) search.value = q;
  };

  ctx.onResult("sidebar", drawRows);
  ctx.on("change:sidebar", "sidebar", () => { if (ctx.current()) drawRows(); });
  ctx.on("change:sidebar_title", "sidebar", () => { if (ctx.current()) title.textContent = String(model.get("sidebar_title") || ""); });
  ctx.on("change:selected_feature", "sidebar.select", markSelected);
  ctx.on("change:search_results", "sidebar.results", drawResults);
  ctx.on("change:search_error", "sidebar.results", drawResults);
  ctx.on("change:search_query", "sidebar.results", () => { syncQuery(); drawResults(); });
  syncQuery();
  drawResults();
  return el;
}
