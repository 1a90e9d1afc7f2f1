"""One feature's dashboard: label, density, activation histogram, top contexts, promoted / suppressed tokens.

The data comes from the scope's feature index (``scope.index(...)`` / ``scope.load_index(...)``, the demo ships
one); with no index covering the layer the dashboard still shows what the weights alone say (the decoder
direction's promoted and suppressed tokens) and says that the corpus statistics are missing. The pin button
puts the feature into the steering sliders of an explorer: the one passed in, else the scope's newest; a click on
a context opens it in that explorer. The try-your-own box runs a text at the feature's layer on a worker thread,
sequence-numbered like an explorer's requests (a stale result is never drawn). The dict it draws is
:func:`~qscope_widgets.widgets.dashboard_data.feature_data`, the same the Explorer's ``dashboard`` panel draws.
"""

from __future__ import annotations

import threading
from typing import Any

import anywidget
import traitlets as t

from ..errors import PromptError, QScopeError
from .export.mixin import StaticExport
from . import assets
from .compare_panel import PromptText
from .dashboard_data import EMPTY_TRY, check_try_text, feature_data, try_text
from .scheduler import Job, RunScheduler
from .scope_widget import ScopeWidget, WidgetInputError, latest_explorer, live_widgets
from .status import error_text

__all__ = ["FeatureDashboard", "feature_data", "describe_view"]


def describe_view(w: ScopeWidget) -> str:
    """A short name for a view the user can recognise: its class, number and prompt."""
    n = sum(1 for x in live_widgets() if type(x) is type(w) and x._created <= w._created)
    return f"{type(w).__name__} #{n} (prompt {w.prompt[:30]!r})"


