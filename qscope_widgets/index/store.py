"""The on-disk feature index and its reader.

Layout (one folder the user names)::

    meta.json                     format ("qscope-feature-index-v1"), model, layers, d_sae per layer, tokens
                                  scanned, corpus report (what was skipped / repaired / split), groups, settings
                                  (chunk_len, top_n, context_left / context_right, ...), scan seconds
    layer{n}/features.parquet     one row per feature (row i = feature i): feature, count (tokens where it fired),
                                  density (count / tokens), mean_activation, max_activation, q50, q90, q99
                                  (read from the histogram: upper edge of the quantile's bin), hist (counts over
                                  HIST_BINS log-spaced bins, 1e-3..1e3), top_tokens (what it fires on most),
                                  promoted, suppressed (5 tokens each; empty when left to on-demand), label
                                  (automatic), explanation (attached from elsewhere, "" if none), group_<j>
    layer{n}/contexts.parquet     top-N contexts, sorted by feature then rank, row groups of 4096 rows: feature,
                                  rank, activation, document (index in the corpus), position (token offset in the
                                  document), tokens (list of readable token strings of the window), acts (the
                                  feature's activation on each token of the window), center (index of the
                                  activating token in ``tokens``)
    layer{n}/label_scores.parquet optional: scored labels (index/labels.py score_labels): feature, scored_label,
                                  label_score, label_precision, label_recall, label_fires, label_weak, ...
    _build_state.pt               only while a build is unfinished: the checkpoint a resume starts from

A layer's files load only when that layer is first looked at (a 64-layer index costs one layer's memory), and one
feature's contexts are read through parquet row-group statistics without loading the layer's contexts.

``FeatureIndex.feature(layer, id)`` returns a JSON-friendly dict (plain str / int / float / list / dict) for
dashboards::

    {"layer": int, "feature": int,
     "label": str,                 # automatic: "fires-on tokens → promoted tokens", or "dead (...)"
     "explanation": str,           # attached (e.g. Neuronpedia), "" if none; show it before the label when set
     "label_score": float | None,  # detection F1 of the scored label on held-out text (None: not scored)
     "scored_label": str | None, "label_weak": bool | None,   # from layer{n}/label_scores.parquet when present
     "density": float,             # fraction of scanned tokens where the feature fired
     "count": int, "mean_activation": float, "max_activation": float,
     "quantiles": {"q50": float, "q90": float, "q99": float},
     "hist": {"edges": [HIST_BINS + 1 floats, log-spaced], "counts": [HIST_BINS ints]},
     "top_tokens": [str],          # tokens it fires on most (by summed activation over its top contexts)
     "promoted": [str], "suppressed": [str],  # top / bottom of unembedding @ W_dec[:, f] (on demand for big
                                              # models when the index has a scope; [] otherwise)
     "groups": {group name: share of the feature's activation mass},   # {} without groups
     "contexts": [{"rank": int, "activation": float, "document": int, "position": int,
                   "tokens": [str], "acts": [float], "center": int}]}   # best first; acts[center] == activation
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import FeatureIndexError, QScopeError, UnknownLayerError
from .accumulator import FeatureAccumulator, hist_edges
from .labels import auto_labels, decoder_logit_tokens, logit_token_cost

if TYPE_CHECKING:
    import pandas as pd

    from ..scope import Scope

FORMAT = "qscope-feature-index-v1"
LABEL_SCORES = "label_scores.parquet"  # optional per layer: scored labels
CONTEXT_ROW_GROUP = 4096


LOGIT_BUDGET_FLOPS = {"cpu": 2e12, "cuda": 5e14}


def _logit_tokens_for(scope: "Scope", layer: int, vocab: list[str], count, mode: bool | str
                      ) -> tuple[list[list[str]], list[list[str]]]:
    """Promoted / suppressed tokens per feature at build time, within a compute budget (see build_index)."""
    import numpy as np

    d_sae = len(count)
    promoted: list[list[str]] = [[] for _ in range(d_sae)]
    suppressed: list[list[str]] = [[] for _ in range(d_sae)]
    if mode is False:
        return promoted, suppressed
    feats = np.arange(d_sae) if mode is True else np.flatnonzero(count > 0)
    if mode == "auto":
        dev = scope.model.get_output_embeddings().weight.device.type
        if logit_token_cost(scope, layer, len(feats)) > LOGIT_BUDGET_FLOPS.get(dev, 2e12):
            return promoted, suppressed  # computed per feature on demand by FeatureIndex.feature
    if len(feats):
        prom, supp = decoder_logit_tokens(scope, layer, vocab, features=feats.tolist())
        for f, p_, s_ in zip(feats.tolist(), prom, supp):
            promoted[f], suppressed[f] = p_, s_
    return promoted, suppressed


def write_layer(out: Path, layer: int, acc: FeatureAccumulator, scope: "Scope", vocab: list[str], *,
                logit_tokens: bool | str = "auto") -> None:
    import numpy as np
    import pandas as pd

    d = out / f"layer{layer}"
    d.mkdir(parents=True, exist_ok=True)
    tokens = max(acc.tokens, 1)
    q = acc.quantiles().numpy()
    count = acc.count.numpy()
    promoted, suppressed = _logit_tokens_for(scope, layer, vocab, count, logit_tokens)
    # contexts: one row per (feature, rank), sorted by feature, token windows as list<string> built without a
    # Python loop per row; small row groups let the reader fetch one feature's rows without the whole layer
    import pyarrow as pa
    import pyarrow.parquet as pq

    has = acc.top_refs[:, :, 0] >= 0  # (d_sae, N)
    f_idx, r_idx = has.nonzero(as_tuple=True)
    tok = acc.top_tokens[f_idx, r_idx].numpy()  # (M, W), -1 outside the document
    acts = acc.top_acts[f_idx, r_idx].float().numpy()
    keep = tok >= 0
    offsets = np.concatenate([[0], np.cumsum(keep.sum(1))]).astype(np.int32)
    vocab_arr = np.asarray(vocab, dtype=object)
    flat_tok = pa.array(vocab_arr[tok[keep]].tolist(), type=pa.string())
    flat_act = pa.array(np.round(acts[keep], 4).astype(np.float32))
    centers = (tok[:, : acc.left] >= 0).sum(1).astype(np.int16)
    table = pa.table({
        "feature": pa.array(f_idx.numpy().astype(np.int32)), "rank": pa.array(r_idx.numpy().astype(np.int16)),
        "activation": pa.array(acc.top_vals[f_idx, r_idx].numpy()),
        "document": pa.array(acc.top_refs[f_idx, r_idx, 0].numpy()),
        "position": pa.array(acc.top_refs[f_idx, r_idx, 1].numpy()),
        "tokens": pa.ListArray.from_arrays(pa.array(offsets), flat_tok),
        "acts": pa.ListArray.from_arrays(pa.array(offsets), flat_act),
        "center": pa.array(centers),
    })
    pq.write_table(table, d / "contexts.parquet", row_group_size=CONTEXT_ROW_GROUP)
    contexts = pd.DataFrame({"feature": f_idx.numpy(), "activation": acc.top_vals[f_idx, r_idx].numpy(),
                             "center_token": vocab_arr[np.maximum(tok[:, acc.left], 0)] if len(tok) else []})
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


def _top_center_tokens(contexts: "pd.DataFrame", d_sae: int, n: int = 3) -> list[list[str]]:
    """The tokens a feature fires on most, by summed activation over its top contexts."""
    out: list[list[str]] = [[] for _ in range(d_sae)]
    if not len(contexts):
        return out
    agg = contexts.groupby(["feature", "center_token"], sort=False)["activation"].sum().reset_index()
    agg = agg.sort_values(["feature", "activation"], ascending=[True, False], kind="stable")
    agg = agg[agg.groupby("feature", sort=False).cumcount() < n]
    for f, t in zip(agg.feature.tolist(), agg.center_token.tolist()):
        out[f].append(t)
    return out


class FeatureIndex:
    """A saved feature index; layers load lazily."""

    def __init__(self, path: str | os.PathLike, meta: dict[str, Any], scope: "Scope | None" = None):
        self.path = Path(path)
        self.meta = meta
        self.scope = scope  # when set: promoted / suppressed tokens not computed at build time come on demand
        self._features: dict[int, pd.DataFrame] = {}
        self._contexts: dict[int, pd.DataFrame] = {}
        self._vocab: list[str] | None = None
        self.report = None

    @classmethod
    def load(cls, path: str | os.PathLike, scope: "Scope | None" = None) -> "FeatureIndex":
        """Open a saved index (reads only ``meta.json``; each layer's files load when first looked at)."""
        p = Path(path)
        meta_path = p / "meta.json"
        if not meta_path.is_file():
            raise QScopeError(f"{p} is not a feature index (no meta.json); build one with scope.index(corpus, ...)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise QScopeError(f"{p}: unknown index format {meta.get('format')!r}, expected {FORMAT}")
        return cls(p, meta, scope=scope)

    def attach_scope(self, scope: "Scope") -> "FeatureIndex":
        """Use ``scope`` for what the index computes on demand (promoted / suppressed tokens of large models)."""
        self.scope = scope
        return self

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
            df = df.rename(columns=ren)
            scores = self.path / f"layer{layer}" / LABEL_SCORES
            if scores.is_file():  # optional: scored labels (index/labels.py), one row per feature
                sc = pd.read_parquet(scores)
                df = df.drop(columns=[c for c in sc.columns if c in df.columns and c != "feature"])
                df = df.join(sc.set_index("feature").reindex(df.feature).reset_index(drop=True), how="left")
            self._features[layer] = df
        return self._features[layer]

    def attach_label_scores(self, scores: "pd.DataFrame", *, layer: int, save: bool = True) -> None:
        """Attach scored labels (``index.labels.score_labels``: ``feature``, ``label_score``, ``scored_label``,
        ...) to ``layer``; with ``save`` they are written beside the layer's files (``label_scores.parquet``)."""
        if "feature" not in scores.columns or "label_score" not in scores.columns:
            raise QScopeError(f"label scores need 'feature' and 'label_score' columns; got {list(scores.columns)}")
        self._check(layer)
        if save:
            scores.to_parquet(self.path / f"layer{layer}" / LABEL_SCORES, index=False)
        base = self.features(layer)
        keep = [c for c in base.columns if c == "feature" or c not in scores.columns]
        self._features[layer] = base[keep].merge(scores, on="feature", how="left")

    def contexts(self, layer: int, feature: int | None = None) -> "pd.DataFrame":
        """Top activating contexts of one feature (or all), best first."""
        import pandas as pd

        self._check(layer)
        path = self.path / f"layer{layer}" / "contexts.parquet"
        if feature is None:
            if layer not in self._contexts:
                self._contexts[layer] = pd.read_parquet(path)
            return self._contexts[layer]
        feature = self._check_feature(layer, feature)
        if layer in self._contexts:
            df = self._contexts[layer]
            lo, hi = df.feature.searchsorted([feature, feature + 1])  # rows are sorted by feature
            df = df.iloc[lo:hi]
        else:  # read only the row groups that can hold this feature, not the whole layer
            df = pd.read_parquet(path, filters=[("feature", "==", feature)])
        return df.sort_values("rank").reset_index(drop=True)

    def _check_feature(self, layer: int, feature: Any) -> int:
        import numbers

        n = len(self.features(layer))
        if not isinstance(feature, numbers.Integral) or isinstance(feature, bool) or not 0 <= feature < n:
            raise FeatureIndexError(f"feature {feature!r} is out of range: layer {layer} has features 0..{n - 1}")
        return int(feature)

    def label(self, layer: int, feature: int) -> str:
        """The attached explanation when there is one, else the automatic label."""
        feature = self._check_feature(layer, feature)
        row = self.features(layer).iloc[feature]
        return str(row["explanation"] or row["label"])

    def feature(self, layer: int, feature: int) -> dict[str, Any]:
        """Everything a dashboard shows about one feature, JSON-friendly (see the module docstring)."""
        feature = self._check_feature(layer, feature)
        row = self.features(layer).iloc[feature]
        ctx = self.contexts(layer, feature)
        groups = {g: float(row[f"group_{g}"]) for g in self.groups if f"group_{g}" in row}
        promoted, suppressed = list(row["promoted"]), list(row["suppressed"])
        if not promoted and self.scope is not None:
            promoted, suppressed = self.logit_tokens(layer, feature)
        score = row.get("label_score")
        scored = {"label_score": None if score is None or score != score else float(score),
                  "scored_label": str(row["scored_label"]) if "scored_label" in row else None,
                  "label_weak": bool(row["label_weak"]) if "label_weak" in row else None}
        return {
            **scored,
            "layer": layer, "feature": int(feature), "label": str(row["label"]),
            "explanation": str(row["explanation"]), "density": float(row["density"]), "count": int(row["count"]),
            "mean_activation": float(row["mean_activation"]), "max_activation": float(row["max_activation"]),
            "quantiles": {q: float(row[q]) for q in ("q50", "q90", "q99")},
            "hist": {"edges": [float(e) for e in hist_edges()], "counts": [int(c) for c in row["hist"]]},
            "top_tokens": list(row["top_tokens"]), "promoted": promoted, "suppressed": suppressed, "groups": groups,
            "contexts": [{"rank": int(r["rank"]), "activation": float(r["activation"]),
                          "document": int(r["document"]), "position": int(r["position"]),
                          "tokens": list(r["tokens"]), "acts": [float(a) for a in r["acts"]],
                          "center": int(r["center"])} for _, r in ctx.iterrows()],
        }

    def search(self, query: str, layer: int | None = None, n: int = 20, *, where: str = "labels") -> "pd.DataFrame":
        """Features matching ``query`` (case-insensitive plain text), strongest first.

        ``where="labels"``: in the automatic label, the attached explanation or the top tokens.
        ``where="contexts"``: in the text of the feature's top contexts (adds ``hits``, how many of them match).
        """
        import pandas as pd

        cols = ["layer", "feature", "label", "explanation", "density", "max_activation"]
        if not isinstance(query, str) or not query.strip():
            raise QScopeError("search needs a non-empty query string")
        if where not in ("labels", "contexts"):
            raise QScopeError(f"where must be 'labels' or 'contexts', got {where!r}")
        q = query.strip().lower()
        frames = []
        for n_layer in ([layer] if layer is not None else self.layers):
            df = self.features(n_layer)
            if where == "labels":
                text = (df.label.str.lower() + " " + df.explanation.str.lower() + " "
                        + df.top_tokens.map(lambda t: " ".join(t).lower()))
                if "scored_label" in df.columns:
                    text = text + " " + df.scored_label.fillna("").str.lower()
                hit = df[text.str.contains(q, regex=False) & (df["count"] > 0)]
                frames.append(hit.assign(layer=n_layer)[cols + [c for c in ("label_score",) if c in df.columns]])
            else:
                ctx = self.contexts(n_layer)
                text = ctx.tokens.map(lambda t: "".join(t).lower())
                hits = ctx[text.str.contains(q, regex=False)].groupby("feature").size()
                hit = df.iloc[hits.index.to_numpy()].assign(layer=n_layer, hits=hits.to_numpy())
                frames.append(hit[cols + ["hits"]])
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame(columns=cols + (["hits"] if where == "contexts" else []))
        keys = ["hits", "max_activation"] if where == "contexts" else ["max_activation"]
        out = pd.concat(frames)
        if where == "labels" and "label_score" in out.columns:  # best-explained first, unscored last
            keys = ["label_score"] + keys
            out = out.assign(label_score=out.label_score.astype(float))
            return out.sort_values(keys, ascending=False, na_position="last").head(n).reset_index(drop=True)
        return out.sort_values(keys, ascending=False).head(n).reset_index(drop=True)

    def logit_tokens(self, layer: int, feature: int, n: int = 5) -> tuple[list[str], list[str]]:
        """Promoted / suppressed tokens of one feature's decoder direction, computed now (needs a scope)."""
        if self.scope is None:
            raise FeatureIndexError("computing promoted tokens needs the model: index.attach_scope(scope) first")
        if self._vocab is None:
            from .builder import _vocab_strings

            self._vocab = _vocab_strings(self.scope)
        prom, supp = decoder_logit_tokens(self.scope, layer, self._vocab, n=n, features=[int(feature)])
        return prom[0], supp[0]

    def attach_labels(self, labels: Any, *, layer: int, column: str | None = None,
                      feature_column: str | None = None, label_column: str | None = None,
                      save: bool = True) -> int:
        """Attach explanations from elsewhere: feature id -> text, e.g. a Neuronpedia export.

        ``labels``: a DataFrame, a CSV / JSON / JSONL / parquet path, a list of dicts, or a ``{feature: text}``
        dict. Columns are found by name when not given: the id in ``feature`` / ``index`` / ``feature_id`` /
        ``id``, the text in ``explanation`` / ``description`` / ``label`` (``column`` / ``label_column`` picks
        another). A ``layer`` column (ints, or Neuronpedia's ``"12-res..."`` ids) keeps only this layer's rows.
        Several texts for one feature: the first is kept. Ids outside the layer are refused. Returns how many
        features got an explanation; with ``save`` it is written into the index.
        """
        import pandas as pd

        df = _read_labels(labels)
        feature_column = feature_column or _pick(df, ("feature", "index", "feature_id", "featureIndex", "id"),
                                                 "feature id")
        label_column = column or label_column or _pick(df, ("explanation", "description", "label", "text"),
                                                       "explanation")
        for col in (feature_column, label_column):
            if col not in df.columns:
                raise QScopeError(f"the labels have no column {col!r}; columns: {list(df.columns)}")
        if "layer" in df.columns and feature_column != "layer":
            lay = pd.to_numeric(df["layer"].astype(str).str.extract(r"^\s*(-?\d+)")[0], errors="coerce")
            if lay.notna().any():
                df = df[lay == layer]
        df = df[df[label_column].notna()]
        ids = pd.to_numeric(df[feature_column], errors="coerce")
        if ids.isna().any():
            raise FeatureIndexError(f"labels have feature ids that are not integers: "
                                    f"{df[feature_column][ids.isna()].head(5).tolist()}")
        ids = ids.astype(int)
        feats = self.features(layer)
        bad = ids[(ids < 0) | (ids >= len(feats))]
        if len(bad):
            raise FeatureIndexError(f"labels name features {bad.head(5).tolist()} outside layer {layer}'s "
                                    f"0..{len(feats) - 1}")
        text = df[label_column].astype(str).str.strip()
        first = ~ids.duplicated(keep="first")
        feats.loc[ids[first].values, "explanation"] = text[first].values
        if save:
            out = feats.rename(columns={f"group_{g}": f"group_{j}" for j, g in enumerate(self.groups)})
            out.to_parquet(self.path / f"layer{layer}" / "features.parquet", index=False)
        return int(first.sum())


    def explain(self, features: Any, *, layer: int, explainer: "Scope | None" = None, **kwargs: Any) -> "pd.DataFrame":
        """Explain features and score the explanations by simulation (Bills et al. 2023) with ``explainer``
        (default: this index's scope); see :func:`qscope_widgets.index.labels.explain_features`."""
        from .labels import explain_features

        self._check(layer)
        return explain_features(self, layer, features, explainer=explainer, **kwargs)


def _read_labels(labels: Any) -> "pd.DataFrame":
    import pandas as pd

    if isinstance(labels, pd.DataFrame):
        return labels
    if isinstance(labels, pd.Series):
        return pd.DataFrame({"feature": labels.index, "explanation": labels.values})
    if isinstance(labels, dict):
        return pd.DataFrame({"feature": list(labels), "explanation": list(labels.values())})
    if isinstance(labels, (str, os.PathLike)):
        p = Path(labels)
        if not p.is_file():
            raise QScopeError(f"no labels file at {p}")
        suf = p.suffix.lower()
        if suf == ".parquet":
            return pd.read_parquet(p)
        if suf == ".jsonl":
            return pd.read_json(p, lines=True, dtype=False)
        if suf == ".json":
            data = json.loads(p.read_text())
            if isinstance(data, dict) and not any(isinstance(v, (list, dict)) for v in data.values()):
                return pd.DataFrame({"feature": list(data), "explanation": list(data.values())})
            if isinstance(data, dict):  # {"explanations": [...]} and similar wrappers
                data = next((v for v in data.values() if isinstance(v, list)), [])
            return pd.DataFrame(data)
        return pd.read_csv(p)
    return pd.DataFrame(labels)


def _pick(df: "pd.DataFrame", names: tuple[str, ...], what: str) -> str:
    lower = {c.lower(): c for c in df.columns}
    for n in names:
        if n.lower() in lower:
            return lower[n.lower()]
    raise QScopeError(f"cannot tell which column holds the {what} (looked for {list(names)}); columns: "
                      f"{list(df.columns)}: pass feature_column= / column=")


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
