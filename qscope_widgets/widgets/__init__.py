"""The notebook widgets (anywidget): the explorer, its four components, and the feature dashboard.

Python side of the contract in ``docs/widget-contract.md``; the front end is ``js/`` bundled into ``static/``.
"""

from . import monitor_colour  # noqa: F401  (validates the `monitor` input; before the views are built)
from .dashboard import FeatureDashboard, feature_data
from .explorer import (VIEWS, AttributionView, Explorer, FeatureSidebar, LayerScrubber, LiveSteering, ScopeWidget, SteeringPanel,
                       TokenHeatmap, WidgetInputError)
from .panels import PANELS, Panel, PanelInput, register_panel
from .scheduler import RunScheduler, Superseded
from .compare_panel import CompareView  # registers the compare panel and its prompt_b input

__all__ = ["Explorer", "TokenHeatmap", "FeatureSidebar", "SteeringPanel", "LayerScrubber", "FeatureDashboard",
           "LiveSteering", "ScopeWidget", "RunScheduler", "Superseded", "feature_data", "Panel", "PanelInput",
           "PANELS", "register_panel", "VIEWS", "WidgetInputError", "AttributionView", "CompareView"]
VIEWS[CompareView._view.default_value] = CompareView
