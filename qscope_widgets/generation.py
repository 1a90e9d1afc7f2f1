"""Steered generation, token by token, with the unsteered baseline from the same seed beside it.

A hand-written loop over the model's own KV cache (rather than ``model.generate``) so the steering hooks know the
absolute position of every token (``positions="generated"`` edits only new tokens) and so each token can be
streamed to a callback (a widget) the moment it exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor

from .errors import QScopeError
from .validate import as_bool, as_callable, as_float, as_int, as_optional_int

#: Smallest non-zero sampling temperature: below it ``logits / T`` overflows float32 (and the result would be the
#: greedy token anyway).
MIN_TEMPERATURE = 1e-4
from .hooks import resolve_edits, residual_hooks
from .steering import SteeringEdit, SteeringLike, as_edits

if TYPE_CHECKING:
    from .scope import PromptLike, Scope


@dataclass
class Generation:
    """A steered continuation and (optionally) its baseline."""

    prompt: str | None
    steering: tuple[SteeringEdit, ...]
    token_ids: list[int]
    tokens: list[str]
    text: str
    baseline_token_ids: list[int] = field(default_factory=list)
    baseline_tokens: list[str] = field(default_factory=list)
    baseline_text: str | None = None
    seed: int | None = None
    # with generate(monitor=...): the monitor's score of each generated token, and the step where it stopped
    monitor_scores: list[float] = field(default_factory=list)
    baseline_monitor_scores: list[float] = field(default_factory=list)
    stopped_at: int | None = None
    baseline_stopped_at: int | None = None

    def __repr__(self) -> str:
        return f"Generation(text={self.text!r}, baseline_text={self.baseline_text!r})"

    def to_dataframe(self):
        import pandas as pd

        n = max(len(self.tokens), len(self.baseline_tokens))
        pad = lambda xs: list(xs) + [None] * (n - len(xs))  # noqa: E731
        return pd.DataFrame({"step": range(n), "steered": pad(self.tokens), "baseline": pad(self.baseline_tokens)})


def _sample(logits: Tensor, temperature: float, top_p: float, gen: torch.Generator | None) -> int:
    if temperature == 0.0:
        return int(logits.argmax())
    probs = (logits.float() / temperature).softmax(-1)
    if top_p < 1.0:
        sp, si = probs.sort(descending=True)
        keep = sp.cumsum(-1) - sp < top_p
        probs = torch.zeros_like(probs).scatter_(-1, si[keep], sp[keep])
        probs /= probs.sum()
    return int(torch.multinomial(probs.cpu(), 1, generator=gen))


def _cache_argument(model: Any) -> str:
    """transformers >= 5.2x calls the KV cache ``cache``; older versions ``past_key_values``."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.inference_mode()
def _continue(scope: "Scope", ids: Tensor, edits: tuple[SteeringEdit, ...], max_new_tokens: int, seed: int | None,
              temperature: float, top_p: float, on_token: Callable[[int, str], Any] | None,
              eos: set[int], watch: Any = None) -> list[int]:
    prompt_len = ids.shape[1]
    limit = scope.max_context or 10**9
    steps = min(max_new_tokens, limit - prompt_len)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    resolved = resolve_edits(edits, scope.saes, scope.n_layers, prompt_len, max_len=prompt_len + steps)
    out_ids: list[int] = []
    cache_arg = _cache_argument(scope.model)
    # watch (a monitor's GenerationWatch): reads the captured residuals of the tokens fed in each step; a True
    # answer stops right after the token that made it fire
    with residual_hooks(scope.layers, edits=resolved, prompt_len=prompt_len,
                        capture=getattr(watch, "layers", ())) as session:
        fed = 0  # absolute position of the first token fed in this step
        past = None
        cur = ids
        for step in range(steps + 1):
            if step == steps and (watch is None or not out_ids):
                break
            out = scope.model(input_ids=cur, use_cache=True, **({cache_arg: past} if past is not None else {}))
            past = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
            stop = watch is not None and watch(session.captured, fed, prompt_len)
            fed += cur.shape[1]
            if stop or step == steps or (out_ids and out_ids[-1] in eos):
                break  # the extra step only scored the last token
            nxt = _sample(out.logits[0, -1], temperature, top_p, gen)
            out_ids.append(nxt)
            if on_token is not None:
                on_token(step, scope.token_strings([nxt])[0])
            if nxt in eos and watch is None:
                break
            cur = torch.tensor([[nxt]], device=ids.device)
    return out_ids


