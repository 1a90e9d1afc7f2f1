"""From the widget's inputs to the values its front end draws: pure functions of a Scope, no widget in sight.

The explorer's data path is ``ViewRequest`` (validated inputs) -> ``Scope.run`` (steered, and the cached baseline)
-> :func:`compute_view` -> a dict of output traits (``docs/widget-contract.md``). Keeping it free of traitlets
means the exact numbers a browser test checks can be computed here in a test, and the widget class stays thin.
Bulk per-token data leaves as little-endian ``bytes`` (int32 / float32), which ipywidgets ships as binary
buffers instead of JSON lists.
"""

from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from ..errors import FeatureIndexError, PromptError, QScopeError, SteeringError, UnknownLayerError
from ..steering import MODES, SteeringEdit
from ..trace import LayerCodes, Trace

COLOR_BY = ("feature", "strongest", "error")
TOP_NEXT = 10
SIDEBAR_ROWS = 12
CHART_ALL_LAYERS_BYTES = 512 * 2**20  # chart every layer only while all their SAEs fit in this (the demo: 48 MB)
CHART_COLUMNS = ("feature_act", "l0", "recon_error", "top_act")


@dataclass(frozen=True)
class ViewRequest:
    """The validated inputs of one explorer update."""

    prompt: str
    layer: int
    selected_token: int = -1
    selected_feature: int = -1
    color_by: str = "strongest"
    diff: bool = False
    edits: tuple[SteeringEdit, ...] = ()
    continuation_tokens: int = 0
    chart_layers: tuple[int, ...] = ()

    @property
    def active_edits(self) -> tuple[SteeringEdit, ...]:
        return tuple(e for e in self.edits if not e.is_noop)

    @property
    def run_layers(self) -> list[int]:
        return sorted(set(self.chart_layers) | {self.layer})


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise QScopeError(f"{what} must be an int, got {value!r}")
    return int(value)


def edits_from_dicts(rows: list[dict[str, Any]]) -> tuple[SteeringEdit, ...]:
    """The widget's edit dicts (with slider metadata) as validated :class:`SteeringEdit` objects."""
    out = []
    for row in rows:
        if not isinstance(row, dict):
            raise SteeringError(f"a steering edit must be a dict, got {row!r}")
        try:
            strength = float(row.get("strength", 0.0))
        except (TypeError, ValueError):
            raise SteeringError(f"steering strength must be a number, got {row.get('strength')!r}") from None
        out.append(SteeringEdit(layer=row.get("layer"), feature=row.get("feature"), strength=strength,
                                mode=row.get("mode", "add"), enabled=bool(row.get("enabled", True))))
    return tuple(out)


def slider_bounds(mode: str, typical: float) -> tuple[float, float, float]:
    """``(min, max, default)`` of a strength slider, scaled to the feature's typical activation.

    ``add`` spans +-2x the feature's corpus maximum (the demo's biblical feature steers visibly at ~0.7x);
    ``clamp`` sets the code itself, 0 .. 2x; ``ablate`` is a fraction. Every default leaves the model unchanged
    except clamp's 0, which is ablation by another name, so clamp starts at the typical value instead.
    """
    t = typical if typical > 0 and math.isfinite(typical) else 10.0
    if mode == "add":
        return -2.0 * t, 2.0 * t, 0.0
    if mode == "clamp":
        return 0.0, 2.0 * t, t
    if mode == "ablate":
        return 0.0, 1.0, 0.0
    raise SteeringError(f"unknown steering mode {mode!r}; expected one of {', '.join(MODES)}")


