"""Monitors: a weighted handful of SAE features, read as a score per token and per text.

A contrast (:mod:`qscope_widgets.contrast`) finds the features that separate two kinds of text; a monitor turns
them into a detector for new text. The per-token score is ``s_t = sum_i w_i * z_i(t)``, the weighted activations of
the chosen ``(layer, feature)`` pairs at token ``t``; a text's score reduces ``s_t`` over its tokens (``max``: "does
it fire anywhere", ``mean``: "how much of the text is like this"). The same per-token score colours a heatmap
(:func:`token_colouring`) and watches generation (:meth:`Monitor.watcher`, used by ``Scope.generate(monitor=...)``).

A monitor is tied to its model and SAEs: :meth:`Monitor.save` writes the features, weights and threshold with the
identity of the scope (model name, widths, SAE release, and a fingerprint of the chosen features' encoder rows),
and :meth:`Monitor.load` refuses a file made on another scope rather than scoring with the wrong directions.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch import Tensor

from .errors import QScopeError
from .textsets import as_texts, encode_real_tokens, stream_codes, tokenize_set

if TYPE_CHECKING:
    import pandas as pd

    from .scope import Scope
    from .trace import Trace

REDUCE = ("max", "mean", "sum")
FORMAT = "qscope-monitor/1"


class MonitorError(QScopeError):
    """A monitor that cannot be built, loaded or used as asked (bad features, weights, labels, another scope)."""


@dataclass(frozen=True)
class MonitorSpec:
    """What a monitor is, independent of any scope: features, weights, threshold, reduction."""

    features: tuple[tuple[int, int], ...]
    weights: tuple[float, ...]
    threshold: float | None = None
    reduce: str = "max"
    skip_first: bool = True


def _as_features(features: Any) -> tuple[list[tuple[int, int]], list[float] | None]:
    """``(layer, feature)`` pairs (and default weights, for a contrast DataFrame) from what the user passed."""
    if hasattr(features, "columns"):  # the head of a contrast DataFrame
        missing = {"layer", "feature"} - set(features.columns)
        if missing:
            raise MonitorError(f"a DataFrame of features needs columns 'layer' and 'feature'; missing {sorted(missing)}")
        pairs = [(int(l), int(f)) for l, f in zip(features["layer"], features["feature"])]
        weights = None
        if {"difference", "active_mean_a", "active_mean_b"} <= set(features.columns):
            # sign: features of b count against; scale: one typical firing (where it fires most) counts ~1
            weights = []
            for d, ma, mb in zip(features["difference"], features["active_mean_a"], features["active_mean_b"]):
                typical = float(max(ma, mb))
                weights.append((1.0 if d >= 0 else -1.0) / typical if typical > 0 else 0.0)
        return pairs, weights
    if isinstance(features, tuple) and len(features) == 2 and all(isinstance(x, int) for x in features):
        features = [features]
    if isinstance(features, (str, bytes)) or not hasattr(features, "__iter__"):
        raise MonitorError(f"features must be a list of (layer, feature) pairs or a contrast DataFrame, got "
                           f"{type(features).__name__}")
    pairs = []
    for i, p in enumerate(features):
        if (not isinstance(p, (tuple, list)) or len(p) != 2
                or not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in p)):
            raise MonitorError(f"features[{i}] = {p!r} is not a (layer, feature) pair of ints")
        pairs.append((int(p[0]), int(p[1])))
    return pairs, None


def roc_auc(scores: Sequence[float], labels: Sequence[Any]) -> float:
    """Area under the ROC curve (the probability that a random positive outranks a random negative; ties count
    half), from ranks: no sklearn needed."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise MonitorError(f"ROC AUC needs both classes; got {n_pos} positive and {n_neg} negative labels")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(scores: Sequence[float], labels: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rates, true-positive rates and the thresholds (score >= t is positive), from high to low."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    thr = np.unique(s)[::-1]
    tpr = np.array([0.0] + [float((s[y] >= t).mean()) for t in thr])
    fpr = np.array([0.0] + [float((s[~y] >= t).mean()) for t in thr])
    return fpr, tpr, np.concatenate([[np.inf], thr])


def _labels01(labels: Any, n: int) -> np.ndarray:
    y = list(labels.tolist() if hasattr(labels, "tolist") else labels)
    if len(y) != n:
        raise MonitorError(f"got {n} texts but {len(y)} labels")
    bad = [v for v in y if not (isinstance(v, (bool, np.bool_)) or (isinstance(v, (int, np.integer)) and v in (0, 1)))]
    if bad:
        raise MonitorError(f"labels must be 0/1 or booleans; got {bad[0]!r}")
    return np.asarray(y, dtype=bool)


