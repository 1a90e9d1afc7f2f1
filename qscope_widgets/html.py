"""Plain HTML renderings of results (no JavaScript, no widget, no network): what GitHub, nbviewer, an e-mail or a
paper's supplement can show.

Core-level on purpose: ``Trace._repr_html_`` and the analysis results call it, so it imports nothing above the core
(no widgets, no anywidget). Colours follow the widget's scales (``js/src/colors.js``: ColorBrewer YlOrBr for
magnitudes, blue-white-orange for signed values) with a black or white text colour, whichever contrasts more;
every coloured cell also carries its exact value in ``data-value`` (and a ``title`` tooltip), so the page can be
checked against the numbers it was made from.
"""

from __future__ import annotations

import html
import math
from typing import Any, Iterable, Sequence

YL_OR_BR = ("#ffffe5", "#fff7bc", "#fee391", "#fec44f", "#fe9929", "#ec7014", "#cc4c02", "#993404", "#662506")
BLUE_ORANGE = ("#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fee0b6", "#fdb863", "#e08214", "#b35806")
MAX_TOKENS = 512  # a longer prompt is cut here, and the cut is said
STYLE = ("font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:13px;line-height:1.45;"
         "color:#222;background:#fff;padding:6px;border:1px solid #ddd;border-radius:4px;max-width:100%;"
         "overflow-x:auto")
MONO = "font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace"


def _rgb(hexcode: str) -> tuple[int, int, int]:
    return int(hexcode[1:3], 16), int(hexcode[3:5], 16), int(hexcode[5:7], 16)


def _interpolate(stops: Sequence[str], t: float) -> tuple[int, int, int]:
    x = min(1.0, max(0.0, t)) * (len(stops) - 1)
    i = min(len(stops) - 2, int(math.floor(x)))
    f = x - i
    a, b = _rgb(stops[i]), _rgb(stops[i + 1])
    return tuple(int(math.floor(a[c] + (b[c] - a[c]) * f + 0.5)) for c in range(3))  # type: ignore[return-value]


def _luminance(rgb: tuple[int, int, int]) -> float:
    lin = [(v / 255 / 12.92) if v / 255 <= 0.03928 else ((v / 255 + 0.055) / 1.055) ** 2.4 for v in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _text_on(rgb: tuple[int, int, int]) -> str:
    lum = _luminance(rgb)
    return "#000" if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else "#fff"


def cell_color(value: float, lo: float, hi: float, diverging: bool = False) -> tuple[str, str] | None:
    """``(background, text colour)`` of a value on the widget's scale, or None for "no fill" (0, below the scale,
    not a number), exactly as the widget's ``cellColor`` decides."""
    if value is None or not math.isfinite(value):
        return None
    if diverging:
        m = max(abs(lo), abs(hi))
        if not m > 0:
            return None
        t = max(-1.0, min(1.0, value / m))
        if abs(t) < 0.02:
            return None
        rgb = _interpolate(BLUE_ORANGE, (t + 1) / 2)
    else:
        if value <= lo or value == 0:
            return None
        rgb = _interpolate(YL_OR_BR, min(1.0, (value - lo) / (hi - lo)) if hi > lo else 1.0)
    return f"rgb({rgb[0]},{rgb[1]},{rgb[2]})", _text_on(rgb)


def fmt(x: Any, digits: int = 3) -> str:
    """A short readable number (the widget's ``fmt``)."""
    if x is None:
        return "–"
    x = float(x)
    if math.isnan(x):
        return "–"
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.1e}"
    return f"{float(f'{x:.{digits}g}'):g}"


def visible_text(tok: str) -> str:
    """A token with its whitespace made visible (spaces as '·', newlines as '⏎'), not escaped."""
    marks = {" ": "·", "\n": "⏎", "\t": "→", "\r": "␍", "\u00a0": "·"}
    return "".join(marks.get(ch, ch) for ch in str(tok)) or "∅"


def visible_token(tok: str) -> str:
    """:func:`visible_text`, escaped for HTML."""
    return html.escape(visible_text(tok))


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _value_attr(v: float) -> str:
    return repr(float(v))


def scale_max(values: Iterable[float], skip_first: bool = True) -> float:
    """Top of a colour scale: the largest finite magnitude, ignoring the first token (an attention sink whose
    activations would wash out every other token), 1 when there is none."""
    vals = [float(v) for v in values]
    body = vals[1:] if skip_first and len(vals) > 1 else vals
    finite = [abs(v) for v in body if math.isfinite(v)]
    m = max(finite) if finite else 0.0
    return m if m > 0 else 1.0


