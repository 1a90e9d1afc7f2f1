"""The steering panel's "sweep": does a pinned feature's steering beat its controls on a handful of prompts?

A sweep is :func:`~qscope_widgets.steering_eval.steering_eval` (``scope.steering_eval``) of one pinned feature
at a few strengths, beside a random direction and another feature of similar density scaled to the same norm,
on the current prompt plus a few fixed neutral prompts, with greedy decoding and short continuations. It is slow
(dozens of generations), so it does not run inside the panel function (which would hold every heatmap update
back until it finished): the panel only owns the traits, and the sweep runs as the view's follow-up on the
scheduler's worker, after a request's result is drawn, like the streamed continuation. A newer request (a slider
move, a new prompt, cancel) supersedes it between two generations; the next request's follow-up starts it again,
and a finished sweep is kept (per settings), so it never runs twice.

The request (``sweep_request``, set by the sweep button or :meth:`ScopeWidget.sweep`) names the feature and,
optionally, the settings; what it leaves out is filled in once, from the view as it was when the request came
(the prompt, the pinned edit's strength), so later prompt edits do not restart it. The sweep steers exactly the
pinned edit: its mode (add, clamp, ablate) and the view's steering positions (every token, generated tokens
only, or the selected token, counted from the end of the prompt on the other prompts); ``steering_eval`` matches
the controls' norm to it (position by position for clamp and ablate).
"""

from __future__ import annotations

import math
import numbers
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import traitlets as t

from ..errors import QScopeError
from ..steering import SteeringEdit
from ..steering_eval import CONTROLS, FeatureActivation, TargetLogProb
from .panels import PanelInput, WidgetInputError, frozen_value, panel, register_input
from .scheduler import Superseded
from .status import error_text
from .view_state import steer_positions

NEUTRAL_PROMPTS = ("The weather today is", "My favourite thing to do is", "Here is a short story about")
PROMOTED_TARGETS = 3  # the promoted_logprob metric's targets: the top tokens of W_U @ W_dec[:, f]
STRENGTH_FACTORS = (0.5, 1.0, 2.0)  # x the pinned strength (or the typical activation when the slider is at 0)
DEFAULT_TOKENS = 8
MAX_PROMPTS, MAX_STRENGTHS, MAX_SEEDS, MAX_TOKENS = 8, 6, 4, 64
KEPT_SWEEPS = 8  # finished sweeps kept per view
PROGRESS_INTERVAL_S = 0.2
REQUEST_KEYS = {"layer", "feature", "prompts", "strengths", "seeds", "max_new_tokens", "controls", "nonce"}


@dataclass(frozen=True)
class SweepSettings:
    """Everything one sweep runs with: the arguments of ``scope.steering_eval`` (hashable: the cache key)."""

    layer: int
    feature: int
    prompts: tuple[str, ...]
    strengths: tuple[float, ...]
    seeds: tuple[int, ...] = (0,)
    max_new_tokens: int = DEFAULT_TOKENS
    controls: tuple[str, ...] = CONTROLS
    note: str = ""
    promoted: tuple[int, ...] = ()  # token ids the feature's decoder direction promotes most
    mode: str = "add"  # the pinned edit's mode
    positions: Any = None  # its positions: None (every token), "generated", or a tuple counted from the prompt end

    def metrics(self) -> dict[str, Any]:
        """What the sweep measures on each continuation: the feature's own activation on an unsteered re-run of
        the text, and (when known) the log-probability of the tokens the feature promotes under the steering;
        a feature can push its promoted tokens ("which which") without the text itself carrying the feature."""
        out: dict[str, Any] = {"feature_act": FeatureActivation()}
        if self.promoted:
            out["promoted_logprob"] = TargetLogProb(self.promoted, name="promoted_logprob")
        return out

    def run(self, scope: Any, progress: Any = None):
        """``scope.steering_eval`` with these settings (the :class:`SteeringEvalFrame`)."""
        edit = SteeringEdit(self.layer, self.feature, self.strengths[0], self.mode, self.positions)
        return scope.steering_eval(list(self.prompts), [edit], strengths=list(self.strengths),
                                   metrics=self.metrics(), controls=self.controls,
                                   max_new_tokens=self.max_new_tokens, seeds=list(self.seeds), progress=progress)

    def describe(self) -> dict[str, Any]:
        return {"layer": self.layer, "feature": self.feature, "prompts": list(self.prompts),
                "strengths": list(self.strengths), "seeds": list(self.seeds), "max_new_tokens": self.max_new_tokens,
                "controls": list(self.controls), "note": self.note, "metrics": list(self.metrics()),
                "promoted": list(self.promoted), "mode": self.mode,
                "positions": list(self.positions) if isinstance(self.positions, tuple) else self.positions}