@dataclass
class MonitorEvaluation:
    """ROC AUC, and precision / recall at a threshold, of a monitor on labelled texts."""

    auc: float
    threshold: float
    threshold_source: str
    precision: float
    recall: float
    scores: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)

    @property
    def n_positive(self) -> int:
        return int(self.labels.sum())

    @property
    def n_negative(self) -> int:
        return int((~self.labels).sum())

    def to_dataframe(self) -> "pd.DataFrame":
        import pandas as pd

        return pd.DataFrame({"score": self.scores, "label": self.labels.astype(int),
                             "flagged": self.scores >= self.threshold})

    def summary(self) -> dict[str, Any]:
        return {"auc": self.auc, "threshold": self.threshold, "threshold_source": self.threshold_source,
                "precision": self.precision, "recall": self.recall, "positives": self.n_positive,
                "negatives": self.n_negative}

    def plot(self, ax: Any = None):
        """ROC curve (left) and the score distribution of each class with the threshold (right)."""
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
        axes = list(np.atleast_1d(ax))
        fpr, tpr, _ = roc_curve(self.scores, self.labels)
        axes[0].plot(fpr, tpr, drawstyle="steps-post", label=f"monitor (AUC {self.auc:.3f})")
        axes[0].plot([0, 1], [0, 1], ls=":", c="grey", label="chance")
        axes[0].set_xlabel("false-positive rate")
        axes[0].set_ylabel("true-positive rate")
        axes[0].legend(loc="lower right", fontsize=8)
        if len(axes) > 1:
            bins = np.linspace(float(self.scores.min()), float(self.scores.max()) + 1e-9, 25)
            axes[1].hist(self.scores[~self.labels], bins=bins, alpha=0.6, label="negative")
            axes[1].hist(self.scores[self.labels], bins=bins, alpha=0.6, label="positive")
            axes[1].axvline(self.threshold, c="k", ls="--", label=f"threshold {self.threshold:.3g}")
            axes[1].set_xlabel("score")
            axes[1].legend(fontsize=8)
        return axes[0].figure


@dataclass
class TokenScores:
    """A monitor's score at every token of one text."""

    tokens: list[str]
    scores: np.ndarray

    def to_dataframe(self) -> "pd.DataFrame":
        import pandas as pd

        return pd.DataFrame({"position": range(len(self.tokens)), "token": self.tokens, "score": self.scores})


