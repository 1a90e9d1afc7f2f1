"""The views on a Scope, each a list of panels (``widgets/panels.py``) over :class:`ScopeWidget`.

:class:`Explorer` shows them all; :class:`TokenHeatmap`, :class:`FeatureSidebar`, :class:`SteeringPanel` and
:class:`LayerScrubber` show one part each and sync only that part's traits (docs/widget-contract.md).
"""

from __future__ import annotations

import traitlets as t

from . import sweep_panel  # noqa: F401 - registers the steering sweep panel
from . import dashboard_panel  # noqa: F401 - registers the feature dashboard panel
from .live_steering import LiveSteering
from .scope_widget import ScopeWidget, WidgetInputError, latest_explorer, live_widgets
from .attribution_view import AttributionView, ExplorerAttribution

__all__ = ["Explorer", "TokenHeatmap", "FeatureSidebar", "SteeringPanel", "LayerScrubber", "ScopeWidget",
           "LiveSteering", "WidgetInputError", "latest_explorer", "live_widgets", "VIEWS", "AttributionView"]


class Explorer(ExplorerAttribution, ScopeWidget):
    """Token heatmap + feature sidebar + steering sliders + layer scrubber + status line, live on a Scope; click a
    predicted next token to see which features made the model predict it (the attribution panel)."""

    _view = t.Unicode("explorer").tag(sync=True)
    panels = ("heatmap", "sidebar", "layers", "steering", "next_tokens", "continuation", "sweep", "dashboard", "attribution")

    def attribute(self, target: object, **kwargs: object) -> AttributionView:
        """An :class:`AttributionView` of this prompt, layer, selected token and steering, explaining ``target``."""
        return AttributionView(self.scope, self.prompt, target, layer=self.layer,
                               selected_token=self.selected_token, edits=[dict(r) for r in self.edits], **kwargs)


class TokenHeatmap(ScopeWidget):
    """The prompt's tokens coloured by a feature, the strongest feature, the reconstruction error, or a diff."""

    _view = t.Unicode("heatmap").tag(sync=True)
    panels = ("heatmap",)


class FeatureSidebar(ScopeWidget):
    """Top features of the selected token or the prompt, with labels and contexts; search; pin to steer."""

    _view = t.Unicode("sidebar").tag(sync=True)
    panels = ("sidebar",)


class SteeringPanel(ScopeWidget):
    """A slider per pinned feature, next-token predictions baseline vs steered, a streamed continuation, and a
    sweep of a pinned feature against its controls."""

    _view = t.Unicode("steering").tag(sync=True)
    panels = ("steering", "next_tokens", "continuation", "sweep")


class LayerScrubber(ScopeWidget):
    """Moves across layers, with per-layer mini charts; unloaded SAEs load lazily when reached."""

    _view = t.Unicode("layers").tag(sync=True)
    panels = ("layers",)


VIEWS: dict[str, type[ScopeWidget]] = {cls._view.default_value: cls for cls in
                                       (Explorer, TokenHeatmap, FeatureSidebar, SteeringPanel, LayerScrubber,
                                        AttributionView)}