def token_strip(tokens: Sequence[str], values: Sequence[float], *, lo: float = 0.0, hi: float | None = None,
                diverging: bool = False, titles: Sequence[str] | None = None, attrs: str = "") -> str:
    """The prompt as one line of tokens coloured by ``values``; ``titles`` are per-token tooltips."""
    hi = scale_max(values) if hi is None else hi
    spans = []
    for i, (tok, v) in enumerate(zip(tokens[:MAX_TOKENS], values)):
        c = cell_color(float(v), lo, hi, diverging)
        style = f"background:{c[0]};color:{c[1]};" if c else ""
        title = titles[i] if titles is not None and i < len(titles) else f"#{i} {fmt(v)}"
        spans.append(f'<span class="qscope-token" data-index="{i}" data-value="{_value_attr(v)}" '
                     f'title="{esc(title)}" style="{style}padding:0 1px;white-space:pre">'
                     f'{visible_token(tok)}</span>' + ("<br>" if str(tok).endswith("\n") else ""))
    more = (f'<div style="color:#777">… {len(tokens) - MAX_TOKENS} more tokens not shown</div>'
            if len(tokens) > MAX_TOKENS else "")
    return f'<div class="qscope-static-tokens" {attrs} style="{MONO};line-height:1.9">{"".join(spans)}</div>{more}'


def legend(lo: float, hi: float, caption: str, diverging: bool = False) -> str:
    stops = ",".join(BLUE_ORANGE if diverging else YL_OR_BR)
    return (f'<div style="display:flex;gap:6px;align-items:center;color:#555;font-size:12px;margin:2px 0 4px">'
            f'<span>{esc(caption)}</span><span>{fmt(lo)}</span>'
            f'<span style="display:inline-block;width:90px;height:8px;border-radius:2px;'
            f'background:linear-gradient(to right,{stops})"></span><span>{fmt(hi)}</span></div>')


MATRIX_TOKENS = 128  # columns of a features x tokens heatmap (the token strip goes to MAX_TOKENS)


def feature_matrix(tokens: Sequence[str], rows: Sequence[tuple[str, Sequence[float]]], *, lo: float = 0.0,
                   hi: float | None = None, diverging: bool = False, attrs: str = "") -> str:
    """A heatmap table: one row per (label, values over tokens), one column per token. Unlit cells carry only
    their value, so a long prompt stays a few bytes per cell."""
    n = min(len(tokens), MATRIX_TOKENS)
    hi = hi if hi is not None else scale_max([v for _, vals in rows for v in list(vals)[1:n]] or [1.0], skip_first=False)
    head = "".join(f'<th style="{MONO};font-weight:normal;padding:1px 3px;white-space:pre;color:#555" '
                   f'title="#{i}">{visible_token(t)}</th>' for i, t in enumerate(tokens[:n]))
    body = []
    for r, (label, vals) in enumerate(rows):
        cells = []
        for i, v in enumerate(list(vals)[:n]):
            c = cell_color(float(v), lo, hi, diverging)
            lit = f' title="{esc(label)} · #{i} · {fmt(v)}" style="background:{c[0]}"' if c else ""
            cells.append(f'<td data-value="{_value_attr(v)}"{lit}></td>')
        body.append(f'<tr data-row="{r}" style="height:16px"><th style="text-align:left;font-weight:normal;padding:1px 6px;'
                    f'white-space:nowrap;{MONO}">{esc(label)}</th>{"".join(cells)}</tr>')
    more = (f'<div style="color:#777">… {len(tokens) - n} more tokens not shown</div>' if len(tokens) > n else "")
    return (f'<table class="qscope-static-matrix" {attrs} cellspacing="1" style="border-collapse:separate;'
            f'font-size:12px"><thead><tr><th></th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>{more}')


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], attrs: str = "") -> str:
    """A small plain table (values already formatted or plain strings, escaped here)."""
    th = "".join(f'<th style="text-align:left;padding:1px 8px 1px 0;color:#555;font-weight:normal">{esc(c)}</th>'
                 for c in columns)
    trs = "".join("<tr>" + "".join(f'<td style="padding:1px 8px 1px 0">{esc(v)}</td>' for v in row) + "</tr>"
                  for row in rows)
    return f'<table {attrs} style="border-collapse:collapse;font-size:12px"><tr>{th}</tr>{trs}</table>'


def box(title: str, body: str, attrs: str = "") -> str:
    """The outer frame every static rendering uses."""
    return (f'<div class="qscope-static" {attrs} style="{STYLE}"><div style="font-weight:600;margin-bottom:4px">'
            f'{esc(title)}</div>{body}</div>')


