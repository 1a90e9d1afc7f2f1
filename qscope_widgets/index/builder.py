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
    context_left: int = 12,
    context_right: int = 4,
    groups: Iterable[Any] | None = None,
    resume: bool = True,
    progress: bool = True,
    checkpoint_every: int = 50,
    on_batch: Callable[[int], None] | None = None,
    text_column: str = "text",
) -> FeatureIndex:
    """Scan ``corpus`` and write the index of ``layers`` (default: every SAE layer) under ``out_dir``.

    ``groups`` (one label per document, e.g. its source or genre) adds each feature's activation share per group.
    ``on_batch(i)`` is called after each batch (progress hooks; raising in it interrupts the build, which
    then resumes from the last checkpoint).
    """
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
                                  n_groups=len(group_names)) for n in layer_list}
    report = CorpusReport()
    state_path = out / STATE_FILE
    done_batches = 0
    settings = {"layers": layer_list, "batch_size": batch_size, "chunk_len": chunk_len, "top_n": top_n,
                "context_left": context_left, "context_right": context_right, "max_tokens": max_tokens,
                "groups": group_names}
    if resume and state_path.is_file():
        state = torch.load(state_path, weights_only=True)
        if state["settings"] != settings:
            raise QScopeError(f"{out} holds an unfinished build with other settings ({state['settings']}); "
                              "pass resume=False to start over")
        for n in layer_list:
            accs[n].load_state_dict(state["layers"][n])
        done_batches = int(state["batches"])
    pad = scope.tokenizer.pad_token_id if scope.tokenizer.pad_token_id is not None else 0
    chunks = chunk_documents(scope.tokenizer, corpus, chunk_len=chunk_len, report=report, text_column=text_column,
                             groups=group_ids)
    bar = _progress(max_tokens, progress)
    batch: list = []
    batch_index = 0
    t0 = time.perf_counter()

    def flush(rows: list) -> None:
        nonlocal batch_index
        if batch_index >= done_batches:  # batches before the checkpoint were already counted
            _index_batch(scope, saes, accs, rows, pad)
        batch_index += 1
        if bar is not None:
            bar.update(sum(len(r[2]) for r in rows))
        if batch_index > done_batches and batch_index % checkpoint_every == 0:
            _save_state(state_path, accs, batch_index, settings)
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
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t0
    meta = {
        "format": FORMAT, "model": scope.name, "layers": layer_list, "d_sae": {str(n): saes[n].d_sae for n in layer_list},
        "tokens": report.tokens, "report": report.to_dict(), "groups": group_names, "settings": settings,
        "seconds": elapsed, "sae_release": saes[layer_list[0]].cfg.release,
    }
    vocab = _vocab_strings(scope)
    for n in layer_list:
        write_layer(out, n, accs[n], scope, vocab)
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    state_path.unlink(missing_ok=True)
    index = FeatureIndex.load(out)
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
        codes = saes[n].encode_sparse(res[n])
        acc.update(codes.ids.cpu(), codes.values.float().cpu(), input_ids, lengths, doc, start, group)


def _save_state(path: Path, accs: dict, batches: int, settings: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"layers": {n: a.state_dict() for n, a in accs.items()}, "batches": batches, "settings": settings},
               tmp)
    os.replace(tmp, path)


def _vocab_strings(scope: "Scope") -> list[str]:
    n = scope.model.get_input_embeddings().weight.shape[0]
    n_tok = len(scope.tokenizer)
    strs = scope.token_strings(list(range(min(n, n_tok))))
    return strs + [f"<{i}>" for i in range(len(strs), n)]
