"""Reading a saved feature index: per-layer tables (loaded lazily), one feature's card, search, attached labels.

Files (see :mod:`qscope_widgets.index.files` for the folder layout and its crash-safety rules):

    layer{n}/features.parquet     one row per feature (row i = feature i): feature, count (tokens where it fired),
                                  density (count / tokens), mean_activation, max_activation, q50, q90, q99
                                  (read from the histogram: upper edge of the quantile's bin), hist (counts over
                                  HIST_BINS log-spaced bins, 1e-3..1e3), top_tokens (what it fires on most),
                                  promoted, suppressed (5 tokens each; empty when left to on-demand), label
                                  (automatic), explanation (attached from elsewhere, "" if none), group_<j>
    layer{n}/contexts.parquet     contexts, sorted by feature, then kind ("top" before "sample"), then rank; row
                                  groups of 4096 rows: feature, rank (activation order within the feature's rows
                                  of that kind), activation, document (index in the corpus), position (token
                                  offset in the document), tokens (list of readable token strings of the window),
                                  acts (the feature's activation on each token of the window), center (index of
                                  the activating token in ``tokens``), kind ("top": the top-N contexts; "sample":
                                  a uniform random sample of ``sample_n`` of the feature's firings, see
                                  accumulator.py), token_ids (the window's token ids, to rebuild the exact text).
                                  The file stores token_ids; ``tokens`` is read back through vocab.parquet.
                                  Indexes written before samples store tokens (strings) and lack kind, token_ids
                                  and vocab.parquet: all their rows are "top" and their token_ids are [].
    layer{n}/label_scores.parquet optional: scored labels (index/labels.py score_labels): feature, scored_label,
                                  label_score, label_precision, label_recall, label_fires, label_weak, ...

A layer's files load only when that layer is first looked at (a 64-layer index costs one layer's memory), and one
feature's contexts are read through parquet row-group statistics without loading the layer's contexts.

``FeatureIndex.feature(layer, id)`` returns a JSON-friendly dict (``FeatureIndex.card(...).to_dict()``, see
:class:`~qscope_widgets.index.records.FeatureCard`) for dashboards::

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
                   "tokens": [str], "acts": [float], "center": int,
                   "token_ids": [int]}],   # best first; acts[center] == activation; token_ids [] in old indexes
     "samples": [same keys as "contexts"]}  # a uniform random sample of the feature's firings (up to sample_n,
                                            # all of them when it fired fewer times), by activation descending;
                                            # [] in indexes written before samples
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FeatureIndexError, QScopeError, UnknownLayerError
from .accumulator import hist_edges
from .files import LABEL_SCORES, VOCAB_FILE, check_layers, layer_dir, read_meta, write_table
from .label_files import pick_column, read_labels
from .labels import decoder_logit_tokens
from .records import Context, FeatureCard
from .vocab import vocab_strings
from .writer import write_features

if TYPE_CHECKING:
    import pandas as pd

    from ..scope import Scope

CONTEXT_KINDS = ("top", "sample", "all")
FEATURE_COLUMNS = frozenset({"feature", "count", "density", "mean_activation", "max_activation", "q50", "q90", "q99",
                             "hist", "top_tokens", "promoted", "suppressed", "label", "explanation"})


class FeatureIndex:
    """A saved feature index; layers load lazily."""

    def __init__(self, path: str | os.PathLike, meta: dict[str, Any], scope: "Scope | None" = None):
        self.path = Path(path)
        self.meta = meta
        self.scope = scope  # when set: promoted / suppressed tokens not computed at build time come on demand
        self._features: dict[int, pd.DataFrame] = {}
        self._contexts: dict[int, pd.DataFrame] = {}
        self._vocab: list[str] | None = None
        self._token_strings: Any = None  # vocab.parquet's strings (a pyarrow array), read on first use
        self.report = None

    @classmethod
    def load(cls, path: str | os.PathLike, scope: "Scope | None" = None) -> "FeatureIndex":
        """Open a saved index: reads ``meta.json`` and each layer file's footer, and refuses a folder that is
        incomplete, damaged or mixes files of two builds (:class:`FeatureIndexError`, naming the file). The
        tables themselves load when a layer is first looked at."""
        p = Path(path)
        meta = read_meta(p)
        check_layers(p, meta)
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

    def _check(self, layer: Any) -> int:
        if not isinstance(layer, numbers.Integral) or isinstance(layer, bool) or int(layer) not in self.layers:
            raise UnknownLayerError(f"the index has no layer {layer!r}; it covers layers {self.layers}")
        return int(layer)

    def _read(self, path: Path, **kwargs: Any) -> "pd.DataFrame":
        import pandas as pd
        import pyarrow as pa

        try:
            return pd.read_parquet(path, **kwargs)
        except (pa.ArrowException, OSError) as exc:
            raise FeatureIndexError(f"{path} is damaged or missing ({exc}); rebuild the index with "
                                    "overwrite=True") from None

    def features(self, layer: int) -> "pd.DataFrame":
        """One row per feature of ``layer`` (label, density, activation statistics, group shares)."""
        layer = self._check(layer)
        if layer not in self._features:
            path = layer_dir(self.path, layer) / "features.parquet"
            df = self._read(path)
            missing = sorted(FEATURE_COLUMNS - set(df.columns))
            if missing:
                raise FeatureIndexError(f"{path} lacks the columns {missing}: not a features table of this index")
            ren = {f"group_{j}": f"group_{g}" for j, g in enumerate(self.groups)}
            df = df.rename(columns=ren)
            scores = layer_dir(self.path, layer) / LABEL_SCORES
            if scores.is_file():  # optional: scored labels (index/labels.py), one row per feature
                sc = self._read(scores)
                df = df.drop(columns=[c for c in sc.columns if c in df.columns and c != "feature"])
                df = df.join(sc.set_index("feature").reindex(df.feature).reset_index(drop=True), how="left")
            self._features[layer] = df
        return self._features[layer]

    def attach_label_scores(self, scores: "pd.DataFrame", *, layer: int, save: bool = True) -> None:
        """Attach scored labels (``index.labels.score_labels``: ``feature``, ``label_score``, ``scored_label``,
        ...) to ``layer``; with ``save`` they are written beside the layer's files (``label_scores.parquet``,
        atomically, stamped with the index's build id)."""
        import pyarrow as pa

        if "feature" not in scores.columns or "label_score" not in scores.columns:
            raise QScopeError(f"label scores need 'feature' and 'label_score' columns; got {list(scores.columns)}")
        layer = self._check(layer)
        if save:
            write_table(layer_dir(self.path, layer) / LABEL_SCORES, pa.Table.from_pandas(scores, preserve_index=False),
                        self.meta.get("build_id"))
        base = self.features(layer)
        keep = [c for c in base.columns if c == "feature" or c not in scores.columns]
        self._features[layer] = base[keep].merge(scores, on="feature", how="left")

    def contexts(self, layer: int, feature: int | None = None, *, kind: str = "top") -> "pd.DataFrame":
        """Contexts of one feature (or of all), best first: ``kind="top"`` the top-activating ones, ``"sample"``
        the uniform sample of its firings, ``"all"`` both (top first; the ``kind`` column says which)."""
        layer = self._check(layer)
        if kind not in CONTEXT_KINDS:
            raise QScopeError(f"kind must be one of {CONTEXT_KINDS}, got {kind!r}")
        path = layer_dir(self.path, layer) / "contexts.parquet"
        if feature is None:
            if layer not in self._contexts:
                self._contexts[layer] = self._read_contexts(path)
            return _of_kind(self._contexts[layer], kind)
        feature = self._check_feature(layer, feature)
        if layer in self._contexts:
            df = self._contexts[layer]
            lo, hi = df.feature.searchsorted([feature, feature + 1])  # rows are sorted by feature
            df = df.iloc[lo:hi]
        else:  # read only the row groups that can hold this feature, not the whole layer
            df = self._read_contexts(path, filters=[("feature", "==", feature)])
        df = _of_kind(df, kind)
        return df.sort_values(["kind", "rank"], key=lambda c: c.map(_KIND_ORDER) if c.name == "kind" else c,
                              kind="stable").reset_index(drop=True)

    def _read_contexts(self, path: Path, **kwargs: Any) -> "pd.DataFrame":
        """A contexts table as the API shows it, whatever its vintage: token strings read back from the stored ids
        through ``vocab.parquet`` (in arrow, without a Python loop per row); an index written before samples has
        only top contexts (``kind`` "top") and no token ids (empty lists)."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path, **kwargs)
        except (pa.ArrowException, OSError) as exc:
            raise FeatureIndexError(f"{path} is damaged or missing ({exc}); rebuild the index with "
                                    "overwrite=True") from None
        if "tokens" not in table.column_names:
            strings = self._token_table()
            ids = table.column("token_ids").combine_chunks()
            if isinstance(ids, pa.ChunkedArray):  # an empty table
                ids = pa.array([], type=pa.list_(pa.int32()))
            flat = ids.values.to_numpy(zero_copy_only=False)
            if len(flat) and (flat.min() < 0 or flat.max() >= len(strings)):
                raise FeatureIndexError(f"{path} has token ids outside the index's vocabulary of {len(strings)} "
                                        "tokens: the index is damaged; rebuild it with overwrite=True")
            tokens = pa.ListArray.from_arrays(ids.offsets, strings.take(pa.array(flat, type=pa.int64())))
            table = table.add_column(min(5, table.num_columns), "tokens", tokens)
        df = table.to_pandas()
        if "kind" not in df.columns:
            df["kind"] = "top"
        if "token_ids" not in df.columns:
            df["token_ids"] = [np.zeros(0, dtype=np.int32) for _ in range(len(df))]
        return df

    def _token_table(self) -> Any:
        import pyarrow.parquet as pq

        if self._token_strings is None:
            path = self.path / VOCAB_FILE
            if not path.is_file():
                raise FeatureIndexError(f"{path} is missing: this index stores context windows as token ids and "
                                        "reads them back through it; rebuild the index with overwrite=True")
            self._token_strings = pq.read_table(path).column("token").combine_chunks()
        return self._token_strings

    def _check_feature(self, layer: int, feature: Any) -> int:
        n = len(self.features(layer))
        if not isinstance(feature, numbers.Integral) or isinstance(feature, bool) or not 0 <= feature < n:
            what = "is out of range" if isinstance(feature, numbers.Integral) else "is not an int"
            raise FeatureIndexError(f"feature {feature!r} {what}: layer {layer} has features 0..{n - 1}")
        return int(feature)

    def label(self, layer: int, feature: int) -> str:
        """The attached explanation when there is one, else the automatic label."""
        feature = self._check_feature(layer, feature)
        row = self.features(layer).iloc[feature]
        return str(row["explanation"] or row["label"])

    def feature(self, layer: int, feature: int) -> dict[str, Any]:
        """Everything a dashboard shows about one feature, JSON-friendly (see the module docstring)."""
        return self.card(layer, feature).to_dict()

    def card(self, layer: int, feature: int) -> FeatureCard:
        """:meth:`feature` as a typed record."""
        layer = self._check(layer)
        feature = self._check_feature(layer, feature)
        row = self.features(layer).iloc[feature]
        ctx = self.contexts(layer, feature, kind="all")
        groups = {g: float(row[f"group_{g}"]) for g in self.groups if f"group_{g}" in row}
        promoted, suppressed = list(row["promoted"]), list(row["suppressed"])
        if not promoted and self.scope is not None:
            promoted, suppressed = self.logit_tokens(layer, feature)
        score = row.get("label_score")
        return FeatureCard(
            label_score=None if score is None or score != score else float(score),
            scored_label=str(row["scored_label"]) if "scored_label" in row else None,
            label_weak=bool(row["label_weak"]) if "label_weak" in row else None,
            layer=layer, feature=int(feature), label=str(row["label"]), explanation=str(row["explanation"]),
            density=float(row["density"]), count=int(row["count"]), mean_activation=float(row["mean_activation"]),
            max_activation=float(row["max_activation"]),
            quantiles={q: float(row[q]) for q in ("q50", "q90", "q99")},
            hist_edges=[float(e) for e in hist_edges()], hist_counts=[int(c) for c in row["hist"]],
            top_tokens=list(row["top_tokens"]), promoted=promoted, suppressed=suppressed, groups=groups,
            contexts=_context_records(ctx[ctx.kind == "top"]), samples=_context_records(ctx[ctx.kind == "sample"]))

    def search(self, query: str, layer: int | None = None, n: int = 20, *, where: str = "labels") -> "pd.DataFrame":
        """Features matching ``query`` (case-insensitive plain text), strongest first.

        ``where="labels"``: in the automatic label, the attached explanation or the top tokens.
        ``where="contexts"``: in the text of the feature's top contexts (adds ``hits``, how many of them match).
        """
        import pandas as pd

        cols = ["layer", "feature", "label", "explanation", "density", "max_activation"]
        if not isinstance(query, str) or not query.strip():
            raise QScopeError(f"search needs a non-empty query string, got {query!r}")
        if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1:
            raise QScopeError(f"n must be a positive int, got {n!r}")
        if layer is not None:
            layer = self._check(layer)
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
        layer = self._check(layer)
        feature = self._check_feature(layer, feature)
        if self._vocab is None:
            self._vocab = vocab_strings(self.scope)
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

        layer = self._check(layer)
        df = read_labels(labels)
        feature_column = feature_column or pick_column(df, ("feature", "index", "feature_id", "featureIndex", "id"),
                                                 "feature id")
        label_column = column or label_column or pick_column(df, ("explanation", "description", "label", "text"),
                                                       "explanation")
        for col in (feature_column, label_column):
            if col not in df.columns:
                raise QScopeError(f"the labels have no column {col!r}; columns: {list(df.columns)}")
        if "layer" in df.columns and feature_column != "layer":
            lay = pd.to_numeric(df["layer"].astype(str).str.extract(r"^\s*(-?\d+)")[0], errors="coerce")
            if lay.notna().any():
                df = df[lay == layer]
        df = df[df[label_column].notna()]
        raw = df[feature_column]
        ids = pd.to_numeric(raw, errors="coerce") if raw.dtype != bool else pd.Series(float("nan"), index=raw.index)
        bad = ids.isna() | (ids != ids.round()) | raw.map(lambda v: isinstance(v, bool))
        if bad.any():  # 1.5 must not label feature 1, nor True feature 1
            raise FeatureIndexError(f"labels have feature ids that are not integers: {raw[bad].head(5).tolist()}")
        ids = ids.astype("int64")
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
            write_features(layer_dir(self.path, layer) / "features.parquet", out, self.meta.get("build_id"))
        return int(first.sum())

    def explain(self, features: Any, *, layer: int, explainer: "Scope | None" = None, **kwargs: Any) -> "pd.DataFrame":
        """Explain features and score the explanations by simulation (Bills et al. 2023) with ``explainer``
        (default: this index's scope); see :func:`qscope_widgets.index.labels.explain_features`."""
        from .labels import explain_features

        layer = self._check(layer)
        return explain_features(self, layer, features, explainer=explainer, **kwargs)


_KIND_ORDER = {"top": 0, "sample": 1}


def _of_kind(df: "pd.DataFrame", kind: str) -> "pd.DataFrame":
    return df if kind == "all" else df[df.kind == kind]


def _context_records(ctx: "pd.DataFrame") -> list[Context]:
    return [Context(rank=int(r["rank"]), activation=float(r["activation"]), document=int(r["document"]),
                    position=int(r["position"]), tokens=list(r["tokens"]), acts=[float(a) for a in r["acts"]],
                    center=int(r["center"]), token_ids=[int(t) for t in r["token_ids"]])
            for _, r in ctx.iterrows()]