def normalize_edit_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill each row's slider range for its mode (``range_mode`` remembers which mode the range is for).

    A new row keeps the strength it was given, widening the range to hold it; a mode switch (the row's range was
    made for another mode) resets the strength to the new mode's default, since an ``add`` of 30 means nothing
    as an ``ablate`` fraction.
    """
    out = []
    for row in rows:
        if not isinstance(row, dict):
            out.append(row)  # reported by build_request, where errors reach the widget's status line
            continue
        row = dict(row)
        mode = row.get("mode", "add")
        try:
            lo, hi, default = slider_bounds(mode, float(row.get("typical") or 0.0))
            strength = default if row.get("range_mode") not in (None, mode) else float(row.get("strength", default))
        except (QScopeError, TypeError, ValueError):
            out.append(row)  # an unknown mode or a non-number: left for build_request to report
            continue
        if math.isfinite(strength):
            lo, hi = min(lo, strength), max(hi, strength)
        row.update(min=lo, max=hi, default=default, mode=mode, strength=strength, range_mode=mode,
                   enabled=bool(row.get("enabled", True)))
        row.setdefault("label", "")
        out.append(row)
    return out


def build_request(scope: Any, state: dict[str, Any]) -> ViewRequest:
    """Validate the widget's raw input traits; every problem is a :class:`QScopeError` naming it."""
    prompt = state.get("prompt", "")
    if not isinstance(prompt, str) or not prompt.strip():
        raise PromptError("the prompt is empty: type some text to run through the model")
    layer = scope.check_layer(_int(state.get("layer"), "layer"))
    feature = _int(state.get("selected_feature", -1), "selected_feature")
    if feature >= 0:
        scope.sae(layer).check_feature(feature)
    elif feature != -1:
        raise FeatureIndexError(f"feature {feature} is out of range (use -1 for none)")
    color_by = state.get("color_by", "strongest")
    if color_by not in COLOR_BY:
        raise QScopeError(f"color_by must be one of {COLOR_BY}, got {color_by!r}")
    edits = edits_from_dicts(list(state.get("edits") or []))
    for e in edits:
        if e.layer not in scope.sae_layers:
            raise UnknownLayerError(f"steering edit on layer {e.layer}, which has no SAE; layers: {scope.sae_layers}")
        scope.sae(e.layer).check_feature(e.feature)
    n_cont = _int(state.get("continuation_tokens", 0), "continuation_tokens")
    if not 0 <= n_cont <= 512:
        raise QScopeError(f"continuation_tokens must be within 0..512, got {n_cont}")
    return ViewRequest(prompt=prompt, layer=layer, selected_token=_int(state.get("selected_token", -1),
                                                                      "selected_token"),
                       selected_feature=feature, color_by=color_by, diff=bool(state.get("diff", False)), edits=edits,
                       continuation_tokens=n_cont, chart_layers=tuple(chart_layers(scope, layer)))


def chart_layers(scope: Any, view_layer: int) -> list[int]:
    """Layers the scrubber's mini charts cover: all of them while their SAEs are small (the demo), else the
    layers already resident plus the one in view, so moving the scrubber never loads a 27B release at once."""
    per_layer = scope.sae(view_layer).nbytes()
    budget = scope.saes.max_bytes
    total = per_layer * len(scope.sae_layers)
    if total <= CHART_ALL_LAYERS_BYTES and (budget is None or total <= budget):
        return list(scope.sae_layers)
    return sorted(set(scope.saes.loaded_layers) | {view_layer})


def layer_states(scope: Any, loading: int | None = None) -> list[str]:
    sae_layers = set(scope.sae_layers)
    return ["loading" if n == loading else "ready" if scope.saes.is_loaded(n) else
            "unloaded" if n in sae_layers else "none" for n in range(scope.n_layers)]


# ------------------------------------------------------------------------------------------------ packing
def f32(values: Any) -> bytes:
    return np.ascontiguousarray(np.asarray(values, dtype="<f4")).tobytes()


def i32(values: Any) -> bytes:
    return np.ascontiguousarray(np.asarray(values, dtype="<i4")).tobytes()


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def token_values(codes: LayerCodes, req: ViewRequest) -> np.ndarray:
    """What each token is coloured by (float32, one per token)."""
    if req.color_by == "error":
        return _np(codes.recon_error).astype(np.float32)
    if req.color_by == "feature" and req.selected_feature >= 0:
        return _np(codes.activation_of(req.selected_feature)).astype(np.float32)
    return _np(codes.values[:, 0]).astype(np.float32)


