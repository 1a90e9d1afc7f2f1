"""The sidebar's search box: a feature id (``2360``, ``L3/2360``), label text (needs a feature index), or a quoted
phrase (``"the LORD said"``: the features of the layer in view that fire most on it, as it reads in running
text, with the tokens they peak on)."""

from __future__ import annotations

import re
from typing import Any

from ..errors import QScopeError
from .features import FeatureInfo

ID_QUERY = re.compile(r"^\s*(?:l(?:ayer)?\s*(\d+)\s*[/:]\s*)?#?(\d+)\s*$", re.IGNORECASE)


def search_features(scope: Any, info: FeatureInfo, layer: int, query: str, n: int = 20) -> list[dict[str, Any]]:
    """Rows ``{"layer", "feature", "label", "density", "max_activation"}`` (+ ``"activation"``, ``"token"`` for
    a phrase); a :class:`QScopeError` saying what to type instead when the query cannot be answered."""
    query = (query or "").strip()
    if not query:
        return []
    if len(query) >= 2 and query[0] == query[-1] == '"':
        return search_by_phrase(scope, info, layer, query[1:-1], n)
    m = ID_QUERY.match(query)
    if m:
        at = int(m.group(1)) if m.group(1) is not None else layer
        scope.check_layer(at)
        feature = scope.sae(at).check_feature(int(m.group(2)))
        meta = info.get(at, feature)
        return [{"layer": at, "feature": feature, "label": meta["label"], "label_score": meta["label_score"],
                 "label_weak": meta["label_weak"], "density": meta["density"],
                 "max_activation": meta["max_activation"]}]
    index = info.index
    if index is None:
        raise QScopeError("no feature index is attached, so only ids can be searched (e.g. '2360' or "
                          "'L3/2360') or a quoted phrase; attach one with scope.load_index(path) or "
                          "scope.index(corpus)")
    df = index.search(query, n=n)  # best-scored label first when the index has label scores
    rows = []
    for r in df.itertuples():
        meta = info.get(int(r.layer), int(r.feature))
        rows.append({"layer": int(r.layer), "feature": int(r.feature), "label": meta["label"] or str(r.label),
                     "label_score": meta["label_score"], "label_weak": meta["label_weak"],
                     "density": float(r.density), "max_activation": float(r.max_activation)})
    return rows


def search_by_phrase(scope: Any, info: FeatureInfo, layer: int, phrase: str, n: int = 20) -> list[dict[str, Any]]:
    """Features that fire most on ``phrase`` read as running text: a phrase without a leading space gets one
    (``"God"`` is searched as ``" God"``, the token it is inside a sentence), and each row says on which token
    it peaked."""
    if not phrase.strip():
        raise QScopeError("the quoted phrase is empty: type the text to look for between the quotes")
    text = phrase if phrase[:1].isspace() else " " + phrase
    trace = scope.run(text, layers=[layer])
    top = trace.top_features(layer, n=n, skip_first=len(trace) > 1)  # the first token is an attention sink
    rows = []
    for r in top.itertuples():
        meta = info.get(layer, int(r.feature))
        rows.append({"layer": layer, "feature": int(r.feature), "label": meta["label"],
                     "label_score": meta["label_score"], "label_weak": meta["label_weak"], "density": meta["density"],
                     "max_activation": meta["max_activation"], "activation": float(r.activation),
                     "token": str(r.token), "position": int(r.position)})
    return rows
