"""``build_index``: scan a corpus through the hooked model and write a per-layer feature index.

The scan batches token chunks (right-padded: the model is causal, so padding after a row's last token cannot
change it), captures the layers of one pass in a forward that stops after the deepest of them, encodes each with
its SAE, and feeds the sparse codes to a :class:`FeatureAccumulator` per layer.

* **Memory.** When the SAE bank has a budget (``sae_cache_bytes``), the layers are scanned in passes over the
  corpus, each pass over as many layers as the budget holds (:mod:`.budget`); each pass writes its layers and
  frees their state before the next starts.
* **Resume.** Every ``checkpoint_every`` batches the current pass's accumulators, the corpus cursor and a hash
  chain of the tokens seen are saved, so an interrupted build resumes where it stopped (refusing another corpus)
  and ends with the same index as an uninterrupted one.
* **Shards.** A scan can take every W-th batch only (``shard=(r, W)``): :mod:`.distributed` runs W of them in
  parallel and merges their accumulators exactly. Batches stay the same as in one scan, so every forward is the
  same computation.
* **Safety.** See :mod:`.files`: a finished index is never replaced without ``overwrite=True``, every file is
  written atomically, and every layer file carries the build's identity.
"""

from __future__ import annotations

import hashlib
import pickle
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np
import torch

from ..errors import QScopeError
from .accumulator import FeatureAccumulator
from .budget import layer_passes
from .corpus import CorpusReport, chunk_documents, corpus_length, is_one_shot
from .files import (FORMAT, META_FILE, STATE_FILE, build_id, clear_build_state, clear_index, layer_dir,
                    torch_save, write_json)
from .writer import write_vocab
from .reader import FeatureIndex
from .records import Chunk, IndexSettings
from .vocab import vocab_strings
from .writer import write_layer

if TYPE_CHECKING:
    from ..scope import Scope

STATE_VERSION = 3  # 3: the accumulators carry the sampled contexts


def _progress(total: int | None, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, unit="tok", desc="indexing")


# ---------------------------------------------------------------------------------------------- the build's plan
@dataclass
class BuildPlan:
    """Everything a scan needs besides the layers of its pass (validated once by :func:`plan_build`)."""

    scope: Any
    corpus: Any
    out: Path
    settings: IndexSettings
    group_ids: list[int] | None
    text_column: str = "text"
    split: str = "line"
    progress: bool = True
    checkpoint_every: int = 50
    on_batch: Callable[[int], None] | None = None
    logit_tokens: bool | str = "auto"
    shard: tuple[int, int] = (0, 1)
    passes: list[list[int]] = field(default_factory=list)

    @property
    def pad(self) -> int:
        pad = self.scope.tokenizer.pad_token_id
        return pad if pad is not None else 0