def promoted_ids(scope: Any, layer: int, feature: int, n: int = PROMOTED_TARGETS) -> tuple[int, ...]:
    """The ``n`` token ids the feature's decoder direction promotes most (top of ``W_U @ W_dec[:, f]``)."""
    from ..index.labels import decoder_logit_tokens  # analysis layer, imported when a sweep is resolved

    ids = list(range(int(scope.model.get_output_embeddings().weight.shape[0])))
    top, _ = decoder_logit_tokens(scope, layer, ids, n=n, features=[feature])  # "vocab" = the ids themselves
    return tuple(int(i) for i in top[0])


def _list(name: str, value: Any, kind: Any, most: int) -> list:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise QScopeError(f"sweep {name} must be a list, got {value!r}")
    if not 1 <= len(value) <= most:
        raise QScopeError(f"sweep {name} must hold 1 to {most} values, got {len(value)}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, kind):
            raise QScopeError(f"sweep {name} holds {v!r}, not a {getattr(kind, '__name__', 'number')}")
    return list(value)


def check_sweep_request(scope: Any, value: Any) -> dict[str, Any]:
    """``{}`` (no sweep / cancel) or ``{"layer", "feature"}`` plus optional ``prompts``, ``strengths``,
    ``seeds``, ``max_new_tokens``, ``controls`` and a ``nonce`` (the button sends one so a second click re-runs
    from the view as it is now). Returns the value; raises a :class:`QScopeError` naming what is wrong."""
    if not isinstance(value, dict):
        raise QScopeError(f"sweep_request must be a dict, got {type(value).__name__} {value!r}")
    if not value:
        return value
    unknown = sorted(set(value) - REQUEST_KEYS)
    if unknown:
        raise QScopeError(f"sweep_request has unknown keys {unknown}; known: {sorted(REQUEST_KEYS)}")
    if "layer" not in value or "feature" not in value:
        raise QScopeError(f"sweep_request needs 'layer' and 'feature', got {value!r}")
    for key in ("layer", "feature"):
        if isinstance(value[key], bool) or not isinstance(value[key], numbers.Integral):
            raise QScopeError(f"sweep_request {key} must be an int, got {value[key]!r}")
    scope.check_layer(int(value["layer"]))
    scope.sae(int(value["layer"])).check_feature(int(value["feature"]))
    if "prompts" in value and any(not p.strip() for p in _list("prompts", value["prompts"], str, MAX_PROMPTS)):
        raise QScopeError("a sweep prompt is empty")
    if "strengths" in value:
        s = _list("strengths", value["strengths"], numbers.Real, MAX_STRENGTHS)
        if not all(math.isfinite(x) and x != 0 for x in s):
            raise QScopeError(f"sweep strengths must be finite and non-zero, got {value['strengths']!r}")
    if "seeds" in value:
        _list("seeds", value["seeds"], numbers.Integral, MAX_SEEDS)
    if "max_new_tokens" in value:
        n = value["max_new_tokens"]
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 2 <= n <= MAX_TOKENS:
            raise QScopeError(f"sweep max_new_tokens must be an int from 2 to {MAX_TOKENS}, got {n!r}")
    if "controls" in value:
        bad = [c for c in _list("controls", value["controls"], str, len(CONTROLS)) if c not in CONTROLS]
        if bad:
            raise QScopeError(f"unknown sweep control(s) {bad}; choose from {list(CONTROLS)}")
    return value


class RequestDict(t.Dict):
    """A ``Dict`` trait whose type check is the package's: a non-dict is refused with a :class:`QScopeError`
    naming the value (the view's validator) instead of a bare traitlets ``TraitError`` raised before it."""

    def validate(self, obj: Any, value: Any) -> Any:
        if not isinstance(value, dict):
            try:
                check_sweep_request(None, value)
            except QScopeError as exc:
                raise WidgetInputError(str(exc)) from exc
        return super().validate(obj, value)


register_input("sweep_request", lambda: RequestDict(), validate=check_sweep_request)


@panel("sweep", inputs=("sweep_request",), outputs={"sweep_result": lambda: t.Dict()})
def sweep_panel(p: PanelInput) -> dict[str, Any]:
    """The sweep runs as the view's follow-up (slow, cancellable, see the module docstring), not here; the panel
    owns its traits."""
    return {}


def default_prompts(prompt: str) -> tuple[str, ...]:
    """The current prompt (when there is one), then the fixed neutral prompts."""
    out = [prompt] if prompt.strip() else []
    return tuple(out + [p for p in NEUTRAL_PROMPTS if p != prompt])


def prompt_positions(positions: Any, prompt_len: int) -> Any:
    """The view's steering positions (``None``, ``"generated"`` or absolute token indices of the current prompt)
    as positions that mean the same on every swept prompt: token indices counted from the end of the prompt
    (the selected last token is ``-1`` on every prompt)."""
    if positions is None or positions == "generated":
        return positions
    return tuple(sorted({int(p) - prompt_len if int(p) >= 0 else int(p) for p in positions}))


def resolve(scope: Any, request: dict[str, Any], prompt: str, edit_rows: list[dict[str, Any]],
            typical: float = 0.0, promoted: Any = (), positions: Any = None) -> SweepSettings:
    """Fill what ``request`` leaves out from the view: prompts = the current one + :data:`NEUTRAL_PROMPTS`;
    the pinned edit's mode and the view's steering ``positions`` (see :func:`prompt_positions`; prompts too short
    for them are left out, said in ``note``); strengths = :data:`STRENGTH_FACTORS` x the pinned strength (or, at
    0, ``typical``, the feature's typical activation, for add; 1, the whole feature, for ablate; clamp sweeps its
    target 0 as is); both controls when a feature index covers the layer (the other-feature control needs
    densities), else the random direction only (said in ``note``)."""
    layer, feature = int(request["layer"]), int(request["feature"])
    row = next((r for r in edit_rows if (int(r["layer"]), int(r["feature"])) == (layer, feature)), None)
    mode = str(row.get("mode") or "add") if row else "add"
    strengths = request.get("strengths")
    if strengths is None:
        base = float(row.get("strength") or 0.0) if row else 0.0
        if mode == "clamp" and base == 0.0:
            strengths = [0.0]  # clamp to 0 (switch the feature off) is a real edit: sweep it as it is
        else:
            base = base or (float(typical) if mode == "add" else 1.0)
            if not (base and math.isfinite(base)):
                raise QScopeError(f"no strength to sweep L{layer}/{feature} at: set its slider, or pass "
                                  "strengths=[...]")
            strengths = [f * base for f in STRENGTH_FACTORS]
    notes = []
    prompts = tuple(request.get("prompts") or default_prompts(prompt))
    if isinstance(positions, tuple) and scope is not None and hasattr(scope, "tokenize"):
        need = -min(positions)  # a prompt needs this many tokens to have the steered one
        fit = tuple(p for p in prompts if int(scope.tokenize(p).shape[-1]) >= need)
        if not fit:
            raise QScopeError(f"the steered token position {list(positions)} (from the prompt's end) lies outside "
                              f"every sweep prompt: {list(prompts)}")
        if len(fit) < len(prompts):
            notes.append(f"{len(prompts) - len(fit)} prompt(s) shorter than {need} tokens left out (the edit "
                         f"steers token {list(positions)} from the prompt's end)")
        prompts = fit
    controls = request.get("controls")
    if controls is None:
        index = getattr(scope, "feature_index", None)
        if index is not None and layer in index.layers:
            controls = CONTROLS
        else:
            controls = ("random_direction",)
            notes.append(f"no feature index covers layer {layer}: the other-feature control (density-matched) is "
                         "left out")
    return SweepSettings(layer, feature, prompts, tuple(float(s) for s in strengths),
                         tuple(int(s) for s in request.get("seeds", (0,))),
                         int(request.get("max_new_tokens", DEFAULT_TOKENS)), tuple(controls), "; ".join(notes),
                         tuple(promoted), mode, positions)


def summary_rows(frame: Any) -> list[dict[str, Any]]:
    """The compact table the panel shows: per strength x metric, the feature's mean effect beside baseline's and
    each control's, and whether it is specific (``SteeringEvalFrame.summary``), JSON-friendly."""
    def num(x: Any) -> float | None:
        return None if x is None or x != x else float(x)

    keep = ["feature_mean", "baseline_mean", *[f"{c}_mean" for c in CONTROLS],
            *[f"margin_vs_{c}" for c in ("baseline", *CONTROLS)], "perplexity_feature", "perplexity_baseline"]
    rows = []
    for r in frame.summary().to_dict("records"):
        row = {"strength": float(r["strength"]), "metric": str(r["metric"]), "specific": bool(r["specific"]),
               "n_prompts": int(r["n_prompts"])}
        row.update({k: num(r[k]) for k in keep if k in r})
        rows.append(row)
    return rows


class SweepRunner:
    """One view's sweeps: the request resolved once, the finished frames kept, the ``sweep_result`` trait written."""

    def __init__(self, widget: Any, typical: Any = None):
        self.widget = widget
        self.typical = typical or (lambda layer, feature: 0.0)  # (layer, feature) -> typical activation
        self.frames: OrderedDict[SweepSettings, Any] = OrderedDict()
        self._resolved: tuple[Any, SweepSettings] | None = None  # (the request as set, its settings)

    def settings_for(self, request: dict[str, Any], inputs: dict[str, Any]) -> SweepSettings:
        key = frozen_value(request)
        if self._resolved is None or self._resolved[0] != key:
            typical = self.typical(int(request["layer"]), int(request["feature"]))
            scope = self.widget.scope
            layer, feature = int(request["layer"]), int(request["feature"])
            prompt = inputs.get("prompt", "")
            where = steer_positions(inputs.get("steer_positions", "all"), inputs.get("selected_token", -1))
            where = prompt_positions(where, int(scope.tokenize(prompt).shape[-1]) if prompt.strip() else 0)
            self._resolved = (key, resolve(scope, request, prompt, inputs.get("edits", []), typical,
                                           promoted_ids(scope, layer, feature), where))
        return self._resolved[1]

    def frame_for(self, request: dict[str, Any]) -> Any:
        """The finished frame of ``request`` (as set on the widget), or None when it has not run to the end."""
        if self._resolved is None or self._resolved[0] != frozen_value(request):
            return None
        return self.frames.get(self._resolved[1])

    def show(self, **state: Any) -> None:
        self.widget.sweep_result = {**state, "updated": time.time()}

    def follow_up(self, inputs: dict[str, Any], stale: Any) -> None:
        """Run (or show the kept result of) the sweep ``inputs["sweep_request"]`` asks for; raises
        :class:`Superseded` between two generations once a newer request exists."""
        request = inputs.get("sweep_request") or {}
        current = dict(self.widget.sweep_result or {})
        if not request:
            if current.get("state") in ("running", "waiting"):
                self.show(**{**current, "state": "cancelled"})
            return
        try:
            settings = self.settings_for(request, inputs)
        except QScopeError as exc:
            self.show(state="error", error=error_text(exc), layer=int(request["layer"]),
                      feature=int(request["feature"]))
            return
        frame = self.frames.get(settings)
        if frame is None:
            frame = self._run(settings, stale)
            if frame is None:
                return
        self.frames.move_to_end(settings)
        if current.get("state") != "done" or current.get("settings") != settings.describe():
            self.show(state="done", settings=settings.describe(), rows=summary_rows(frame),
                      layer=settings.layer, feature=settings.feature, error="", done=len(frame), total=len(frame))

    def _run(self, settings: SweepSettings, stale: Any) -> Any:
        base = {"settings": settings.describe(), "layer": settings.layer, "feature": settings.feature, "error": "",
                "rows": []}
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if stale():
                self.show(**base, state="waiting", done=done, total=total)  # resumes after the newer request
                raise Superseded
            now = time.perf_counter()
            if now - last[0] >= PROGRESS_INTERVAL_S or done == total:
                last[0] = now
                self.show(**base, state="running", done=done, total=total)

        self.show(**base, state="running", done=0, total=0)
        try:
            frame = settings.run(self.widget.scope, progress)
        except QScopeError as exc:
            self.show(**base, state="error", error=error_text(exc), done=0, total=0)
            return None
        self.frames[settings] = frame
        while len(self.frames) > KEPT_SWEEPS:
            self.frames.popitem(last=False)
        return frame



def sweep(widget: Any, runner: SweepRunner | None, layer: int, feature: int, *, prompts: Any = None, strengths: Any = None, seeds: Any = None,
          max_new_tokens: int | None = None, controls: Any = None, timeout: float | None = 600.0):
    """:meth:`ScopeWidget.sweep`: set the request, wait for the worker to finish it, return its frame."""
    if runner is None or "sweep" not in widget.panels:
        raise QScopeError(f"{type(widget).__name__} has no sweep panel")
    request: dict[str, Any] = {"layer": layer, "feature": feature}
    extra = {"prompts": prompts, "strengths": strengths, "seeds": seeds, "max_new_tokens": max_new_tokens,
             "controls": controls}
    request.update({k: list(v) if isinstance(v, (tuple, list)) else v for k, v in extra.items() if v is not None})
    request["nonce"] = int(widget.sweep_request.get("nonce", 0)) + 1 if widget.sweep_request else 1
    widget.sweep_request = request  # validated here: a bad value raises, naming it
    try:
        widget.wait(timeout, raise_error=False, idle=True)
    except TimeoutError:
        raise TimeoutError(f"the sweep of L{layer}/{feature} did not finish within {timeout} s") from None
    frame = runner.frame_for(widget.sweep_request)
    if frame is None:
        state = widget.sweep_result or {}
        raise QScopeError(state.get("error") or widget.error or f"the sweep of L{layer}/{feature} did not run")
    return frame
