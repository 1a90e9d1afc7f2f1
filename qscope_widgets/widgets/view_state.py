"""From a widget's raw input traits to validated inputs and the cached traces the panels draw from.

An explorer update is split in two on purpose. The *trace request* (prompt, the active steering edits, the
layers whose codes are needed) is what a forward pass depends on; :class:`TraceCache` runs a forward only when
it changes (or a layer outside the cached trace is asked for). The *view inputs* (the layer in view, the
selected token / feature, colour-by, diff, the pinned set) only choose what to draw from those traces, so
changing one recomputes the panels that read it (``widgets/panels.py``) and never runs the model.

Nothing here knows about traitlets: the exact numbers a browser test checks are computed here in a test.
Bulk per-token data leaves as little-endian ``bytes`` (int32 / float32), which ipywidgets ships as binary
buffers instead of JSON lists.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import FeatureIndexError, PromptError, QScopeError, SteeringError, UnknownLayerError
from ..steering import SteeringEdit
from ..trace import Trace
from .constants import COLOR_BY, MAX_CONTINUATION_TOKENS, MODES, STEER_POSITIONS, TOP_NEXT

CHART_ALL_LAYERS_BYTES = 512 * 2**20  # chart every layer only while all their SAEs fit in this (the demo: 48 MB)


# ------------------------------------------------------------------------------------------------ inputs
@dataclass(frozen=True)
class ViewInputs:
    """What the panels may read besides the traces: changing any of these never runs the model."""

    layer: int
    selected_token: int = -1
    selected_feature: int = -1
    color_by: str = "strongest"
    diff: bool = False
    pinned: frozenset[tuple[int, int]] = frozenset()


@dataclass(frozen=True)
class TraceRequest:
    """What a forward depends on: two equal requests give the same traces."""

    prompt: str
    edits: tuple[SteeringEdit, ...]   # the active (non-no-op) edits, positions resolved
    layers: tuple[int, ...]           # the layers whose codes the shown panels need


@dataclass(frozen=True)
class ViewRequest:
    """One validated update: the trace request, the view inputs, and the streamed continuation's settings."""

    traces: TraceRequest
    view: ViewInputs
    edits: tuple[SteeringEdit, ...] = ()   # every pinned edit (also the disabled / zero ones)
    continuation: "ContinuationSettings | None" = None

    @property
    def prompt(self) -> str:
        return self.traces.prompt

    @property
    def layer(self) -> int:
        return self.view.layer

    @property
    def active_edits(self) -> tuple[SteeringEdit, ...]:
        return self.traces.edits


@dataclass(frozen=True)
class ContinuationSettings:
    """The streamed continuation: length, sampling, and whether end-of-text stops it."""

    tokens: int = 0
    temperature: float = 0.0
    seed: int = 0
    stop_at_eos: bool = True