def plan_build(scope: "Scope", corpus: Any, *, out_dir: Any, layers: Any = None, max_tokens: int | None = None,
               batch_size: int = 16, chunk_len: int = 128, top_n: int = 10, context_window: int | None = None,
               context_left: int = 12, context_right: int = 4, groups: Iterable[Any] | None = None,
               sample_n: int = 24, progress: bool = True, checkpoint_every: int = 50, on_batch: Callable[[int], None] | None = None,
               text_column: str = "text", split: str = "line", logit_tokens: bool | str = "auto",
               shard: tuple[int, int] = (0, 1)) -> BuildPlan:
    """Validate the arguments of a build and fix its settings and passes (no file is touched)."""
    if context_window is not None:
        if not _is_int(context_window) or int(context_window) < 1:
            raise QScopeError(f"context_window must be a positive int, got {context_window!r}")
        context_right = min(4, int(context_window) // 4)
        context_left = int(context_window) - 1 - context_right
    for name, val in (("batch_size", batch_size), ("chunk_len", chunk_len), ("top_n", top_n),
                      ("checkpoint_every", checkpoint_every)):
        if not _is_int(val) or val < 1:
            raise QScopeError(f"{name} must be a positive int, got {val!r}")
    for name, val in (("context_left", context_left), ("context_right", context_right), ("sample_n", sample_n)):
        if not _is_int(val) or val < 0:
            raise QScopeError(f"{name} must be an int >= 0, got {val!r}")
    if max_tokens is not None and (not _is_int(max_tokens) or max_tokens < 1):
        raise QScopeError(f"max_tokens must be a positive int or None, got {max_tokens!r}")
    if logit_tokens not in (True, False, "auto"):
        raise QScopeError(f"logit_tokens must be True, False or 'auto', got {logit_tokens!r}")
    if split not in ("line", "paragraph"):
        raise QScopeError(f"split must be 'line' or 'paragraph', got {split!r}")
    if on_batch is not None and not callable(on_batch):
        raise QScopeError(f"on_batch must be callable, got {on_batch!r}")
    if not isinstance(out_dir, (str, Path)) and not hasattr(out_dir, "__fspath__"):
        raise QScopeError(f"out_dir must be a folder path, got {out_dir!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise QScopeError(f"out_dir {out} is a file, not a folder")
    from ..model_layers import max_context

    ctx = max_context(scope.model)
    if ctx is not None and chunk_len > ctx:
        chunk_len = ctx
    layer_list = scope._resolve_layers(layers)
    if not layer_list:
        raise QScopeError("no layers to index: the scope has no SAEs")
    group_names: list[str] = []
    group_ids: list[int] | None = None
    if groups is not None:
        if isinstance(groups, (str, bytes)) or not isinstance(groups, Iterable):
            raise QScopeError(f"groups must be one label per document (a list), got {groups!r:.80}")
        labels = [str(g) for g in groups]
        n_docs = corpus_length(corpus)
        if n_docs is not None and n_docs != len(labels):
            raise QScopeError(f"groups has {len(labels)} labels but the corpus has {n_docs} documents: give one "
                              "group per document")
        group_names = sorted(set(labels))
        pos = {g: j for j, g in enumerate(group_names)}
        group_ids = [pos[g] for g in labels]
    settings = IndexSettings(layers=tuple(layer_list), batch_size=batch_size, chunk_len=chunk_len, top_n=top_n,
                             context_left=context_left, context_right=context_right, max_tokens=max_tokens,
                             groups=tuple(group_names), sample_n=int(sample_n))
    passes = layer_passes(scope.saes, layer_list)
    if len(passes) > 1 and is_one_shot(corpus):
        raise QScopeError(
            f"the SAE bank's budget (sae_cache_bytes={scope.saes.max_bytes}) holds {len(passes[0])} of the "
            f"{len(layer_list)} layers at once, so the index scans the corpus in {len(passes)} passes, but this "
            "corpus is an iterator that can be read only once: pass a list, a file path or a dataset, or index "
            f"at most {len(passes[0])} layers per call (layers=...), or raise sae_cache_bytes")
    return BuildPlan(scope=scope, corpus=corpus, out=out, settings=settings, group_ids=group_ids,
                     text_column=text_column, split=split, progress=progress, checkpoint_every=checkpoint_every,
                     on_batch=on_batch, logit_tokens=logit_tokens, shard=shard, passes=passes)


def _is_int(v: Any) -> bool:
    import numbers

    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


# ---------------------------------------------------------------------------------------------- checkpoints
def load_state(path: Path, settings: IndexSettings, shard: tuple[int, int]) -> dict[str, Any] | None:
    """The checkpoint of an unfinished build, checked; None when there is none. A damaged file or one from other
    settings is a :class:`QScopeError` that says to pass ``resume=False``."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, AttributeError) as exc:
        raise QScopeError(f"the checkpoint {path} of an unfinished build is damaged ({type(exc).__name__}: "
                          f"{str(exc)[:200]}); pass resume=False to start the build over") from None
    if not isinstance(state, dict):
        raise QScopeError(f"the checkpoint {path} holds a {type(state).__name__}, not a build state; pass "
                          "resume=False to start the build over")
    if state.get("settings") != settings.to_dict() or tuple(state.get("shard", shard)) != tuple(shard):
        raise QScopeError(f"{path.parent} holds an unfinished build with other settings ({state.get('settings')}, "
                          f"shard {state.get('shard')}); pass resume=False to start over")
    if state.get("version") != STATE_VERSION:
        raise QScopeError(f"the checkpoint {path} was written by another version of qscope_widgets; pass "
                          "resume=False to start the build over")
    return state


def save_state(path: Path, plan: BuildPlan, progress: "PassProgress") -> None:
    torch_save(path, {
        "version": STATE_VERSION, "settings": plan.settings.to_dict(), "shard": list(plan.shard),
        "finished": list(progress.finished), "digest": progress.digest, "report": progress.report,
        "pass_layers": list(progress.accs or {}), "batches": progress.batches, "chain": progress.chain,
        "layers": {n: a.state_dict() for n, a in (progress.accs or {}).items()},
    })


@dataclass
class PassProgress:
    """Where a build stands: layers finished, the corpus digest once known, and the running pass."""

    finished: list[int] = field(default_factory=list)
    digest: str | None = None  # hash chain over every scanned chunk, known after the first full pass
    report: dict | None = None
    accs: dict[int, FeatureAccumulator] | None = None
    batches: int = 0
    chain: str = ""

    @classmethod
    def resumed(cls, state: dict | None) -> "PassProgress":
        """The progress a checkpoint recorded (a fresh one without a checkpoint)."""
        prog = cls()
        if state is not None:
            prog.finished, prog.digest, prog.report = list(state["finished"]), state["digest"], state["report"]
        return prog


# ---------------------------------------------------------------------------------------------- one scan pass
def _chunk_hash(prev: str, rows: list[Chunk]) -> str:
    h = hashlib.blake2b(bytes.fromhex(prev), digest_size=16)
    for r in rows:
        h.update(struct.pack("<qqq", r.document, r.start, -1 if r.group is None else r.group))
        h.update(np.asarray(r.token_ids, dtype=np.int64).tobytes())
    return h.hexdigest()


def iter_batches(plan: BuildPlan, report: CorpusReport) -> Iterator[list[Chunk]]:
    """The corpus as batches of chunks, the same on every shard and every pass (``max_tokens`` included)."""
    s = plan.settings
    chunks = chunk_documents(plan.scope.tokenizer, plan.corpus, chunk_len=s.chunk_len, report=report,
                             text_column=plan.text_column, groups=plan.group_ids, split=plan.split)
    batch: list[Chunk] = []
    try:
        for item in chunks:
            if s.max_tokens is not None and report.tokens + len(item.token_ids) > s.max_tokens:
                report.stopped_at_max_tokens = True
                break
            report.chunks += 1
            report.tokens += len(item.token_ids)
            batch.append(item)
            if len(batch) == s.batch_size:
                yield batch
                batch = []
    except TypeError as exc:  # iter_documents' "cannot read a corpus from ..." and the like
        raise QScopeError(str(exc)) from None
    if batch:
        yield batch


def scan_pass(plan: BuildPlan, layers: list[int], progress: PassProgress, state_path: Path,
              resume_from: dict[str, Any] | None = None) -> tuple[dict[int, FeatureAccumulator], CorpusReport, str]:
    """Scan the corpus once for ``layers`` (this shard's batches only); returns the accumulators, the corpus
    report and the hash chain of all chunks (every shard computes the same)."""
    scope, s = plan.scope, plan.settings
    rank, world = plan.shard
    accs = {}
    for n in layers:
        sae = scope.saes.get(n)
        accs[n] = FeatureAccumulator(sae.d_sae, top_n=s.top_n, left=s.context_left, right=s.context_right,
                                     n_groups=len(s.groups), sample_n=s.sample_n, device=sae.W_enc.device)
    done_batches, expect_chain = 0, None
    if resume_from is not None:
        try:
            for n in layers:
                accs[n].load_state_dict(resume_from["layers"][n])
        except (KeyError, ValueError) as exc:
            raise QScopeError(f"the checkpoint {state_path} does not match this build ({exc}); pass resume=False "
                              "to start over") from None
        done_batches, expect_chain = int(resume_from["batches"]), resume_from["chain"]
    progress.accs = accs
    report = CorpusReport()
    chain = ""
    batch_index = 0
    bar = _progress(s.max_tokens, plan.progress)
    try:
        for rows in iter_batches(plan, report):
            chain = _chunk_hash(chain, rows)
            if batch_index >= done_batches and batch_index % world == rank:
                _index_batch(scope, accs, rows, plan.pad)
            batch_index += 1
            if batch_index == done_batches and expect_chain is not None and expect_chain != chain:
                raise QScopeError(f"{plan.out} holds an unfinished build of a different corpus (its first "
                                  f"{done_batches} batches differ); pass resume=False to start over")
            if bar is not None:
                bar.update(sum(len(r.token_ids) for r in rows))
            if batch_index > done_batches and batch_index % plan.checkpoint_every == 0:
                progress.batches, progress.chain = batch_index, chain
                save_state(state_path, plan, progress)
            if plan.on_batch is not None:
                plan.on_batch(batch_index)
    finally:
        if bar is not None:
            bar.close()
    if done_batches and batch_index < done_batches:
        raise QScopeError(f"{plan.out} holds an unfinished build that had scanned {done_batches} batches, but this "
                          f"corpus gives only {batch_index}: a different corpus? pass resume=False to start over")
    progress.batches, progress.chain = batch_index, chain
    if progress.digest is not None and chain != progress.digest:
        raise QScopeError("the corpus changed between two passes of this build (each pass scans it again for "
                          "another group of layers): pass a corpus that reads the same every time")
    return accs, report, chain


@torch.inference_mode()
def scan_pending_passes(plan: BuildPlan, prog: PassProgress, state_path: Path, state: dict[str, Any] | None
                        ) -> Iterator[tuple[list[int], dict[int, FeatureAccumulator], CorpusReport, str]]:
    """Scan every pass not finished yet, in order, resuming the one a checkpoint (``state``) was taken in; yields
    ``(layers, accumulators, corpus report, chain)`` for each."""
    for group in plan.passes:
        if all(n in prog.finished for n in group):
            continue
        resume_from = state if state is not None and state["pass_layers"] == group else None
        state = None
        yield (group, *scan_pass(plan, group, prog, state_path, resume_from))


def _index_batch(scope: "Scope", accs: dict[int, FeatureAccumulator], rows: list[Chunk], pad: int) -> None:
    lengths = torch.tensor([len(r.token_ids) for r in rows])
    S = int(lengths.max())
    input_ids = torch.full((len(rows), S), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, : len(r.token_ids)] = torch.tensor(r.token_ids)
    mask = (torch.arange(S)[None, :] < lengths[:, None]).long()
    res = scope.residuals(input_ids, mask, layers=list(accs))
    doc = torch.tensor([r.document for r in rows])
    start = torch.tensor([r.start for r in rows])
    group = torch.tensor([r.group for r in rows]) if rows[0].group is not None else None
    for n, acc in accs.items():
        sae = scope.saes.get(n)  # through the bank each batch: its byte budget holds even if sizes differ
        ids, values = _encode_chunked(sae, res.pop(n))
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


# ---------------------------------------------------------------------------------------------- the folder
def refuse_finished(out: Path, overwrite: bool) -> None:
    """A folder holding a finished index is never silently replaced."""
    if (out / META_FILE).is_file() and not overwrite:
        raise QScopeError(
            f"{out} already holds a finished feature index: pass overwrite=True to replace it, choose another "
            f"out_dir, or open it with scope.load_index({str(out)!r})")


def prepare_folder(out: Path, *, overwrite: bool, resume: bool, has_state: bool) -> None:
    """Refuse to replace a finished index unless ``overwrite``; otherwise clear what a fresh build must not mix
    with (only files an index writes are removed)."""
    refuse_finished(out, overwrite)
    if (out / META_FILE).is_file():
        clear_index(out)  # meta.json goes first: from here on the folder is an unfinished build, never a mixture
        clear_build_state(out)
    elif not resume:
        clear_build_state(out)
        clear_index(out)
    elif not has_state:
        clear_index(out)  # layer folders of a build that never wrote a checkpoint


def write_index(plan: BuildPlan, layers: list[int], accs: dict[int, FeatureAccumulator], digest: str,
                vocab: list[str] | None = None) -> str:
    """Write the layers of one pass, stamped with the build id; returns the id."""
    scope = plan.scope
    bid = build_id(plan.settings.to_dict(), digest, scope.name, _release(scope, layers[0]))
    vocab = vocab if vocab is not None else vocab_strings(scope)
    for n in layers:
        write_layer(plan.out, n, accs[n].to_cpu(), scope, vocab, logit_tokens=plan.logit_tokens, build=bid)
        accs[n] = None  # free each layer's state once written
    return bid


def write_meta(plan: BuildPlan, digest: str, report: dict, seconds: float, vocab: list[str] | None = None,
               **extra: Any) -> FeatureIndex:
    """Write the vocabulary file, then ``meta.json`` last (it marks the index finished), drop layer folders of
    older builds, and open it."""
    scope, s = plan.scope, plan.settings
    layers = list(s.layers)
    sae0 = scope.saes.get(layers[0])
    d_sae = {str(layers[0]): sae0.d_sae}
    import pyarrow.parquet as pq

    for n in layers[1:]:  # from the written files: no SAE needs to be loaded again
        d_sae[str(n)] = pq.read_metadata(layer_dir(plan.out, n) / "features.parquet").num_rows
    clear_index(plan.out, keep_layers=set(layers))
    bid = build_id(s.to_dict(), digest, scope.name, sae0.cfg.release)
    write_vocab(plan.out, vocab if vocab is not None else vocab_strings(scope), bid)
    meta = {
        "format": FORMAT, "model": scope.name, "layers": layers, "d_sae": d_sae, "tokens": report["tokens"],
        "report": report, "groups": list(s.groups), "settings": s.to_dict(), "seconds": seconds,
        "sae_release": sae0.cfg.release, "corpus_digest": digest,
        "build_id": bid, **extra,
    }
    write_json(plan.out / META_FILE, meta)
    return FeatureIndex.load(plan.out, scope=scope)


def _release(scope: "Scope", layer: int) -> Any:
    return scope.saes.get(layer).cfg.release


# ---------------------------------------------------------------------------------------------- entry point
def build_index(
    scope: "Scope",
    corpus: Any,
    *,
    out_dir: Any,
    layers: Iterable[int] | int | None = None,
    max_tokens: int | None = None,
    batch_size: int = 16,
    chunk_len: int = 128,
    top_n: int = 10,
    context_window: int | None = None,
    context_left: int = 12,
    context_right: int = 4,
    groups: Iterable[Any] | None = None,
    sample_n: int = 24,
    resume: bool = True,
    overwrite: bool = False,
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
        layers: the layers to index (default: every layer with an SAE). When the SAE bank has a budget
            (``sae_cache_bytes``) that holds fewer of them, the corpus is scanned in several passes, each over
            the layers that fit (a one-shot iterator corpus is then refused: it cannot be read twice).
        max_tokens: stop after this many tokens (the last chunk that would pass it is left out).
        batch_size, chunk_len: rows per forward and tokens per row; documents longer than ``chunk_len`` are split
            into windows of ``chunk_len`` tokens (capped at the model's context).
        top_n: contexts kept per feature. ``context_window``: tokens kept around each (then ``context_right`` =
            min(4, window // 4) after the activating token, the rest before it); or give ``context_left`` /
            ``context_right`` directly.
        groups: one label per document (e.g. its source or genre): adds each feature's activation share per group.
        sample_n: also keep a uniform random sample of this many of each feature's firings (contexts from every
            activation range, not only the top; ``FeatureIndex.contexts(..., kind="sample")``, the card's
            ``samples``). The sample depends only on the corpus, not on batching, shards or resumes. 0: none.
        resume: pick up an interrupted build in ``out_dir`` (its checkpoint is written every ``checkpoint_every``
            batches); the result is identical to an uninterrupted build. ``resume=False`` starts over.
        overwrite: replace a finished index already in ``out_dir`` (without it, that is refused).
        on_batch: ``on_batch(i)`` after each batch (raising in it interrupts the build, which can then resume).
        logit_tokens: compute every feature's promoted / suppressed tokens (unembedding @ decoder direction) at
            build time: True, False, or "auto" (only for features that fired, and only when that costs under
            ~2 TFLOP on CPU / 500 TFLOP on GPU; otherwise :meth:`FeatureIndex.feature` computes them on demand
            for one feature when the index has a scope attached).

    Returns the :class:`FeatureIndex` (its ``report`` says what was skipped, repaired or split). For a build over
    several processes see :func:`qscope_widgets.index.distributed.build_index_distributed`.
    """
    plan = plan_build(scope, corpus, out_dir=out_dir, layers=layers, max_tokens=max_tokens, batch_size=batch_size,
                      chunk_len=chunk_len, top_n=top_n, context_window=context_window, context_left=context_left,
                      context_right=context_right, groups=groups, sample_n=sample_n, progress=progress,
                      checkpoint_every=checkpoint_every, on_batch=on_batch, text_column=text_column, split=split,
                      logit_tokens=logit_tokens)
    state_path = plan.out / STATE_FILE
    plan.out.mkdir(parents=True, exist_ok=True)
    prepare_folder(plan.out, overwrite=overwrite, resume=resume, has_state=state_path.is_file())
    state = load_state(state_path, plan.settings, plan.shard) if resume else None
    t0 = time.perf_counter()
    prog = PassProgress.resumed(state)
    vocab = None
    for group, accs, report, chain in scan_pending_passes(plan, prog, state_path, state):
        save_state(state_path, plan, prog)  # a kill while the layers are written resumes without a rescan
        prog.digest, prog.report = chain, report.to_dict()
        vocab = vocab if vocab is not None else vocab_strings(scope)
        write_index(plan, group, accs, chain, vocab)
        prog.finished += group
        prog.accs, prog.batches, prog.chain = None, 0, ""
        save_state(state_path, plan, prog)  # a resume skips the passes already written
    index = write_meta(plan, prog.digest, prog.report, time.perf_counter() - t0, vocab)
    state_path.unlink(missing_ok=True)
    index.report = CorpusReport(**prog.report)
    return index
