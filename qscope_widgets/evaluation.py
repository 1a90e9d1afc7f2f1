"""How good is an SAE on a model? The standard figures, measured on token windows the caller supplies.

* fraction of variance explained: ``1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2`` over all tokens;
* dead features: the fraction of features that never fire on the sample;
* cross-entropy loss recovered: splice ``x_hat`` in place of the residual and compare the next-token loss with
  the clean model and with the residual zeroed: ``(CE_zero - CE_sae) / (CE_zero - CE_clean)``;
* mean L0 (active features per token).

:func:`evaluate_saes` measures all of these for many layers in two passes and adds what the zero-ablation figure
hides: the CE increase in nats and CE recovered against mean ablation and a unigram model.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .errors import QScopeError
from .hooks import patch_residual

if TYPE_CHECKING:
    from .scope import Scope


def to_sae(x: Tensor, sae) -> Tensor:
    """``x`` on the SAE's device and dtype: under ``device_map`` a layer's residual may live on another device
    than the SAE bank."""
    return x.to(device=sae.device, dtype=sae.dtype)


def splice(h: Tensor, sae) -> Tensor:
    """The SAE's reconstruction of ``h``, back on ``h``'s device and dtype (for ``patch_residual``)."""
    return sae(to_sae(h, sae)).to(device=h.device, dtype=h.dtype)


def _ce(logits: Tensor, ids: Tensor) -> tuple[float, int]:
    ids = ids.to(logits.device)  # under device_map the head may sit on another device than the embedding
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
        with scope.lock:  # the splice hooks below must never meet a widget's pass on the shared model
            ids = windows[i:i + batch_size].to(scope.device)
            res = scope.residuals(ids, layers=[layer])[layer]
            x = res[:, 1:] if skip_first else res
            x = to_sae(x.reshape(-1, x.shape[-1]), sae)
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
            with patch_residual(scope.layers, layer, lambda h: splice(h, sae)):
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


@dataclass
class SAEEvaluation:
    """Per-layer figures of :func:`evaluate_saes`, plus when each feature first fired (for dead-vs-sample-size),
    and the same figures on each group of windows when ``groups`` was given (for stability: two halves)."""

    rows: list[dict]
    first_fire: dict[int, Tensor] = field(repr=False)
    tokens: int = 0
    group_rows: dict[int, list[dict]] = field(default_factory=dict, repr=False)

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    def groups_dataframe(self):
        """One row per group x layer (column ``group``); empty without ``groups``."""
        import pandas as pd

        return pd.DataFrame([{"group": g, **r} for g, rows in self.group_rows.items() for r in rows])

    def dead_fraction_curve(self, sizes: "list[int]") -> dict[int, dict[int, float]]:
        """``{layer: {n: dead fraction after the first n scored tokens}}``: how much of "dead" is only "not seen
        on a small sample"."""
        return {n: dead_fraction_curve(f, sizes) for n, f in self.first_fire.items()}


def _ce_rows(logits: Tensor, ids: Tensor) -> Tensor:
    """Per-window summed next-token loss ``(b,)`` (float64, CPU)."""
    ids = ids.to(logits.device)  # under device_map the head may sit on another device than the embedding
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2).float(), ids[:, 1:], reduction="none")
    return loss.sum(1).double().cpu()


def _figures(layer: int, a: dict, ce: dict, n_ce: float, uni: float) -> dict:
    """One row from the summed statistics of a layer (``a``) and the summed CE of each condition."""
    clean = ce["clean"] / n_ce
    c_sae, c_zero, c_mean = (ce[k] / n_ce for k in ("sae", "zero", "mean"))
    u = uni / n_ce

    def rec(base: float) -> float:
        return (base - c_sae) / (base - clean) if base != clean else float("nan")

    sst = a["sxx"] - float((a["sx"] * a["sx"]).sum()) / a["n"]
    return {
        "layer": layer, "tokens": int(a["n"]), "fve": 1.0 - a["sse"] / sst, "l0": a["l0"] / a["n"],
        "dead_fraction": 1.0 - float(a["fired"].float().mean()), "ce_clean": clean, "ce_sae": c_sae,
        "ce_increase_nats": c_sae - clean, "ce_zero": c_zero, "ce_mean_ablation": c_mean, "ce_unigram": u,
        "recovered_vs_zero": rec(c_zero), "recovered_vs_mean": rec(c_mean), "recovered_vs_unigram": rec(u),
    }


