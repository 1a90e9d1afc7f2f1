"""The explorer widget and its components, bound live to a :class:`~qscope_widgets.Scope`.

Every component is the same anywidget model with a different ``_view``: the explorer composes the token heatmap,
feature sidebar, steering sliders and layer scrubber; each alone is :class:`TokenHeatmap`, :class:`FeatureSidebar`,
:class:`SteeringPanel`, :class:`LayerScrubber`. The traits are the contract with ``js/`` (docs/widget-contract.md).

Inputs change from either side (a slider in the browser, ``explorer.prompt = ...`` in a cell) and take the same
path: an observer accepts a numbered request, the :class:`RunScheduler` runs the latest one on its worker thread,
and the result is published with its number. Reading ``explorer.trace`` waits for the latest request.
"""

from __future__ import annotations

import atexit
import itertools
import re
import threading
import time
import weakref
from typing import Any, Iterator

import anywidget
import traitlets as t

from ..errors import QScopeError
from ..export.mixin import StaticExport
from ..generation import Generation
from ..hooks import RunCancelled
from ..steering import Mode, Steering, SteeringEdit
from . import assets
from .scheduler import Job, RunScheduler, Superseded
from .view_state import (BaselineCache, FeatureInfo, ViewResult, build_request, compute_view, edits_from_dicts,
                         layer_states, normalize_edit_rows)

INPUTS = ("prompt", "layer", "selected_token", "selected_feature", "color_by", "diff", "edits", "continuation_tokens")
_CREATED = itertools.count()
STREAM_INTERVAL_S = 0.05  # the streamed continuation is sent at most this often
SUPERSEDE_AFTER_S = 0.3  # a forward running longer than this is abandoned as soon as a newer request exists
_ID_QUERY = re.compile(r"^\s*(?:l(?:ayer)?\s*(\d+)\s*[/:]\s*)?#?(\d+)\s*$", re.IGNORECASE)


def _error_text(exc: BaseException) -> str:
    msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    if type(exc).__name__ == "OutOfMemoryError":
        msg = f"out of GPU memory ({msg.splitlines()[0] if msg else ''}); try a shorter prompt or fewer layers"
    return f"{type(exc).__name__}: {msg}"


