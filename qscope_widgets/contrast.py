"""Contrast: which SAE features separate two texts, or two sets of texts.

The release's own app has a comparison tab: run two texts, and over a chosen range of layers rank features by the
difference of their firing rates, with steering presets of 0.5x / 2x / 10x of the feature's activation difference
(falling back to 5 / 20 / 100). :func:`contrast` does the same for sets of any size: both sides stream through the
model in right-padded batches (:mod:`qscope_widgets.textsets`) and only running sums per feature are kept (count of
tokens where it fires, sum and sum of squares of its activation, texts where it fires at least once, its maximum),
so memory does not grow with the number of texts.

A layer range is aggregated the way the app does it: every ``(layer, feature)`` pair of every layer in the range
is one row of a single ranking (a feature is a different direction at each layer, so nothing is summed across
layers); ``df.groupby("layer")`` gives the per-layer view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import torch

from .errors import QScopeError
from .steering import SteeringEdit
from .textsets import as_texts, stream_codes, tokenize_set

if TYPE_CHECKING:
    import pandas as pd

    from .scope import Scope

BY = ("rate", "mean", "effect")
PRESET_FACTORS = {"0.5x": 0.5, "2x": 2.0, "10x": 10.0}
FALLBACK_PRESETS = {"0.5x": 5.0, "2x": 20.0, "10x": 100.0}  # the app's presets when there is no difference to scale


@dataclass
class FeatureSums:
    """Running per-feature sums of one side at one layer (float64 so a million tokens add up exactly enough)."""

    count: torch.Tensor  # tokens where the feature fired
    total: torch.Tensor  # sum of its activation
    sumsq: torch.Tensor  # sum of squared activation
    texts: torch.Tensor  # texts where it fired at least once
    peak: torch.Tensor  # largest activation

    @classmethod
    def zeros(cls, d_sae: int, device: Any) -> "FeatureSums":
        z = lambda: torch.zeros(d_sae, dtype=torch.float64, device=device)  # noqa: E731
        return cls(z(), z(), z(), z(), z())

    def add(self, ids: torch.Tensor, values: torch.Tensor, row: torch.Tensor) -> None:
        active = values > 0
        f = ids[active]
        v = values[active].double()
        self.count.index_add_(0, f, torch.ones_like(v))
        self.total.index_add_(0, f, v)
        self.sumsq.index_add_(0, f, v * v)
        self.peak.scatter_reduce_(0, f, v, reduce="amax")
        d = self.count.shape[0]
        pairs = torch.unique(row[:, None].expand_as(ids)[active] * d + f)  # (text, feature) pairs of this batch
        self.texts.index_add_(0, pairs % d, torch.ones(pairs.shape[0], dtype=torch.float64, device=pairs.device))


def _layers(scope: "Scope", layers: Any) -> list[int]:
    if layers is None:
        out = list(scope.sae_layers)
    elif isinstance(layers, int) and not isinstance(layers, bool):
        out = [layers]
    elif isinstance(layers, Iterable) and not isinstance(layers, (str, bytes)):
        out = list(layers)
    else:
        raise QScopeError(f"layers must be None, an int, or a collection of ints (e.g. range(2, 5)), got {layers!r}")
    if not out:
        raise QScopeError("layers is empty: give at least one layer with an SAE")
    return sorted({scope.check_layer(n) for n in out})


def _labels(scope: "Scope", layer: int, features: np.ndarray) -> list[str]:
    idx = getattr(scope, "feature_index", None)
    if idx is None or layer not in idx.layers:
        return [""] * len(features)
    df = idx.features(layer)
    lab = df["label"].astype(str).to_numpy()
    if "explanation" in df:
        exp = df["explanation"].fillna("").astype(str).to_numpy()
        lab = np.where(exp != "", exp, lab)
    ok = features < len(lab)
    return [str(lab[f]) if k else "" for f, k in zip(features, ok)]


def contrast(scope: "Scope", a: Any, b: Any, *, layers: Any = None, by: str = "rate", skip_first: bool = True,
             batch_size: int = 16, max_tokens: int | None = None, min_rate: float = 0.0,
             progress: bool | None = None) -> "pd.DataFrame":
    """Rank ``(layer, feature)`` pairs by how much more they fire on ``a`` than on ``b``.

    Args:
        a, b: each a prompt (str) or a collection of texts (list, Series, generator; any size).
        layers: an int, a collection or ``range`` of layers (default: every SAE layer), ranked together.
        by: what ``difference`` is: ``"rate"`` (fraction of tokens where the feature fires, a minus b; the app's
            choice), ``"mean"`` (mean activation over all tokens, zeros included) or ``"effect"`` (Cohen's d of the
            per-token activation: the mean difference over the pooled standard deviation).
        skip_first: leave each text's first token out (it is an attention sink with outlier norms).
        batch_size: texts per forward (right-padded); ``max_tokens``: texts longer than this are cut (default
            min(context, 1024)); the number cut is in ``df.attrs["truncated"]``.
        min_rate: keep only rows where ``max(rate_a, rate_b) > min_rate`` (default: every feature that fired).
        progress: a tqdm bar (``None``: only for long work).

    Returns a DataFrame sorted by ``difference`` (descending: features of ``a`` first, of ``b`` last) with columns
    ``layer, feature, label, rate_a, rate_b, mean_a, mean_b, active_mean_a, active_mean_b, text_rate_a,
    text_rate_b, max_a, max_b, effect_size, difference, steer_0.5x, steer_2x, steer_10x``. ``active_mean`` is the
    mean activation where the feature fires; ``text_rate`` the fraction of texts where it fires at least once;
    the ``steer_*`` columns are the app's strength presets (see :func:`steering_presets`). ``df.attrs`` holds the
    token and text counts.
    """
    if by not in BY:
        raise QScopeError(f"by must be one of {BY}, got {by!r}")
    if not isinstance(min_rate, (int, float)) or not 0.0 <= min_rate < 1.0:
        raise QScopeError(f"min_rate must be in [0, 1), got {min_rate!r}")
    texts_a, texts_b = as_texts(a, "a"), as_texts(b, "b")
    layer_list = _layers(scope, layers)
    sets = [tokenize_set(scope, texts_a, max_tokens), tokenize_set(scope, texts_b, max_tokens)]
    sums: dict[tuple[int, int], FeatureSums] = {}
    n_tok = [0, 0]
    counted: set[tuple[int, int]] = set()
    for side, rows, codes in stream_codes(scope, sets, layer_list, skip_first=skip_first, batch_size=batch_size,
                                          progress=progress, desc="contrast"):
        key = (side, codes.layer)
        if key not in sums:
            sums[key] = FeatureSums.zeros(scope.sae(codes.layer).d_sae, codes.ids.device)
        sums[key].add(codes.ids, codes.values, codes.row)
        if codes.layer == layer_list[0]:
            n_tok[side] += int(codes.ids.shape[0])
        counted.add(key)
    n_texts = [len(texts_a), len(texts_b)]
    if min(n_tok) == 0:
        raise QScopeError(f"no tokens to compare on side {'a' if n_tok[0] == 0 else 'b'}: every text is a single "
                          "token and skip_first=True leaves nothing; pass longer texts or skip_first=False")
    frames = [_layer_frame(scope, n, sums[(0, n)], sums[(1, n)], n_tok, n_texts, by, min_rate) for n in layer_list]
    import pandas as pd

    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    df = df.sort_values(["difference", "layer", "feature"], ascending=[False, True, True], kind="stable")
    df = df.reset_index(drop=True)
    df.attrs.update({"by": by, "layers": layer_list, "tokens_a": n_tok[0], "tokens_b": n_tok[1],
                     "texts_a": n_texts[0], "texts_b": n_texts[1],
                     "truncated": sets[0].truncated + sets[1].truncated, "skip_first": skip_first,
                     "model": scope.name})
    return df


def _layer_frame(scope, layer, sa: FeatureSums, sb: FeatureSums, n_tok, n_texts, by, min_rate) -> "pd.DataFrame":
    import pandas as pd

    na, nb = float(n_tok[0]), float(n_tok[1])
    ca, cb = sa.count.cpu().numpy(), sb.count.cpu().numpy()
    keep = np.nonzero((ca + cb) > 0)[0]
    rate_a, rate_b = ca[keep] / na, cb[keep] / nb
    if min_rate > 0:
        sel = np.maximum(rate_a, rate_b) > min_rate
        keep, rate_a, rate_b = keep[sel], rate_a[sel], rate_b[sel]
    g = lambda t: t.cpu().numpy()[keep]  # noqa: E731
    ta, tb, qa, qb = g(sa.total), g(sb.total), g(sa.sumsq), g(sb.sumsq)
    mean_a, mean_b = ta / na, tb / nb
    with np.errstate(invalid="ignore", divide="ignore"):
        act_a = np.where(ca[keep] > 0, ta / np.maximum(ca[keep], 1), 0.0)
        act_b = np.where(cb[keep] > 0, tb / np.maximum(cb[keep], 1), 0.0)
        var_a = np.maximum(qa / na - mean_a**2, 0.0) * na / max(na - 1, 1)
        var_b = np.maximum(qb / nb - mean_b**2, 0.0) * nb / max(nb - 1, 1)
        pooled = np.sqrt(((na - 1) * var_a + (nb - 1) * var_b) / max(na + nb - 2, 1))
        effect = np.where(pooled > 0, (mean_a - mean_b) / np.where(pooled > 0, pooled, 1.0), 0.0)
    diff = {"rate": rate_a - rate_b, "mean": mean_a - mean_b, "effect": effect}[by]
    basis = act_a - act_b
    df = pd.DataFrame({
        "layer": np.full(len(keep), layer, dtype=np.int64), "feature": keep.astype(np.int64),
        "label": _labels(scope, layer, keep), "rate_a": rate_a, "rate_b": rate_b, "mean_a": mean_a,
        "mean_b": mean_b, "active_mean_a": act_a, "active_mean_b": act_b,
        "text_rate_a": g(sa.texts) / n_texts[0], "text_rate_b": g(sb.texts) / n_texts[1],
        "max_a": g(sa.peak), "max_b": g(sb.peak), "effect_size": effect, "difference": diff,
    })
    for name, factor in PRESET_FACTORS.items():
        df[f"steer_{name}"] = np.where(basis != 0, factor * basis, FALLBACK_PRESETS[name])
    return df


def steering_presets(row: Any, *, mode: str = "add") -> dict[str, SteeringEdit]:
    """The app's three steering presets for one contrast row: 0.5x / 2x / 10x of the feature's activation
    difference (``active_mean_a - active_mean_b``: the typical activation where it fires, a minus b; positive
    pushes toward ``a``), or 5 / 20 / 100 when that difference is 0. ``row``: a row of :func:`contrast`'s
    DataFrame (``df.iloc[0]``) or a dict with ``layer``, ``feature`` and the ``steer_*`` columns."""
    try:
        layer, feature = int(row["layer"]), int(row["feature"])
        strengths = {name: float(row[f"steer_{name}"]) for name in PRESET_FACTORS}
    except (KeyError, TypeError, IndexError) as e:
        raise QScopeError(f"steering_presets needs a contrast row with layer, feature and steer_* columns: {e}") from e
    return {name: SteeringEdit(layer, feature, s, mode=mode) for name, s in strengths.items()}
