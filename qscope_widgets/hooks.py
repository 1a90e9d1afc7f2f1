"""The residual-stream hook: capture layer outputs and apply steering edits, for exactly one ``with`` block.

Hooks are PyTorch forward hooks on decoder layers (``resid_post``: what Qwen-Scope's ``layer{n}`` SAE reads).
They are removed in a ``finally``, so after any error, ``KeyboardInterrupt`` included, the model runs exactly as
before. Captured tensors are the residual *after* this layer's edits: what flows on, and what the trace encodes.

Hooks live on the shared model, but act only on forwards run in the thread (more exactly: the ``contextvars``
context) that opened the block; any other forward passes through them untouched. Positions are absolute token
positions, read from the KV cache on every forward, so a steering edit means the same in a single forward, in a
hand-written decoding loop and inside ``model.generate``.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
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


@dataclass(eq=False)
class ResolvedEdit:
    """A validated edit bound to its SAE. Positions stay as the user wrote them (negative ones count from the end
    of the prompt) and are made absolute per forward, once the prompt's length is known."""

    edit: SteeringEdit
    sae: SparseAutoencoder
    max_len: int | None = None  # positions must be < this (the context), when known
    _direction_cache: dict = field(default_factory=dict, repr=False)
    _abs_cache: dict = field(default_factory=dict, repr=False)

    def direction(self, like: Tensor) -> Tensor:
        key = (like.device, like.dtype)
        d = self._direction_cache.get(key)
        if d is None:
            d = self.sae.decoder_direction(self.edit.feature).detach().to(device=like.device, dtype=like.dtype)
            self._direction_cache[key] = d
        return d

    def absolute(self, prompt_len: int, device: torch.device) -> Tensor | None:
        """Absolute positions (int64, on ``device``) for a prompt of ``prompt_len`` tokens; None for every token."""
        pos = self.edit.positions
        if not isinstance(pos, tuple):
            return None
        key = (prompt_len, device)
        t = self._abs_cache.get(key)
        if t is None:
            t = torch.tensor(absolute_positions(pos, prompt_len, self.max_len), dtype=torch.long, device=device)
            self._abs_cache[key] = t
        return t

    def mask(self, abs_positions: Tensor, prompt_len: int) -> Tensor | None:
        """Bool (seq,) of the positions this edit touches in this chunk, or None for every position."""
        if self.edit.positions == "generated":
            return abs_positions >= prompt_len
        pos = self.absolute(prompt_len, abs_positions.device)
        if pos is None:
            return None
        return torch.isin(abs_positions, pos)


def absolute_positions(positions: Sequence[int], prompt_len: int, max_len: int | None = None) -> list[int]:
    """``positions`` made absolute: a negative one counts from the end of the prompt (``-1`` is its last token);
    a non-negative one is an absolute token position, which may lie in the generated part (< ``max_len``)."""
    limit = max_len if max_len is not None else prompt_len
    out = []
    for p in positions:
        a = p + prompt_len if p < 0 else p
        if not 0 <= a < limit:
            where = (f"the sequence of {prompt_len} prompt tokens" if limit == prompt_len
                     else f"{prompt_len} prompt tokens and a limit of {limit}")
            raise SteeringError(f"steering position {p} is outside {where}")
        out.append(a)
    return sorted(set(out))


def resolve_edits(edits: Sequence[SteeringEdit], saes: SAEBank, n_layers: int, prompt_len: int | None,
                  max_len: int | None = None) -> dict[int, list[ResolvedEdit]]:
    """Check every edit against the model and its SAEs; drop no-ops; group by layer.

    ``prompt_len`` None: the prompt is not known yet (a ``with scope.steering(...)`` block); positions are then
    checked against ``max_len`` now, and against each forward's prompt when it runs.
    """
    from .errors import UnknownLayerError

    out: dict[int, list[ResolvedEdit]] = {}
    if prompt_len is not None:
        max_len = max_len or prompt_len
    for e in edits:
        if not 0 <= e.layer < n_layers:
            raise UnknownLayerError(f"steering layer {e.layer} is out of range: the model has layers 0..{n_layers - 1}")
        sae = saes.get(e.layer)  # raises UnknownLayerError when the layer has no SAE
        sae.check_feature(e.feature)
        if e.is_noop:
            continue
        if isinstance(e.positions, tuple):
            if prompt_len is not None:
                absolute_positions(e.positions, prompt_len, max_len)
            elif max_len is not None:
                too_far = [p for p in e.positions if p >= max_len or p < -max_len]
                if too_far:
                    raise SteeringError(f"steering position {too_far[0]} is outside the context of {max_len} tokens")
        out.setdefault(e.layer, []).append(ResolvedEdit(e, sae, max_len))
    return out


def apply_edits(h: Tensor, edits: list[ResolvedEdit], abs_positions: Tensor, prompt_len: int) -> Tensor:
    """Return ``h`` (batch, seq, d_model) with every edit applied; codes are read from the unedited ``h``."""
    codes = None
    if any(r.edit.mode != "add" for r in edits):
        sae = edits[0].sae  # under device_map the layer may live on another device than the SAE bank
        codes = sae.encode_sparse(h if h.device == sae.device else h.to(sae.device))
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
            z_f = (codes.values * (codes.ids == e.feature)).sum(-1).to(device=h.device, dtype=h.dtype)  # (b, seq)
            coef = (e.strength - z_f) if e.mode == "clamp" else (-e.strength * z_f)
            if m is not None:
                coef = coef * m[None, :].to(h.dtype)
            delta = coef[..., None] * d
        out = out + delta
    return out


