"""Sets of texts streamed through the hooked model in right-padded batches, one SAE layer group at a time.

Contrast and monitors both read "many texts -> sparse codes of a few layers". This module does that once, with
three constraints:

* **Right padding only.** Left padding corrupts the Gated DeltaNet state of Qwen3.5's linear-attention layers in a
  batched run; with right padding the causal mask leaves every real token exactly as in a single run.
* **Bounded memory.** Texts are tokenized up front (ids only), then run a batch at a time; the caller receives the
  codes of the real (unpadded) tokens of one batch and keeps running sums, never every code at once.
* **The bank's budget.** Layers are processed in groups that fit the SAE bank's ``max_bytes``; each group is one
  pass over the texts (the forward stops after the group's deepest layer), so a 64-layer release never needs all
  its SAEs resident.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import torch
from torch import Tensor

from .errors import PromptError, QScopeError

if TYPE_CHECKING:
    from .scope import Scope

DEFAULT_MAX_TOKENS = 1024  # per text; longer texts are cut (and counted) rather than refused one by one
DEFAULT_BATCH_TOKENS = 8192  # padded tokens per forward


def as_texts(x: Any, name: str = "texts") -> list[str]:
    """``x`` as a non-empty list of non-empty strings: a single prompt, or any collection of texts (list, tuple,
    pandas Series, numpy array, generator). Anything else is a :class:`QScopeError` naming the bad item."""
    if isinstance(x, str):
        items = [x]
    elif isinstance(x, (bytes, bytearray)):
        raise PromptError(f"{name}: pass text (str), not bytes; decode it first")
    elif isinstance(x, Tensor) or (hasattr(x, "dtype") and getattr(x, "ndim", 1) == 0):
        raise PromptError(f"{name} must be a prompt (str) or a collection of texts, got {type(x).__name__}")
    elif hasattr(x, "__iter__") and not isinstance(x, dict):
        if hasattr(x, "columns"):  # a DataFrame iterates its column names: refuse rather than score those
            raise PromptError(f"{name}: pass one column of the DataFrame (df['text']), not the whole frame")
        items = list(x.tolist() if hasattr(x, "tolist") else x)
    else:
        raise PromptError(f"{name} must be a prompt (str) or a collection of texts, got {type(x).__name__}")
    if not items:
        raise PromptError(f"{name} is empty: give at least one text")
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise PromptError(f"{name}[{i}] is a {type(t).__name__} ({t!r:.40}), not a str: every item must be text")
        if not t.strip():
            raise PromptError(f"{name}[{i}] is an empty or blank string")
    return items


@dataclass
class TokenizedSet:
    """Token ids of a set of texts (lists of ints, cheap), with how many were cut to ``max_tokens``."""

    ids: list[list[int]]
    truncated: int

    @property
    def n_tokens(self) -> int:
        return sum(len(r) for r in self.ids)


def tokenize_set(scope: "Scope", texts: Sequence[str], max_tokens: int | None = None) -> TokenizedSet:
    limit = max_tokens or min(scope.max_context or DEFAULT_MAX_TOKENS, DEFAULT_MAX_TOKENS)
    if scope.max_context is not None:
        limit = min(limit, scope.max_context)
    if not isinstance(limit, int) or limit < 1:
        raise QScopeError(f"max_tokens must be a positive int, got {max_tokens!r}")
    ids: list[list[int]] = []
    cut = 0
    step = 256
    for i in range(0, len(texts), step):
        enc = scope.tokenizer(list(texts[i:i + step]), add_special_tokens=True, verbose=False)["input_ids"]
        for j, row in enumerate(enc):
            if not row:
                raise PromptError(f"text {i + j} has no tokens")
            if len(row) > limit:
                row = row[:limit]
                cut += 1
            ids.append(list(row))
    return TokenizedSet(ids, cut)


@dataclass
class BatchCodes:
    """The sparse codes of the real tokens of one batch, for one layer.

    ``ids``/``values``: ``(n_real, k)``; ``row``: which text (index into the set) each real token belongs to;
    ``position``: its position in that text. Position-0 tokens are left out when the stream skips the first token.
    """

    layer: int
    ids: Tensor
    values: Tensor
    row: Tensor
    position: Tensor


def layer_groups(scope: "Scope", layers: Sequence[int]) -> list[list[int]]:
    """Split ``layers`` (sorted) into consecutive groups whose SAEs fit the bank's budget together.

    Releases use one width for every layer, so the first SAE's size stands for all; without a budget every layer
    is one group (one pass over the texts)."""
    layers = sorted(layers)
    budget = scope.saes.max_bytes
    if budget is None or not layers:
        return [list(layers)] if layers else []
    per = scope.sae(layers[0]).nbytes()
    n = max(1, int(budget // max(per, 1)))
    return [layers[i:i + n] for i in range(0, len(layers), n)]


def plan_batches(lengths: Sequence[int], batch_size: int, batch_tokens: int) -> list[list[int]]:
    """Rows grouped longest first, at most ``batch_size`` rows and ``batch_tokens`` padded tokens per batch:
    sorting by length keeps padding (wasted compute) small."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        width = lengths[cur[0]] if cur else lengths[i]
        if cur and (len(cur) >= batch_size or width * (len(cur) + 1) > batch_tokens):
            out.append(cur)
            cur = []
        cur.append(i)
    if cur:
        out.append(cur)
    return out