class FeatureDashboard(StaticExport, anywidget.AnyWidget):
    """``scope.feature(layer, id)``: everything known about one feature, with a button to steer it."""

    _esm = assets.esm()
    _css = assets.css()
    _view = t.Unicode("feature").tag(sync=True)
    layer = t.Int(0).tag(sync=True)
    feature = t.Int(0).tag(sync=True)
    data = t.Dict().tag(sync=True)
    status = t.Dict().tag(sync=True)
    dashboard_text = PromptText("").tag(sync=True)
    dashboard_try = t.Dict().tag(sync=True)
    request_seq = t.Int(0).tag(sync=True)
    result_seq = t.Int(0).tag(sync=True)

    def __init__(self, scope: Any, layer: int, feature: int, *, explorer: ScopeWidget | None = None,
                 feature_url: str = "", **kwargs: Any):
        data = feature_data(scope, layer, feature, url=feature_url)  # bad ids raise here, before any widget exists
        self.scope, self.explorer, self.feature_url = scope, explorer, feature_url
        super().__init__(layer=layer, feature=int(feature), data=data,
                         status={"busy": False, "error": "", "done_seq": 0}, **kwargs)
        self._try_error: tuple[int, QScopeError | None] = (0, None)
        self._status_lock = threading.RLock()  # the worker publishes while the kernel's thread submits
        self._tries: RunScheduler[tuple[int, int, str]] = RunScheduler(self._run_try, self._publish_try,
                                                                      name="qscope-dashboard")
        self.on_msg(self._on_message)

    def __repr__(self) -> str:
        return f"FeatureDashboard(layer={self.layer}, feature={self.feature}, label={self.data.get('label', '')!r})"

    @t.observe("layer", "feature")
    def _reload(self, _change: dict[str, Any]) -> None:
        try:
            self.data = feature_data(self.scope, self.layer, self.feature, url=self.feature_url)
            self.status = {**self.status, "busy": False, "error": ""}
            if self.dashboard_text:
                self._submit_try()
        except QScopeError as exc:
            self.status = {**self.status, "busy": False, "error": error_text(exc)}

    # ------------------------------------------------------------------------------------ try your own text
    @t.validate("dashboard_text")
    def _check_text(self, proposal: Any) -> str:
        try:
            return check_try_text(self.scope, proposal["value"])
        except QScopeError as exc:
            raise WidgetInputError(str(exc)) from exc

    @t.observe("dashboard_text")
    def _on_text(self, _change: dict[str, Any]) -> None:
        self._submit_try()

    def _submit_try(self) -> int:
        with self._status_lock:
            seq = self._tries.submit((int(self.layer), int(self.feature), self.dashboard_text))
            self.request_seq = seq
            self.status = {**self.status, "busy": True, "stage": "running your text", "seq": seq}
        return seq

    def _run_try(self, job: Job[tuple[int, int, str]], _stale: Any) -> dict[str, Any]:
        layer, feature, text = job.request
        if not text:
            return {}
        try:
            return try_text(self.scope, layer, feature, text)
        except QScopeError as exc:  # an empty / over-long text: a row with "error", shown by the box
            self._try_error = (job.seq, exc)
            return {"text": text, "layer": layer, "feature": feature, "error": error_text(exc)}

    def _publish_try(self, job: Job[tuple[int, int, str]], result: Any) -> None:
        if isinstance(result, BaseException):
            result = {"text": job.request[2], "error": error_text(result)}
        if job.seq <= self.result_seq:
            return  # never draw an older result over a newer one
        with self._status_lock, self.hold_sync():
            self.dashboard_try = result
            self.result_seq = job.seq
            self.status = {**self.status, "busy": self._tries.latest_seq > job.seq, "stage": "",
                           "done_seq": job.seq, "error": ""}

    def try_text(self, text: str, timeout: float | None = 60.0) -> dict[str, Any]:
        """The box from Python: run ``text`` at this feature's layer; returns the row drawn (the feature's
        activation on each token, where it peaks). An empty text or one over the context raises its
        :class:`QScopeError` (the box shows the same message)."""
        if not text:
            raise PromptError(f"{EMPTY_TRY} (dashboard_text = '' clears the box)")
        self.dashboard_text = text
        if not self._tries.wait(self._tries.latest_seq, timeout):
            raise TimeoutError(f"the dashboard did not finish running the text within {timeout} s")
        seq, exc = self._try_error
        if exc is not None and seq == self._tries.latest_seq:
            raise exc
        return self.dashboard_try

    def close(self) -> None:
        tries = getattr(self, "_tries", None)
        if tries is not None:
            tries.close()
        super().close()

    # ------------------------------------------------------------------------------------ pin / open context
    def pin_target(self) -> ScopeWidget | None:
        """Where the pin button pins: the explorer passed in, else the newest open view on the same scope that
        has steering sliders (never a standalone heatmap or layer scrubber)."""
        return self.explorer or latest_explorer(self.scope)

    def _target(self, what: str) -> ScopeWidget:
        target = self.pin_target()
        if target is None:
            raise QScopeError(f"no explorer to {what}: open one with scope.explore(prompt) first, or pass "
                              "explorer=... to scope.feature")
        return target

    def pin(self) -> dict[str, Any]:
        """Pin this feature into the explorer's steering sliders; returns its row."""
        return self._target("pin into").pin(self.layer, self.feature)

    def open_context(self, context: dict[str, Any]) -> ScopeWidget:
        """Open a context row (top, sampled or try-your-own) in :meth:`pin_target`'s explorer: its text as the
        prompt, its activating token, this feature and its layer selected. Returns that explorer."""
        target = self._target("open the context in")
        note = target.open_context(self.layer, self.feature, context)
        self.status = {**self.status, "busy": False, "error": "",
                       "message": f"opened the context in {describe_view(target)}" + (f" ({note})" if note else "")}
        return target

    def _on_message(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        try:
            if kind == "pin":
                self.pin()
                target = self.pin_target()
                self.status = {**self.status, "busy": False, "error": "", "pinned": True,
                               "message": f"pinned L{self.layer} #{self.feature} into {describe_view(target)}"}
            elif kind == "open_context":
                self.open_context(content["context"])
            else:
                raise QScopeError(f"unknown message from the front end: {content!r}")
        except (QScopeError, KeyError, TypeError, ValueError) as exc:
            self.status = {**self.status, "busy": False, "error": error_text(exc)}

    def contexts_dataframe(self):
        """The top contexts as a DataFrame (rank, activation, text with the activating token in guillemets)."""
        import pandas as pd

        from .features import context_preview

        rows = [{"rank": c["rank"], "activation": c["activation"], "document": c["document"],
                 "position": c["position"], "text": context_preview(c["tokens"], c["center"], width=12)}
                for c in self.data.get("contexts", [])]
        return pd.DataFrame(rows, columns=["rank", "activation", "document", "position", "text"])

    def to_dataframe(self):
        """The dashboard's scalar facts as a one-row DataFrame."""
        import pandas as pd

        d = self.data
        keep = {k: d.get(k) for k in ("layer", "feature", "label", "explanation", "density", "count",
                                      "mean_activation", "max_activation", "decoder_norm")}
        keep.update({f"q{k[1:]}" if k.startswith("q") else k: v for k, v in (d.get("quantiles") or {}).items()})
        keep["promoted"] = d.get("promoted", [])
        keep["suppressed"] = d.get("suppressed", [])
        return pd.DataFrame([keep])
