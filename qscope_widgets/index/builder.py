"""``build_index``: scan a corpus once through the hooked model and write a per-layer feature index.

The scan batches token chunks (right-padded: the model is causal, so padding after a row's last token cannot
change it), captures the requested layers in one forward that stops after the deepest of them, encodes each with
its SAE, and feeds the sparse codes to a :class:`FeatureAccumulator` per layer. Every ``checkpoint_every``
batches the accumulators and the corpus cursor are saved, so an interrupted build resumes where it stopped and
ends with the same index as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch

from ..errors import QScopeError
from .accumulator import FeatureAccumulator
from .corpus import CorpusReport, chunk_documents
from .store import FORMAT, FeatureIndex, write_layer

if TYPE_CHECKING:
    from ..scope import Scope

STATE_FILE = "_build_state.pt"


def _progress(total: int | None, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, unit="tok", desc="indexing")


def build_index(
    scope: "Scope",
    corpus: Any,
    *,
    out_dir: str | os.PathLike,
    layers: Iterable[int] | int | None = None,
    max_tokens: int | None = None,
    batch_size: int = 16,
    chunk_len: int = 128,
    top_n: int = 10,
    context_window: int | None = None,
    context_left: int = 12,
    context_right: int = 4,
    groups: Iterable[Any] | None = None,
    resume: bool = True,
    progress: bool = True,
    checkpoint_every: int = 50,
    on_batch: Callable[[int], None] | None = None,
    text_column: str = "text",
    split: str = "line",
    logit_tokens: bool | str = "auto",
) -> FeatureIndex:
    """Scan ``corpus`` and write the index of ``layers`` (default: every SAE layer) under ``out_dir``.

    Args:
        corpus: a list / iterable of str or bytes, a pandas Series (or DataFrame with ``text_column``), a path to
            a text file (a document per line; ``split="paragraph"``: per blank-line-separated paragraph) or a
            ``.jsonl`` file, or a Hugging Face ``datasets`` dataset (its ``text_column``).
        layers: the layers to index (default: every layer with an SAE).
        max_tokens: stop after this many tokens (the last chunk that would pass it is left out).
        batch_size, chunk_len: rows per forward and tokens per row; documents longer than ``chunk_len`` are split
            into windows of ``chunk_len`` tokens (capped at the model's context).
        top_n: contexts kept per feature. ``context_window``: tokens kept around each (then ``context_right`` =
            min(4, window // 4) after the activating token, the rest before it); or give ``context_left`` /
            ``context_right`` directly.
        groups: one label per document (e.g. its source or genre): adds each feature's activation share per group.
        resume: pick up an interrupted build in ``out_dir`` (its checkpoint is written every ``checkpoint_every``
            batches); the result is identical to an uninterrupted build. ``resume=False`` starts over.
        on_batch: ``on_batch(i)`` after each batch (raising in it interrupts the build, which can then resume).
        logit_tokens: compute every feature's promoted / suppressed tokens (unembedding @ decoder direction) at
            build time: True, False, or "auto" (only for features that fired, and only when that costs under
            ~2 TFLOP on CPU / 500 TFLOP on GPU; otherwise :meth:`FeatureIndex.feature` computes them on demand
            for one feature when the index has a scope attached).

    Returns the :class:`FeatureIndex` (its ``report`` says what was skipped, repaired or split).
    """
    if context_window is not None:
        if int(context_window) < 1:
            raise QScopeError(f"context_window must be >= 1, got {context_window}")
        context_right = min(4, int(context_window) // 4)
        context_left = int(context_window) - 1 - context_right
    for name, val in (("batch_size", batch_size), ("chunk_len", chunk_len), ("top_n", top_n),
                      ("checkpoint_every", checkpoint_every)):
        if not isinstance(val, int) or val < 1:
            raise QScopeError(f"{name} must be a positive int, got {val!r}")
    if max_tokens is not None and max_tokens < 1:
        raise QScopeError(f"max_tokens must be a positive int or None, got {max_tokens!r}")
    from ..model_layers import max_context

    ctx = max_context(scope.model)
    if ctx is not None and chunk_len > ctx:
        chunk_len = ctx
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layer_list = scope._resolve_layers(layers)
    if not layer_list:
        raise QScopeError("no layers to index: the scope has no SAEs")
    group_names: list[str] = []
    group_ids: list[int] | None = None
    if groups is not None:
        labels = [str(g) for g in groups]
        group_names = sorted(set(labels))
        group_ids = [group_names.index(g) for g in labels]
    saes = {n: scope.sae(n) for n in layer_list}
    accs = {n: FeatureAccumulator(saes[n].d_sae, top_n=top_n, left=context_left, right=context_right,
                                  n_groups=len(group_names), device=saes[n].W_enc.device) for n in layer_list}
    report = CorpusReport()
    state_path = out / STATE_FILE
    done_batches = 0
    settings = {"layers": layer_list, "batch_size": batch_size, "chunk_len": chunk_len, "top_n": top_n,
                "context_left": context_left, "context_right": context_right, "max_tokens": max_tokens,
                "groups": group_names}
    expect_crc = None
    if not resume:
        state_path.unlink(missing_ok=True)
    elif state_path.is_file():
        state = torch.load(state_path, weights_only=True, map_location="cpu")
        if state["settings"] != settings:
            raise QScopeError(f"{out} holds an unfinished build with other settings ({state['settings']}); "
                              "pass resume=False to start over")
        for n in layer_list:
            accs[n].load_state_dict(state["layers"][n])
        done_batches = int(state["batches"])
        expect_crc = state.get("crc")
    pad = scope.tokenizer.pad_token_id if scope.tokenizer.pad_token_id is not None else 0
    chunks = chunk_documents(scope.tokenizer, corpus, chunk_len=chunk_len, report=report, text_column=text_column,
                             groups=group_ids, split=split)
    bar = _progress(max_tokens, progress)
    try:
        return _scan_and_write(scope, out, chunks, saes, accs, report, bar, settings, layer_list, group_names,
                               done_batches, expect_crc, state_path, pad, batch_size, max_tokens, checkpoint_every,
                               on_batch, logit_tokens)
    finally:
        if bar is not None:
            bar.close()


def _scan_and_write(scope, out, chunks, saes, accs, report, bar, settings, layer_list, group_names, done_batches,
                    expect_crc, state_path, pad, batch_size, max_tokens, checkpoint_every, on_batch, logit_tokens):
    batch: list = []
    batch_index = 0
    crc = 0  # running checksum of every token scanned: a resume must see the same corpus up to its checkpoint
    t0 = time.perf_counter()

    def flush(rows: list) -> None:
        nonlocal batch_index, crc
        for r in rows:
            crc = zlib.crc32(repr((r[0], r[1], len(r[2]), r[2][:4], r[2][-4:])).encode(), crc)
        if batch_index >= done_batches:  # batches before the checkpoint were already counted
            _index_batch(scope, saes, accs, rows, pad)
        batch_index += 1
        if batch_index == done_batches and expect_crc is not None and int(expect_crc) != crc:
            raise QScopeError(f"{out} holds an unfinished build of a different corpus (its first {done_batches} "
                              "batches differ); pass resume=False to start over")
        if bar is not None:
            bar.update(sum(len(r[2]) for r in rows))
        if batch_index > done_batches and batch_index % checkpoint_every == 0:
            _save_state(state_path, accs, batch_index, settings, crc)
        if on_batch is not None:
            on_batch(batch_index)

    for item in chunks:
        if max_tokens is not None and report.tokens + len(item[2]) > max_tokens:
            report.stopped_at_max_tokens = True
            break
        report.chunks += 1
        report.tokens += len(item[2])
        batch.append(item)
        if len(batch) == batch_size:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    if done_batches and batch_index < done_batches:
        raise QScopeError(f"{out} holds an unfinished build that had scanned {done_batches} batches, but this corpus "
                          f"gives only {batch_index}: a different corpus? pass resume=False to start over")
    elapsed = time.perf_counter() - t0
    meta = {
        "format": FORMAT, "model": scope.name, "layers": layer_list, "d_sae": {str(n): saes[n].d_sae for n in layer_list},
        "tokens": report.tokens, "report": report.to_dict(), "groups": group_names, "settings": settings,
        "seconds": elapsed, "sae_release": saes[layer_list[0]].cfg.release,
    }
    vocab = _vocab_strings(scope)
    for n in layer_list:
        write_layer(out, n, accs[n].to_cpu(), scope, vocab, logit_tokens=logit_tokens)
        accs[n] = None  # free each layer's state once written
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    state_path.unlink(missing_ok=True)
    index = FeatureIndex.load(out, scope=scope)
    index.report = report
    return index


@torch.inference_mode()
def _index_batch(scope: "Scope", saes: dict, accs: dict, rows: list, pad: int) -> None:
    lengths = torch.tensor([len(r[2]) for r in rows])
    S = int(lengths.max())
    input_ids = torch.full((len(rows), S), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, : len(r[2])] = torch.tensor(r[2])
    mask = (torch.arange(S)[None, :] < lengths[:, None]).long()
    res = scope.residuals(input_ids, mask, layers=list(accs))
    doc = torch.tensor([r[0] for r in rows])
    start = torch.tensor([r[1] for r in rows])
    group = torch.tensor([r[3] for r in rows]) if rows[0][3] is not None else None
    for n, acc in accs.items():
        ids, values = _encode_chunked(saes[n], res.pop(n))
        acc.update(ids, values, input_ids, lengths, doc, start, group)


def _encode_chunked(sae: Any, x: "torch.Tensor", max_elems: int = 2**26) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Sparse codes of ``x (B, S, d_model)`` as ``(B, S, k)`` ids / float values, encoding at most ``max_elems``
    dense pre-activations (rows x d_sae) at a time: the dense ``(tokens, d_sae)`` tensor of a large batch is never
    held whole (256 MB of float32 at most)."""
    B, S, d = x.shape
    flat = x.reshape(B * S, d)
    step = max(1, max_elems // sae.d_sae)
    if step >= B * S:
        codes = sae.encode_sparse(flat)
        return codes.ids.reshape(B, S, -1), codes.values.float().reshape(B, S, -1)
    parts = [sae.encode_sparse(flat[i:i + step]) for i in range(0, B * S, step)]
    w = max(c.ids.shape[-1] for c in parts)  # ReLU / JumpReLU SAEs: the width varies per chunk; pad with zeros
    pad = torch.nn.functional.pad
    ids = torch.cat([pad(c.ids, (0, w - c.ids.shape[-1])) for c in parts]).reshape(B, S, w)
    values = torch.cat([pad(c.values.float(), (0, w - c.values.shape[-1])) for c in parts]).reshape(B, S, w)
    return ids, values


def _save_state(path: Path, accs: dict, batches: int, settings: dict, crc: int = 0) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"layers": {n: a.state_dict() for n, a in accs.items()}, "batches": batches, "settings": settings,
                "crc": crc}, tmp)
    os.replace(tmp, path)


def _vocab_strings(scope: "Scope") -> list[str]:
    n = scope.model.get_input_embeddings().weight.shape[0]
    n_tok = len(scope.tokenizer)
    strs = scope.token_strings(list(range(min(n, n_tok))))
    return strs + [f"<{i}>" for i in range(len(strs), n)]