def check_int(value: Any, what: str) -> int:
    """``value`` as an int (numpy integer scalars too); a :class:`QScopeError` naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise QScopeError(f"{what} must be an int, got {value!r}")
    return int(value)


def edits_from_dicts(rows: list[dict[str, Any]], positions: Any = None) -> tuple[SteeringEdit, ...]:
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
                                mode=row.get("mode", "add"), enabled=bool(row.get("enabled", True)),
                                positions=positions))
    return tuple(out)


def slider_step(lo: float, hi: float) -> float:
    """A round step (1, 2 or 5 x 10^n) giving about 200 positions over ``[lo, hi]``."""
    span = abs(hi - lo)
    if not (span > 0) or not math.isfinite(span):
        return 0.01
    raw = span / 200
    p = 10 ** math.floor(math.log10(raw))
    m = raw / p
    return (1 if m < 1.5 else 2 if m < 3.5 else 5 if m < 7.5 else 10) * p


def slider_bounds(mode: str, typical: float) -> tuple[float, float, float]:
    """``(min, max, default)`` of a strength slider, scaled to the feature's typical activation.

    ``add`` spans +-2x the feature's corpus maximum (the demo's biblical feature steers visibly at ~0.7x);
    ``clamp`` sets the code itself, 0 .. 2x; ``ablate`` is a fraction. Every default leaves the model unchanged
    except clamp's 0, which is ablation by another name, so clamp starts at the typical value instead.
    The bounds are whole multiples of the slider's step (:func:`slider_step`), so 0 and both ends are exactly
    reachable (a range like +-84.27 with step 1 could not reach 0).
    """
    t = typical if typical > 0 and math.isfinite(typical) else 10.0
    if mode == "add":
        lo, hi, default = -2.0 * t, 2.0 * t, 0.0
    elif mode == "clamp":
        lo, hi, default = 0.0, 2.0 * t, t
    elif mode == "ablate":
        return 0.0, 1.0, 0.0
    else:
        raise SteeringError(f"unknown steering mode {mode!r}; expected one of {', '.join(MODES)}")
    step = slider_step(lo, hi)
    lo, hi = math.floor(lo / step) * step, math.ceil(hi / step) * step
    default = round(default / step) * step
    return round(lo, 12), round(hi, 12), round(default, 12)


def normalize_edit_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill each row's slider range (``min``, ``max``, ``step``, ``default``) for its mode (``range_mode``
    remembers which mode the range is for).

    A new row keeps the strength it was given, widening the range (by whole steps) to hold it; a mode switch
    (the row's range was made for another mode) resets the strength to the new mode's default, since an ``add``
    of 30 means nothing as an ``ablate`` fraction.
    """
    out = []
    for row in rows:
        if not isinstance(row, dict):
            out.append(row)  # reported by edits_from_dicts, which names it
            continue
        row = dict(row)
        mode = row.get("mode", "add")
        try:
            lo, hi, default = slider_bounds(mode, float(row.get("typical") or 0.0))
            strength = default if row.get("range_mode") not in (None, mode) else float(row.get("strength", default))
        except (QScopeError, TypeError, ValueError):
            out.append(row)  # an unknown mode or a non-number: left for edits_from_dicts to report
            continue
        step = 0.01 if mode == "ablate" else slider_step(lo, hi)
        if math.isfinite(strength):
            lo = min(lo, math.floor(strength / step) * step)
            hi = max(hi, math.ceil(strength / step) * step)
        row.update(min=round(lo, 12), max=round(hi, 12), step=step, default=default, mode=mode, strength=strength,
                   range_mode=mode, enabled=bool(row.get("enabled", True)))
        row.setdefault("label", "")
        out.append(row)
    return out


def check_edits(scope: Any, rows: list[dict[str, Any]], positions: Any = None) -> tuple[SteeringEdit, ...]:
    """Validate the edit rows against the scope (layers with an SAE, features in range)."""
    edits = edits_from_dicts(list(rows or []), positions)
    for e in edits:
        if e.layer not in scope.sae_layers:
            raise UnknownLayerError(f"steering edit on layer {e.layer}, which has no SAE; layers: {scope.sae_layers}")
        scope.sae(e.layer).check_feature(e.feature)
    return edits


def check_color_by(value: Any) -> str:
    if value not in COLOR_BY:
        raise QScopeError(f"color_by must be one of {COLOR_BY}, got {value!r}")
    return value


def check_feature(scope: Any, layer: int, feature: Any) -> int:
    feature = check_int(feature, "selected_feature")
    if feature >= 0:
        scope.sae(layer).check_feature(feature)
    elif feature != -1:
        raise FeatureIndexError(f"feature {feature} is out of range (use -1 for none)")
    return feature


def check_continuation_tokens(value: Any) -> int:
    n = check_int(value, "continuation_tokens")
    if not 0 <= n <= MAX_CONTINUATION_TOKENS:
        raise QScopeError(f"continuation_tokens must be within 0..{MAX_CONTINUATION_TOKENS}, got {n}")
    return n


def steer_positions(value: Any, selected_token: int) -> Any:
    """The explorer's ``steer_positions`` choice as :class:`SteeringEdit` positions."""
    if value not in STEER_POSITIONS:
        raise SteeringError(f"steer_positions must be one of {STEER_POSITIONS}, got {value!r}")
    if value == "selected":
        return [selected_token] if selected_token >= 0 else None
    return "generated" if value == "generated" else None


