"""How good is an SAE on a model? The standard figures, measured on token windows the caller supplies.

* fraction of variance explained: ``1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2`` over all tokens;
* dead features: the fraction of features that never fire on the sample;
* cross-entropy loss recovered: splice ``x_hat`` in place of the residual and compare the next-token loss with
  the clean model and with the residual zeroed: ``(CE_zero - CE_sae) / (CE_zero - CE_clean)``;
* mean L0 (active features per token).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .errors import QScopeError
from .hooks import patch_residual

if TYPE_CHECKING:
    from .scope import Scope


def _ce(logits: Tensor, ids: Tensor) -> tuple[float, int]:
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten(),
                                             reduction="sum")
    return float(loss), ids[:, 1:].numel()


@torch.inference_mode()
def evaluate_sae(scope: "Scope", windows: Tensor, layer: int, *, batch_size: int = 16,
                 skip_first: bool = False) -> dict[str, float]:
    """Figures of ``scope.sae(layer)`` on ``windows`` ``(n, seq)`` token ids.

    ``skip_first`` leaves position 0 (an attention sink with outlier norms) out of FVE and L0.
    """
    sae = scope.sae(layer)
    fired = torch.zeros(sae.d_sae, dtype=torch.bool)
    sse = sx = sxx = 0.0
    n_tok = 0
    l0 = 0.0
    ce = {"clean": 0.0, "sae": 0.0, "zero": 0.0}
    n_ce = 0
    model = scope.model
    for i in range(0, windows.shape[0], batch_size):
        ids = windows[i:i + batch_size].to(scope.device)
        res = scope.residuals(ids, layers=[layer])[layer]
        x = res[:, 1:] if skip_first else res
        x = x.reshape(-1, x.shape[-1]).to(sae.dtype)
        codes = sae.encode_sparse(x)
        x_hat = sae.decode_sparse(codes.ids, codes.values)
        sse += float((x - x_hat).pow(2).sum())
        sx_b = x.double().sum(0)
        sx = sx + sx_b if isinstance(sx, Tensor) else sx_b
        sxx += float(x.double().pow(2).sum())
        n_tok += x.shape[0]
        l0 += float((codes.values != 0).sum())
        fired[codes.ids[codes.values != 0].unique().cpu()] = True
        c, n = _ce(model(input_ids=ids, use_cache=False).logits, ids)
        ce["clean"] += c
        with patch_residual(scope.layers, layer, lambda h: sae(h).to(h.dtype)):
            ce["sae"] += _ce(model(input_ids=ids, use_cache=False).logits, ids)[0]
        with patch_residual(scope.layers, layer, torch.zeros_like):
            ce["zero"] += _ce(model(input_ids=ids, use_cache=False).logits, ids)[0]
        n_ce += n
    sst = sxx - float((sx * sx).sum()) / n_tok  # sum ||x - mean||^2
    ce = {k: v / n_ce for k, v in ce.items()}
    return {
        "layer": layer,
        "fve": 1.0 - sse / sst,
        "dead_fraction": 1.0 - float(fired.float().mean()),
        "ce_clean": ce["clean"],
        "ce_sae": ce["sae"],
        "ce_zero": ce["zero"],
        "ce_recovered": (ce["zero"] - ce["sae"]) / (ce["zero"] - ce["clean"]),
        "l0": l0 / n_tok,
        "tokens": n_tok,
    }


# ---------------------------------------------------------------------------------------------- fair baselines
def unigram_log_probs(windows: Tensor, vocab: int, *, smoothing: float = 1.0) -> Tensor:
    """``(vocab,)`` log-probabilities of an add-``smoothing`` unigram model fitted on the target tokens of
    ``windows`` (every token but each window's first): the best a model can do without reading any context."""
    counts = torch.bincount(windows[:, 1:].reshape(-1).cpu(), minlength=vocab).double() + smoothing
    return (counts / counts.sum()).log()


@torch.inference_mode()
def mean_residual(scope: "Scope", windows: Tensor, layer: int, *, batch_size: int = 16) -> Tensor:
    """The mean of layer ``layer``'s output over ``windows`` (position 0, the attention sink, left out)."""
    total, n = None, 0
    for i in range(0, windows.shape[0], batch_size):
        x = scope.residuals(windows[i:i + batch_size].to(scope.device), layers=[layer])[layer][:, 1:].double()
        s = x.sum((0, 1))
        total = s if total is None else total + s
        n += x.shape[0] * x.shape[1]
    return (total / n).float()


@torch.inference_mode()
def ce_against_baselines(scope: "Scope", windows: Tensor, layer: int, *, batch_size: int = 16,
                         mean: Tensor | None = None, unigram: Tensor | None = None) -> dict[str, float]:
    """Cross-entropy figures that do not flatter the SAE: the loss *increase* in nats from splicing its
    reconstruction, and "CE recovered" against three baselines, side by side.

    * zero ablation (the classic figure): the residual replaced by zeros. For a model whose next layers turn a
      zero residual into a uniform prediction (the demo: exactly ``ln vocab``), this baseline is so bad that any
      reconstruction "recovers" most of the loss.
    * mean ablation: the residual replaced by its mean (``mean``, default: measured on ``windows`` themselves);
    * a unigram model (``unigram``: ``(vocab,)`` log-probs, default: fitted on ``windows``' own tokens, which
      flatters the baseline and so makes "recovered" conservative).

    ``recovered_vs_X = (CE_X - CE_sae) / (CE_X - CE_clean)``.
    """
    sae = scope.sae(layer)
    model = scope.model
    vocab = model.get_output_embeddings().weight.shape[0]
    if mean is None:
        mean = mean_residual(scope, windows, layer, batch_size=batch_size)
    if unigram is None:
        unigram = unigram_log_probs(windows, vocab)
    if unigram.shape != (vocab,):
        raise QScopeError(f"unigram must be ({vocab},) log-probabilities, got shape {tuple(unigram.shape)}")
    ce = {"clean": 0.0, "sae": 0.0, "zero": 0.0, "mean": 0.0}
    uni = 0.0
    n_ce = 0
    with scope.steering(None):  # the scope's lock: no other thread's hooks during these passes
        for i in range(0, windows.shape[0], batch_size):
            ids = windows[i:i + batch_size].to(scope.device)
            c, n = _ce(model(input_ids=ids, use_cache=False).logits, ids)
            ce["clean"] += c
            with patch_residual(scope.layers, layer, lambda h: sae(h).to(h.dtype)):
                ce["sae"] += _ce(model(input_ids=ids, use_cache=False).logits, ids)[0]
            with patch_residual(scope.layers, layer, torch.zeros_like):
                ce["zero"] += _ce(model(input_ids=ids, use_cache=False).logits, ids)[0]
            with patch_residual(scope.layers, layer, lambda h: mean.to(h.device, h.dtype).expand_as(h)):
                ce["mean"] += _ce(model(input_ids=ids, use_cache=False).logits, ids)[0]
            uni += float(-unigram[ids[:, 1:].reshape(-1).cpu()].sum())
            n_ce += n
    ce = {k: v / n_ce for k, v in ce.items()}
    uni /= n_ce

    def rec(base: float) -> float:
        return (base - ce["sae"]) / (base - ce["clean"]) if base != ce["clean"] else float("nan")

    return {
        "layer": layer, "tokens": n_ce, "ce_clean": ce["clean"], "ce_sae": ce["sae"],
        "ce_increase_nats": ce["sae"] - ce["clean"], "ce_zero": ce["zero"], "ce_mean_ablation": ce["mean"],
        "ce_unigram": uni, "recovered_vs_zero": rec(ce["zero"]), "recovered_vs_mean": rec(ce["mean"]),
        "recovered_vs_unigram": rec(uni),
    }


@torch.inference_mode()
def first_firing_token(scope: "Scope", windows: Tensor, layer: int, *, batch_size: int = 16,
                       skip_first: bool = True) -> Tensor:
    """``(d_sae,)``: for each feature, the index (in sample order) of the first token it fires on; -1 if it never
    does. Enough to read off the dead fraction of every prefix of the sample (:func:`dead_fraction_curve`)."""
    sae = scope.sae(layer)
    first = torch.full((sae.d_sae,), -1, dtype=torch.long)
    seen = 0
    for i in range(0, windows.shape[0], batch_size):
        x = scope.residuals(windows[i:i + batch_size].to(scope.device), layers=[layer])[layer]
        x = (x[:, 1:] if skip_first else x).reshape(-1, x.shape[-1]).to(sae.dtype)
        codes = sae.encode_sparse(x)
        tok = torch.arange(seen, seen + x.shape[0])[:, None].expand_as(codes.ids)
        live = codes.values.cpu() != 0
        ids, t = codes.ids.cpu()[live], tok[live]
        new = first[ids] < 0
        # the earliest token of each newly seen feature in this batch
        cand = torch.full((sae.d_sae,), 2**62, dtype=torch.long).scatter_reduce(0, ids[new], t[new], "amin")
        hit = (cand < 2**62) & (first < 0)
        first[hit] = cand[hit]
        seen += x.shape[0]
    return first


def dead_fraction_curve(first_fire: Tensor, sizes: "list[int]") -> dict[int, float]:
    """Dead fraction (features that have not fired yet) after the first ``n`` tokens, for each ``n`` in
    ``sizes``: how much of "dead" is only "not seen on a small sample"."""
    d = first_fire.numel()
    return {int(n): float(((first_fire < 0) | (first_fire >= n)).sum()) / d for n in sizes}
