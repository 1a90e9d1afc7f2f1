"""The notebook widgets (anywidget): the explorer, its four components, and the feature dashboard.

Python side of the contract in ``docs/widget-contract.md``; the front end is ``js/`` bundled into ``static/``.
"""

from .dashboard import FeatureDashboard, feature_data
from .explorer import (Explorer, FeatureSidebar, LayerScrubber, LiveSteering, ScopeWidget, SteeringPanel,
                       TokenHeatmap)
from .scheduler import RunScheduler, Superseded

__all__ = ["Explorer", "TokenHeatmap", "FeatureSidebar", "SteeringPanel", "LayerScrubber", "FeatureDashboard",
           "LiveSteering", "ScopeWidget", "RunScheduler", "Superseded", "feature_data"]
