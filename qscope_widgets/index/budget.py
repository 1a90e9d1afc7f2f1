"""How many layers' SAEs an index scan may hold at once, so the scan keeps the SAE bank's byte budget.

A scan over all 64 layers of a 27B release would otherwise hold 64 x 3.4 GB of SAEs. When the bank has a budget
(``sae_cache_bytes``) the build scans the corpus in passes, each over a group of layers whose SAEs fit together.
"""

from __future__ import annotations

from typing import Any, Sequence


def layers_that_fit(bank: Any, layers: Sequence[int]) -> int:
    """How many of ``layers`` the bank can hold at once within its ``max_bytes`` (all of them when unbounded).

    Reads the size of the first layer's SAE (loading it through the bank, which the scan needs anyway) and
    assumes the others are the same size, as they are within a release. A layer larger than the whole budget
    raises the bank's own error.
    """
    layers = list(layers)
    if not layers:
        return 0
    budget = getattr(bank, "max_bytes", None)
    if budget is None:
        return len(layers)
    if callable(getattr(bank, "layers_that_fit", None)):  # the bank's own answer, where it has one
        known = getattr(bank, "layer_nbytes", None)
        if not callable(known) or known() is None:
            bank.get(layers[0])  # its size becomes known (and a layer over the whole budget raises here)
        fit = int(bank.layers_that_fit())
        if fit < 1:
            bank.get(layers[0])  # the bank's error for a layer larger than its whole budget
        return max(1, min(len(layers), fit))
    size = bank.get(layers[0]).nbytes()
    return max(1, min(len(layers), int(budget // max(size, 1))))


def layer_passes(bank: Any, layers: Sequence[int]) -> list[list[int]]:
    """``layers`` cut into consecutive groups of at most :func:`layers_that_fit` layers: one corpus pass each."""
    layers = list(layers)
    per = layers_that_fit(bank, layers)
    return [layers[i:i + per] for i in range(0, len(layers), per)] if layers else []
