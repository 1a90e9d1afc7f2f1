"""Search by example: which features fire on a phrase, ranked against the index's corpus statistics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import QScopeError

if TYPE_CHECKING:
    import pandas as pd

    from ..scope import Scope
    from .reader import FeatureIndex


def search_by_example(scope: "Scope", text: str, layer: int, n: int = 10, *, skip_first: bool = True,
                      index: "FeatureIndex | None" = None, by: str = "activation") -> "pd.DataFrame":
    """Which features fire on this phrase: the strongest features of ``text`` at ``layer`` (max over its tokens),
    with the token they peak on and, when an index covers the layer (``index`` or ``scope.feature_index``), their
    label, density and ``relative`` = activation / the feature's max over the indexed corpus.
    ``by="relative"`` ranks by that instead (features this phrase drives near their corpus maximum)."""
    if by not in ("activation", "relative"):
        raise QScopeError(f"by must be 'activation' or 'relative', got {by!r}")
    trace = scope.run(text, layers=[layer])
    idx = index if index is not None else getattr(scope, "feature_index", None)
    have = idx is not None and layer in idx.layers
    wide = n if by == "activation" or not have else max(10 * n, 100)
    top = trace.top_features(layer, n=wide, skip_first=skip_first and len(trace) > 1)
    if have:
        feats = idx.features(layer)
        rows = feats.iloc[top.feature.to_numpy()]
        top["label"] = [str(e or l) for e, l in zip(rows.explanation, rows.label)]
        top["density"] = rows.density.to_numpy()
        top["relative"] = (top.activation.to_numpy() / rows.max_activation.clip(lower=1e-12).to_numpy())
        if by == "relative":
            top = top.sort_values("relative", ascending=False, kind="stable")
    return top.head(n).reset_index(drop=True)
