"""What the widgets say about a feature besides its activation: label, density, context previews (from the
scope's feature index when one covers the layer), cached per feature."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from ..trace import Trace


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


class FeatureInfo:
    """Label, density and context previews of features, from the scope's feature index, cached per feature."""

    def __init__(self, scope: Any, max_cached: int = 4096):
        self.scope = scope
        self._cache: OrderedDict[tuple[int, int], dict[str, Any]] = OrderedDict()
        self._max = max_cached

    @property
    def index(self) -> Any:
        return getattr(self.scope, "feature_index", None)

    def covers(self, layer: int) -> bool:
        return self.index is not None and layer in self.index.layers

    def get(self, layer: int, feature: int) -> dict[str, Any]:
        key = (layer, feature)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        info: dict[str, Any] = {"label": "", "density": None, "max_activation": None, "contexts": []}
        if self.covers(layer):
            row = self.index.features(layer).iloc[feature]
            info["label"] = str(row["explanation"] or row["label"])
            info["density"] = float(row["density"])
            info["max_activation"] = float(row["max_activation"])
            info["contexts"] = [context_preview(r.tokens, r.center) for r in
                                self.index.contexts(layer, feature).head(2).itertuples()]
        self._cache[key] = info
        if len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return info

    def typical_activation(self, layer: int, feature: int, trace: Trace | None = None) -> float:
        """The feature's corpus maximum when an index covers it, else its maximum in ``trace``, else 0."""
        m = self.get(layer, feature)["max_activation"]
        if m:
            return float(m)
        if trace is not None and layer in trace.layers:
            return float(_np(trace.layers[layer].activation_of(feature)).max())
        return 0.0


def context_preview(tokens: Any, center: int, width: int = 8) -> str:
    """A short one-line window with the activating token in guillemets: ``…the LORD «God» said…``."""
    toks = list(tokens)
    c = int(center)
    lo, hi = max(0, c - width), min(len(toks), c + width // 2 + 1)
    text = "".join(toks[lo:c]) + "«" + (toks[c] if 0 <= c < len(toks) else "") + "»" + "".join(toks[c + 1:hi])
    text = text.replace("\n", "⏎")
    return ("…" if lo > 0 else "") + text + ("…" if hi < len(toks) else "")
