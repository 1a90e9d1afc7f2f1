"""What the widgets say about a feature besides its activation: label, density, context previews (from the
scope's feature index when one covers the layer), cached per feature."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from ..trace import Trace


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


PRELOAD_CONTEXTS_BYTES = 32 * 2**20  # read a layer's whole contexts file at once when it is at most this big


class FeatureInfo:
    """Label, density and context previews of features, from the scope's feature index, cached per feature."""

    def __init__(self, scope: Any, max_cached: int = 4096):
        self.scope = scope
        self._cache: OrderedDict[tuple[int, int], dict[str, Any]] = OrderedDict()
        self._max = max_cached
        self._tables: dict[tuple[str, int], Any] = {}  # per-layer plain columns of the index (see _table)

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
        info: dict[str, Any] = {"label": "", "density": None, "max_activation": None, "contexts": [],
                                "label_score": None, "label_weak": None}
        if self.covers(layer):
            t = self._table(layer)
            info.update(shown_label(t, feature))
            info["density"] = float(t["density"][feature])
            info["max_activation"] = float(t["max_activation"][feature])
            info["contexts"] = self._previews(layer, feature)
        self._cache[key] = info
        if len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return info

    def labels(self, layer: int, features: list[int]) -> dict[str, str]:
        """``{"feature id": label}`` for the labelled ones among ``features`` (the heatmap's tooltip shows a label
        for every feature of the prompt, not only the sidebar's); empty without an index covering ``layer``."""
        if not self.covers(layer):
            return {}
        t = self._table(layer)
        n = len(t["label"])
        out = {}
        for f in features:
            if 0 <= f < n:
                text = shown_label(t, f)["label"]
                if text:
                    out[str(f)] = str(text)
        return out

    def _table(self, layer: int) -> dict[str, Any]:
        """The layer's feature table as plain columns (a pandas row lookup per feature cost ~1 ms; this is ~1 us)."""
        key = ("features", layer)
        if key not in self._tables:
            df = self.index.features(layer)
            cols = ("label", "explanation", "density", "max_activation", "scored_label", "label_score", "label_weak")
            self._tables[key] = {c: df[c].tolist() for c in cols if c in df.columns}
        return self._tables[key]

    def _previews(self, layer: int, feature: int, n: int = 2) -> list[str]:
        """The first ``n`` context previews of one feature.

        A small layer file (the demo's: ~1 MB) is read once, whole, into sorted columns, and each feature is a
        binary search (a filtered parquet scan per feature took ~50 ms, which made a token click take 0.5 s); a
        large one is read per feature, so a 27B index never loads a layer's contexts into memory at once.
        """
        key = ("contexts", layer)
        if key not in self._tables:
            path = getattr(self.index, "path", None)
            try:
                small = path is not None and (path / f"layer{layer}" / "contexts.parquet").stat().st_size \
                    <= PRELOAD_CONTEXTS_BYTES
            except OSError:
                small = False
            if small:
                df = self.index.contexts(layer).sort_values(["feature", "rank"], kind="stable")
                self._tables[key] = (df.feature.to_numpy(), df.tokens.tolist(), df.center.tolist())
            else:
                self._tables[key] = None
        table = self._tables[key]
        if table is None:
            return [context_preview(r.tokens, r.center) for r in self.index.contexts(layer, feature).head(n).itertuples()]
        feats, tokens, centers = table
        lo, hi = np.searchsorted(feats, [feature, feature + 1])
        return [context_preview(tokens[i], centers[i]) for i in range(int(lo), min(int(hi), int(lo) + n))]

    def typical_activation(self, layer: int, feature: int, trace: Trace | None = None) -> float:
        """The feature's corpus maximum when an index covers it, else its maximum in ``trace``, else 0."""
        m = self.get(layer, feature)["max_activation"]
        if m:
            return float(m)
        if trace is not None and layer in trace.layers:
            return float(_np(trace.layers[layer].activation_of(feature)).max())
        return 0.0


def shown_label(table: dict[str, list], feature: int) -> dict[str, Any]:
    """The label a widget shows for one feature, with the score that belongs to *that* text.

    An attached explanation (e.g. Neuronpedia's) comes first, unscored here. Else, when the index carries scored
    labels (``index/labels.py`` ``score_labels``), the scored label with its detection F1 on held-out text and
    its weak flag: showing the automatic label beside another label's score would mislead. A feature the
    scoring could not score (too few firings on held-out text) keeps its automatic label, marked weak with no
    score. Without label scores: the automatic label, score and weakness unknown (``None``)."""
    explanation = table["explanation"][feature]
    if explanation:
        return {"label": str(explanation), "label_score": None, "label_weak": None}
    label = str(table["label"][feature] or "")
    if "label_score" not in table:
        return {"label": label, "label_score": None, "label_weak": None}
    score, weak = table["label_score"][feature], table.get("label_weak", [None] * (feature + 1))[feature]
    weak = None if weak is None or weak != weak else bool(weak)  # NaN: a feature absent from the scores file
    if score is None or score != score:
        return {"label": label, "label_score": None, "label_weak": weak}
    scored = table.get("scored_label", [None] * (feature + 1))[feature]
    return {"label": str(scored or label), "label_score": float(score), "label_weak": weak}


def context_preview(tokens: Any, center: int, width: int = 8) -> str:
    """A short one-line window with the activating token in guillemets: ``…the LORD «God» said…``."""
    toks = list(tokens)
    c = int(center)
    lo, hi = max(0, c - width), min(len(toks), c + width // 2 + 1)
    text = "".join(toks[lo:c]) + "«" + (toks[c] if 0 <= c < len(toks) else "") + "»" + "".join(toks[c + 1:hi])
    text = text.replace("\n", "⏎")
    return ("…" if lo > 0 else "") + text + ("…" if hi < len(toks) else "")
