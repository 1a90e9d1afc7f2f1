"""What is being explained: a token's logit, a logit difference, or any scalar of the position's logits.

A target is resolved (and refused, naming the bad value) before any hook is installed, so a typo never costs a
forward pass and never leaves the model half-hooked.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Callable

from torch import Tensor

from ..errors import QScopeError


class AttributionError(QScopeError):
    """A bad argument to :func:`~qscope_widgets.attribution.attribute` (position, method, steps, layers group)."""


class TargetError(AttributionError):
    """A target that is not exactly one token, is outside the vocabulary, or is of a type we cannot read."""


@dataclass(frozen=True)
class Target:
    """A resolved target: ``metric(logits)`` maps one position's ``(vocab,)`` logits (or ``(batch, vocab)``) to a
    scalar per row. ``tokens`` are the ids involved (empty for a callable), ``description`` is for humans."""

    kind: str  # "token", "diff" or "callable"
    tokens: tuple[int, ...]
    description: str
    fn: Callable[[Tensor], Any] | None = None

    def metric(self, logits: Tensor) -> Tensor:
        """One scalar per row of ``logits`` (``(vocab,)`` -> 0-d, ``(batch, vocab)`` -> ``(batch,)``)."""
        if self.kind == "token":
            return logits[..., self.tokens[0]]
        if self.kind == "diff":
            return logits[..., self.tokens[0]] - logits[..., self.tokens[1]]
        assert self.fn is not None
        rows = logits if logits.ndim == 2 else logits[None]
        out = []
        for row in rows:
            v = self.fn(row)
            if not isinstance(v, Tensor) or v.numel() != 1 or not v.is_floating_point():
                raise TargetError(f"the target callable {self.description} must return a one-element float tensor "
                                  f"computed from the logits it is given, got {type(v).__name__}"
                                  + (f" of shape {tuple(v.shape)}" if isinstance(v, Tensor) else f" {v!r}"))
            out.append(v.reshape(()))
        import torch

        res = torch.stack(out)
        return res if logits.ndim == 2 else res[0]


def _token_id(tokenizer: Any, tok: Any, vocab: int, decode: Callable[[list[int]], list[str]]) -> int:
    if isinstance(tok, bool):
        raise TargetError(f"a target token must be a token string or an int id, got the bool {tok!r}")
    if isinstance(tok, numbers.Integral):
        t = int(tok)
        if not 0 <= t < vocab:
            raise TargetError(f"target token id {tok!r} is out of the vocabulary 0..{vocab - 1}")
        return t
    if isinstance(tok, str):
        if tok == "":
            raise TargetError("the target token is the empty string; pass one token, e.g. ' the'")
        ids = tokenizer(tok, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            pieces = decode(ids)
            raise TargetError(f"target {tok!r} is {len(ids)} tokens {pieces}, not one; pass a single token (mind "
                              "the leading space) or its id")
        t = int(ids[0])
        if not 0 <= t < vocab:
            raise TargetError(f"target {tok!r} encodes to id {t}, outside the model's vocabulary 0..{vocab - 1}")
        return t
    raise TargetError(f"a target token must be a token string or an int id, got {type(tok).__name__} {tok!r}")


def resolve_target(target: Any, tokenizer: Any, vocab: int,
                   decode: Callable[[list[int]], list[str]] | None = None) -> Target:
    """Turn what the user passed into a :class:`Target`; a :class:`TargetError` naming the value otherwise.

    ``target``: a token string (exactly one token) or id -> its logit; a pair ``(a, b)`` -> ``logit[a] -
    logit[b]``; a callable on the position's ``(vocab,)`` logits returning a scalar tensor.
    """
    decode = decode or (lambda ids: [str(i) for i in ids])
    if isinstance(target, Target):
        return target
    if isinstance(target, (tuple, list)):
        if len(target) != 2:
            raise TargetError(f"a target pair must be (a, b) for the logit difference a - b, got {len(target)} "
                              f"items: {target!r}")
        a, b = (_token_id(tokenizer, t, vocab, decode) for t in target)
        if a == b:
            raise TargetError(f"the target pair {target!r} names the same token twice: the difference is always 0")
        sa, sb = decode([a])[0], decode([b])[0]
        return Target("diff", (a, b), f"logit({sa!r}) - logit({sb!r})")
    if callable(target) and not isinstance(target, (str, bytes)):
        name = getattr(target, "__name__", type(target).__name__)
        return Target("callable", (), f"{name}(logits)", fn=target)
    t = _token_id(tokenizer, target, vocab, decode)
    return Target("token", (t,), f"logit({decode([t])[0]!r})")