class RunCancelled(Exception):
    """Raised between decoder layers when a run's ``cancel()`` says its result is no longer wanted."""


@dataclass(eq=False)
class HookSession:
    """State shared by the hooks of one ``with residual_hooks(...)`` block.

    ``prompt_len`` None means "learn it from each fresh forward": a forward that starts with an empty KV cache
    makes its input the prompt, so ``positions=[-1]`` is that input's last token, as in :meth:`Scope.run`.
    ``offset`` (the absolute position of the current forward's first token) is read from the KV cache each forward,
    so decoded tokens of ``model.generate`` or a hand-written loop get their true positions.
    """

    prompt_len: int | None
    offset: int = 0
    captured: dict[int, Tensor] = field(default_factory=dict)
    fixed_prompt_len: bool = True


# The hook sessions the *current* context (thread, or asyncio task) has open. A hook acts only on a forward run
# where its session is active, so a forward some other thread starts while our hooks sit on the shared model (a
# cell calling ``scope.model(ids)`` while a widget refreshes) runs as if no hook were there.
_ACTIVE: ContextVar[tuple] = ContextVar("qscope_active_hook_sessions", default=())


def is_active(session: HookSession) -> bool:
    """True when ``session``'s hooks should act on a forward running in the current context."""
    return session in _ACTIVE.get()


@contextmanager
def activated(session: HookSession) -> Iterator[None]:
    """Mark ``session`` active in the current context for the block (nesting and early exits are fine)."""
    token = _ACTIVE.set(_ACTIVE.get() + (session,))
    try:
        yield
    finally:
        try:
            _ACTIVE.reset(token)
        except ValueError:  # left from another context (an asyncio task, a cell): drop just this session
            _ACTIVE.set(tuple(s for s in _ACTIVE.get() if s is not session))


def _past_length(kwargs: dict) -> int:
    """Tokens already in the KV cache handed to a decoder layer (0 when there is none)."""
    for name in ("cache", "past_key_values", "past_key_value"):
        cache = kwargs.get(name)
        if cache is not None:
            get = getattr(cache, "get_seq_length", None)
            if get is None:
                return 0
            return int(get())
    return 0


@contextmanager
def residual_hooks(
    layers: nn.ModuleList,
    *,
    capture: Iterable[int] = (),
    edits: dict[int, list[ResolvedEdit]] | None = None,
    prompt_len: int | None,
    stop_after: int | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Iterator[HookSession]:
    """Install capture/steering hooks on ``layers`` for the duration of the block; always removed on exit.

    The hooks act only on forwards run in the context (thread) that entered the block: see :func:`is_active`.
    ``prompt_len``: the prompt's length when the caller knows it; None to take each fresh forward's input as the
    prompt. ``cancel``: polled after every decoder layer; when it returns True the forward stops with
    :class:`RunCancelled` (a widget whose user moved on abandons a long forward of a large model).
    """
    edits = edits or {}
    capture = set(capture)
    session = HookSession(prompt_len=prompt_len, fixed_prompt_len=prompt_len is not None)
    handles = []

    def track(module: nn.Module, args, kwargs):
        """Before layer 0: where in the sequence this forward starts (from the KV cache), and the prompt's length."""
        if not is_active(session):
            return None
        past = _past_length(kwargs)
        session.offset = past
        if past == 0 and not session.fixed_prompt_len:
            h = args[0] if args else kwargs.get("hidden_states")
            session.prompt_len = int(h.shape[1])
        return None

    def make_hook(idx: int):
        layer_edits = edits.get(idx)
        keep = idx in capture

        def hook(module: nn.Module, args, output):
            if not is_active(session):
                return None  # a forward this block did not start: leave it alone
            if cancel is not None and cancel():
                raise RunCancelled
            h = output[0] if isinstance(output, tuple) else output
            new_h = h
            if layer_edits:
                pos = torch.arange(session.offset, session.offset + h.shape[1], device=h.device)
                plen = session.prompt_len if session.prompt_len is not None else h.shape[1]
                new_h = apply_edits(h, layer_edits, pos, plen)
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
        if edits:
            handles.append(layers[0].register_forward_pre_hook(track, with_kwargs=True))
        for idx in sorted(hooked):
            handles.append(layers[idx].register_forward_hook(make_hook(idx)))
        with activated(session):
            yield session
    finally:
        for h in handles:
            h.remove()


@contextmanager
def patch_residual(layers: nn.ModuleList, layer: int, fn) -> Iterator[None]:
    """Replace layer ``layer``'s output ``h`` by ``fn(h)`` for the block (activation patching, SAE splicing).

    Like :func:`residual_hooks`, it acts only on forwards run in the context that entered the block."""
    session = HookSession(prompt_len=None)

    def hook(module: nn.Module, args, output):
        if not is_active(session):
            return None
        h = output[0] if isinstance(output, tuple) else output
        new_h = fn(h)
        return (new_h,) + tuple(output[1:]) if isinstance(output, tuple) else new_h

    handle = layers[layer].register_forward_hook(hook)
    try:
        with activated(session):
            yield
    finally:
        handle.remove()