def diff_values(steered: LayerCodes, baseline: LayerCodes, req: ViewRequest) -> np.ndarray:
    """Steered minus baseline: the selected feature's activation, or the relative change of the residual norm."""
    if req.selected_feature >= 0:
        return (_np(steered.activation_of(req.selected_feature))
                - _np(baseline.activation_of(req.selected_feature))).astype(np.float32)
    base = _np(baseline.residual_norm).astype(np.float64)
    return ((_np(steered.residual_norm) - base) / np.maximum(base, 1e-12)).astype(np.float32)


def _scale_max(values: np.ndarray) -> float:
    """Colour-scale top: the max over tokens but the first, whose attention-sink activations would wash out
    every other token."""
    body = values[1:] if len(values) > 1 else values
    finite = body[np.isfinite(body)]
    m = float(np.abs(finite).max()) if finite.size else 0.0
    return m if m > 0 else 1.0


def layer_chart(trace: Trace, req: ViewRequest, n_layers: int) -> np.ndarray:
    """``(n_layers, 4)`` float32: feature activation, L0, reconstruction error, top activation per layer, at the
    selected token, or over the prompt (mean L0 / error, max activations, first token skipped); NaN elsewhere."""
    chart = np.full((n_layers, len(CHART_COLUMNS)), np.nan, dtype=np.float32)
    t = req.selected_token
    for n, codes in trace.layers.items():
        vals = _np(codes.values)
        l0, err = _np(codes.l0).astype(np.float32), _np(codes.recon_error)
        sl = slice(t, t + 1) if t >= 0 else slice(1 if len(vals) > 1 else 0, None)
        chart[n, 1] = l0[sl].mean()
        chart[n, 2] = err[sl].mean()
        chart[n, 3] = vals[sl, 0].max()
        if n == req.layer and req.selected_feature >= 0:
            chart[n, 0] = _np(codes.activation_of(req.selected_feature))[sl].max()
    return chart


class FeatureInfo:
    """Label, density and context previews of features, from the scope's feature index, cached per feature."""

    def __init__(self, scope: Any, max_cached: int = 4096):
        self.scope = scope
        self._cache: OrderedDict[tuple[int, int], dict[str, Any]] = OrderedDict()
        self._max = max_cached

    @property
    def index(self) -> Any:
        return getattr(self.scope, "feature_index", None)

    def covers(self, layer: int) -> bool:
        return self.index is not None and layer in self.index.layers

    def get(self, layer: int, feature: int) -> dict[str, Any]:
        key = (layer, feature)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        info: dict[str, Any] = {"label": "", "density": None, "max_activation": None, "contexts": []}
        if self.covers(layer):
            row = self.index.features(layer).iloc[feature]
            info["label"] = str(row["explanation"] or row["label"])
            info["density"] = float(row["density"])
            info["max_activation"] = float(row["max_activation"])
            info["contexts"] = [context_preview(r.tokens, r.center) for r in
                                self.index.contexts(layer, feature).head(2).itertuples()]
        self._cache[key] = info
        if len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return info

    def typical_activation(self, layer: int, feature: int, trace: Trace | None = None) -> float:
        """The feature's corpus maximum when an index covers it, else its maximum in ``trace``, else 0."""
        m = self.get(layer, feature)["max_activation"]
        if m:
            return float(m)
        if trace is not None and layer in trace.layers:
            return float(_np(trace.layers[layer].activation_of(feature)).max())
        return 0.0


