"""The base of every live view on a :class:`~qscope_widgets.Scope`: a view is a list of panels.

A view class says which panels it shows (``panels = ("heatmap", "sidebar")``); the metaclass gives it exactly
the synced traits those panels read and write (``widgets/panels.py``), plus the common ones below. Inputs change
from either side (a slider in the browser, ``explorer.prompt = ...`` in a cell) and take the same path: they are
validated when set (a bad value raises at once and leaves the widget as it was), an observer submits a
numbered request, the :class:`RunScheduler` runs the latest one on its worker thread, and the panels whose
inputs changed are recomputed from the cached traces (a forward runs only when the prompt, the active edits or
a layer outside the traces changed). The result is published with its number; ``explorer.trace`` waits for it.
"""

from __future__ import annotations

import atexit
import itertools
import threading
import time
import weakref
from typing import Any

import anywidget
import traitlets as t

from ..errors import QScopeError
from ..validate import format_feature_url
from .export.mixin import StaticExport
from ..hooks import RunCancelled
from ..steering import Mode, Steering, SteeringEdit
from . import assets
from .features import FeatureInfo
from .live_steering import LiveSteering
from .panels import (INPUT_TRAITS, INPUT_VALIDATORS, NOT_A_REQUEST, PanelInput, WidgetInputError, compute_panels,
                     get_panels, layers_needed, view_traits)
from .scheduler import Job, RunScheduler, Superseded
from .search import search_features
from .status import error_text
from .sweep_panel import SweepRunner
from .view_state import (ContinuationSettings, TraceCache, ViewRequest, build_request, check_color_by,
                         check_continuation_tokens, check_edits, check_feature, check_int, edits_from_dicts,
                         layer_states, normalize_edit_rows, steer_positions)

_CREATED = itertools.count()
STREAM_INTERVAL_S = 0.05  # the streamed continuation is sent at most this often
SUPERSEDE_AFTER_S = 0.3  # a forward running longer than this is abandoned as soon as a newer request exists
_VALIDATED = ("layer", "selected_feature", "selected_token", "color_by", "continuation_tokens", "steer_positions",
              "seed", "temperature", "edits")


class _ViewMeta(type(anywidget.AnyWidget)):  # type: ignore[misc]
    """Gives a class that declares ``panels = (...)`` the synced traits of exactly those panels."""

    def __new__(mcls, name: str, bases: tuple, ns: dict[str, Any], **kw: Any):
        if "panels" in ns:
            names = tuple(ns["panels"])
            traits = view_traits(names)
            for trait_name, make in traits.items():
                ns.setdefault(trait_name, make().tag(sync=True))
            ns["_panels"] = t.List(t.Unicode(), default_value=list(names)).tag(sync=True)
            extra = [n for n in traits if n in INPUT_VALIDATORS]
            if extra:  # inputs registered by other modules: validated when set, like the built-in ones
                ns["_validate_registered_inputs"] = t.validate(*extra)(ScopeWidget_validate_registered)
        return super().__new__(mcls, name, bases, ns, **kw)


def ScopeWidget_validate_registered(self: Any, proposal: Any) -> Any:  # noqa: N802 - bound by _ViewMeta
    name = proposal["trait"].name
    try:
        return INPUT_VALIDATORS[name](self.scope, proposal["value"])
    except QScopeError as exc:
        raise WidgetInputError(str(exc)) from exc


