""":class:`AttributionView`: the token heatmap, next tokens and the attribution panel (``attribution_panel.py``).

Set ``attribution_target`` (a token, or click a predicted next token) and the panel shows which features, at which
layer and position, made the model predict it at the selected token (else the last). The front end's "verify"
button sends ``{"type": "verify", "n": n}``; :meth:`AttributionView.verify` ablates the top ``n`` feature nodes
exactly (off the kernel's thread) and writes estimate vs true effect and their Spearman correlation to
``attribution_check``.
"""

from __future__ import annotations

import threading
from typing import Any

import traitlets as t

from ..errors import QScopeError
from . import attribution_panel as ap
from .scope_widget import ScopeWidget, latest_explorer
from .status import error_text


class AttributionView(ScopeWidget):
    """Token heatmap + attribution grid, ranked nodes and graph of ``attribution_target``; "verify" button."""

    _view = t.Unicode("attribution").tag(sync=True)
    panels = ("heatmap", "next_tokens", "attribution")

    def __init__(self, scope: Any, prompt: str = "", target: Any = "", **kwargs: Any):
        if target != "":
            kwargs["attribution_target"] = ap.check_attribution_target(scope, target)
        super().__init__(scope, prompt, **kwargs)

    @property
    def current_attribution(self):
        """The :class:`~qscope_widgets.attribution.Attribution` drawn now (None without a target)."""
        self.wait(raise_error=False)  # a refused input (shown in the status line) leaves the drawn result valid
        if self._result is None:
            return None
        pin = ap.PanelInput(self.scope, self._result.traces, self._result.request.view, self._info,
                            {"attribution_target": self.attribution_target})
        hit = ap.cached_attribution(pin)
        return None if hit is None else hit[0]

    def verify(self, n: int = 10) -> dict[str, Any]:
        """Exactly ablate the top ``n`` feature nodes of the attribution drawn now; the result (estimate vs true
        effect, Spearman) goes to ``attribution_check`` (shown by the panel) and is returned."""
        n = ap.check_verify_n(n)
        attr = self.current_attribution
        if attr is None:
            raise QScopeError("no attribution to verify: set attribution_target to a token first")
        check = {**ap.verification_dict(attr.verify(n)), "target": attr.target.description,
                 "position": int(attr.position)}
        self.attribution_check = check
        return check

    def pin_to_explorer(self, layer: int, feature: int) -> dict[str, Any]:
        """Pin a feature into the newest open explorer's steering sliders on this scope (this view has none)."""
        target = latest_explorer(self.scope)
        if target is None:
            raise QScopeError("no explorer with steering sliders to pin into: open one with scope.explore(prompt) "
                              "first")
        return target.pin(int(layer), int(feature))

    def _on_message(self, widget: Any, content: dict[str, Any], buffers: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "pin":
            try:
                self.pin_to_explorer(content["layer"], content["feature"])
                self._set_status(error="")
            except (QScopeError, KeyError, TypeError, ValueError) as exc:
                self._set_status(error=error_text(exc))
            return None
        if kind != "verify":
            return super()._on_message(widget, content, buffers)

        def run() -> None:  # n exact forwards: off the kernel's thread, so the page stays responsive
            try:
                self.verify(content.get("n", 10))
                self._set_status(error="")
            except (QScopeError, TypeError, ValueError) as exc:
                self.attribution_check = {"error": error_text(exc)}
                self._set_status(error=error_text(exc))

        self.attribution_check = {"running": True}
        threading.Thread(target=run, name="qscope-verify", daemon=True).start()