def generate(scope: "Scope", prompt: "PromptLike", steering: SteeringLike = None, *, max_new_tokens: int = 32,
             seed: int | None = 0, temperature: float = 0.0, top_p: float = 1.0,
             on_token: Callable[[int, str, str], Any] | None = None, baseline: bool = True,
             stop_at_eos: bool = True, monitor: Any = None, stop_above: float | None = None) -> Generation:
    """See :meth:`Scope.generate`. ``on_token(step, token, which)`` gets ``which`` = ``"steered"``/``"baseline"``.

    ``monitor`` (a :class:`~qscope_widgets.monitor.Monitor`): score every generated token (``monitor_scores``);
    with ``stop_above``, stop each run right after the first token scoring above it (``stopped_at``)."""
    if stop_above is not None and monitor is None:
        raise QScopeError("stop_above needs a monitor: pass monitor=scope.monitor(...)")
    if monitor is not None and not callable(getattr(monitor, "watcher", None)):
        raise QScopeError(f"monitor must be a Monitor (scope.monitor(...)), got {type(monitor).__name__}")
    max_new_tokens = as_int(max_new_tokens, "max_new_tokens", min=1)
    temperature = as_float(temperature, "temperature", min=0.0)
    if 0.0 < temperature < MIN_TEMPERATURE:
        raise QScopeError(f"temperature {temperature!r} is too small to sample with (logits / temperature "
                          f"overflow); use 0 for greedy decoding or a value >= {MIN_TEMPERATURE}")
    top_p = as_float(top_p, "top_p", min=0.0, min_open=True, max=1.0)
    seed = as_optional_int(seed, "seed", min=-(2**63), max=2**64 - 1)  # the range torch.Generator accepts
    as_callable(on_token, "on_token")
    baseline = as_bool(baseline, "baseline")
    stop_at_eos = as_bool(stop_at_eos, "stop_at_eos")
    ids = scope.tokenize(prompt)
    edits = as_edits(steering)
    eos_id = getattr(scope.tokenizer, "eos_token_id", None)
    eos = {int(eos_id)} if (stop_at_eos and eos_id is not None) else set()

    def stream(which: str):
        return None if on_token is None else (lambda step, tok: on_token(step, tok, which))

    watches = [monitor.watcher(stop_above) if monitor is not None else None for _ in range(2)]
    with scope.lock:
        steered = _continue(scope, ids, edits, max_new_tokens, seed, temperature, top_p, stream("steered"), eos,
                            watches[0])
        base = (_continue(scope, ids, (), max_new_tokens, seed, temperature, top_p, stream("baseline"), eos,
                          watches[1]) if baseline else [])
    decode = lambda xs: scope.tokenizer.decode(xs, skip_special_tokens=True)  # noqa: E731
    return Generation(
        prompt=prompt if isinstance(prompt, str) else None, steering=edits, token_ids=steered,
        tokens=scope.token_strings(steered), text=decode(steered), baseline_token_ids=base,
        baseline_tokens=scope.token_strings(base), baseline_text=decode(base) if baseline else None, seed=seed,
        **({} if monitor is None else {
            "monitor_scores": watches[0].scores, "stopped_at": watches[0].stopped_at,
            "baseline_monitor_scores": watches[1].scores if baseline else [],
            "baseline_stopped_at": watches[1].stopped_at if baseline else None}),
    )