def context_preview(tokens: Any, center: int, width: int = 8) -> str:
    """A short one-line window with the activating token in guillemets: ``…the LORD «God» said…``."""
    toks = list(tokens)
    c = int(center)
    lo, hi = max(0, c - width), min(len(toks), c + width // 2 + 1)
    text = "".join(toks[lo:c]) + "«" + (toks[c] if 0 <= c < len(toks) else "") + "»" + "".join(toks[c + 1:hi])
    text = text.replace("\n", "⏎")
    return ("…" if lo > 0 else "") + text + ("…" if hi < len(toks) else "")


def sidebar_rows(trace: Trace, req: ViewRequest, info: FeatureInfo, pinned: set[tuple[int, int]]
                 ) -> tuple[str, list[dict[str, Any]]]:
    codes = trace.layers[req.layer]
    if req.selected_token >= 0:
        t = req.selected_token
        ids, vals = _np(codes.ids[t]), _np(codes.values[t])
        pairs = [(int(f), float(v)) for f, v in zip(ids, vals) if v != 0][:SIDEBAR_ROWS]
        title = f"token {t} {trace.tokens[t]!r}"
    else:
        top = trace.top_features(req.layer, n=SIDEBAR_ROWS, skip_first=len(trace) > 1)
        pairs = [(int(f), float(a)) for f, a in zip(top.feature, top.activation) if a != 0]
        title = "whole prompt (max over tokens)"
    rows = []
    for f, v in pairs:
        meta = info.get(req.layer, f)
        rows.append({"feature": f, "activation": v, "label": meta["label"], "density": meta["density"],
                     "contexts": meta["contexts"], "pinned": (req.layer, f) in pinned})
    return title, rows


def next_token_rows(trace: Trace) -> list[list[Any]]:
    return [[tok, float(p)] for tok, p in trace.next_tokens(-1)[:TOP_NEXT]]


# ------------------------------------------------------------------------------------------------ one update
@dataclass
class ViewResult:
    """The traces of one update and the output traits they become."""

    request: ViewRequest
    trace: Trace
    baseline: Trace
    outputs: dict[str, Any] = field(default_factory=dict)


class BaselineCache:
    """Unsteered traces by (prompt, layers): a slider drag re-runs only the steered pass."""

    def __init__(self, size: int = 8):
        self._d: OrderedDict[tuple, Trace] = OrderedDict()
        self._size = size

    def get(self, scope: Any, prompt: str, layers: list[int], cancel: Callable[[], bool] | None = None) -> Trace:
        key = (prompt, tuple(layers))
        if key in self._d:
            self._d.move_to_end(key)
            return self._d[key]
        trace = scope.run(prompt, layers=layers, top_n=TOP_NEXT, cancel=cancel)
        self._d[key] = trace
        if len(self._d) > self._size:
            self._d.popitem(last=False)
        return trace


def compute_view(scope: Any, req: ViewRequest, baselines: BaselineCache, info: FeatureInfo,
                 cancel: Callable[[], bool] | None = None) -> ViewResult:
    """Run the model for ``req`` and produce every output trait of the contract except status/sequence.

    ``cancel`` is passed to the forward passes (see :meth:`Scope.run`).
    """
    layers = req.run_layers
    baseline = baselines.get(scope, req.prompt, layers, cancel)
    active = req.active_edits
    trace = (scope.run(req.prompt, layers=layers, steering=active, top_n=TOP_NEXT, cancel=cancel) if active
             else baseline)
    n_tok = len(trace)
    if req.selected_token >= n_tok or req.selected_token < -1:
        req = replace(req, selected_token=-1)  # the prompt got shorter than the selection
    codes = trace.layers[req.layer]
    values = token_values(codes, req)
    if active:
        diff = diff_values(codes, baseline.layers[req.layer], req)
        m = _scale_max(diff)
        diff_b, diff_range = f32(diff), [-m, m]
    else:
        diff_b, diff_range = b"", [-1.0, 1.0]
    pinned = {(e.layer, e.feature) for e in req.edits}
    title, rows = sidebar_rows(trace, req, info, pinned)
    outputs = {
        "tokens": list(trace.tokens),
        "selected_token": req.selected_token,
        "k": int(codes.ids.shape[1]),
        "codes_ids": i32(_np(codes.ids)),
        "codes_values": f32(_np(codes.values)),
        "token_values": f32(values),
        "diff_values": diff_b,
        "value_range": diff_range if (req.diff and active) else [0.0, _scale_max(values)],
        "sidebar": rows,
        "sidebar_title": title,
        "next_tokens": {"baseline": next_token_rows(baseline), "steered": next_token_rows(trace)},
        "layer_chart": f32(layer_chart(trace, req, scope.n_layers)),
        "layer_state": layer_states(scope),
    }
    return ViewResult(request=req, trace=trace, baseline=baseline, outputs=outputs)
