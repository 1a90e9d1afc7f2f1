"""Panels: each part of a view is a pure function from the traces and its own view inputs to its own traits.

A :class:`Panel` names

* ``outputs``: the traits it owns (name -> a traitlets factory), which only it writes;
* ``inputs``: the input traits it reads (names in :data:`INPUT_TRAITS`); a view syncs the union of its
  panels' inputs and outputs, nothing else;
* ``depends``: the :class:`~qscope_widgets.widgets.view_state.ViewInputs` fields its output depends on; when
  only those change, the panel is recomputed from the cached traces (no forward), and panels that do not read
  them are not recomputed at all;
* ``compute(PanelInput) -> dict``: the pure function (no widget, no traitlets; testable on its own);
* ``layers``: optionally, the layers whose codes it needs (the layer chart wants every layer).

:data:`PANELS` is the registry; a view class lists panel names in ``panels = (...)``
(``widgets/scope_widget.py``) and the front end draws each panel with the component of the same name
(``js/src/panels.js``). Adding a view: see "Adding a view" in ``docs/architecture.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import traitlets as t

from ..errors import QScopeError
from ..trace import LayerCodes, Trace
from .constants import CHART_COLUMNS, SIDEBAR_ROWS, TOP_NEXT
from .features import FeatureInfo
from .view_state import Traces, ViewInputs, chart_layers, f32, i32, layer_states, to_numpy

TraitFactory = Callable[[], t.TraitType]

# Every input trait a panel may read (JS writes them on user action; Python may write them too). One table, so
# two panels reading `selected_token` share one trait. `prompt`, `layer` and `edits` are in every view.
INPUT_TRAITS: dict[str, TraitFactory] = {
    "prompt": lambda: t.Unicode(""),
    "layer": lambda: t.Int(0),
    "edits": lambda: t.List(t.Dict()),
    "selected_token": lambda: t.Int(-1),
    "selected_feature": lambda: t.Int(-1),
    "color_by": lambda: t.Unicode("strongest"),
    "diff": lambda: t.Bool(False),
    "search_query": lambda: t.Unicode(""),
    "steer_positions": lambda: t.Unicode("all"),
    "continuation_tokens": lambda: t.Int(0),
    "temperature": lambda: t.Float(0.0),
    "seed": lambda: t.Int(0),
    "stop_at_eos": lambda: t.Bool(True),
    "monitor": lambda: t.Dict(),  # a Monitor's features / weights / threshold (widgets/monitor_colour.py)
}
BASE_INPUTS = ("prompt", "layer", "edits")
NOT_A_REQUEST = {"search_query"}  # inputs answered by their own observer, without a new request
# Validators of inputs registered by other modules (register_input): run when the value is set.
INPUT_VALIDATORS: dict[str, Callable[[Any, Any], Any]] = {}


def register_input(name: str, trait: TraitFactory, validate: Callable[[Any, Any], Any] | None = None) -> None:
    """Add an input trait a new panel reads (e.g. contrast's second prompt). ``validate(scope, value)`` returns
    the value to store or raises a :class:`QScopeError` naming the problem; the view runs it when the value is
    set (from Python or the browser), so a bad value never reaches a request. Panels read it as
    ``p.inputs[name]`` and list it in ``depends`` to be recomputed when it changes."""
    if name in INPUT_TRAITS and INPUT_TRAITS[name] is not trait:
        raise QScopeError(f"an input named {name!r} is already registered")
    INPUT_TRAITS[name] = trait
    if validate is not None:
        INPUT_VALIDATORS[name] = validate


class WidgetInputError(QScopeError, t.TraitError):
    """A bad value set on a widget input: raised at once, the widget keeps its previous value. (Defined here, below
    the widgets that raise it, so a panel module can raise it without importing the view class.)"""


@dataclass(frozen=True)
class PanelInput:
    """Everything a panel function may read."""

    scope: Any
    traces: Traces
    view: ViewInputs
    info: FeatureInfo
    inputs: Mapping[str, Any] = field(default_factory=dict)  # every input trait of the view, as set (validated)

    @property
    def trace(self) -> Trace:
        return self.traces.trace

    @property
    def baseline(self) -> Trace:
        return self.traces.baseline

    @property
    def codes(self) -> LayerCodes:
        return self.traces.trace.layers[self.view.layer]

    @property
    def steered(self) -> bool:
        return bool(self.traces.request.edits)


@dataclass(frozen=True)
class Panel:
    """One registered panel (see the module docstring)."""

    name: str
    compute: Callable[[PanelInput], dict[str, Any]]
    outputs: Mapping[str, TraitFactory] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    depends: tuple[str, ...] = ()
    layers: Callable[[Any, int], list[int]] | None = None
    doc: str = ""

    def key(self, traces: Traces, view: ViewInputs, inputs: Mapping[str, Any] | None = None) -> tuple:
        """Equal keys mean equal outputs: the traces' serial and the inputs this panel depends on (a
        :class:`ViewInputs` field, or any registered input trait by name)."""
        inputs = inputs or {}
        return (traces.serial, *(frozen_value(getattr(view, name) if hasattr(view, name) else inputs.get(name))
                                 for name in self.depends))


PANELS: dict[str, Panel] = {}


def register_panel(panel: Panel) -> Panel:
    """Add ``panel`` to the registry (a name may be registered once; its traits must not clash with another's)."""
    if panel.name in PANELS and PANELS[panel.name] is not panel:
        raise QScopeError(f"a panel named {panel.name!r} is already registered")
    unknown = [n for n in panel.inputs if n not in INPUT_TRAITS]
    if unknown:
        raise QScopeError(f"panel {panel.name!r} reads unknown inputs {unknown}; known: {sorted(INPUT_TRAITS)}")
    for other in PANELS.values():
        clash = set(other.outputs) & set(panel.outputs)
        if clash and other is not panel:
            raise QScopeError(f"panel {panel.name!r} outputs {sorted(clash)}, already owned by {other.name!r}")
    bad = [d for d in panel.depends if d not in ViewInputs.__dataclass_fields__ and d not in INPUT_TRAITS]
    if bad:
        raise QScopeError(f"panel {panel.name!r} depends on {bad}, which are neither view inputs nor input traits")
    PANELS[panel.name] = panel
    return panel


def panel(name: str, *, outputs: Mapping[str, TraitFactory], inputs: tuple[str, ...] = (),
          depends: tuple[str, ...] = (), layers: Callable[[Any, int], list[int]] | None = None
          ) -> Callable[[Callable[[PanelInput], dict[str, Any]]], Callable[[PanelInput], dict[str, Any]]]:
    """Decorator form of :func:`register_panel` for a panel function."""
    def deco(fn: Callable[[PanelInput], dict[str, Any]]) -> Callable[[PanelInput], dict[str, Any]]:
        register_panel(Panel(name, fn, dict(outputs), tuple(inputs), tuple(depends), layers,
                             (fn.__doc__ or "").strip()))
        return fn
    return deco


def get_panels(names: tuple[str, ...] | list[str]) -> list[Panel]:
    unknown = [n for n in names if n not in PANELS]
    if unknown:
        raise QScopeError(f"unknown panel(s) {unknown}; registered: {sorted(PANELS)}")
    return [PANELS[n] for n in names]


def view_traits(names: tuple[str, ...] | list[str]) -> dict[str, TraitFactory]:
    """The traits a view of these panels syncs beyond the common ones: their inputs and outputs."""
    out: dict[str, TraitFactory] = {n: INPUT_TRAITS[n] for n in BASE_INPUTS}
    for p in get_panels(names):
        out.update({n: INPUT_TRAITS[n] for n in p.inputs})
        out.update(p.outputs)
    return out


def layers_needed(panels: list[Panel]) -> Callable[[Any, int], list[int]]:
    """The union of the panels' layer needs (the layer in view is always added by the request)."""
    fns = [p.layers for p in panels if p.layers is not None]
    return lambda scope, layer: sorted({n for fn in fns for n in fn(scope, layer)})


def compute_panels(panels: list[Panel], pin: PanelInput, done: Mapping[str, tuple]
                   ) -> tuple[dict[str, Any], dict[str, tuple]]:
    """Run the panels whose key differs from ``done`` (name -> key of the outputs already shown).

    Returns the changed traits and the new keys of the panels that ran.
    """
    outputs: dict[str, Any] = {}
    keys: dict[str, tuple] = {}
    for p in panels:
        key = p.key(pin.traces, pin.view, pin.inputs)
        if done.get(p.name) == key:
            continue
        outputs.update(p.compute(pin))
        keys[p.name] = key
    return outputs, keys


def frozen_value(value: Any) -> Any:
    """A hashable, comparable copy of an input value (lists and dicts from traits)."""
    if isinstance(value, dict):
        return tuple(sorted((k, frozen_value(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(frozen_value(v) for v in value)
    return value


# ==================================================================================================== panels
def _scale_max(values: np.ndarray) -> float:
    """Colour-scale top: the max over tokens but the first, whose attention-sink activations would wash out
    every other token."""
    body = values[1:] if len(values) > 1 else values
    finite = body[np.isfinite(body)]
    m = float(np.abs(finite).max()) if finite.size else 0.0
    return m if m > 0 else 1.0


def token_values(codes: LayerCodes, view: ViewInputs) -> np.ndarray:
    """What each token is coloured by (float32, one per token)."""
    if view.color_by == "error":
        return to_numpy(codes.recon_error).astype(np.float32)
    if view.color_by == "feature" and view.selected_feature >= 0:
        return to_numpy(codes.activation_of(view.selected_feature)).astype(np.float32)
    return to_numpy(codes.values[:, 0]).astype(np.float32)


def diff_values(steered: LayerCodes, baseline: LayerCodes, view: ViewInputs) -> np.ndarray:
    """Steered minus baseline: the selected feature's activation, or the relative change of the residual norm."""
    if view.selected_feature >= 0:
        return (to_numpy(steered.activation_of(view.selected_feature))
                - to_numpy(baseline.activation_of(view.selected_feature))).astype(np.float32)
    base = to_numpy(baseline.residual_norm).astype(np.float64)
    return ((to_numpy(steered.residual_norm) - base) / np.maximum(base, 1e-12)).astype(np.float32)


def monitor_from_spec(scope: Any, spec: Any):
    """The Monitor a ``monitor`` trait value describes (its features checked against ``scope``), or None."""
    from ..monitor import Monitor

    if spec in (None, {}):
        return None
    if not isinstance(spec, dict) or "features" not in spec:
        raise QScopeError(f"monitor must be a dict with 'features' (and 'weights', 'threshold'), got {spec!r:.80}")
    try:
        pairs = [(int(n), int(f)) for n, f in spec["features"]]
    except (TypeError, ValueError) as exc:
        raise QScopeError(f"monitor features must be [layer, feature] pairs, got {spec['features']!r:.80}") from exc
    return Monitor(scope, pairs, weights=spec.get("weights"), threshold=spec.get("threshold"),
                   reduce=spec.get("reduce", "max"), skip_first=spec.get("skip_first", True))



def monitor_values(p: PanelInput) -> np.ndarray:
    """The monitor's per-token score of the drawn trace, scaled to [0, 1] (float32, one per token)."""
    from ..monitor import token_colouring

    monitor = monitor_from_spec(p.scope, p.inputs.get("monitor"))
    if monitor is None:
        raise QScopeError("color_by='monitor' needs a monitor: call explorer.color_by_monitor(scope.monitor(...))")
    trace = p.trace
    if any(n not in trace.layers for n in monitor.layers):
        trace = p.scope.run(p.traces.request.prompt, layers=monitor.layers,
                            steering=list(p.traces.request.edits) or None)
    return np.asarray(token_colouring(monitor, trace), dtype=np.float32)


@panel("heatmap", inputs=("selected_token", "selected_feature", "color_by", "diff", "monitor"),
       depends=("layer", "selected_feature", "color_by", "diff", "monitor"),
       outputs={"tokens": lambda: t.List(t.Unicode()), "k": lambda: t.Int(0),
                "codes_ids": lambda: t.Bytes(b""), "codes_values": lambda: t.Bytes(b""),
                "token_values": lambda: t.Bytes(b""), "diff_values": lambda: t.Bytes(b""),
                "recon_error": lambda: t.Bytes(b""),
                "value_range": lambda: t.List(t.Float(), default_value=[0.0, 1.0]),
                "diff_caption": lambda: t.Unicode(""), "feature_labels": lambda: t.Dict()})
def heatmap_panel(p: PanelInput) -> dict[str, Any]:
    """The prompt's tokens, each layer's top-k codes (sparse, binary), the colour values and the diff."""
    codes = p.codes
    if p.view.color_by == "monitor":
        values = monitor_values(p)
    else:
        values = token_values(codes, p.view)
    if p.steered:
        diff = diff_values(codes, p.baseline.layers[p.view.layer], p.view)
        m = _scale_max(diff)
        diff_b, diff_range = f32(diff), [-m, m]
        caption = (f"steered − baseline activation of feature {p.view.selected_feature}"
                   if p.view.selected_feature >= 0 else "relative change of the residual norm, steered vs baseline")
    else:
        diff_b, diff_range, caption = b"", [-1.0, 1.0], ""
    return {
        "tokens": list(p.trace.tokens),
        "k": int(codes.ids.shape[1]),
        "codes_ids": i32(to_numpy(codes.ids)),
        "codes_values": f32(to_numpy(codes.values)),
        "token_values": f32(values),
        "recon_error": f32(to_numpy(codes.recon_error)),
        "diff_values": diff_b,
        "value_range": diff_range if (p.view.diff and p.steered) else
        [0.0, 1.0] if p.view.color_by == "monitor" else [0.0, _scale_max(values)],
        "diff_caption": caption,
        "feature_labels": p.info.labels(p.view.layer, np.unique(to_numpy(codes.ids)).tolist()),
    }


def sidebar_rows(trace: Trace, view: ViewInputs, info: FeatureInfo) -> tuple[str, list[dict[str, Any]]]:
    codes = trace.layers[view.layer]
    if 0 <= view.selected_token < len(trace):
        tok = view.selected_token
        ids, vals = to_numpy(codes.ids[tok]), to_numpy(codes.values[tok])
        pairs = [(int(f), float(v)) for f, v in zip(ids, vals) if v != 0][:SIDEBAR_ROWS]
        title = f"token {tok} {trace.tokens[tok]!r}"
    else:
        top = trace.top_features(view.layer, n=SIDEBAR_ROWS, skip_first=len(trace) > 1)
        pairs = [(int(f), float(a)) for f, a in zip(top.feature, top.activation) if a != 0]
        title = "whole prompt (max over tokens)"
    rows = []
    for f, v in pairs:
        meta = info.get(view.layer, f)
        rows.append({"feature": f, "activation": v, "label": meta["label"], "label_score": meta["label_score"],
                     "label_weak": meta["label_weak"], "density": meta["density"],
                     "contexts": meta["contexts"], "pinned": (view.layer, f) in view.pinned})
    return title, rows


@panel("sidebar", inputs=("selected_token", "selected_feature", "color_by", "search_query"),
       depends=("layer", "selected_token", "pinned"),
       outputs={"sidebar": lambda: t.List(t.Dict()), "sidebar_title": lambda: t.Unicode(""),
                "search_results": lambda: t.List(t.Dict()), "search_error": lambda: t.Unicode("")})
def sidebar_panel(p: PanelInput) -> dict[str, Any]:
    """The top features of the selected token (or the whole prompt), with labels; search results are written
    by the search box's observer, not here."""
    title, rows = sidebar_rows(p.trace, p.view, p.info)
    return {"sidebar": rows, "sidebar_title": title}


def next_token_rows(trace: Trace, position: int = -1) -> list[list[Any]]:
    return [[tok, float(pr)] for tok, pr in trace.next_tokens(position)[:TOP_NEXT]]


@panel("next_tokens", inputs=("selected_token",), depends=("selected_token",),
       outputs={"next_tokens": lambda: t.Dict()})
def next_tokens_panel(p: PanelInput) -> dict[str, Any]:
    """Top next tokens, baseline vs steered, predicted from the selected token (else the last one)."""
    n = len(p.trace)
    pos = p.view.selected_token if 0 <= p.view.selected_token < n else n - 1
    return {"next_tokens": {"position": pos, "token": p.trace.tokens[pos] if n else "",
                            "baseline": next_token_rows(p.baseline, pos),
                            "steered": next_token_rows(p.trace, pos)}}


@panel("steering", inputs=("steer_positions",), outputs={})
def steering_panel(p: PanelInput) -> dict[str, Any]:
    """The sliders draw ``edits`` itself (an input), so there is nothing to compute."""
    return {}


@panel("continuation", inputs=("continuation_tokens", "temperature", "seed", "stop_at_eos"),
       outputs={"continuation": lambda: t.Dict()})
def continuation_panel(p: PanelInput) -> dict[str, Any]:
    """The streamed continuation is written by the widget's follow-up after each result (it streams), not
    here; the panel only owns the trait."""
    return {}


def layer_chart(trace: Trace, view: ViewInputs, n_layers: int) -> np.ndarray:
    """``(n_layers, 4)`` float32: feature activation, L0, reconstruction error, top activation per layer, at the
    selected token, or over the prompt (mean L0 / error, max activations, first token skipped); NaN elsewhere."""
    chart = np.full((n_layers, len(CHART_COLUMNS)), np.nan, dtype=np.float32)
    tok = view.selected_token if view.selected_token < len(trace) else -1
    for n, codes in trace.layers.items():
        vals = to_numpy(codes.values)
        l0, err = to_numpy(codes.l0).astype(np.float32), to_numpy(codes.recon_error)
        sl = slice(tok, tok + 1) if tok >= 0 else slice(1 if len(vals) > 1 else 0, None)
        chart[n, 1] = l0[sl].mean()
        chart[n, 2] = err[sl].mean()
        chart[n, 3] = vals[sl, 0].max()
        if n == view.layer and view.selected_feature >= 0:
            chart[n, 0] = to_numpy(codes.activation_of(view.selected_feature))[sl].max()
    return chart


@panel("layers", inputs=("selected_token", "selected_feature"),
       depends=("layer", "selected_token", "selected_feature"), layers=chart_layers,
       outputs={"layer_chart": lambda: t.Bytes(b""), "layer_state": lambda: t.List(t.Unicode())})
def layers_panel(p: PanelInput) -> dict[str, Any]:
    """Per-layer mini charts (``CHART_COLUMNS``) and which layers' SAEs are resident."""
    return {"layer_chart": f32(layer_chart(p.trace, p.view, p.scope.n_layers)),
            "layer_state": layer_states(p.scope)}
