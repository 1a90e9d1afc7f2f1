"""The result of one hooked forward pass: compact, sparse, and also a set of pandas views.

A trace never holds a dense ``(seq, d_sae)`` tensor (81,920 floats per token for Qwen3.5-27B): per layer it keeps
the active features' ids and values ``(seq, k)``, the reconstruction error per token, and the L0; for the logits,
the full logits of the last position and the top-n next-token predictions at every position. All tensors are on the
CPU, detached, so a trace can be kept, pickled, and shipped to a widget.

The top-n predictions at positions other than the last are computed on first read (``next_ids``,
``next_probs``, ``next_tokens(position)``): a run projects only the last position onto the vocabulary (the model is
called with ``logits_to_keep=1``), keeping the final hidden states ``(seq, d_model)`` so the other rows can be
projected later. That skips ``(seq - 1) x d_model x vocab`` of unembedding work per run that most views never read
(for Qwen3.5-27B, 1.3 GFLOP per token). A pickled trace carries the materialised predictions, not the model.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from .errors import FeatureIndexError, UnknownLayerError
from .steering import SteeringEdit


@dataclass
class LayerCodes:
    """SAE codes of one layer for every token of a prompt."""

    layer: int
    ids: Tensor  # (seq, k) int64, each row by value descending
    values: Tensor  # (seq, k) float32
    recon_error: Tensor  # (seq,) ||x - x_hat|| / ||x||
    l0: Tensor  # (seq,) active (non-zero) features per token
    residual_norm: Tensor  # (seq,) ||x||
    d_sae: int

    def activation_of(self, feature: int) -> Tensor:
        """``(seq,)`` code of one feature at every token (0 where it is not among the active ones)."""
        f = int(feature)
        if not 0 <= f < self.d_sae:
            raise FeatureIndexError(f"feature {feature} is out of range for layer {self.layer}: 0..{self.d_sae - 1}")
        return (self.values * (self.ids == f)).sum(-1)

    def dense(self) -> Tensor:
        """The full ``(seq, d_sae)`` codes; for small SAEs and tests only."""
        return torch.zeros(self.ids.shape[0], self.d_sae).scatter_(-1, self.ids, self.values)

    def strongest(self) -> tuple[Tensor, Tensor]:
        """Per token, the strongest feature id and its value."""
        return self.ids[:, 0], self.values[:, 0]


class NextTokens:
    """Top-n next-token predictions, computed for all positions on first use from the final hidden states.

    ``project``: ``(rows, d_model) -> (rows, vocab)`` logits (the model's unembedding); ``hidden``: the final
    (normed) hidden states ``(seq, d_model)`` on the model's device. The last row comes precomputed.
    """

    def __init__(self, hidden: Tensor, project: Callable[[Tensor], Tensor], top_n: int, last_ids: Tensor,
                 last_probs: Tensor):
        self._hidden, self._project, self.top_n = hidden, project, top_n
        self._last = (last_ids, last_probs)
        self._all: tuple[Tensor, Tensor] | None = None
        self._lock = threading.Lock()

    def all(self) -> tuple[Tensor, Tensor]:
        with self._lock:
            if self._all is None:
                ids, probs = top_next(self._project, self._hidden[:-1], self.top_n)
                self._all = (torch.cat([ids, self._last[0][None]]), torch.cat([probs, self._last[1][None]]))
                self._hidden = self._project = None  # type: ignore[assignment]  # nothing left to compute
            return self._all


@torch.inference_mode()
def top_next(project: Callable[[Tensor], Tensor], hidden: Tensor, top_n: int, rows: int = 16
             ) -> tuple[Tensor, Tensor]:
    """``(ids, probs)`` of the top-n next tokens of each hidden row, normalised by a row-blocked logsumexp (no
    ``(seq, vocab)`` softmax or logits tensor is materialised at once)."""
    if hidden.shape[0] == 0:
        return torch.empty(0, top_n, dtype=torch.long), torch.empty(0, top_n)
    ids, probs = [], []
    for blk in hidden.split(rows):
        logits = project(blk).float()
        top_l, top_i = logits.topk(min(top_n, logits.shape[-1]), dim=-1)
        probs.append((top_l - logits.logsumexp(-1, keepdim=True)).exp().cpu())
        ids.append(top_i.cpu())
    return torch.cat(ids), torch.cat(probs)


@dataclass
class Trace:
    """Tokens, per-layer SAE codes and next-token predictions of one (possibly steered) run.

    ``next_ids`` / ``next_probs`` (``(seq, top_n)``) are given directly, or computed on first read from
    ``next_source`` (see :class:`NextTokens`).
    """

    token_ids: Tensor  # (seq,)
    tokens: list[str]
    layers: dict[int, LayerCodes]
    next_ids_: Tensor | None  # (seq, top_n), or None while lazy
    next_probs_: Tensor | None  # (seq, top_n), or None while lazy
    logits_last: Tensor  # (vocab,)
    steering: tuple[SteeringEdit, ...] = ()
    prompt: str | None = None
    residuals: dict[int, Tensor] | None = None  # (seq, d_model) per captured layer, when asked for
    meta: dict[str, Any] = field(default_factory=dict)
    token_decoder: Callable[[list[int]], list[str]] | None = field(default=None, repr=False, compare=False)
    next_source: NextTokens | None = field(default=None, repr=False, compare=False)

    def _materialise_next(self) -> None:
        if self.next_ids_ is None:
            if self.next_source is None:
                raise RuntimeError("this trace has no next-token predictions")
            self.next_ids_, self.next_probs_ = self.next_source.all()
            self.next_source = None

    @property
    def next_ids(self) -> Tensor:
        """``(seq, top_n)`` ids of the most likely next tokens after each position (computed on first read)."""
        self._materialise_next()
        return self.next_ids_  # type: ignore[return-value]

    @property
    def next_probs(self) -> Tensor:
        """``(seq, top_n)`` their probabilities."""
        self._materialise_next()
        return self.next_probs_  # type: ignore[return-value]

    @property
    def next_token_strs(self) -> list[list[str]]:
        """Readable strings of ``next_ids``, decoded on first use (not on the hot path of every run)."""
        cached = self.meta.get("_next_token_strs")
        if cached is None:
            if self.token_decoder is None:
                raise RuntimeError("this trace has no tokenizer to decode next-token ids with")
            cached = [self.token_decoder(row) for row in self.next_ids.tolist()]
            self.meta["_next_token_strs"] = cached
        return cached

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the tokenizer-bound decoder or the model's unembedding (they would drag the whole Scope
        along): predictions and their strings are materialised first."""
        self._materialise_next()
        if self.token_decoder is not None:
            _ = self.next_token_strs
        state = dict(self.__dict__)
        state["token_decoder"] = None
        state["next_source"] = None
        return state

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        steer = f", steering={len(self.steering)} edit(s)" if self.steering else ""
        return f"Trace({len(self.tokens)} tokens, layers={sorted(self.layers)}{steer})"

    def _repr_html_(self) -> str:
        """Static HTML (no JavaScript): per layer, the prompt coloured by the strongest feature and a heatmap of
        the top features; what a notebook shows for a bare trace on GitHub or nbviewer too."""
        from .html import trace_html

        return trace_html(self)

    def layer(self, layer: int) -> LayerCodes:
        try:
            return self.layers[layer]
        except KeyError:
            raise UnknownLayerError(f"this trace has no codes for layer {layer}; it holds layers {sorted(self.layers)}"
                                    ) from None

    def feature_activations(self, layer: int, feature: int) -> Tensor:
        return self.layer(layer).activation_of(feature)

    def next_tokens(self, position: int = -1) -> list[tuple[str, float]]:
        """Top next-token predictions after ``position`` as ``(token, probability)``.

        The last position is answered without computing the others."""
        n = len(self.tokens)
        if self.next_ids_ is None and self.next_source is not None and position in (-1, n - 1):
            ids, probs = self.next_source._last
            if self.token_decoder is None:
                raise RuntimeError("this trace has no tokenizer to decode next-token ids with")
            return list(zip(self.token_decoder(ids.tolist()), probs.tolist()))
        return list(zip(self.next_token_strs[position], self.next_probs[position].tolist()))

    # ---------------------------------------------------------------------------------------- pandas views
    def to_dataframe(self, layer: int | None = None, *, drop_zeros: bool = True):
        """Long format: one row per (layer, position, active feature)."""
        import numpy as np
        import pandas as pd

        frames = []
        for n in ([layer] if layer is not None else sorted(self.layers)):
            c = self.layer(n)
            seq, k = c.ids.shape
            vals = c.values.float().numpy().ravel()
            df = pd.DataFrame({
                "layer": np.full(seq * k, n, dtype=np.int32),
                "position": np.repeat(np.arange(seq, dtype=np.int32), k),
                "token": np.repeat(np.array(self.tokens, dtype=object), k),
                "feature": c.ids.numpy().ravel().astype(np.int64),
                "activation": vals,
                "rank": np.tile(np.arange(k, dtype=np.int32), seq),
            })
            frames.append(df[df.activation != 0] if drop_zeros else df)
        cols = ["layer", "position", "token", "feature", "activation", "rank"]
        if not frames:
            return pd.DataFrame(columns=cols)
        return pd.concat(frames, ignore_index=True)

    def top_features(self, layer: int, position: int | None = None, n: int = 10, *, skip_first: bool = False):
        """The strongest features of one token, or of the whole prompt (max over positions)."""
        df = self.to_dataframe(layer)
        if position is not None:
            pos = position if position >= 0 else len(self.tokens) + position
            df = df[df.position == pos]
        elif skip_first:
            df = df[df.position > 0]
        df = df.sort_values("activation", ascending=False).drop_duplicates("feature")
        return df.head(n)[["feature", "activation", "position", "token"]].reset_index(drop=True)

    def tokens_dataframe(self):
        """One row per token, with per-layer reconstruction error and L0."""
        import pandas as pd

        df = pd.DataFrame({"position": range(len(self.tokens)), "token": self.tokens,
                           "token_id": self.token_ids.tolist()})
        for n, c in sorted(self.layers.items()):
            df[f"recon_error_L{n}"] = c.recon_error.numpy()
            df[f"l0_L{n}"] = c.l0.numpy()
        return df

    def next_token_dataframe(self, position: int = -1):
        import pandas as pd

        rows = self.next_tokens(position)
        return pd.DataFrame(rows, columns=["token", "probability"])
