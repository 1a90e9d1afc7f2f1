"""Attribution: which SAE features (and reconstruction errors) made the model say this token?

An analysis layer above the core (``scope``, ``hooks``, ``sae``, ``steering``): the core reaches it only through the
thin lazy entry point :meth:`qscope_widgets.Scope.attribute`. The method is Marks et al. 2024 ("Sparse Feature
Circuits", attribution patching over SAE features with error nodes): each chosen layer's residual output is spliced
as ``x_hat + err`` (so the forward pass is unchanged), one forward and one backward give ``activation x gradient``
for every (layer, position, feature) node and every error node, and integrated gradients refine the estimate where
the metric is far from linear. See ``docs/attribution.md``.
"""

from __future__ import annotations

from .compute import attribute
from .graph import AttributionGraph
from .result import Attribution, Verification
from .targets import AttributionError, Target, TargetError, resolve_target

__all__ = ["attribute", "Attribution", "AttributionGraph", "AttributionError", "Target", "TargetError",
           "Verification", "resolve_target"]