@torch.inference_mode()
def evaluate_saes(scope: "Scope", windows: Tensor, layers: "list[int] | None" = None, *, batch_size: int = 16,
                  unigram: Tensor | None = None, skip_first: bool = True, groups: Any = None) -> SAEEvaluation:
    """Every SAE figure of ``layers`` on ``windows`` ``(n, seq)``, against baselines that do not flatter it.

    Per layer: FVE, L0 and dead fraction (position 0, the attention sink, left out when ``skip_first``), CE clean,
    CE with the SAE's reconstruction spliced in, the CE *increase* in nats, and "CE recovered",
    ``(CE_X - CE_sae) / (CE_X - CE_clean)``, against three baselines X side by side:

    * zero ablation (the classic figure): the residual replaced by zeros. A model whose next layers turn a zero
      residual into a uniform prediction (the demo: exactly ``ln vocab``) makes this baseline so bad that almost
      any reconstruction "recovers" most of the loss;
    * mean ablation: the residual replaced by its mean over ``windows``;
    * a unigram model (``unigram``: ``(vocab,)`` log-probs; default: fitted on ``windows``' own target tokens,
      which flatters the baseline and so makes "recovered" conservative).

    ``groups``: one int per window (e.g. ``arange(n) % 2``: two interleaved halves); every figure is then also
    reported per group (``group_rows``, ``groups_dataframe()``) from the same passes, at no extra cost, so the
    spread between groups shows how stable a figure is. The mean-ablation baseline is the whole sample's mean in
    every group.

    Two passes: one clean forward per batch captures every layer (FVE, L0, dead, the mean), then three patched
    forwards per layer and batch (SAE, zero, mean).
    """
    layer_list = list(scope.sae_layers) if layers is None else [scope.check_layer(n) for n in layers]
    model = scope.model
    vocab = model.get_output_embeddings().weight.shape[0]
    if unigram is None:
        unigram = unigram_log_probs(windows, vocab)
    if tuple(unigram.shape) != (vocab,):
        raise QScopeError(f"unigram must be ({vocab},) log-probabilities, got shape {tuple(unigram.shape)}")
    gid = torch.zeros(windows.shape[0], dtype=torch.long) if groups is None else torch.as_tensor(groups).long()
    if tuple(gid.shape) != (windows.shape[0],):
        raise QScopeError(f"groups must hold one int per window ({windows.shape[0]}), got shape {tuple(gid.shape)}")
    names = sorted(set(gid.tolist()))
    saes = {n: scope.sae(n) for n in layer_list}

    def stats(n: int) -> dict:
        return {"sse": 0.0, "sx": 0.0, "sxx": 0.0, "l0": 0.0, "n": 0,
                "fired": torch.zeros(saes[n].d_sae, dtype=torch.bool)}

    acc = {(g, n): stats(n) for g in names for n in layer_list}
    first = {n: torch.full((saes[n].d_sae,), -1, dtype=torch.long) for n in layer_list}
    ce = {(g, k, n): 0.0 for g in names for n in layer_list for k in ("clean", "sae", "zero", "mean")}
    uni = {g: 0.0 for g in names}
    n_ce = {g: 0 for g in names}
    seen = 0
    with scope.steering(None):  # the scope's lock: no other thread's hooks during these passes
        for i in range(0, windows.shape[0], batch_size):  # pass 1: clean
            ids = windows[i:i + batch_size].to(scope.device)
            bg = gid[i:i + batch_size]
            captured: dict[int, Tensor] = {}

            def keep(n: int):
                def fn(h: Tensor) -> Tensor:
                    captured[n] = h.detach()
                    return h
                return fn

            with ExitStack() as stack:
                for n in layer_list:
                    stack.enter_context(patch_residual(scope.layers, n, keep(n)))
                clean = _ce_rows(model(input_ids=ids, use_cache=False).logits, ids)
            u_rows = -unigram[ids[:, 1:].cpu()].double().sum(1)
            for g in names:
                sel = bg == g
                uni[g] += float(u_rows[sel].sum())
                n_ce[g] += int(sel.sum()) * (ids.shape[1] - 1)
                for n in layer_list:
                    ce[(g, "clean", n)] += float(clean[sel].sum())
            for n in layer_list:
                sae = saes[n]
                x3 = captured[n][:, 1:] if skip_first else captured[n]
                b, t = x3.shape[:2]
                x = to_sae(x3.reshape(-1, x3.shape[-1]), sae)
                codes = sae.encode_sparse(x)
                x_hat = sae.decode_sparse(codes.ids, codes.values)
                sse_r = (x - x_hat).pow(2).reshape(b, t, -1).sum((1, 2)).double().cpu()
                xd = x.double().reshape(b, t, -1)
                sx_r, sxx_r = xd.sum(1).cpu(), xd.pow(2).sum((1, 2)).cpu()
                live = (codes.values != 0).cpu()
                l0_r = live.reshape(b, -1).sum(1).double()
                ids_c = codes.ids.cpu()
                for g in names:
                    sel = bg == g
                    if not bool(sel.any()):
                        continue
                    a = acc[(g, n)]
                    a["sse"] += float(sse_r[sel].sum())
                    a["sx"] = a["sx"] + sx_r[sel].sum(0)
                    a["sxx"] += float(sxx_r[sel].sum())
                    a["l0"] += float(l0_r[sel].sum())
                    a["n"] += int(sel.sum()) * t
                    rows_sel = sel.repeat_interleave(t)[:, None].expand_as(live)
                    a["fired"][ids_c[live & rows_sel].unique()] = True
                tok = torch.arange(seen, seen + x.shape[0])[:, None].expand_as(ids_c)[live]
                cand = torch.full_like(first[n], 2**62).scatter_reduce(0, ids_c[live], tok, "amin")
                new = (cand < 2**62) & (first[n] < 0)
                first[n][new] = cand[new]
            seen += ids.shape[0] * (ids.shape[1] - (1 if skip_first else 0))
        means = {n: (sum(acc[(g, n)]["sx"] for g in names) / sum(acc[(g, n)]["n"] for g in names)).float()
                 for n in layer_list}
        for i in range(0, windows.shape[0], batch_size):  # pass 2: SAE / zero / mean spliced in, layer by layer
            ids = windows[i:i + batch_size].to(scope.device)
            bg = gid[i:i + batch_size]
            for n in layer_list:
                sae, mu = saes[n], means[n]
                for kind, fn in (("sae", lambda h, sae=sae: splice(h, sae)), ("zero", torch.zeros_like),
                                 ("mean", lambda h, mu=mu: mu.to(h.device, h.dtype).expand_as(h))):
                    with patch_residual(scope.layers, n, fn):
                        per = _ce_rows(model(input_ids=ids, use_cache=False).logits, ids)
                    for g in names:
                        ce[(g, kind, n)] += float(per[bg == g].sum())

    def total(n: int) -> dict:
        parts = [acc[(g, n)] for g in names]
        fired = torch.zeros_like(parts[0]["fired"])
        for p in parts:
            fired |= p["fired"]
        return {"sse": sum(p["sse"] for p in parts), "sx": sum(p["sx"] for p in parts),
                "sxx": sum(p["sxx"] for p in parts), "l0": sum(p["l0"] for p in parts),
                "n": sum(p["n"] for p in parts), "fired": fired}

    all_ce = sum(n_ce.values())
    rows = [_figures(n, total(n), {k: sum(ce[(g, k, n)] for g in names) for k in ("clean", "sae", "zero", "mean")},
                     all_ce, sum(uni.values())) for n in layer_list]
    group_rows = {} if groups is None else {
        g: [_figures(n, acc[(g, n)], {k: ce[(g, k, n)] for k in ("clean", "sae", "zero", "mean")}, n_ce[g], uni[g])
            for n in layer_list] for g in names}
    return SAEEvaluation(rows=rows, first_fire=first, tokens=all_ce, group_rows=group_rows)


def ce_against_baselines(scope: "Scope", windows: Tensor, layer: int, **kwargs) -> dict[str, float]:
    """One layer's row of :func:`evaluate_saes` (CE increase in nats; CE recovered vs zero, mean, unigram)."""
    return evaluate_saes(scope, windows, [layer], **kwargs).rows[0]


def dead_fraction_curve(first_fire: Tensor, sizes: "list[int]") -> dict[int, float]:
    """Dead fraction (features that have not fired yet) after the first ``n`` tokens, for each ``n`` in
    ``sizes``, given each feature's first firing token (-1: never)."""
    d = first_fire.numel()
    return {int(n): float(((first_fire < 0) | (first_fire >= n)).sum()) / d for n in sizes}
