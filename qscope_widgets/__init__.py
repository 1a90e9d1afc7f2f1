"""qscope-widgets: look inside Qwen models through Qwen-Scope sparse autoencoders, and steer them, live.

Importing the package is cheap: torch, transformers and the widgets load on first use of a name below.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Scope": "scope",
    "Trace": "trace",
    "LayerCodes": "trace",
    "Generation": "generation",
    "Monitor": "monitor",
    "SteeringEdit": "steering",
    "Steering": "steering",
    "SparseAutoencoder": "sae.model",
    "SparseCodes": "sae.model",
    "SAEConfig": "sae.config",
    "SAEBank": "sae.bank",
    "load_sae": "sae.io",
    "save_qwen_scope_layer": "sae.io",
    "list_releases": "sae.releases",
    "Explorer": "widgets",
    "TokenHeatmap": "widgets",
    "FeatureSidebar": "widgets",
    "SteeringPanel": "widgets",
    "LayerScrubber": "widgets",
    "FeatureDashboard": "widgets",
    "plan": "memory_plan",
    "MemoryPlan": "memory_plan",
    "QScopeError": "errors",
    "PromptError": "errors",
    "UnknownLayerError": "errors",
    "FeatureIndexError": "errors",
    "SteeringError": "errors",
    "SAEFormatError": "errors",
    "SAEShapeError": "errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'qscope_widgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from .errors import (FeatureIndexError, PromptError, QScopeError, SAEFormatError, SAEShapeError, SteeringError,
                         UnknownLayerError)
    from .generation import Generation
    from .memory_plan import MemoryPlan, plan
    from .monitor import Monitor
    from .sae.bank import SAEBank
    from .sae.config import SAEConfig
    from .sae.io import load_sae, save_qwen_scope_layer
    from .sae.model import SparseAutoencoder, SparseCodes
    from .sae.releases import list_releases
    from .widgets import Explorer, FeatureDashboard, FeatureSidebar, LayerScrubber, SteeringPanel, TokenHeatmap
    from .scope import Scope
    from .steering import Steering, SteeringEdit
    from .trace import LayerCodes, Trace
