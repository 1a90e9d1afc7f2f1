"""The on-disk feature index and its reader.

Layout (one folder the user names)::

    meta.json                     format, model, layers, tokens scanned, corpus report, groups, histogram bins
    layer{n}/features.parquet     one row per feature: feature, count, density, mean_activation, max_activation,
                                  q50, q90, q99, hist (list of counts over meta's bins), label, top_tokens,
                                  promoted, suppressed, explanation (attached from elsewhere), group_<name>
    layer{n}/contexts.parquet     top-N contexts: feature, rank, activation, document, position, tokens (list of
                                  str), acts (the feature's activation on each token of the window), center

A layer's files load only when that layer is first looked at, so a 64-layer index costs one layer's memory.

``FeatureIndex.feature(layer, id)`` returns a JSON-friendly dict for dashboards::

    {"layer", "feature", "label", "explanation", "density", "count", "mean_activation", "max_activation",
     "quantiles": {"q50", "q90", "q99"}, "hist": {"edges": [...], "counts": [...]},
     "top_tokens": [...], "promoted": [...], "suppressed": [...], "groups": {name: share},
     "contexts": [{"rank", "activation", "document", "position", "tokens": [...], "acts": [...], "center"}]}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import FeatureIndexError, QScopeError, UnknownLayerError
from .accumulator import FeatureAccumulator, hist_edges
from .labels import auto_labels, decoder_logit_tokens

if TYPE_CHECKING:
    import pandas as pd

    from ..scope import Scope

FORMAT = "qscope-feature-index-v1"


def write_layer(out: Path, layer: int, acc: FeatureAccumulator, scope: "Scope", vocab: list[str]) -> None:
    import numpy as np
    import pandas as pd

    d = out / f"layer{layer}"
    d.mkdir(parents=True, exist_ok=True)
    tokens = max(acc.tokens, 1)
    q = acc.quantiles().numpy()
    count = acc.count.numpy()
    promoted, suppressed = decoder_logit_tokens(scope, layer, vocab)
    # contexts
    has = acc.top_refs[:, :, 0] >= 0  # (d_sae, N)
    f_idx, r_idx = has.nonzero(as_tuple=True)
    tok = acc.top_tokens[f_idx, r_idx].numpy()
    acts = acc.top_acts[f_idx, r_idx].float().numpy()
    ctx_tokens, ctx_acts = [], []
    for t_row, a_row in zip(tok, acts):
        keep = t_row >= 0
        ctx_tokens.append([vocab[i] for i in t_row[keep]])
        ctx_acts.append(np.round(a_row[keep], 4).tolist())
    centers = [int((row[: acc.left] >= 0).sum()) for row in tok]
    contexts = pd.DataFrame({
        "feature": f_idx.numpy().astype(np.int32), "rank": r_idx.numpy().astype(np.int16),
        "activation": acc.top_vals[f_idx, r_idx].numpy(), "document": acc.top_refs[f_idx, r_idx, 0].numpy(),
        "position": acc.top_refs[f_idx, r_idx, 1].numpy(), "tokens": ctx_tokens, "acts": ctx_acts,
        "center": np.array(centers, dtype=np.int16),
    })
    top_tokens = _top_center_tokens(contexts, acc.d_sae)
    feats = pd.DataFrame({
        "feature": np.arange(acc.d_sae, dtype=np.int32), "count": count,
        "density": count / tokens,
        "mean_activation": np.where(count > 0, acc.sum.numpy() / np.maximum(count, 1), 0.0).astype(np.float32),
        "max_activation": acc.max.numpy(), "q50": q[:, 0], "q90": q[:, 1], "q99": q[:, 2],
        "hist": [row for row in acc.hist.numpy().astype(np.int32)],
        "top_tokens": top_tokens, "promoted": promoted, "suppressed": suppressed,
    })
    mass = acc.group_mass.numpy()
    feats["label"] = auto_labels(feats)
    feats["explanation"] = ""
    if acc.n_groups:
        share = mass / np.maximum(mass.sum(1, keepdims=True), 1e-12)
        for j in range(mass.shape[1]):
            feats[f"group_{j}"] = share[:, j].astype(np.float32)
    feats.to_parquet(d / "features.parquet", index=False)
    contexts.to_parquet(d / "contexts.parquet", index=False)


def _top_center_tokens(contexts: "pd.DataFrame", d_sae: int, n: int = 3) -> list[list[str]]:
    """The tokens a feature fires on most, by summed activation over its top contexts."""
    out: list[list[str]] = [[] for _ in range(d_sae)]
    centers = [toks[c] if 0 <= c < len(toks) else "" for toks, c in zip(contexts.tokens, contexts.center)]
    df = contexts.assign(center_token=centers)
    agg = df.groupby(["feature", "center_token"], sort=False)["activation"].sum().reset_index()
    agg = agg.sort_values(["feature", "activation"], ascending=[True, False])
    for f, grp in agg.groupby("feature", sort=False):
        out[int(f)] = grp.center_token.head(n).tolist()
    return out


class FeatureIndex:
    """A saved feature index; layers load lazily."""

    def __init__(self, path: str | os.PathLike, meta: dict[str, Any]):
        self.path = Path(path)
        self.meta = meta
        self._features: dict[int, pd.DataFrame] = {}
        self._contexts: dict[int, pd.DataFrame] = {}
        self.report = None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureIndex":
        p = Path(path)
        meta_path = p / "meta.json"
        if not meta_path.is_file():
            raise QScopeError(f"{p} is not a feature index (no meta.json); build one with scope.index(corpus, ...)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise QScopeError(f"{p}: unknown index format {meta.get('format')!r}, expected {FORMAT}")
        return cls(p, meta)

    def __repr__(self) -> str:
        return f"FeatureIndex({self.path.name!r}, layers={self.layers}, tokens={self.meta.get('tokens')})"

    @property
    def layers(self) -> list[int]:
        return list(self.meta["layers"])

    @property
    def groups(self) -> list[str]:
        return list(self.meta.get("groups") or [])

    def _check(self, layer: int) -> None:
        if layer not in self.layers:
            raise UnknownLayerError(f"the index has no layer {layer}; it covers layers {self.layers}")

    def features(self, layer: int) -> "pd.DataFrame":
        """One row per feature of ``layer`` (label, density, activation statistics, group shares)."""
        import pandas as pd

        self._check(layer)
        if layer not in self._features:
            df = pd.read_parquet(self.path / f"layer{layer}" / "features.parquet")
            ren = {f"group_{j}": f"group_{g}" for j, g in enumerate(self.groups)}
            self._features[layer] = df.rename(columns=ren)
        return self._features[layer]

    def contexts(self, layer: int, feature: int | None = None) -> "pd.DataFrame":
        """Top activating contexts of one feature (or all), best first."""
        import pandas as pd

        self._check(layer)
        if layer not in self._contexts:
            self._contexts[layer] = pd.read_parquet(self.path / f"layer{layer}" / "contexts.parquet")
        df = self._contexts[layer]
        if feature is None:
            return df
        self._check_feature(layer, feature)
        return df[df.feature == feature].sort_values("rank").reset_index(drop=True)

    def _check_feature(self, layer: int, feature: int) -> None:
        n = len(self.features(layer))
        if not isinstance(feature, (int,)) or isinstance(feature, bool) or not 0 <= feature < n:
            raise FeatureIndexError(f"feature {feature!r} is out of range: layer {layer} has features 0..{n - 1}")

    def label(self, layer: int, feature: int) -> str:
        """The attached explanation when there is one, else the automatic label."""
        self._check_feature(layer, feature)
        row = self.features(layer).iloc[feature]
        return str(row["explanation"] or row["label"])

    def feature(self, layer: int, feature: int) -> dict[str, Any]:
        """Everything a dashboard shows about one feature, JSON-friendly (see the module docstring)."""
        self._check_feature(layer, feature)
        row = self.features(layer).iloc[feature]
        ctx = self.contexts(layer, feature)
        groups = {g: float(row[f"group_{g}"]) for g in self.groups if f"group_{g}" in row}
        return {
            "layer": layer, "feature": int(feature), "label": str(row["label"]),
            "explanation": str(row["explanation"]), "density": float(row["density"]), "count": int(row["count"]),
            "mean_activation": float(row["mean_activation"]), "max_activation": float(row["max_activation"]),
            "quantiles": {q: float(row[q]) for q in ("q50", "q90", "q99")},
            "hist": {"edges": [float(e) for e in hist_edges()], "counts": [int(c) for c in row["hist"]]},
            "top_tokens": list(row["top_tokens"]), "promoted": list(row["promoted"]),
            "suppressed": list(row["suppressed"]), "groups": groups,
            "contexts": [{"rank": int(r["rank"]), "activation": float(r["activation"]),
                          "document": int(r["document"]), "position": int(r["position"]),
                          "tokens": list(r["tokens"]), "acts": [float(a) for a in r["acts"]],
                          "center": int(r["center"])} for _, r in ctx.iterrows()],
        }

    def search(self, query: str, layer: int | None = None, n: int = 20) -> "pd.DataFrame":
        """Features whose label, explanation or top tokens contain ``query`` (case-insensitive), densest first."""
        import pandas as pd

        if not isinstance(query, str) or not query.strip():
            raise QScopeError("search needs a non-empty query string")
        q = query.strip().lower()
        frames = []
        for n_layer in ([layer] if layer is not None else self.layers):
            df = self.features(n_layer)
            text = (df.label.str.lower() + " " + df.explanation.str.lower() + " "
                    + df.top_tokens.map(lambda t: " ".join(t).lower()))
            hit = df[text.str.contains(q, regex=False) & (df["count"] > 0)]
            frames.append(hit.assign(layer=n_layer)[["layer", "feature", "label", "explanation", "density",
                                                      "max_activation"]])
        if not frames:
            return pd.DataFrame(columns=["layer", "feature", "label", "explanation", "density", "max_activation"])
        return pd.concat(frames).sort_values("max_activation", ascending=False).head(n).reset_index(drop=True)

    def attach_labels(self, labels: Any, *, layer: int, feature_column: str = "feature",
                      label_column: str = "explanation", save: bool = True) -> int:
        """Attach explanations from elsewhere (a DataFrame or CSV path of feature id -> text, e.g. Neuronpedia's
        export). Returns how many features got one; ids outside the layer are refused."""
        import pandas as pd

        df = pd.read_csv(labels) if isinstance(labels, (str, os.PathLike)) else pd.DataFrame(labels)
        for col in (feature_column, label_column):
            if col not in df.columns:
                raise QScopeError(f"the labels have no column {col!r}; columns: {list(df.columns)}")
        feats = self.features(layer)
        ids = df[feature_column].astype(int)
        bad = ids[(ids < 0) | (ids >= len(feats))]
        if len(bad):
            raise FeatureIndexError(f"labels name features {bad.head(5).tolist()} outside layer {layer}'s "
                                    f"0..{len(feats) - 1}")
        feats.loc[ids.values, "explanation"] = df[label_column].astype(str).values
        if save:
            out = feats.rename(columns={f"group_{g}": f"group_{j}" for j, g in enumerate(self.groups)})
            out.to_parquet(self.path / f"layer{layer}" / "features.parquet", index=False)
        return len(df)


def search_by_example(scope: "Scope", text: str, layer: int, n: int = 10, *, skip_first: bool = True
                      ) -> "pd.DataFrame":
    """Which features fire on this phrase: the strongest features of ``text`` at ``layer``, with labels."""
    trace = scope.run(text, layers=[layer])
    top = trace.top_features(layer, n=n, skip_first=skip_first and len(trace) > 1)
    idx = scope.feature_index
    if idx is not None and layer in idx.layers:
        feats = idx.features(layer)
        top["label"] = [feats.label.iloc[f] for f in top.feature]
        top["density"] = [float(feats.density.iloc[f]) for f in top.feature]
    return top
