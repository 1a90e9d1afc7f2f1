""":class:`AttributionView`: the token heatmap, next tokens and the attribution panel (``attribution_panel.py``);
:class:`AttributionActions`: what any view with that panel (the explorer too) does beyond drawing it.

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
from .panels import frozen_value
from .scope_widget import ScopeWidget, latest_explorer
from .status import error_text
from .view_state import edits_from_dicts


class AttributionActions(t.HasTraits):
    """What a view with the attribution panel does beyond drawing it (mixed into :class:`AttributionView` and the
    explorer): the attribution drawn now, the "verify" button (exact ablations off the kernel's thread) and the
    ``verify`` message."""

    @property
    def current_attribution(self):
        """The :class:`~qscope_widgets.attribution.Attribution` drawn now (None without a target)."""
        self.wait(raise_error=False)  # a refused input (shown in the status line) leaves the drawn result valid
        if self._result is None:
            return None
        pin = ap.PanelInput(self.scope, self._result.traces, self._result.request.view, self._info, self._inputs())
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

    def _verify_in_background(self, n: Any) -> None:
        def run() -> None:  # n exact forwards: off the kernel's thread, so the page stays responsive
            try:
                self.verify(n)
                self._set_status(error="")
            except (QScopeError, TypeError, ValueError) as exc:
                self.attribution_check = {"error": error_text(exc)}
                self._set_status(error=error_text(exc))

        self.attribution_check = {"running": True}
        threading.Thread(target=run, name="qscope-verify", daemon=True).start()

    def _on_message(self, widget: Any, content: dict[str, Any], buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "verify":
            return self._verify_in_background(content.get("n", 10))
        return super()._on_message(widget, content, buffers)


class ExplorerAttribution(AttributionActions):
    """The explorer's attribution: computed only on request (a click on a predicted next token, or a target typed
    or set from Python), at the position of that prediction (``attribution_position``, so token clicks afterwards
    cost nothing), for the prompt and active steering edits it was requested under. Changing either clears the
    target (the panel goes back to its hint) instead of running a backward pass per keystroke or slider step."""

    _attribution_seen: tuple[tuple, tuple, int] = (("", -1), (), -1)  # (target, position), context, resolved

    def _attribution_context(self) -> tuple:
        edits = tuple(e for e in edits_from_dicts(self.edits) if e.enabled and not e.is_noop)
        return self.prompt, frozen_value(edits)

    def _inputs(self) -> dict[str, Any]:
        inputs = super()._inputs()
        asked = (inputs.get("attribution_target", ""), inputs.get("attribution_position", -1))
        seen, context, resolved = self._attribution_seen
        if asked != seen:  # a new request: it belongs to the prompt, edits (and selected token) of now
            resolved = asked[1] if asked[1] >= 0 else getattr(self, "selected_token", -1)
            self._attribution_seen = (asked, self._attribution_context(), resolved)
        elif asked[0] and context != self._attribution_context():
            inputs["attribution_target"] = ""  # requested under another prompt or other edits: not recomputed
        inputs["attribution_position"] = resolved
        return inputs

    @t.observe("prompt", "edits")
    def _clear_a_stale_target(self, change: dict[str, Any]) -> None:
        if self.attribution_target and self._attribution_seen[1] != self._attribution_context():
            self.attribution_target = ""


class AttributionView(AttributionActions, ScopeWidget):
    """Token heatmap + attribution grid, ranked nodes and graph of ``attribution_target``; "verify" button."""

    _view = t.Unicode("attribution").tag(sync=True)
    panels = ("heatmap", "next_tokens", "attribution")

    def __init__(self, scope: Any, prompt: str = "", target: Any = "", **kwargs: Any):
        if target != "":
            kwargs["attribution_target"] = ap.check_attribution_target(scope, target)
        super().__init__(scope, prompt, **kwargs)

    def _inputs(self) -> dict[str, Any]:
        """In this view the position always follows the selected token (a click on a token attributes the
        prediction made there), whatever ``attribution_position`` says."""
        inputs = super()._inputs()
        return {**inputs, "attribution_position": inputs.get("selected_token", -1)}

    def pin_to_explorer(self, layer: int, feature: int) -> dict[str, Any]:
        """Pin a feature into the newest open explorer's steering sliders on this scope (this view has none)."""
        target = latest_explorer(self.scope)
        if target is None:
            raise QScopeError("no explorer with steering sliders to pin into: open one with scope.explore(prompt) "
                              "first")
        return target.pin(int(layer), int(feature))

    def _on_message(self, widget: Any, content: dict[str, Any], buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "pin":
            try:
                self.pin_to_explorer(content["layer"], content["feature"])
                self._set_status(error="")
            except (QScopeError, KeyError, TypeError, ValueError) as exc:
                self._set_status(error=error_text(exc))
            return None
        return super()._on_message(widget, content, buffers)
