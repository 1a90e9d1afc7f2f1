"""The Explorer's ``dashboard`` panel: the selected feature's dashboard, beside the prompt it was found on.

A pure function of the layer in view, the selected feature and the try-your-own text (``dashboard_text``): the
card comes from :func:`~qscope_widgets.widgets.dashboard_data.feature_data` (the same function the standalone
``FeatureDashboard`` draws), so opening a feature is a view change only and runs no forward. A non-empty
``dashboard_text`` is run through the scope at the layer in view (cached per text) and the feature's activation
on each token is shipped as ``dashboard_try``, a context row; an empty or over-long text gives a row with
``"error"`` (shown by the box) instead of failing the whole update.

Every place a feature appears in a view opens it with one message, ``{"type": "open_feature", "layer", "feature"}``
(``ScopeWidget.open_feature``; JS ``openFeature`` in ``js/src/open_feature.js``); a click on a context sends
``{"type": "open_context", "layer", "feature", "context"}`` (``ScopeWidget.open_context``).
"""

from __future__ import annotations

from typing import Any

import traitlets as t

from ..errors import QScopeError
from .compare_panel import PromptText
from .dashboard_data import check_try_text, feature_data, try_text
from .panels import PanelInput, panel, register_input
from .status import error_text

register_input("dashboard_text", lambda: PromptText(""), validate=check_try_text)


def try_row(scope: Any, layer: int, feature: int, text: str) -> dict[str, Any]:
    """:func:`try_text` as a panel output: ``{}`` for no text, a row with ``"error"`` for a text that cannot run."""
    if not text:
        return {}
    try:
        return try_text(scope, layer, feature, text)
    except QScopeError as exc:
        return {"text": text, "layer": layer, "feature": feature, "error": error_text(exc)}


@panel("dashboard", inputs=("selected_feature", "dashboard_text"),
       depends=("layer", "selected_feature", "dashboard_text"),
       outputs={"dashboard": lambda: t.Dict(), "dashboard_try": lambda: t.Dict()})
def dashboard_panel(p: PanelInput) -> dict[str, Any]:
    """The selected feature's dashboard (``{}`` with none selected) and the try-your-own row."""
    feature = p.view.selected_feature
    if feature < 0:
        return {"dashboard": {}, "dashboard_try": {}}
    text = str(p.inputs.get("dashboard_text", "") or "")
    return {"dashboard": feature_data(p.scope, p.view.layer, feature),
            "dashboard_try": try_row(p.scope, p.view.layer, feature, text)}