class Monitor:
    """Score text with a weighted set of SAE features. Build with :meth:`Scope.monitor`.

    Args:
        scope: the scope whose model and SAEs the features belong to.
        features: ``(layer, feature)`` pairs, or the head of a :func:`~qscope_widgets.contrast.contrast`
            DataFrame (then the default weights are ``sign(difference) / typical activation``, so a typical firing
            of any chosen feature counts about 1, for ``a``'s features and against for ``b``'s).
        weights: one float per feature (default as above, else 1).
        threshold: score at and above which a text (or a generated token) is flagged; ``None`` until set, e.g. by
            :meth:`calibrate`.
        reduce: how a text's per-token scores become one: ``"max"``, ``"mean"`` or ``"sum"``.
        skip_first: leave each text's first token out of its score (the attention sink).
    """

    def __init__(self, scope: "Scope", features: Any, *, weights: Sequence[float] | None = None,
                 threshold: float | None = None, reduce: str = "max", skip_first: bool = True):
        pairs, default_w = _as_features(features)
        if not pairs:
            raise MonitorError("a monitor needs at least one (layer, feature)")
        if reduce not in REDUCE:
            raise MonitorError(f"reduce must be one of {REDUCE}, got {reduce!r}")
        for layer, f in pairs:
            scope.check_layer(layer)
            scope.sae(layer).check_feature(f)
        if len(set(pairs)) != len(pairs):
            dup = next(p for p in pairs if pairs.count(p) > 1)
            raise MonitorError(f"feature {dup} is listed twice")
        if weights is None:
            weights = default_w or [1.0] * len(pairs)
        weights = [float(w) for w in weights]
        if len(weights) != len(pairs):
            raise MonitorError(f"got {len(pairs)} features but {len(weights)} weights")
        if not all(math.isfinite(w) for w in weights):
            raise MonitorError(f"weights must be finite numbers, got {weights}")
        if threshold is not None and (isinstance(threshold, bool) or not math.isfinite(float(threshold))):
            raise MonitorError(f"threshold must be a finite number or None, got {threshold!r}")
        self.scope = scope
        self.spec = MonitorSpec(tuple(pairs), tuple(weights), None if threshold is None else float(threshold),
                                reduce, bool(skip_first))
        self._by_layer: dict[int, tuple[Tensor, Tensor]] = {}
        for (layer, f), w in zip(pairs, weights):
            fs, ws = self._by_layer.get(layer, ([], []))
            self._by_layer[layer] = (fs + [f], ws + [w])  # type: ignore[operator]
        self._by_layer = {n: (torch.tensor(fs, dtype=torch.long), torch.tensor(ws, dtype=torch.float32))
                          for n, (fs, ws) in self._by_layer.items()}

    # ------------------------------------------------------------------ facts
    @property
    def features(self) -> list[tuple[int, int]]:
        return list(self.spec.features)

    @property
    def weights(self) -> list[float]:
        return list(self.spec.weights)

    @property
    def threshold(self) -> float | None:
        return self.spec.threshold

    @property
    def layers(self) -> list[int]:
        return sorted(self._by_layer)

    def __repr__(self) -> str:
        return (f"Monitor({len(self.features)} features on layers {self.layers}, reduce={self.spec.reduce!r}, "
                f"threshold={self.threshold})")

    def with_threshold(self, threshold: float | None) -> "Monitor":
        """The same monitor with another threshold."""
        return Monitor(self.scope, self.features, weights=self.weights, threshold=threshold,
                       reduce=self.spec.reduce, skip_first=self.spec.skip_first)

    # ------------------------------------------------------------------ per-token scores from codes
    def token_scores(self, layer: int, ids: Tensor, values: Tensor) -> Tensor:
        """This layer's contribution to the per-token score, from sparse codes ``(n, k)`` -> ``(n,)`` float32."""
        fs, ws = self._by_layer[layer]
        fs, ws = fs.to(ids.device), ws.to(ids.device)
        hit = ids[..., None] == fs  # (n, k, m)
        return (values.float()[..., None] * hit * ws).sum(dim=(-1, -2))

    def _score_residuals(self, residuals: dict[int, Tensor]) -> Tensor:
        """Per-token score of residuals ``{layer: (n, d_model)}`` (every monitor layer present)."""
        total = None
        for n in self.layers:
            ids, values = encode_real_tokens(self.scope.sae(n), residuals[n])
            part = self.token_scores(n, ids, values).cpu()
            total = part if total is None else total + part
        assert total is not None
        return total

    def _reduce(self, s: Tensor) -> float:
        if s.numel() == 0:
            return 0.0
        r = self.spec.reduce
        return float(s.max() if r == "max" else s.mean() if r == "mean" else s.sum())

    # ------------------------------------------------------------------ scoring text
    def score(self, texts: Any, *, batch_size: int = 16, max_tokens: int | None = None,
              progress: bool | None = None) -> np.ndarray:
        """One score per text (batched, right-padded), in the order given.

        ``texts`` may also be a list of :class:`~qscope_widgets.trace.Trace` s that captured the monitor's layers
        (``scope.run(text, layers=...)``): then nothing is run again, so many monitors can be compared on the same
        texts for the cost of one forward each."""
        if _all_traces(texts):
            return np.array([self.score_trace(t) for t in texts], dtype=np.float64)
        items = as_texts(texts, "texts")
        tset = tokenize_set(self.scope, items, max_tokens)
        per_text: list[list[Tensor]] = [[] for _ in items]
        skip = self.spec.skip_first
        by_text: dict[tuple[int, int], Tensor] = {}
        for _, rows, codes in stream_codes(self.scope, [tset], self.layers, skip_first=False, batch_size=batch_size,
                                           progress=progress, desc="monitor"):
            part = self.token_scores(codes.layer, codes.ids, codes.values).cpu()
            row, pos = codes.row.cpu(), codes.position.cpu()
            for j, i in enumerate(rows):
                sel = row == j
                p, v = pos[sel], part[sel]
                if skip and len(tset.ids[i]) > 1:
                    v = v[p > 0]
                key = (i, codes.layer)
                by_text[key] = v
        for (i, _), v in by_text.items():
            per_text[i].append(v)
        return np.array([self._reduce(torch.stack(parts).sum(0)) for parts in per_text], dtype=np.float64)

    @torch.inference_mode()
    def per_token(self, text: Any) -> TokenScores:
        """The score at every token of one prompt (the first token included: it is shown, not reduced)."""
        ids = self.scope.tokenize(text)
        res = self.scope.residuals(ids, None, layers=self.layers)
        s = self._score_residuals({n: res[n][0] for n in self.layers})
        return TokenScores(self.scope.token_strings(ids[0]), s.numpy().astype(np.float64))

    def scores_from_trace(self, trace: "Trace") -> np.ndarray:
        """Per-token score of a :class:`~qscope_widgets.trace.Trace` that captured every monitor layer: no forward
        needed (a widget already holding the trace colours by the monitor for free)."""
        missing = [n for n in self.layers if n not in trace.layers]
        if missing:
            raise MonitorError(f"the trace lacks layers {missing} that this monitor reads; run with layers="
                               f"{self.layers}")
        total = torch.zeros(len(trace.tokens))
        for n in self.layers:
            lc = trace.layers[n]
            total += self.token_scores(n, lc.ids, lc.values).cpu()
        return total.numpy().astype(np.float64)

    def score_trace(self, trace: "Trace") -> float:
        """One text's score from a trace holding the monitor's layers (reduced as :meth:`score` does)."""
        s = torch.from_numpy(self.scores_from_trace(trace))
        if self.spec.skip_first and s.numel() > 1:
            s = s[1:]
        return self._reduce(s)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, texts: Any, labels: Any, *, threshold: float | None = None,
                 batch_size: int = 16) -> MonitorEvaluation:
        """ROC AUC of the text scores against 0/1 ``labels`` (1 = what the monitor should flag), and precision /
        recall at ``threshold`` (default: the monitor's own; if it has none, the threshold that maximises
        TPR - FPR on *these* texts, marked as such: optimistic, for orientation only)."""
        items = texts if _all_traces(texts) else as_texts(texts, "texts")
        y = _labels01(labels, len(items))
        scores = self.score(items, batch_size=batch_size)
        auc = roc_auc(scores, y)
        source = "given"
        if threshold is None:
            threshold, source = self.threshold, "the monitor's"
        if threshold is None:
            threshold, source = best_threshold(scores, y), "chosen on these texts (optimistic)"
        flagged = scores >= threshold
        tp = int((flagged & y).sum())
        precision = tp / int(flagged.sum()) if flagged.any() else float("nan")
        recall = tp / int(y.sum())
        return MonitorEvaluation(auc, float(threshold), source, precision, recall, scores, y)

    def calibrate(self, texts: Any, labels: Any, *, batch_size: int = 16) -> "Monitor":
        """A copy whose threshold maximises TPR - FPR (Youden's J) on these labelled texts: calibrate on one split,
        :meth:`evaluate` on another."""
        items = texts if _all_traces(texts) else as_texts(texts, "texts")
        y = _labels01(labels, len(items))
        scores = self.score(items, batch_size=batch_size)
        if y.all() or not y.any():
            raise MonitorError("calibration needs both positive and negative texts")
        return self.with_threshold(best_threshold(scores, y))

    # ------------------------------------------------------------------ generation
    def watcher(self, stop_above: float | None = None) -> "GenerationWatch":
        """A per-run hook for ``Scope.generate(monitor=...)``: scores each generated token as it is fed back, and
        asks generation to stop once a score exceeds ``stop_above``."""
        if stop_above is not None and (isinstance(stop_above, bool) or not math.isfinite(float(stop_above))):
            raise MonitorError(f"stop_above must be a finite number or None, got {stop_above!r}")
        return GenerationWatch(self, None if stop_above is None else float(stop_above))

    # ------------------------------------------------------------------ persistence
    def identity(self) -> dict[str, Any]:
        """What ties this monitor to its scope: model name and shape, SAE release, and each feature's encoder row
        norm and bias (a fingerprint that changes if the SAEs are different ones under the same name)."""
        s = self.scope
        saes = {n: s.sae(n) for n in self.layers}
        fp = []
        for layer, f in self.features:
            sae = saes[layer]
            fp.append([float(sae.W_enc[f].float().norm()), float(sae.b_enc[f].float())])
        first = saes[self.layers[0]]
        return {"model": s.name, "n_layers": s.n_layers, "d_model": s.d_model, "sae_release": first.cfg.release,
                "d_sae": {str(n): saes[n].d_sae for n in self.layers}, "fingerprint": fp}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the monitor as JSON (features, weights, threshold, reduction, and the scope's identity)."""
        p = Path(path)
        data = {"format": FORMAT, "features": [list(x) for x in self.features], "weights": self.weights,
                "threshold": self.threshold, "reduce": self.spec.reduce, "skip_first": self.spec.skip_first,
                "identity": self.identity()}
        p.write_text(json.dumps(data, indent=2))
        return p

    @classmethod
    def load(cls, path: str | os.PathLike, scope: "Scope") -> "Monitor":
        """Read a monitor saved by :meth:`save` onto ``scope``; refused (:class:`MonitorError`) if it was made
        for another model or other SAEs."""
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError as e:
            raise MonitorError(f"no monitor file at {p}") from e
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise MonitorError(f"{p} is not a monitor file (not JSON: {e})") from e
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise MonitorError(f"{p} is not a monitor file (format {data.get('format') if isinstance(data, dict) else None!r}, "
                               f"expected {FORMAT!r})")
        ident = data.get("identity", {})
        mine = {"model": scope.name, "n_layers": scope.n_layers, "d_model": scope.d_model}
        for key, val in mine.items():
            if ident.get(key) != val:
                raise MonitorError(f"{p} was saved for {key}={ident.get(key)!r}, but this scope has {key}={val!r}: "
                                   "a monitor only means something on the model and SAEs it was built on")
        try:
            m = cls(scope, [tuple(x) for x in data["features"]], weights=data["weights"],
                    threshold=data.get("threshold"), reduce=data.get("reduce", "max"),
                    skip_first=data.get("skip_first", True))
        except QScopeError as e:
            raise MonitorError(f"{p} does not fit this scope: {e}") from e
        here = m.identity()
        if ident.get("sae_release") != here["sae_release"] or ident.get("d_sae") != here["d_sae"]:
            raise MonitorError(f"{p} was saved for SAEs {ident.get('sae_release')!r} (d_sae {ident.get('d_sae')}), "
                               f"this scope has {here['sae_release']!r} (d_sae {here['d_sae']})")
        saved = np.asarray(ident.get("fingerprint", []), dtype=np.float64)
        if saved.shape != np.asarray(here["fingerprint"]).shape or not np.allclose(
                saved, here["fingerprint"], rtol=1e-2, atol=1e-3):
            raise MonitorError(f"{p}: the chosen features' encoder weights differ from this scope's SAEs (same names, "
                               "other weights): refusing to score with directions the monitor was not built on")
        return m


def _is_trace(x: Any) -> bool:
    from .trace import Trace

    return isinstance(x, Trace)


def _all_traces(x: Any) -> bool:
    return isinstance(x, (list, tuple)) and bool(x) and all(_is_trace(t) for t in x)


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The score threshold (score >= t flags) that maximises TPR - FPR."""
    fpr, tpr, thr = roc_curve(scores, labels)
    j = int(np.argmax(tpr - fpr))
    return float(thr[j]) if math.isfinite(thr[j]) else float(np.max(scores)) + 1.0


class GenerationWatch:
    """Scores the generated tokens of one generation run from the residuals its hooks capture."""

    def __init__(self, monitor: Monitor, stop_above: float | None):
        self.monitor = monitor
        self.stop_above = stop_above
        self.layers = monitor.layers
        self.scores: list[float] = []
        self.stopped_at: int | None = None

    def __call__(self, captured: dict[int, Tensor], offset: int, prompt_len: int) -> bool:
        """Called after each forward with the captured ``(1, n, d)`` residuals of positions ``offset..``; records
        the scores of generated positions (``>= prompt_len``); True asks generation to stop."""
        n = captured[self.layers[0]].shape[1]
        first = max(prompt_len - offset, 0)
        if first >= n:
            return False
        s = self.monitor._score_residuals({k: captured[k][0, first:] for k in self.layers})
        stop = False
        for v in s.tolist():
            self.scores.append(float(v))
            if self.stop_above is not None and v > self.stop_above and self.stopped_at is None:
                self.stopped_at = len(self.scores) - 1
                stop = True
        return stop


def token_colouring(monitor: Monitor, text_or_trace: Any, *, clip: bool = True) -> list[float]:
    """Per-token floats for a heatmap: the monitor's score at each token, scaled to [0, 1] by the threshold when
    the monitor has one (1 = at or above it), else by the largest absolute score. From a prompt (one forward) or
    from a :class:`~qscope_widgets.trace.Trace` holding the monitor's layers (no forward)."""
    if isinstance(text_or_trace, str):
        s = monitor.per_token(text_or_trace).scores
    else:
        s = monitor.scores_from_trace(text_or_trace)
    scale = monitor.threshold if monitor.threshold and monitor.threshold > 0 else float(np.abs(s).max() or 1.0)
    out = s / scale
    if clip:
        out = np.clip(out, 0.0, 1.0)
    return [float(v) for v in out]