class ScopeWidget(StaticExport, anywidget.AnyWidget):
    """Shared state and behaviour of the explorer and its components (see the module docstring)."""

    _esm = assets.esm()
    _css = assets.css()
    _view = t.Unicode("explorer").tag(sync=True)

    # inputs: either side writes them
    prompt = t.Unicode("").tag(sync=True)
    layer = t.Int(0).tag(sync=True)
    selected_token = t.Int(-1).tag(sync=True)
    selected_feature = t.Int(-1).tag(sync=True)
    color_by = t.Unicode("strongest").tag(sync=True)
    diff = t.Bool(False).tag(sync=True)
    edits = t.List(t.Dict()).tag(sync=True)
    search_query = t.Unicode("").tag(sync=True)
    continuation_tokens = t.Int(0).tag(sync=True)

    # outputs: only Python writes them
    request_seq = t.Int(0).tag(sync=True)
    result_seq = t.Int(0).tag(sync=True)
    tokens = t.List(t.Unicode()).tag(sync=True)
    k = t.Int(0).tag(sync=True)
    codes_ids = t.Bytes(b"").tag(sync=True)
    codes_values = t.Bytes(b"").tag(sync=True)
    token_values = t.Bytes(b"").tag(sync=True)
    diff_values = t.Bytes(b"").tag(sync=True)
    value_range = t.List(t.Float(), default_value=[0.0, 1.0]).tag(sync=True)
    sidebar = t.List(t.Dict()).tag(sync=True)
    sidebar_title = t.Unicode("").tag(sync=True)
    search_results = t.List(t.Dict()).tag(sync=True)
    next_tokens = t.Dict().tag(sync=True)
    continuation = t.Dict().tag(sync=True)
    layer_chart = t.Bytes(b"").tag(sync=True)
    layer_state = t.List(t.Unicode()).tag(sync=True)
    status = t.Dict().tag(sync=True)
    n_layers = t.Int(0).tag(sync=True)
    sae_layers = t.List(t.Int()).tag(sync=True)
    d_sae = t.Int(0).tag(sync=True)
    feature_url = t.Unicode("").tag(sync=True)

    def __init__(self, scope: Any, prompt: str = "", *, layer: int | None = None, feature: int | None = None,
                 steering: Any = None, continuation_tokens: int = 0, color_by: str | None = None,
                 feature_url: str = "", wait: bool = True, **kwargs: Any):
        if not scope.sae_layers:
            raise QScopeError("this Scope has no SAEs: pass saes=... to Scope.from_pretrained to explore it")
        if layer is None:
            layer = scope.sae_layers[len(scope.sae_layers) // 2]
        scope.check_layer(layer)
        if feature is not None:
            scope.sae(layer).check_feature(feature)
        self.scope = scope
        self._info = FeatureInfo(scope)
        self._baselines = BaselineCache()
        self._continuations: dict[tuple[str, int], str] = {}
        self._result: ViewResult | None = None
        self._last_error: tuple[int, str] = (0, "")  # (seq, message) of the latest failed request
        self._status_lock = threading.Lock()
        self._publisher = threading.local()
        self._ready = False
        self._created = next(_CREATED)
        super().__init__(n_layers=scope.n_layers, sae_layers=list(scope.sae_layers), d_sae=scope.sae(layer).d_sae,
                         feature_url=feature_url, layer=layer, prompt=prompt,
                         color_by=color_by or ("feature" if feature is not None else "strongest"),
                         selected_feature=-1 if feature is None else int(feature),
                         continuation_tokens=continuation_tokens, layer_state=layer_states(scope),
                         status={"busy": False, "stage": "", "latency_ms": 0.0, "error": "", "seq": 0}, **kwargs)
        self._scheduler: RunScheduler[dict[str, Any]] = RunScheduler(self._compute, self._publish, self._stream)
        self.on_msg(self._on_message)
        if steering is not None:
            self.edits = [self._row_for(e) for e in Steering(steering)]
        self._ready = True
        _LIVE.add(self)
        if prompt:
            self._request()
            if wait:
                self.wait()  # a bad prompt or edit given in Python raises here, naming the problem

    # ------------------------------------------------------------------------------------------ Python API
    def __repr__(self) -> str:
        n = len(self.tokens)
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
        return self._result.trace if self._result else None

    @property
    def baseline_trace(self):
        """The unsteered trace of the same prompt and layers."""
        self.wait()
        return self._result.baseline if self._result else None

    @property
    def error(self) -> str:
        """The error shown in the widget now ("" when the last request succeeded)."""
        return str(self.status.get("error", ""))

    @property
    def steering(self) -> "LiveSteering":
        """The pinned features as a :class:`~qscope_widgets.Steering` whose edits re-run the model."""
        return LiveSteering(self)

    def pin(self, layer: int, feature: int, strength: float | None = None, mode: Mode = "add") -> dict[str, Any]:
        """Pin a feature into the steering sliders (range scaled to its typical activation); returns its row."""
        feature = self.scope.sae(layer).check_feature(feature)
        for row in self.edits:
            if (row["layer"], row["feature"]) == (layer, feature):
                return row
        edit = SteeringEdit(layer, feature, 0.0 if strength is None else strength, mode)
        row = self._row_for(edit, explicit_strength=strength is not None)
        self.edits = [*self.edits, row]
        return self.edits[-1]

    def unpin(self, layer: int, feature: int) -> None:
        self.edits = [r for r in self.edits if (r["layer"], r["feature"]) != (layer, feature)]

    def to_dataframe(self):
        """The heatmap's data: one row per token (value drawn, strongest feature, error, steered - baseline)."""
        import pandas as pd

        self.wait()
        res = self._result
        codes = res.trace.layers[res.request.layer]
        df = pd.DataFrame({
            "position": range(len(res.trace)), "token": res.trace.tokens,
            "value": _floats(self.token_values),
            "strongest_feature": codes.ids[:, 0].numpy(), "strongest_activation": codes.values[:, 0].numpy(),
            "recon_error": codes.recon_error.numpy(), "l0": codes.l0.numpy(),
        })
        if self.diff_values:
            df["steered_minus_baseline"] = _floats(self.diff_values)
        return df

    def generate(self, max_new_tokens: int = 32, **kwargs: Any) -> Generation:
        """Steered generation from the current prompt and enabled edits (baseline beside it)."""
        edits = [e for e in edits_from_dicts(self.edits) if not e.is_noop]
        return self.scope.generate(self.prompt, steering=edits, max_new_tokens=max_new_tokens, **kwargs)

    def close(self) -> None:
        scheduler = getattr(self, "_scheduler", None)  # absent when __init__ refused its arguments
        if scheduler is not None:
            scheduler.close()
        super().close()

    # ------------------------------------------------------------------------------------------ inputs
    def _row_for(self, edit: SteeringEdit, explicit_strength: bool = True) -> dict[str, Any]:
        trace = self._result.trace if self._result else None
        typical = self._info.typical_activation(edit.layer, edit.feature, trace)
        row = {"layer": edit.layer, "feature": edit.feature, "mode": edit.mode, "enabled": edit.enabled,
               "label": self._info.get(edit.layer, edit.feature)["label"], "typical": typical}
        if explicit_strength:
            row["strength"] = edit.strength
        return normalize_edit_rows([row])[0]

    @t.observe(*INPUTS)
    def _on_input(self, change: dict[str, Any]) -> None:
        if not self._ready or getattr(self._publisher, "active", False):
            return
        if change["name"] == "edits":
            rows = normalize_edit_rows(list(change["new"]))
            if rows != list(change["new"]):
                self.edits = rows  # re-enters this observer with the normalised rows, which submits
                return
        if change["name"] == "layer" and self.selected_feature != -1:
            self.selected_feature = -1  # feature ids belong to a layer; this re-enters and submits
            return
        if change["name"] == "prompt" and self.selected_token != -1:
            self.selected_token = -1  # token indices belong to a prompt; this re-enters and submits
            return
        self._request()

    def _request(self) -> int:
        state = {name: getattr(self, name) for name in INPUTS}
        seq = self._scheduler.submit(state)
        self.request_seq = seq
        self._set_status(busy=True, stage="running", seq=seq)
        return seq

    def _set_status(self, **kw: Any) -> None:
        with self._status_lock:
            self.status = {**self.status, **kw}

    @t.observe("search_query")
    def _on_search(self, change: dict[str, Any]) -> None:
        try:
            self.search_results = self.search(change["new"])
            self._set_status(error="")
        except QScopeError as exc:
            self.search_results = []
            self._set_status(error=_error_text(exc))

    def search(self, query: str, n: int = 20) -> list[dict[str, Any]]:
        """Features by id (``2360``, ``L3/2360``), by label text (needs a feature index), or by example: a quoted
        phrase (``"the LORD said"``) lists the features of the layer in view that fire most on it."""
        query = (query or "").strip()
        if not query:
            return []
        if len(query) >= 2 and query[0] == query[-1] == '"':
            return self._search_by_example(query[1:-1], n)
        m = _ID_QUERY.match(query)
        if m:
            layer = int(m.group(1)) if m.group(1) is not None else self.layer
            feature = self.scope.sae(layer).check_feature(int(m.group(2)))
            info = self._info.get(layer, feature)
            return [{"layer": layer, "feature": feature, "label": info["label"], "density": info["density"],
                     "max_activation": info["max_activation"]}]
        index = self._info.index
        if index is None:
            raise QScopeError("no feature index is attached, so only ids can be searched (e.g. '2360' or "
                              "'L3/2360'); attach one with scope.load_index(path) or scope.index(corpus)")
        df = index.search(query, n=n)
        return [{"layer": int(r.layer), "feature": int(r.feature), "label": str(r.explanation or r.label),
                 "density": float(r.density), "max_activation": float(r.max_activation)} for r in df.itertuples()]

    def _search_by_example(self, phrase: str, n: int) -> list[dict[str, Any]]:
        from ..index.store import search_by_example

        if not phrase.strip():
            raise QScopeError('the quoted phrase is empty: type the text to look for between the quotes')
        top = search_by_example(self.scope, phrase, self.layer, n=n, index=self._info.index)
        rows = []
        for r in top.itertuples():
            info = self._info.get(self.layer, int(r.feature))
            rows.append({"layer": self.layer, "feature": int(r.feature), "label": info["label"],
                         "density": info["density"], "max_activation": info["max_activation"],
                         "activation": float(r.activation)})
        return rows

    def _on_message(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        try:
            kind = content.get("type")
            if kind == "pin":
                self.pin(int(content["layer"]), int(content["feature"]))
            elif kind == "select_feature":
                layer, feature = int(content["layer"]), int(content["feature"])
                self.scope.sae(layer).check_feature(feature)
                self.layer = layer
                self.selected_feature = feature
                self.color_by = "feature"
            else:
                raise QScopeError(f"unknown message from the front end: {content!r}")
        except (QScopeError, KeyError, TypeError, ValueError) as exc:
            self._set_status(error=_error_text(exc))

    # ------------------------------------------------------------------------------------------ the worker
    def _compute(self, job: Job[dict[str, Any]], stale: Any) -> ViewResult:
        layer = job.request["layer"]
        if layer in self.scope.sae_layers and not self.scope.saes.is_loaded(layer):
            with self._publishing():
                self.layer_state = layer_states(self.scope, loading=layer)
            self._set_status(stage=f"loading the SAE of layer {layer}")
        req = build_request(self.scope, job.request)
        if stale():
            raise Superseded
        t0 = time.perf_counter()

        def cancel() -> bool:  # short runs finish (progress while dragging); long ones yield to the newest
            return stale() and time.perf_counter() - t0 > SUPERSEDE_AFTER_S

        try:
            return compute_view(self.scope, req, self._baselines, self._info, cancel)
        except RunCancelled:
            raise Superseded from None

    def _publishing(self) -> "_Flag":
        return _Flag(self._publisher)

    def _publish(self, job: Job[dict[str, Any]], result: Any) -> None:
        latency = (time.perf_counter() - job.submitted) * 1e3
        busy = self._scheduler.latest_seq > job.seq
        if isinstance(result, BaseException):
            self._last_error = (job.seq, _error_text(result))
            with self._publishing():
                self.layer_state = layer_states(self.scope)
            self._set_status(busy=busy, stage="", latency_ms=latency, error=self._last_error[1])
            return
        if job.seq <= self.result_seq:
            return  # never draw an older result over a newer one
        self._result = result
        with self._publishing(), self.hold_sync():
            for name, value in result.outputs.items():
                setattr(self, name, value)
            self.result_seq = job.seq
            if not result.request.continuation_tokens:
                self.continuation = {}
        self._set_status(busy=busy, stage="", latency_ms=latency, error="")

    def _stream(self, job: Job[dict[str, Any]], result: ViewResult, stale: Any) -> None:
        """Stream the steered continuation token by token; stops as soon as a newer request exists."""
        req = result.request
        n = req.continuation_tokens
        if n <= 0:
            return
        key = (req.prompt, n)
        if key not in self._continuations:
            self._continuations[key] = self.scope.generate(req.prompt, max_new_tokens=n, baseline=False).text
        base = self._continuations[key]
        if not req.active_edits:
            self.continuation = {"seq": job.seq, "baseline": base, "steered": base, "done": True}
            return
        parts: list[str] = []
        self.continuation = {"seq": job.seq, "baseline": base, "steered": "", "done": False}
        last_sent = [time.perf_counter()]

        def on_token(_step: int, token: str, _which: str) -> None:
            if stale():
                raise Superseded
            parts.append(token)
            now = time.perf_counter()
            if now - last_sent[0] >= STREAM_INTERVAL_S:  # a message per frame at most, not one per token
                last_sent[0] = now
                self.continuation = {"seq": job.seq, "baseline": base, "steered": "".join(parts), "done": False}
            time.sleep(0)  # let the kernel's main thread take the next slider message between tokens

        gen = self.scope.generate(req.prompt, steering=req.active_edits, max_new_tokens=n, baseline=False,
                                  on_token=on_token)
        self.continuation = {"seq": job.seq, "baseline": base, "steered": gen.text, "done": True}


class _Flag:
    """Marks, for this thread only, that traits are being written by the publisher (not user input)."""

    def __init__(self, local: threading.local):
        self.local = local

    def __enter__(self) -> None:
        self.local.active = True

    def __exit__(self, *exc: Any) -> None:
        self.local.active = False


def _floats(b: bytes):
    import numpy as np

    return np.frombuffer(b, dtype="<f4").copy()


class Explorer(ScopeWidget):
    """Token heatmap + feature sidebar + steering sliders + layer scrubber + status line, live on a Scope."""

    _view = t.Unicode("explorer").tag(sync=True)


class TokenHeatmap(ScopeWidget):
    """The prompt's tokens coloured by a feature, the strongest feature, the reconstruction error, or a diff."""

    _view = t.Unicode("heatmap").tag(sync=True)


class FeatureSidebar(ScopeWidget):
    """Top features of the selected token or the prompt, with labels and contexts; search; pin to steer."""

    _view = t.Unicode("sidebar").tag(sync=True)


class SteeringPanel(ScopeWidget):
    """A slider per pinned feature, next-token predictions baseline vs steered, and a streamed continuation."""

    _view = t.Unicode("steering").tag(sync=True)


class LayerScrubber(ScopeWidget):
    """Moves across layers, with per-layer mini charts; unloaded SAEs load lazily when reached."""

    _view = t.Unicode("layers").tag(sync=True)


class LiveSteering(Steering):
    """The explorer's pinned edits as a :class:`Steering`: every change re-runs the model and moves the sliders."""

    def __init__(self, widget: ScopeWidget):  # noqa: D107 - no list of its own: the widget's trait is the truth
        self._widget = widget

    @property
    def _edits(self) -> list[SteeringEdit]:  # type: ignore[override]
        return list(edits_from_dicts(self._widget.edits))

    def add(self, layer: int, feature: int, strength: float = 1.0, mode: Mode = "add",
            positions: Any = None) -> SteeringEdit:
        if positions is not None:
            raise QScopeError("the explorer steers every position; use scope.run(..., steering=...) for positions")
        edit = SteeringEdit(layer, feature, strength, mode)
        w = self._widget
        w.scope.sae(layer).check_feature(feature)
        rows = [r for r in w.edits if (r["layer"], r["feature"]) != (layer, feature)]
        w.edits = [*rows, w._row_for(edit)]
        return edit

    def set(self, layer: int, feature: int, **changes: Any) -> None:
        """Change ``strength``, ``mode`` or ``enabled`` of a pinned feature."""
        bad = set(changes) - {"strength", "mode", "enabled"}
        if bad:
            raise QScopeError(f"only strength, mode and enabled can be set, not {sorted(bad)}")
        rows, found = [], False
        for r in self._widget.edits:
            if (r["layer"], r["feature"]) == (layer, feature):
                r, found = {**r, **changes}, True
            rows.append(r)
        if not found:
            raise QScopeError(f"feature {feature} of layer {layer} is not pinned; pinned: "
                              f"{[(r['layer'], r['feature']) for r in self._widget.edits]}")
        self._widget.edits = rows

    def remove(self, layer: int, feature: int) -> None:
        self._widget.unpin(layer, feature)

    def clear(self) -> None:
        self._widget.edits = []

    def __iter__(self) -> Iterator[SteeringEdit]:
        return iter(self._edits)

    def __repr__(self) -> str:
        return f"LiveSteering({self._edits!r})"


# -------------------------------------------------------------------------------------------- registry
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
    """The newest open widget on ``scope``: where a feature dashboard's pin button pins by default."""
    mine = [w for w in live_widgets() if w.scope is scope]
    return mine[-1] if mine else None