class ScopeWidget(StaticExport, anywidget.AnyWidget, metaclass=_ViewMeta):
    """Shared state and behaviour of every panel view (see the module docstring)."""

    _esm = assets.esm()
    _css = assets.css()
    _view = t.Unicode("explorer").tag(sync=True)
    panels: tuple[str, ...] = ()

    # common outputs: only Python writes them
    request_seq = t.Int(0).tag(sync=True)
    result_seq = t.Int(0).tag(sync=True)
    status = t.Dict().tag(sync=True)
    n_layers = t.Int(0).tag(sync=True)
    sae_layers = t.List(t.Int()).tag(sync=True)
    d_sae = t.Int(0).tag(sync=True)
    feature_url = t.Unicode("").tag(sync=True)

    @t.validate("feature_url")
    def _check_feature_url(self, proposal: Any) -> str:
        format_feature_url(proposal["value"], 0, 0)  # the page opens it: http(s) only
        return proposal["value"]

    def __init__(self, scope: Any, prompt: str = "", *, layer: int | None = None, feature: int | None = None,
                 steering: Any = None, continuation_tokens: int = 0, color_by: str | None = None,
                 feature_url: str = "", wait: bool = True, **kwargs: Any):
        format_feature_url(feature_url, 0, 0)  # http(s) only: refused before any widget exists
        if not scope.sae_layers:
            raise QScopeError("this Scope has no SAEs: pass saes=... to Scope.from_pretrained to explore it")
        if layer is None:
            layer = scope.sae_layers[len(scope.sae_layers) // 2]
        scope.check_layer(layer)
        if feature is not None:
            scope.sae(layer).check_feature(feature)
        if color_by is not None:
            check_color_by(color_by)
        check_continuation_tokens(continuation_tokens)
        self.scope = scope
        self._panel_list = get_panels(self.panels)
        self._layers_needed = layers_needed(self._panel_list)
        self._info = FeatureInfo(scope)
        self._traces = TraceCache()
        self._shown: dict[str, tuple] = {}  # panel name -> key of the outputs published now
        self._continuations: dict[tuple, Any] = {}
        self._result: _Result | None = None
        self._last_error: tuple[int, str] = (0, "")  # (seq, message) of the latest failed request
        self._status_lock = threading.RLock()
        self._publisher = threading.local()
        self._token_counts: dict[str, int] = {}
        self._ready = False
        self._created = next(_CREATED)
        init: dict[str, Any] = dict(n_layers=scope.n_layers, sae_layers=list(scope.sae_layers),
                                    d_sae=scope.sae(layer).d_sae, feature_url=feature_url, layer=layer,
                                    prompt=prompt,
                                    status={"busy": False, "stage": "", "latency_ms": 0.0, "error": "", "seq": 0,
                                            "done_seq": 0})
        optional = {"color_by": color_by or ("feature" if feature is not None else "strongest"),
                    "selected_feature": -1 if feature is None else int(feature),
                    "continuation_tokens": continuation_tokens, "layer_state": layer_states(scope)}
        init.update({k: v for k, v in optional.items() if self.has_trait(k)})
        super().__init__(**init, **kwargs)
        self._sweeper = SweepRunner(self, self._info.typical_activation) if "sweep" in self.panels else None
        self._scheduler: RunScheduler[dict[str, Any]] = RunScheduler(self._compute, self._publish, self._after)
        self.on_msg(self._on_message)
        if steering is not None:
            if not self.has_trait("edits"):
                raise QScopeError(f"{type(self).__name__} has no steering panel")
            self.edits = [self.row_for(e) for e in Steering(steering)]
        self._ready = True
        _LIVE.add(self)
        if prompt:
            self._request()
            if wait:
                self.wait()  # a bad prompt or edit given in Python raises here, naming the problem

    # ------------------------------------------------------------------------------------------ Python API
    def __repr__(self) -> str:
        n = len(getattr(self, "tokens", []) or [])
        return (f"{type(self).__name__}(layer={self.layer}, prompt={self.prompt[:40]!r}, {n} tokens, "
                f"{len(self.edits)} steering edit(s))")

    def wait(self, timeout: float | None = 60.0, *, raise_error: bool = True, idle: bool = False) -> "ScopeWidget":
        """Block until the latest request is drawn (``idle=True``: and its continuation finished streaming).

        Raises the latest request's error (also shown in the widget) unless ``raise_error=False``.
        """
        seq = self._scheduler.latest_seq
        if not self._scheduler.wait(seq, timeout, idle=idle):
            raise TimeoutError(f"the explorer did not finish request {seq} within {timeout} s")
        if raise_error and self._last_error[0] == seq:
            raise QScopeError(self._last_error[1])
        return self

    @property
    def trace(self):
        """The :class:`~qscope_widgets.Trace` drawn now (steered when edits are active); waits for the latest."""
        self.wait()
        return self._result.traces.trace if self._result else None

    @property
    def baseline_trace(self):
        """The unsteered trace of the same prompt and layers."""
        self.wait()
        return self._result.traces.baseline if self._result else None

    @property
    def forwards(self) -> int:
        """How many times this widget ran the model (view-only changes run none)."""
        return self._traces.forwards

    @property
    def error(self) -> str:
        """The error shown in the widget now ("" when the last request succeeded)."""
        return str(self.status.get("error", ""))

    @property
    def steering(self) -> LiveSteering:
        """The pinned features as a :class:`~qscope_widgets.Steering` whose edits re-run the model."""
        return LiveSteering(self)

    def pin(self, layer: int, feature: int, strength: float | None = None, mode: Mode = "add") -> dict[str, Any]:
        """Pin a feature into the steering sliders (range scaled to its typical activation); returns its row."""
        if not self.has_trait("edits"):
            raise QScopeError(f"{type(self).__name__} has no steering sliders to pin into")
        self.scope.check_layer(layer)
        feature = self.scope.sae(layer).check_feature(feature)
        for row in self.edits:
            if (row["layer"], row["feature"]) == (layer, feature):
                return row
        edit = SteeringEdit(layer, feature, 0.0 if strength is None else strength, mode)
        row = self.row_for(edit, explicit_strength=strength is not None)
        self.edits = [*self.edits, row]
        return self.edits[-1]

    def open_feature(self, layer: int, feature: int) -> None:
        """Open a feature wherever it appears (a sidebar row, a tooltip, a search result, a pinned slider's name,
        an attribution node): select it, on its layer, and colour by it; a view with a ``dashboard`` panel shows
        its dashboard. Only view inputs change: no forward while the layer's codes are in the trace."""
        if not self.has_trait("selected_feature"):
            raise QScopeError(f"{type(self).__name__} has no feature selection to open feature {feature!r} in")
        layer = self.scope.check_layer(check_int(layer, "layer"))
        feature = self.scope.sae(layer).check_feature(check_int(feature, "feature"))
        self.layer = layer  # resets the feature (ids belong to a layer), so the feature comes second
        self.selected_feature = feature
        if self.has_trait("color_by"):
            self.color_by = "feature"

    def open_context(self, layer: int, feature: int, context: dict[str, Any]) -> str:
        """Open a dashboard context here: the prompt becomes the context's text (its ``token_ids`` decoded up to
        the window's end; the ``tokens`` joined when it has none), and the activating token, the feature's layer
        and the feature are selected. Returns a note ("" or why the text is approximate), also shown in the
        status line."""
        from .dashboard_data import context_prompt

        layer = self.scope.check_layer(check_int(layer, "layer"))
        feature = self.scope.sae(layer).check_feature(check_int(feature, "feature"))
        prompt, position, note = context_prompt(self.scope, context)  # every check before anything changes
        self.layer = layer
        self.prompt = prompt
        if self.has_trait("selected_feature"):
            self.selected_feature = feature
            if self.has_trait("color_by"):
                self.color_by = "feature"
        if self.has_trait("selected_token"):
            self.selected_token = position
        self._set_status(message=f"opened a context of L{layer} #{feature}" + (f" ({note})" if note else ""))
        return note

    def color_by_monitor(self, monitor: Any) -> "ScopeWidget":
        """Colour the heatmap by ``monitor``'s per-token score (``token_colouring``: 0..1, 1 at its threshold);
        ``None`` goes back to the strongest feature."""
        if not self.has_trait("monitor"):
            raise QScopeError(f"{type(self).__name__} has no heatmap to colour")
        if monitor is None:
            self.color_by, self.monitor = "strongest", {}
            return self
        from .monitor_colour import monitor_spec

        spec = monitor_spec(monitor)
        if monitor.scope is not self.scope:
            raise QScopeError(f"{monitor!r} belongs to another Scope than this view's")
        with self.hold_trait_notifications():
            self.monitor = spec
            self.color_by = "monitor"
        return self

    def unpin(self, layer: int, feature: int) -> None:
        self.edits = [r for r in self.edits if (r["layer"], r["feature"]) != (layer, feature)]

    def to_dataframe(self):
        """The heatmap's data: one row per token (value drawn, strongest feature, error, steered - baseline)."""
        import numpy as np
        import pandas as pd

        from .panels import diff_values, token_values

        self.wait()
        res = self._result
        trace, view = res.traces.trace, res.request.view
        codes = trace.layers[view.layer]
        df = pd.DataFrame({
            "position": range(len(trace)), "token": trace.tokens,
            "value": token_values(codes, view),
            "strongest_feature": codes.ids[:, 0].numpy(), "strongest_activation": codes.values[:, 0].numpy(),
            "recon_error": codes.recon_error.numpy(), "l0": codes.l0.numpy(),
        })
        if res.request.active_edits:
            df["steered_minus_baseline"] = np.asarray(
                diff_values(codes, res.traces.baseline.layers[view.layer], view))
        return df

    def generate(self, max_new_tokens: int = 32, **kwargs: Any):
        """Steered generation from the current prompt and enabled edits (baseline beside it)."""
        edits = [e for e in edits_from_dicts(self.edits) if not e.is_noop]
        return self.scope.generate(self.prompt, steering=edits, max_new_tokens=max_new_tokens, **kwargs)

    def steering_code(self) -> str:
        """The current edits as Python you can paste into a cell ("copy as code")."""
        rows = [e for e in edits_from_dicts(self.edits) if e.enabled]
        where = steer_positions(getattr(self, "steer_positions", "all"), getattr(self, "selected_token", -1))
        pos = "" if where is None else f", positions={where!r}"
        lines = [f"    SteeringEdit(layer={e.layer}, feature={e.feature}, strength={e.strength!r}, mode={e.mode!r}{pos}),"
                 for e in rows]
        return ("from qscope_widgets import SteeringEdit\n\nedits = [\n" + "\n".join(lines) + "\n]\n"
                f"trace = scope.run({self.prompt!r}, steering=edits)\n")

    def search(self, query: str, n: int = 20) -> list[dict[str, Any]]:
        """Features by id (``2360``, ``L3/2360``), by label text (needs a feature index), or by example: a quoted
        phrase (``"the LORD said"``) lists the features of the layer in view that fire most on it."""
        return search_features(self.scope, self._info, self.layer, query, n)

    def sweep(self, layer: int, feature: int, *, prompts: Any = None, strengths: Any = None, seeds: Any = None,
              max_new_tokens: int | None = None, controls: Any = None, timeout: float | None = 600.0):
        """The sweep button from Python: ``scope.steering_eval`` of one feature against its controls (defaults:
        the current prompt + neutral prompts, 0.5/1/2 x the pinned strength, seed 0, 8 tokens, both controls;
        metrics: the feature's activation on the text and the log-probability of its top-3 promoted tokens),
        run on the widget's worker (shown in the panel; superseded by newer work, then resumed) and returned
        as the same :class:`~qscope_widgets.steering_eval.SteeringEvalFrame` (``.summary()``)."""
        from .sweep_panel import sweep

        return sweep(self, self._sweeper, layer, feature, prompts=prompts, strengths=strengths, seeds=seeds,
                     max_new_tokens=max_new_tokens, controls=controls, timeout=timeout)

    def close(self) -> None:
        scheduler = getattr(self, "_scheduler", None)  # absent when __init__ refused its arguments
        if scheduler is not None:
            scheduler.close()
        super().close()

    # ------------------------------------------------------------------------------------------ inputs
    def row_for(self, edit: SteeringEdit, explicit_strength: bool = True) -> dict[str, Any]:
        """The edits-trait row of ``edit``: label, typical activation, slider range."""
        trace = self._result.traces.trace if self._result else None
        typical = self._info.typical_activation(edit.layer, edit.feature, trace)
        row = {"layer": edit.layer, "feature": edit.feature, "mode": edit.mode, "enabled": edit.enabled,
               "label": self._info.get(edit.layer, edit.feature)["label"], "typical": typical}
        if explicit_strength:
            row["strength"] = edit.strength
        return normalize_edit_rows([row])[0]

    def _token_count(self, prompt: str) -> int:
        if prompt not in self._token_counts:
            self._token_counts[prompt] = int(self.scope.tokenize(prompt).shape[-1]) if prompt.strip() else 0
        return self._token_counts[prompt]

    def _check_input(self, name: str, value: Any) -> Any:
        """The validated value of one input trait, or a :class:`QScopeError` naming the problem."""
        if name == "layer":
            return self.scope.check_layer(value if isinstance(value, bool) else check_int(value, "layer"))
        if name == "selected_feature":
            return check_feature(self.scope, self.layer, value)
        if name == "selected_token":
            value = check_int(value, "selected_token")
            n = self._token_count(self.prompt)
            if not -1 <= value < n:
                raise QScopeError(f"selected_token {value} is out of range: the prompt has {n} tokens "
                                  f"(0..{n - 1}, or -1 for none)")
            return value
        if name == "color_by":
            return check_color_by(value)
        if name == "continuation_tokens":
            return check_continuation_tokens(value)
        if name == "steer_positions":
            steer_positions(value, -1)
            return value
        if name == "seed":
            return check_int(value, "seed")
        if name == "temperature":
            if not (value >= 0.0) or value == float("inf"):
                raise QScopeError(f"temperature must be a finite number >= 0, got {value!r}")
            return value
        if name == "edits":
            rows = normalize_edit_rows(list(value))
            check_edits(self.scope, rows)
            return rows
        if name in INPUT_VALIDATORS:
            return INPUT_VALIDATORS[name](self.scope, value)
        return value

    @t.validate(*_VALIDATED)
    def _validate_input(self, proposal: Any) -> Any:
        try:
            return self._check_input(proposal["trait"].name, proposal["value"])
        except QScopeError as exc:
            raise WidgetInputError(str(exc)) from exc

    def set_state(self, sync_data: dict[str, Any]) -> None:
        """State from the front end: a value the validators refuse is not applied; its error is shown in the
        status line (and raised by the next :meth:`wait`), and the front end gets the kept value back."""
        good, refused = dict(sync_data), []
        for name in list(good):
            if (name in _VALIDATED or name in INPUT_VALIDATORS) and self.has_trait(name):
                try:
                    value = good[name]
                    if name == "selected_feature" and "layer" in good:
                        self._check_input("layer", good["layer"])
                        value = check_feature(self.scope, good["layer"], value)
                    elif name == "selected_token" and "prompt" in good:
                        value = check_int(value, "selected_token")
                    else:
                        self._check_input(name, value)
                except QScopeError as exc:
                    refused.append(name)
                    del good[name]
                    msg = error_text(exc)
                    self._last_error = (self._scheduler.latest_seq, msg)
                    self._set_status(error=msg)
        if good:
            super().set_state(good)
        if refused:
            self.send_state(refused)

    @t.observe(t.All)
    def _on_input(self, change: dict[str, Any]) -> None:
        name = change["name"]
        if name not in INPUT_TRAITS or name in NOT_A_REQUEST:
            return  # an output, or an input with its own observer
        if not self._ready or getattr(self._publisher, "active", False):
            return
        if change["name"] == "layer" and getattr(self, "selected_feature", -1) != -1:
            self.selected_feature = -1  # feature ids belong to a layer; this re-enters and submits
            return
        if change["name"] == "prompt" and getattr(self, "selected_token", -1) != -1:
            self.selected_token = -1  # token indices belong to a prompt; this re-enters and submits
            return
        self._request()

    def _inputs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in INPUT_TRAITS
                if name not in NOT_A_REQUEST and self.has_trait(name)}

    def _request(self) -> int:
        with self._status_lock:  # a result published within a millisecond must not be marked busy afterwards
            seq = self._scheduler.submit(self._inputs())
            self.request_seq = seq
            status = {k: v for k, v in self.status.items() if k != "message"}  # a message said what the last action did
            self.status = {**status, "busy": True, "stage": "running", "seq": seq}
        return seq

    def _set_status(self, **kw: Any) -> None:
        with self._status_lock:
            self.status = {**self.status, **kw}

    @t.observe("search_query")
    def _on_search(self, change: dict[str, Any]) -> None:
        try:
            self.search_results = self.search(change["new"])
            self.search_error = ""
            self._set_status(error="")
        except QScopeError as exc:
            self.search_results = []
            self.search_error = error_text(exc)  # shown by the search box
            self._set_status(error=error_text(exc))

    def _on_message(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        try:
            kind = content.get("type")
            if kind == "pin":
                self.pin(int(content["layer"]), int(content["feature"]))
            elif kind in ("select_feature", "open_feature"):  # the common "open feature" (docs/architecture.md)
                self.open_feature(int(content["layer"]), int(content["feature"]))
            elif kind == "open_context":
                self.open_context(int(content["layer"]), int(content["feature"]), content["context"])
            else:
                raise QScopeError(f"unknown message from the front end: {content!r}")
        except (QScopeError, KeyError, TypeError, ValueError) as exc:
            self._set_status(error=error_text(exc))

    # ------------------------------------------------------------------------------------------ the worker
    def _compute(self, job: Job[dict[str, Any]], stale: Any) -> "_Result":
        layer = job.request["layer"]
        if layer in self.scope.sae_layers and not self.scope.saes.is_loaded(layer):
            if self.has_trait("layer_state"):
                with self._publishing():
                    self.layer_state = layer_states(self.scope, loading=layer)
            self._set_status(stage=f"loading the SAE of layer {layer}")
        req = build_request(self.scope, job.request, self._layers_needed)
        if stale():
            raise Superseded
        t0 = time.perf_counter()

        def cancel() -> bool:  # short runs finish (progress while dragging); long ones yield to the newest
            return stale() and time.perf_counter() - t0 > SUPERSEDE_AFTER_S

        before = self._traces.forwards
        try:
            traces = self._traces.get(self.scope, req.traces, cancel)
        except RunCancelled:
            raise Superseded from None
        pin = PanelInput(self.scope, traces, req.view, self._info, job.request)
        outputs, keys = compute_panels(self._panel_list, pin, self._shown)
        return _Result(req, traces, outputs, keys, forward=self._traces.forwards > before)

    def _publishing(self) -> "_Flag":
        return _Flag(self._publisher)

    def _publish(self, job: Job[dict[str, Any]], result: Any) -> None:
        latency = (time.perf_counter() - job.submitted) * 1e3
        if isinstance(result, BaseException):
            self._last_error = (job.seq, error_text(result))
            if self.has_trait("layer_state"):
                with self._publishing():
                    self.layer_state = layer_states(self.scope)
            with self._status_lock:
                self.status = {**self.status, "busy": self._scheduler.latest_seq > job.seq, "stage": "",
                               "latency_ms": latency, "error": self._last_error[1],
                               "done_seq": max(job.seq, int(self.status.get("done_seq", 0)))}
            return
        if job.seq <= self.result_seq:
            return  # never draw an older result over a newer one
        with self._status_lock, self._publishing(), self.hold_sync():  # one message: outputs, seq and status
            for name, value in result.outputs.items():
                setattr(self, name, value)
            if self.has_trait("continuation") and not result.request.continuation.tokens:
                self.continuation = {}
            self.result_seq = job.seq
            self._result = result
            self._shown.update(result.keys)
            self.status = {**self.status, "busy": self._scheduler.latest_seq > job.seq, "stage": "",
                           "latency_ms": latency, "error": "", "done_seq": job.seq,
                           "forward": result.forward, "panels": sorted(result.keys)}

    def _after(self, job: Job[dict[str, Any]], result: "_Result", stale: Any) -> None:
        """Follow-up work after a drawn result: the streamed continuation, then a pending sweep."""
        self._stream(job, result, stale)
        if self._sweeper is not None and not stale():
            self._sweeper.follow_up(job.request, stale)

    def _stream(self, job: Job[dict[str, Any]], result: "_Result", stale: Any) -> None:
        """Stream the steered continuation token by token; stops as soon as a newer request exists."""
        settings: ContinuationSettings = result.request.continuation
        if "continuation" not in self.panels or settings is None or settings.tokens <= 0:
            return
        req: ViewRequest = result.request
        n = settings.tokens
        gen_kw = dict(max_new_tokens=n, temperature=settings.temperature, seed=settings.seed,
                      stop_at_eos=settings.stop_at_eos)
        key = (req.prompt, n, settings.temperature, settings.seed, settings.stop_at_eos)
        if key not in self._continuations:
            self._continuations[key] = self.scope.generate(req.prompt, baseline=False, **gen_kw)
        base = self._continuations[key]
        base_note = _stop_note(base, n)
        edits = tuple(e for e in req.edits if not e.is_noop)
        if not edits:
            self.continuation = {"seq": job.seq, "baseline": base.text, "steered": base.text, "done": True,
                                 "note": base_note}
            return
        parts: list[str] = []
        self.continuation = {"seq": job.seq, "baseline": base.text, "steered": "", "done": False, "note": base_note}
        last_sent = [time.perf_counter()]

        def on_token(_step: int, token: str, _which: str) -> None:
            if stale():
                raise Superseded
            parts.append(token)
            now = time.perf_counter()
            if now - last_sent[0] >= STREAM_INTERVAL_S:  # a message per frame at most, not one per token
                last_sent[0] = now
                self.continuation = {"seq": job.seq, "baseline": base.text, "steered": "".join(parts),
                                     "done": False, "note": base_note}
            time.sleep(0)  # let the kernel's main thread take the next slider message between tokens

        gen = self.scope.generate(req.prompt, steering=edits, baseline=False, on_token=on_token, **gen_kw)
        self.continuation = {"seq": job.seq, "baseline": base.text, "steered": gen.text, "done": True,
                             "note": _stop_note(gen, n) or base_note}


def _stop_note(gen: Any, n: int) -> str:
    """Why a continuation is shorter than asked: greedy decoding reached end-of-text (what to try instead)."""
    got = len(getattr(gen, "token_ids", []) or [])
    if got >= n:
        return ""
    if got == 0:
        return ("the model ends the text right away (end-of-text is its most likely next token); raise the "
                "temperature or untick 'stop at end of text' to continue anyway")
    return f"stopped at end of text after {got} of {n} tokens"


class _Result:
    """One published update: the request, the traces it drew from, the traits that changed and the panel keys."""

    __slots__ = ("request", "traces", "outputs", "keys", "forward")

    def __init__(self, request: ViewRequest, traces: Any, outputs: dict[str, Any], keys: dict[str, tuple],
                 forward: bool):
        self.request, self.traces, self.outputs, self.keys, self.forward = request, traces, outputs, keys, forward

    @property
    def trace(self):
        return self.traces.trace

    @property
    def baseline(self):
        return self.traces.baseline


class _Flag:
    """Marks, for this thread only, that traits are being written by the publisher (not user input)."""

    def __init__(self, local: threading.local):
        self.local = local

    def __enter__(self) -> None:
        self.local.active = True

    def __exit__(self, *exc: Any) -> None:
        self.local.active = False


# -------------------------------------------------------------------------------------------- live widgets
_LIVE: "weakref.WeakSet[ScopeWidget]" = weakref.WeakSet()


@atexit.register
def _stop_workers() -> None:
    """Let running jobs stop before the interpreter tears torch down under them (a script ending mid-stream)."""
    for w in live_widgets():
        scheduler = getattr(w, "_scheduler", None)
        if scheduler is not None:
            scheduler.close(join_timeout=5.0)


def live_widgets() -> list[ScopeWidget]:
    """Every open explorer/component in this kernel, oldest first (tests ask the kernel what it drew)."""
    return sorted(_LIVE, key=lambda w: w._created)


def latest_explorer(scope: Any) -> ScopeWidget | None:
    """The newest open view on ``scope`` that has steering sliders: where a dashboard's pin button pins."""
    mine = [w for w in live_widgets() if w.scope is scope and "steering" in w.panels and w.comm is not None]
    return mine[-1] if mine else None
