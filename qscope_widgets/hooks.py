"""The residual-stream hook: capture layer outputs and apply steering edits, for exactly one ``with`` block.

Hooks are PyTorch forward hooks on decoder layers (``resid_post``: what Qwen-Scope's ``layer{n}`` SAE reads).
They are removed in a ``finally``, so after any error, ``KeyboardInterrupt`` included, the model runs exactly as
before. Captured tensors are the residual *after* this layer's edits: what flows on, and what the trace encodes.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn

from .errors import SteeringError
from .sae.bank import SAEBank
from .sae.model import SparseAutoencoder
from .steering import SteeringEdit


class StopForward(Exception):
    """Raised inside a hook to end a forward pass early, once the deepest layer we need has run."""


@dataclass
class ResolvedEdit:
    """A validated edit bound to its SAE, with positions made absolute."""

    edit: SteeringEdit
    sae: SparseAutoencoder
    positions: Tensor | None  # absolute positions (int64) or None for all; "generated" handled by prompt_len
    _direction_cache: dict = field(default_factory=dict, repr=False)

    def direction(self, like: Tensor) -> Tensor:
        key = (like.device, like.dtype)
        d = self._direction_cache.get(key)
        if d is None:
            d = self.sae.decoder_direction(self.edit.feature).detach().to(device=like.device, dtype=like.dtype)
            self._direction_cache[key] = d
        return d

    def mask(self, abs_positions: Tensor, prompt_len: int) -> Tensor | None:
        """Bool (seq,) of the positions this edit touches in this chunk, or None for every position."""
        if self.edit.positions == "generated":
            return abs_positions >= prompt_len
        if self.positions is None:
            return None
        return torch.isin(abs_positions, self.positions.to(abs_positions.device))


def resolve_edits(edits: Sequence[SteeringEdit], saes: SAEBank, n_layers: int, prompt_len: int,
                  max_len: int | None = None) -> dict[int, list[ResolvedEdit]]:
    """Check every edit against the model and its SAEs; drop no-ops; group by layer."""
    from .errors import UnknownLayerError

    out: dict[int, list[ResolvedEdit]] = {}
    max_len = max_len or prompt_len
    for e in edits:
        if not 0 <= e.layer < n_layers:
            raise UnknownLayerError(f"steering layer {e.layer} is out of range: the model has layers 0..{n_layers - 1}")
        sae = saes.get(e.layer)  # raises UnknownLayerError when the layer has no SAE
        sae.check_feature(e.feature)
        if e.is_noop:
            continue
        pos = None
        if isinstance(e.positions, tuple):
            absolute = []
            for p in e.positions:
                a = p + prompt_len if p < 0 else p
                if not 0 <= a < max_len:
                    raise SteeringError(f"steering position {p} is outside the sequence of {prompt_len} prompt tokens")
                absolute.append(a)
            pos = torch.tensor(sorted(set(absolute)), dtype=torch.long)
        out.setdefault(e.layer, []).append(ResolvedEdit(e, sae, pos))
    return out


def apply_edits(h: Tensor, edits: list[ResolvedEdit], abs_positions: Tensor, prompt_len: int) -> Tensor:
    """Return ``h`` (batch, seq, d_model) with every edit applied; codes are read from the unedited ``h``."""
    codes = None
    if any(r.edit.mode != "add" for r in edits):
        codes = edits[0].sae.encode_sparse(h)
    out = h
    for r in edits:
        m = r.mask(abs_positions, prompt_len)
        if m is not None and not bool(m.any()):
            continue
        d = r.direction(h)
        e = r.edit
        if e.mode == "add":
            delta = e.strength * d  # (d_model,)
            delta = delta if m is None else m[None, :, None].to(h.dtype) * delta
        else:
            assert codes is not None
            z_f = (codes.values * (codes.ids == e.feature)).sum(-1).to(h.dtype)  # (batch, seq)
            coef = (e.strength - z_f) if e.mode == "clamp" else (-e.strength * z_f)
            if m is not None:
                coef = coef * m[None, :].to(h.dtype)
            delta = coef[..., None] * d
        out = out + delta
    return out


class RunCancelled(Exception):
    """Raised between decoder layers when a run's ``cancel()`` says its result is no longer wanted."""


@dataclass
class HookSession:
    """State shared by the hooks of one ``with residual_hooks(...)`` block."""

    prompt_len: int
    offset: int = 0  # absolute position of the first token of the next forward call (generation advances it)
    captured: dict[int, Tensor] = field(default_factory=dict)


@contextmanager
def residual_hooks(
    layers: nn.ModuleList,
    *,
    capture: Iterable[int] = (),
    edits: dict[int, list[ResolvedEdit]] | None = None,
    prompt_len: int,
    stop_after: int | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Iterator[HookSession]:
    """Install capture/steering hooks on ``layers`` for the duration of the block; always removed on exit.

    ``cancel``: polled after every decoder layer; when it returns True the forward stops with
    :class:`RunCancelled` (a widget whose user moved on abandons a long forward of a large model).
    """
    edits = edits or {}
    capture = set(capture)
    session = HookSession(prompt_len=prompt_len)
    handles = []

    def make_hook(idx: int):
        layer_edits = edits.get(idx)
        keep = idx in capture

        def hook(module: nn.Module, args, output):
            if cancel is not None and cancel():
                raise RunCancelled
            h = output[0] if isinstance(output, tuple) else output
            new_h = h
            if layer_edits:
                pos = torch.arange(session.offset, session.offset + h.shape[1], device=h.device)
                new_h = apply_edits(h, layer_edits, pos, session.prompt_len)
            if keep:
                session.captured[idx] = new_h.detach()
            if stop_after is not None and idx >= stop_after:
                raise StopForward
            if new_h is h:
                return None  # untouched output: the forward stays bit-identical
            return (new_h,) + tuple(output[1:]) if isinstance(output, tuple) else new_h

        return hook

    try:
        hooked = capture | set(edits) | ({stop_after} if stop_after is not None else set())
        if cancel is not None:
            hooked |= set(range(len(layers)))
        for idx in sorted(hooked):
            handles.append(layers[idx].register_forward_hook(make_hook(idx)))
        yield session
    finally:
        for h in handles:
            h.remove()


@contextmanager
def patch_residual(layers: nn.ModuleList, layer: int, fn) -> Iterator[None]:
    """Replace layer ``layer``'s output ``h`` by ``fn(h)`` for the block (activation patching, SAE splicing)."""

    def hook(module: nn.Module, args, output):
        h = output[0] if isinstance(output, tuple) else output
        new_h = fn(h)
        return (new_h,) + tuple(output[1:]) if isinstance(output, tuple) else new_h

    handle = layers[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
