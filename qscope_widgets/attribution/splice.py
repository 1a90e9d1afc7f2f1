"""SAE splicing: each chosen layer's output ``h`` is rewritten as ``x_hat(z) + err`` with ``z`` (the active codes)
and ``err`` (the reconstruction error) as gradient leaves, while the forward value stays exactly ``h``.

The splice is computed as ``h + (x_hat - x_hat.detach()) + (err - err.detach())``: both added terms are exactly
zero in value (``a - a == 0`` in floating point), so the spliced forward is bit-identical to the plain one, yet
``d out / d z = W_dec`` (through ``x_hat``), ``d out / d err = I``, and ``d out / d h = I`` so gradients pass on to
earlier layers as if no SAE were there (Marks et al.'s "pass-through" splice). Because the splice is the identity
in value and in its gradient to ``h``, the gradient a layer's nodes receive does not depend on which *other*
layers are spliced in the same pass: the gradient at a layer's output can even be taken with no SAE in the pass at
all and the codes' gradients computed afterwards (``W_dec[:, f] . g``), which is how attribution streams layers
that do not fit the SAE bank's memory budget together.

For integrated gradients one layer at a time takes a *path*: with a per-row scale ``alpha`` (the batch holds one
row per step), the layer's output becomes ``decode(alpha * z) + alpha * err`` and the leaves are the scaled codes
and error (``alpha = 1`` is the clean run; ``alpha = 0`` leaves only ``b_dec``).

Hooks go on every exit path, including an exception inside the block.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Mapping

import torch
from torch import Tensor, nn

from ..sae.model import SparseAutoencoder

if TYPE_CHECKING:
    from ..scope import Scope


@dataclass
class LayerNodes:
    """The nodes of one spliced layer in the last forward: ``ids``/``values`` ``(batch, seq, k)`` (``values`` is a
    gradient leaf in the SAE's dtype), ``err`` ``(batch, seq, d_model)`` (a leaf in the model's dtype)."""

    layer: int
    ids: Tensor
    values: Tensor
    err: Tensor
    clean_values: Tensor  # the unscaled codes (== values.detach() outside integrated gradients)
    clean_err: Tensor


@contextmanager
def frozen_weights(model: nn.Module) -> Iterator[None]:
    """Switch ``requires_grad`` off on every parameter for the block (restored on exit, whatever happens): the
    backward then stores and computes nothing for the weights, only what the node gradients need."""
    was = [p for p in model.parameters() if p.requires_grad]
    for p in was:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in was:
            p.requires_grad_(True)


@contextmanager
def sae_splice(layers: nn.ModuleList, saes: Mapping[int, SparseAutoencoder], *,
               alphas: Mapping[int, Tensor] | None = None) -> Iterator[dict[int, LayerNodes]]:
    """Splice ``saes`` (``{layer: sae}``) into ``layers`` for the block; yields ``{layer: LayerNodes}``, filled by
    each forward. ``alphas``: ``{layer: (batch,) scale}`` puts that layer on the integrated-gradients path
    (``(batch, seq)``: a scale per row and position, e.g. a path that moves some positions only)."""
    alphas = dict(alphas or {})
    nodes: dict[int, LayerNodes] = {}

    def make_hook(idx: int, sae: SparseAutoencoder):
        def hook(module: nn.Module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            with torch.no_grad():
                codes = sae.encode_sparse(h.detach())
                clean_hat = sae.decode_sparse(codes.ids, codes.values).to(h.dtype)
                clean_err = h.detach() - clean_hat
            alpha = alphas.get(idx)
            if alpha is None:
                values = codes.values.detach().clone().requires_grad_(True)
                err = clean_err.clone().requires_grad_(True)
                x_hat = sae.decode_sparse(codes.ids, values).to(h.dtype)
                new_h = h + (x_hat - x_hat.detach()) + (err - err.detach())
            else:
                a = alpha.to(device=h.device)
                a = a[:, None, None] if a.ndim == 1 else a[:, :, None]  # per row, or per row and position
                values = (codes.values.detach() * a.to(codes.values.dtype)).requires_grad_(True)
                err = (clean_err * a.to(h.dtype)).requires_grad_(True)
                new_h = sae.decode_sparse(codes.ids, values).to(h.dtype) + err
            nodes[idx] = LayerNodes(idx, codes.ids, values, err, codes.values.detach(), clean_err)
            return (new_h,) + tuple(output[1:]) if isinstance(output, tuple) else new_h

        return hook

    handles = []
    try:
        for idx in sorted(saes):
            handles.append(layers[idx].register_forward_hook(make_hook(idx, saes[idx])))
        yield nodes
    finally:
        for h in handles:
            h.remove()


def forward_logits(scope: "Scope", ids: Tensor) -> Tensor:
    """``(batch, vocab)`` float logits at the last position of ``ids`` (only that row is projected to the vocab)."""
    out = scope.model(input_ids=ids, use_cache=False, logits_to_keep=1)
    return out.logits[:, -1].float()
