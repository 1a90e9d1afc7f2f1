"""Short automatic labels: what a feature fires on (its top contexts' tokens) and what it promotes (its decoder
direction read through the unembedding, after the final norm's gain: a logit-lens view of the feature)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    import pandas as pd

    from ..scope import Scope


def _unembedding_with_gain(scope: "Scope") -> torch.Tensor:
    from ..model_layers import unembedding

    W_U = unembedding(scope.model).detach()  # (vocab, d_model)
    norm = getattr(getattr(scope.model, "model", None), "norm", None)
    gain = getattr(norm, "weight", None)
    if gain is not None:
        gain = gain.detach().to(W_U.device, torch.float32)
        if type(norm).__name__.startswith("Qwen3_5"):
            gain = 1.0 + gain  # Qwen3.5's zero-centred RMSNorm scales by (1 + weight)
        return W_U * gain.to(W_U.dtype)
    return W_U


def logit_token_cost(scope: "Scope", layer: int, n_features: int) -> float:
    """FLOPs of reading ``n_features`` decoder directions through the unembedding."""
    W = scope.model.get_output_embeddings().weight
    return 2.0 * W.shape[0] * W.shape[1] * n_features


@torch.inference_mode()
def decoder_logit_tokens(scope: "Scope", layer: int, vocab: list[str], n: int = 5, chunk: int = 1024,
                         features: "torch.Tensor | list[int] | None" = None
                         ) -> tuple[list[list[str]], list[list[str]]]:
    """The ``n`` tokens each feature's decoder direction promotes most and suppresses most: top / bottom of
    ``W_U @ W_dec[:, f]`` (the output embedding, tied or not, times the final norm's gain). ``features``: only
    these (default all); returns one list per requested feature, in order."""
    sae = scope.sae(layer)
    W_U = _unembedding_with_gain(scope)
    chunk = max(1, min(chunk, 2**27 // W_U.shape[0]))  # (vocab, chunk) float32 logits: 512 MB at most
    feats = torch.arange(sae.d_sae) if features is None else torch.as_tensor(features, dtype=torch.long)
    promoted: list[list[str]] = []
    suppressed: list[list[str]] = []
    for s in range(0, len(feats), chunk):
        idx = feats[s:s + chunk].to(sae.W_dec.device)
        d = sae.W_dec[:, idx].T.to(W_U.device, W_U.dtype)  # (c, d_model)
        logits = (d @ W_U.T).float()  # (c, vocab): top-k along the contiguous dimension
        top = logits.topk(n, dim=1).indices.cpu().tolist()
        bot = logits.topk(n, dim=1, largest=False).indices.cpu().tolist()
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