def encode_real_tokens(sae: Any, x: Tensor, max_elems: int = 2**26) -> tuple[Tensor, Tensor]:
    """Sparse codes of ``x (n, d_model)`` encoding at most ``max_elems`` dense pre-activations at a time (the
    ``(tokens, d_sae)`` intermediate of a big batch is never whole)."""
    step = max(1, max_elems // sae.d_sae)
    if x.shape[0] <= step:
        c = sae.encode_sparse(x)
        return c.ids, c.values.float()
    parts = [sae.encode_sparse(x[i:i + step]) for i in range(0, x.shape[0], step)]
    w = max(c.ids.shape[-1] for c in parts)  # ReLU / JumpReLU SAEs: width varies per chunk; pad with zeros
    pad = torch.nn.functional.pad
    return (torch.cat([pad(c.ids, (0, w - c.ids.shape[-1])) for c in parts]),
            torch.cat([pad(c.values.float(), (0, w - c.values.shape[-1])) for c in parts]))


def progress_bar(total: int, enabled: bool | None, desc: str, auto_above: int = 50_000):
    """A tqdm bar when ``enabled`` (``None``: only for long work, over ``auto_above`` tokens)."""
    if enabled is False or (enabled is None and total < auto_above):
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, unit="tok", desc=desc)


@torch.inference_mode()
def stream_codes(scope: "Scope", sets: Sequence[TokenizedSet], layers: Sequence[int], *, skip_first: bool = True,
                 batch_size: int = 16, batch_tokens: int = DEFAULT_BATCH_TOKENS, progress: bool | None = None,
                 desc: str = "scanning") -> Iterator[tuple[int, list[int], BatchCodes]]:
    """Yield ``(set_index, text_rows, BatchCodes)`` for every batch of every set, layer group by layer group.

    ``text_rows`` are the set's text indices in the batch (``BatchCodes.row`` indexes into it). For each group
    every set is scanned once; the SAEs of the group are loaded before its pass.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise QScopeError(f"batch_size must be a positive int, got {batch_size!r}")
    groups = layer_groups(scope, layers)
    pad = scope.tokenizer.pad_token_id
    if pad is None:
        pad = scope.tokenizer.eos_token_id if scope.tokenizer.eos_token_id is not None else 0
    total = sum(s.n_tokens for s in sets) * len(groups)
    bar = progress_bar(total, progress, desc)
    try:
        for group in groups:
            saes = {n: scope.sae(n) for n in group}
            for si, tset in enumerate(sets):
                lengths = [len(r) for r in tset.ids]
                for rows in plan_batches(lengths, batch_size, max(batch_tokens, max(lengths))):
                    lens = torch.tensor([lengths[i] for i in rows])
                    S = int(lens.max())
                    ids = torch.full((len(rows), S), int(pad), dtype=torch.long)
                    for j, i in enumerate(rows):
                        ids[j, :lengths[i]] = torch.tensor(tset.ids[i])
                    mask = torch.arange(S)[None, :] < lens[:, None]
                    res = scope.residuals(ids, mask.long(), layers=group)
                    keep = mask.clone()
                    if skip_first:
                        keep[:, 0] = False
                    r_idx, p_idx = keep.nonzero(as_tuple=True)
                    for n in group:
                        h = res.pop(n)
                        x = h[r_idx.to(h.device), p_idx.to(h.device)]
                        cid, cval = encode_real_tokens(saes[n], x)
                        yield si, rows, BatchCodes(n, cid, cval, r_idx.to(cid.device), p_idx.to(cid.device))
                    if bar is not None:
                        bar.update(int(lens.sum()))
    finally:
        if bar is not None:
            bar.close()


def safe_ratio(num: Tensor, den: Tensor | float) -> Tensor:
    """``num / den`` with 0 where ``den`` is 0 (a feature that never fires has rate 0, not NaN)."""
    if not isinstance(den, Tensor):
        return num / den if den else torch.zeros_like(num)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(num.dtype).tiny), torch.zeros_like(num))


def isfinite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))

