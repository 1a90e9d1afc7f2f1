"""A random SAE with one planted feature that fires on exactly one token id (and nowhere else), for contrast and
monitor tests: the ground truth is known, so a ranking or an AUC can be checked, not just run."""

from __future__ import annotations

import torch

from qscope_widgets import Scope

PLANT_LAYER = 0
PLANT_FEATURE = 77
# texts dense in the planted token (" earth") and texts without it
WITH = ["The earth earth earth over the earth earth.", "A earth, earth earth and another earth.",
        "import earth; earth earth = earth.zeros(earth)", "And earth earth earth earth, and earth.",
        "def main(earth): return earth earth", "The earth earth earth earth. The earth earth."]
WITHOUT = ["The quick brown cat jumps over the lazy dog.", "A dog, a dog and another dog.",
           "import torch; the x = torch.zeros(3, 4)", "And the world was without form, and void.",
           "def main(argv): return sorted(argv)", "The dog jumps over the lazy cat. The dog sleeps."]


def token_id(tokenizer, word: str = " earth") -> int:
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1, f"{word!r} must be one token of the test tokenizer, got {ids}"
    return ids[0]


def planted_scope(model, tokenizer, saes: dict, **kwargs) -> tuple[Scope, int]:
    """A Scope over ``model`` whose layer-``PLANT_LAYER`` SAE feature ``PLANT_FEATURE`` fires exactly on the token
    `` earth``: its encoder row is the direction separating that token's residuals from every other token's in the
    texts above (checked: the margin must be positive), scaled so it always wins a top-k slot when it fires."""
    tid = token_id(tokenizer)
    base = Scope(model, tokenizer, dict(saes))
    xs, is_t = [], []
    for text in WITH + WITHOUT:
        ids = base.tokenize(text)
        h = base.residuals(ids, None, layers=[PLANT_LAYER])[PLANT_LAYER][0].float()
        xs.append(h)
        is_t.append(ids[0].cpu() == tid)
    x, t = torch.cat(xs), torch.cat(is_t)
    w = x[t].mean(0) - x[~t].mean(0)
    w = w / w.norm()
    proj = x @ w
    lo, hi = float(proj[t].min()), float(proj[~t].max())
    assert lo > hi, "the planted token is not linearly separable at this layer"
    sae = saes[PLANT_LAYER]
    scale = 200.0 / (lo - hi)
    with torch.no_grad():
        sae.W_enc[PLANT_FEATURE] = w * scale
        sae.b_enc[PLANT_FEATURE] = -scale * (lo + hi) / 2
    scope = Scope(model, tokenizer, dict(saes), **kwargs)
    return scope, tid
