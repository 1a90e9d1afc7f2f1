"""The static fallback in a widget's display output: plain HTML, no JavaScript, from the synced traits alone.

A notebook front end with the widget manager draws the live widget (the widget-view mimetype ranks first); a
renderer that cannot run widgets (GitHub, nbconvert without the widget state, an untrusted notebook in
JupyterLab) shows this instead of "Error displaying widget" or a bare repr. Built from the traits the page
already has (no model run), so it costs a few milliseconds per display and stays a few kilobytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import html as H

TOOLTIP_FEATURES = 5


def _floats(b: bytes) -> np.ndarray:
    return np.frombuffer(bytes(b), dtype="<f4")


def _ints(b: bytes) -> np.ndarray:
    return np.frombuffer(bytes(b), dtype="<i4")


def _get(w: Any, name: str, default: Any) -> Any:
    """A trait the view may not have (a component view syncs only its panels' traits)."""
    return getattr(w, name) if w.has_trait(name) else default


def explorer_html(w: Any) -> str:
    """A panel view as it is drawn now: heatmap (tooltips: each token's top features), sidebar, next tokens."""
    parts = []
    tokens = list(_get(w, "tokens", []))
    sidebar = list(_get(w, "sidebar", []))
    if tokens:
        values = _floats(w.token_values)
        labels = {int(r["feature"]): str(r.get("label") or "") for r in sidebar}
        k = int(w.k)
        ids, codes = _ints(w.codes_ids), _floats(w.codes_values)
        titles = []
        for i, tok in enumerate(tokens):
            row = [(int(ids[j]), float(codes[j])) for j in range(i * k, min((i + 1) * k, len(ids), len(codes)))
                   if codes[j] != 0][:TOOLTIP_FEATURES]
            feats = ", ".join(f"#{f}{' ' + labels[f] if labels.get(f) else ''} {H.fmt(v)}" for f, v in row)
            titles.append(f"#{i} {tok!r} · {feats or 'no active features'}")
        lo, hi = (list(w.value_range) + [0.0, 1.0])[:2]
        if lo < 0:  # a diff range: the widget rescales the magnitudes (docs/widget-contract.md)
            lo, hi = 0.0, H.scale_max(values)
        color_by, feature = _get(w, "color_by", "strongest"), _get(w, "selected_feature", -1)
        caption = {"feature": f"feature {feature} activation", "error": "reconstruction error"}.get(
            color_by, "strongest feature")
        if color_by == "feature" and feature < 0:
            caption = "strongest feature"
        parts.append(H.legend(lo, hi, caption) + H.token_strip(tokens, values.tolist(), lo=lo, hi=hi, titles=titles,
                                                               attrs='data-qscope="static-heatmap"'))
    side = ""
    if w.has_trait("sidebar"):
        side = (f'<div><div style="color:#555">{H.esc(_get(w, "sidebar_title", ""))}</div>'
                + H.table(["feature", "label", "activation", "density"],
                          [(f"#{r['feature']}", r.get("label") or "", H.fmt(r.get("activation")),
                            "–" if r.get("density") is None else f"{100 * float(r['density']):.2g}%")
                           for r in sidebar], attrs='data-qscope="static-sidebar"') + "</div>")
    nxt = ""
    nt = _get(w, "next_tokens", {}) or {}
    edits = list(_get(w, "edits", []))
    if nt.get("baseline"):
        nxt = H.table(["next token (baseline)", "p"], [(H.visible_text(t), f"{100 * p:.1f}%")
                                                       for t, p in nt["baseline"][:5]])
        if any(e.get("enabled", True) and e.get("strength") for e in edits):
            nxt += H.table(["next token (steered)", "p"], [(H.visible_text(t), f"{100 * p:.1f}%")
                                                           for t, p in (nt.get("steered") or [])[:5]])
    steer = "".join(f'<div>steering L{e["layer"]} #{e["feature"]} {H.esc(e.get("mode", "add"))} '
                    f'{H.fmt(e.get("strength"))}{"" if e.get("enabled", True) else " (off)"}</div>' for e in edits)
    body = (f'<div style="color:#555;margin-bottom:4px">prompt: <span style="{H.MONO}">{H.esc(w.prompt[:300])}'
            f'</span></div>{"".join(parts)}<div style="display:flex;gap:24px;flex-wrap:wrap;margin-top:8px">'
            f'{side}<div>{nxt}{steer}</div></div>'
            f'<div style="color:#777;margin-top:6px;font-size:11px">Static snapshot of the view as displayed '
            f'(no kernel). Run the cell for the live view; <code>.to_html(path)</code> saves an '
            f'interactive page.</div>')
    name = "explorer" if w._view == "explorer" else w._view
    return H.box(f"qscope {name} · layer {w.layer}", body, attrs=f'data-qscope="static-{name}"')


def dashboard_html(w: Any) -> str:
    """A feature dashboard: label, statistics, top tokens, promoted / suppressed tokens, top contexts."""
    d = w.data or {}
    q = d.get("quantiles") or {}
    stats = H.table(["density", "count", "mean", "max", "q50", "q90", "q99"],
                    [("–" if d.get("density") is None else f"{100 * float(d['density']):.2g}%", d.get("count", "–"),
                      H.fmt(d.get("mean_activation")), H.fmt(d.get("max_activation")), H.fmt(q.get("q50")),
                      H.fmt(q.get("q90")), H.fmt(q.get("q99")))])
    lists = "".join(f'<div><span style="color:#555">{name}: </span><span style="{H.MONO}">'
                    f'{" ".join(H.visible_token(t) for t in (d.get(key) or [])[:10]) or "–"}</span></div>'
                    for name, key in (("fires on", "top_tokens"), ("promotes", "promoted"),
                                      ("suppresses", "suppressed")))
    contexts = []
    ctxs = d.get("contexts") or []
    top = max([float(d.get("max_activation") or 0.0)] + [float(a) for c in ctxs for a in (c.get("acts") or [])])
    for c in ctxs[:10]:
        contexts.append(H.token_strip([str(t) for t in c.get("tokens", [])], [float(a) for a in c.get("acts", [])],
                                      lo=0.0, hi=top or 1.0))
    body = (f'<div>{H.esc(d.get("explanation") or d.get("label") or "no index data for this feature")}</div>'
            f'{stats}{lists}<div style="color:#555;margin-top:6px">top contexts ({len(ctxs)})</div>{"".join(contexts)}')
    return H.box(f"feature L{w.layer} #{w.feature}", body, attrs='data-qscope="static-dashboard"')


def generic_html(w: Any) -> str:
    return H.box(type(w).__name__, f'<pre style="margin:0">{H.esc(repr(w))}</pre><div style="color:#777">'
                 "Interactive widget: run the cell with a kernel to see it.</div>")


def fallback_html(widget: Any) -> str:
    """The static HTML of whatever widget this is."""
    # duck-typed: the view classes import this package, so it cannot import them
    if getattr(widget, "panels", None) and widget.has_trait("prompt"):
        return explorer_html(widget)
    if getattr(widget, "_view", "") == "feature" and widget.has_trait("data"):
        return dashboard_html(widget)
    return generic_html(widget)
