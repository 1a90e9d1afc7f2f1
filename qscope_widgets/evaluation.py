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
        with scope.lock:  # the splice hooks below must never meet a widget's pass on the shared model
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