# ------------------------------------------------------------------------------------------------- results
def trace_html(trace: Any, layers: Sequence[int] | None = None, n_features: int = 8, max_layers: int = 3) -> str:
    """A :class:`~qscope_widgets.Trace` as static HTML: per layer, the prompt coloured by each token's strongest
    feature (tooltips list its top features) and a features x tokens heatmap of the prompt's top features."""
    if not hasattr(trace, "layers") or not hasattr(trace, "top_features"):
        raise TypeError(f"trace_html needs a Trace, got {type(trace).__name__}")
    chosen = sorted(trace.layers) if layers is None else list(layers)
    shown, cut = chosen[:max_layers], chosen[max_layers:]
    tokens = list(trace.tokens)
    parts = []
    for n in shown:
        codes = trace.layer(n)
        ids, vals = codes.ids.numpy(), codes.values.float().numpy()
        strongest = vals[:, 0] if vals.shape[1] else [0.0] * len(tokens)
        titles = []
        for i, tok in enumerate(tokens):
            top = [f"#{int(f)} {fmt(v)}" for f, v in zip(ids[i][:5], vals[i][:5]) if v != 0]
            titles.append(f"#{i} {tok!r} · " + (", ".join(top) if top else "no active features"))
        top = trace.top_features(n, n=n_features, skip_first=len(tokens) > 1)
        rows = [(f"#{int(f)}", codes.activation_of(int(f)).float().numpy().tolist()) for f in top.feature]
        parts.append(
            f'<div data-layer="{n}" style="margin:4px 0 10px">'
            f'<div style="color:#555;margin-bottom:2px">layer {n} · d_sae {codes.d_sae} · '
            f'mean L0 {fmt(float(codes.l0.float().mean()))} · mean reconstruction error '
            f'{fmt(float(codes.recon_error.float().mean()))}</div>'
            + legend(0.0, scale_max(strongest), "strongest feature")
            + token_strip(tokens, strongest, titles=titles, attrs=f'data-qscope="static-strip" data-layer="{n}"')
            + (f'<div style="margin-top:6px;color:#555">top {len(rows)} features (max over the prompt'
               f'{", first token skipped" if len(tokens) > 1 else ""})</div>'
               + feature_matrix(tokens, rows, attrs=f'data-qscope="static-matrix" data-layer="{n}"') if rows else
               '<div style="color:#777">no active features</div>')
            + "</div>")
    if cut:
        parts.append(f'<div style="color:#777">layers {cut} not shown: trace_html(trace, layers=[...])</div>')
    steer = f" · steered by {len(trace.steering)} edit(s)" if trace.steering else ""
    return box(f"Trace: {len(tokens)} tokens, layers {sorted(trace.layers)}{steer}", "".join(parts),
               attrs='data-qscope="static-trace"')


def scores_html(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
                tokens: Sequence[str] | None = None, token_values: Sequence[float] | None = None,
                diverging: bool = True) -> str:
    """A generic result page: optional coloured token strip (e.g. per-token attribution, signed), then a table.

    For analysis results that have no renderer of their own yet (an ``Attribution``'s ``_repr_html_`` can be
    ``scores_html("Attribution ...", df.columns, df.itertuples(index=False), tokens=..., token_values=...)``).
    """
    strip = ""
    if tokens is not None and token_values is not None:
        vals = [float(v) for v in token_values]
        m = scale_max(vals, skip_first=False)
        lo, hi = (-m, m) if diverging else (0.0, m)
        strip = legend(lo, hi, "per token", diverging) + token_strip(tokens, vals, lo=lo, hi=hi, diverging=diverging)
    formatted = ([fmt(v) if isinstance(v, float) else v for v in row] for row in rows)
    return box(title, strip + table(columns, formatted))


def attribution_html(attr: Any, n_nodes: int = 15) -> str:
    """An attribution result as static HTML: the prompt coloured by each position's total attribution (signed,
    blue = pushes the target down, orange = up), then the strongest nodes by ``|attribution|``.

    Duck-typed on :class:`qscope_widgets.attribution.Attribution` (``tokens``, ``position``, ``target``,
    ``metric``, ``method``, ``to_dataframe()`` with ``position``/``attribution`` columns) so this core module
    needs no import from the analysis layer; ``Attribution._repr_html_`` can return ``attribution_html(self)``.
    """
    df = attr.to_dataframe()
    tokens = list(attr.tokens)
    per_pos = [0.0] * len(tokens)
    for p, a in zip(df["position"], df["attribution"]):
        if 0 <= int(p) < len(per_pos) and math.isfinite(float(a)):
            per_pos[int(p)] += float(a)
    m = scale_max(per_pos, skip_first=False)
    titles = [f"#{i} {t!r} · total attribution {fmt(v)}" for i, (t, v) in enumerate(zip(tokens, per_pos))]
    top = df.reindex(df["attribution"].abs().sort_values(ascending=False).index).head(n_nodes)
    cols = [c for c in ("layer", "position", "token", "feature", "label", "activation", "attribution", "kind")
            if c in top.columns]
    rows = [[fmt(v) if isinstance(v, float) else (visible_text(v) if c == "token" else v)
             for c, v in zip(cols, r)] for r in top[cols].itertuples(index=False)]
    target = getattr(getattr(attr, "target", None), "description", "")
    head = (f'<div style="color:#555">target {esc(target)} at position {int(attr.position)} · metric '
            f'{fmt(getattr(attr, "metric", None))} · method {esc(getattr(attr, "method", ""))}</div>')
    body = (head + legend(-m, m, "total attribution per position", diverging=True)
            + token_strip(tokens, per_pos, lo=-m, hi=m, diverging=True, titles=titles,
                          attrs='data-qscope="static-attribution"')
            + f'<div style="color:#555;margin-top:6px">top {len(rows)} nodes by |attribution|</div>'
            + table(cols, rows, attrs='data-qscope="static-nodes"'))
    return box(f"Attribution: {len(df)} nodes", body)
