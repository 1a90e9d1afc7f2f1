"""Short automatic labels: what a feature fires on (its top contexts' tokens) and what it promotes (its decoder
direction read through the unembedding, after the final norm's gain: a logit-lens view of the feature)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    import pandas as pd

    from ..scope import Scope


@torch.inference_mode()
def decoder_logit_tokens(scope: "Scope", layer: int, vocab: list[str], n: int = 5, chunk: int = 1024
                         ) -> tuple[list[list[str]], list[list[str]]]:
    """Per feature, the ``n`` tokens its decoder direction promotes most and suppresses most."""
    from ..model_layers import unembedding

    sae = scope.sae(layer)
    W_U = unembedding(scope.model).detach().float()  # (vocab, d_model)
    norm = getattr(getattr(scope.model, "model", None), "norm", None)
    gain = getattr(norm, "weight", None)
    if gain is not None:
        gain = gain.detach().float()
        if type(norm).__name__.startswith("Qwen3_5"):
            gain = 1.0 + gain  # Qwen3.5's zero-centred RMSNorm scales by (1 + weight)
        W_U = W_U * gain.to(W_U.device)
    promoted: list[list[str]] = []
    suppressed: list[list[str]] = []
    for s in range(0, sae.d_sae, chunk):
        d = sae.W_dec[:, s:s + chunk].float().to(W_U.device)  # (d_model, c)
        logits = W_U @ d  # (vocab, c)
        top = logits.topk(n, dim=0).indices.T.cpu().tolist()
        bot = (-logits).topk(n, dim=0).indices.T.cpu().tolist()
        promoted += [[vocab[i] for i in row] for row in top]
        suppressed += [[vocab[i] for i in row] for row in bot]
    return promoted, suppressed


def _clean(tok: str) -> str:
    t = tok.replace("\n", "\\n").strip()
    return t if t else repr(tok)


def auto_labels(features: "pd.DataFrame") -> list[str]:
    """``"God / LORD / heaven → unto, hath"``: fires-on tokens, then promoted tokens; "dead" when it never fired."""
    out = []
    for count, top, prom in zip(features["count"], features.top_tokens, features.promoted):
        if count == 0:
            out.append("dead (never fired on the corpus)")
            continue
        fires = " / ".join(dict.fromkeys(_clean(t) for t in list(top)[:3]))
        promotes = ", ".join(_clean(t) for t in list(prom)[:2])
        out.append(f"{fires} → {promotes}" if promotes else fires)
    return out