def build_request(scope: Any, state: dict[str, Any], layers_needed: Callable[[Any, int], list[int]] | None = None
                  ) -> ViewRequest:
    """Validate a widget's raw input traits (missing ones take their defaults); every problem is a
    :class:`QScopeError` naming it. ``layers_needed(scope, layer)``: layers whose codes the shown panels need."""
    prompt = state.get("prompt", "")
    if not isinstance(prompt, str) or not prompt.strip():
        raise PromptError("the prompt is empty: type some text to run through the model")
    layer = scope.check_layer(check_int(state.get("layer"), "layer"))
    feature = check_feature(scope, layer, state.get("selected_feature", -1))
    color_by = check_color_by(state.get("color_by", "strongest"))
    selected = check_int(state.get("selected_token", -1), "selected_token")
    positions = steer_positions(state.get("steer_positions", "all"), selected)
    edits = check_edits(scope, state.get("edits") or [], positions)
    cont = ContinuationSettings(
        tokens=check_continuation_tokens(state.get("continuation_tokens", 0)),
        temperature=float(state.get("temperature", 0.0)), seed=check_int(state.get("seed", 0), "seed"),
        stop_at_eos=bool(state.get("stop_at_eos", True)))
    if not (cont.temperature >= 0.0 and math.isfinite(cont.temperature)):
        raise QScopeError(f"temperature must be a finite number >= 0, got {cont.temperature!r}")
    layers = sorted(set(layers_needed(scope, layer) if layers_needed else ()) | {layer})
    active = tuple(e for e in edits if not e.is_noop)
    view = ViewInputs(layer=layer, selected_token=selected, selected_feature=feature, color_by=color_by,
                      diff=bool(state.get("diff", False)), pinned=frozenset((e.layer, e.feature) for e in edits))
    return ViewRequest(traces=TraceRequest(prompt, active, tuple(layers)), view=view, edits=edits, continuation=cont)


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


# ------------------------------------------------------------------------------------------------ traces
_SERIAL = itertools.count(1)


@dataclass(frozen=True)
class Traces:
    """The traces one or more updates draw from: steered (== baseline when no edit is active) and baseline.

    ``serial`` identifies them: a panel's cached output is valid while the serial and its inputs are unchanged.
    """

    request: TraceRequest
    trace: Trace
    baseline: Trace
    serial: int

    def covers(self, req: TraceRequest) -> bool:
        """True when these traces answer ``req`` without a forward (same prompt and edits, layers included)."""
        return (req.prompt == self.request.prompt and req.edits == self.request.edits
                and set(req.layers) <= set(self.trace.layers))


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
        for (p, ls), trace in reversed(self._d.items()):  # a cached trace of more layers answers too
            if p == prompt and set(layers) <= set(ls):
                return trace
        trace = scope.run(prompt, layers=layers, top_n=TOP_NEXT, cancel=cancel)
        self._d[key] = trace
        if len(self._d) > self._size:
            self._d.popitem(last=False)
        return trace


class TraceCache:
    """The latest traces, reused while the trace request is covered: view-only changes run no forward."""

    def __init__(self, baselines: BaselineCache | None = None):
        self.baselines = baselines or BaselineCache()
        self.latest: Traces | None = None
        self.forwards = 0  # how many steered/baseline computations ran (tests and benchmarks read it)

    def get(self, scope: Any, req: TraceRequest, cancel: Callable[[], bool] | None = None) -> Traces:
        if self.latest is not None and self.latest.covers(req):
            return self.latest
        self.forwards += 1
        layers = list(req.layers)
        baseline = self.baselines.get(scope, req.prompt, layers, cancel)
        trace = (scope.run(req.prompt, layers=layers, steering=req.edits, top_n=TOP_NEXT, cancel=cancel)
                 if req.edits else baseline)
        self.latest = Traces(req, trace, baseline, next(_SERIAL))
        return self.latest


# ------------------------------------------------------------------------------------------------ packing
def f32(values: Any) -> bytes:
    return np.ascontiguousarray(np.asarray(values, dtype="<f4")).tobytes()


def i32(values: Any) -> bytes:
    return np.ascontiguousarray(np.asarray(values, dtype="<i4")).tobytes()


def to_numpy(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
