"""A corpus index built by several processes: each scans its shard of the corpus, the shards merge exactly.

Sharding is by batch: the corpus is cut into the same batches as a one-process build (``batch_size`` chunks each,
the same ``max_tokens`` cut), and shard ``r`` of ``W`` runs the forward of batches ``r, r + W, r + 2W, ...``.
Every forward is then the very computation a one-process build does, and the merge
(:meth:`FeatureAccumulator.merge`) is exact, so the merged index equals a one-process build of the same corpus
with the same settings:

* ``features.parquet`` and ``contexts.parquet`` of every layer are equal cell for cell (counts, densities, sums
  (exact integers, so means too), maxima, histograms and the quantiles read from them, group shares, top-N contexts
  with their documents, positions, token windows and activations, the sampled contexts (their keys depend only on
  the firing, so the union's smallest are the one-process sample), labels), and carry the same build id;
* ``meta.json`` is equal except ``seconds`` (wall time).

This holds as long as the forward itself is deterministic for a given batch (the same device type, dtype and
kernels on every rank as in the one-process build); the test checks it on CPU.

Two ways to run it:

* :func:`build_index_distributed` in every rank of a ``torch.distributed`` process group (``torchrun``): ranks
  scan, then rank 0 gathers each layer's accumulators (``dist.gather``, layer by layer) and writes the index.
* :func:`build_shard` as independent jobs (a Slurm array; no process group), each writing its finished shard under
  ``out_dir/_shards/``, then :func:`merge_shards` once.

Each shard checkpoints into ``out_dir/_shards/rank{r}-of-{W}.pt`` and resumes from it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import QScopeError
from .accumulator import FeatureAccumulator
from .builder import (BuildPlan, PassProgress, load_state, plan_build, prepare_folder, refuse_finished, save_state,
                      scan_pending_passes, write_index, write_meta)
from .corpus import CorpusReport
from .files import SHARD_DIR, clear_build_state, clear_index, torch_save, write_json
from .reader import FeatureIndex
from .records import IndexSettings
from .vocab import vocab_strings

if TYPE_CHECKING:
    from ..scope import Scope


def _state_path(out: Path, rank: int, world: int) -> Path:
    return out / SHARD_DIR / f"rank{rank}-of-{world}.pt"


def _check_shard(shard: Any, num_shards: Any) -> tuple[int, int]:
    import numbers

    ok = all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (shard, num_shards))
    if not ok or not 0 <= shard < num_shards:
        raise QScopeError(f"shard must be an int in 0..num_shards - 1 and num_shards a positive int, got shard="
                          f"{shard!r}, num_shards={num_shards!r}")
    return int(shard), int(num_shards)


def _accumulator_for(state: dict[str, torch.Tensor], settings: IndexSettings) -> FeatureAccumulator:
    d_sae, top_n = state["top_vals"].shape
    acc = FeatureAccumulator(int(d_sae), top_n=int(top_n), left=settings.context_left,
                             right=settings.context_right, n_groups=len(settings.groups),
                             sample_n=int(state["sample_keys"].shape[1]) if "sample_keys" in state else 0)
    acc.load_state_dict(state)
    return acc


def merge_states(states: list[dict[str, torch.Tensor]], settings: IndexSettings) -> FeatureAccumulator:
    """One accumulator from the states of all shards of one layer (exact; see the module docstring)."""
    acc = _accumulator_for(states[0], settings)
    for st in states[1:]:
        acc.merge(st)
    return acc


# ---------------------------------------------------------------------------------------------- torch.distributed
def build_index_distributed(scope: "Scope", corpus: Any, *, out_dir: Any, resume: bool = True,
                            overwrite: bool = False, process_group: Any = None, **kwargs: Any) -> FeatureIndex:
    """:func:`~qscope_widgets.index.build_index` across the ranks of a ``torch.distributed`` process group.

    Call it in every rank with the same arguments (same corpus, same settings; ``out_dir`` on a filesystem every
    rank sees, e.g. shared storage across nodes). Each rank scans its shard; rank 0 merges and writes; every rank
    returns the opened index. Tensors travel on the backend's device (CPU for gloo, the current CUDA device for
    NCCL).
    """
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise QScopeError("build_index_distributed needs a torch.distributed process group: run under torchrun "
                          "(python -m qscope_widgets.index build ...) or call dist.init_process_group first")
    rank, world = dist.get_rank(process_group), dist.get_world_size(process_group)
    plan = plan_build(scope, corpus, out_dir=out_dir, shard=(rank, world), **kwargs)
    state_path = _state_path(plan.out, rank, world)
    err = None
    if rank == 0:
        try:
            plan.out.mkdir(parents=True, exist_ok=True)
            prepare_folder(plan.out, overwrite=overwrite, resume=resume, has_state=state_path.is_file())
        except QScopeError as exc:
            err = str(exc)
    box = [err]
    dist.broadcast_object_list(box, src=0, group=process_group)
    if box[0] is not None:
        raise QScopeError(box[0])
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state = load_state(state_path, plan.settings, plan.shard) if resume else None
    prog = PassProgress.resumed(state)
    t0 = time.perf_counter()
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend(process_group) == "nccl" \
        else torch.device("cpu")
    vocab = vocab_strings(scope) if rank == 0 else None
    for group, accs, report, chain in scan_pending_passes(plan, prog, state_path, state):
        chains: list[Any] = [None] * world
        dist.all_gather_object(chains, chain, group=process_group)
        if len(set(chains)) != 1:
            raise QScopeError("the ranks read different corpora (their token checksums differ): give every rank "
                              "the same corpus and settings")
        merged = {n: _gather_merge(accs[n], plan.settings, rank, world, device, process_group) for n in group}
        if rank == 0:
            write_index(plan, group, merged, chain, vocab)
        prog.digest, prog.report = chain, report.to_dict()
        prog.finished += group
        prog.accs, prog.batches, prog.chain = None, 0, ""
        dist.barrier(group=process_group)
        save_state(state_path, plan, prog)
    index = None
    if rank == 0:
        index = write_meta(plan, prog.digest, prog.report, time.perf_counter() - t0, vocab)
    dist.barrier(group=process_group)
    if rank == 0:
        clear_build_state(plan.out)
    if index is None:
        index = FeatureIndex.load(plan.out, scope=scope)
    index.report = CorpusReport(**prog.report)
    return index


def _gather_merge(acc: FeatureAccumulator, settings: IndexSettings, rank: int, world: int, device: torch.device,
                  group: Any) -> FeatureAccumulator | None:
    """Rank 0 receives every rank's state of one layer, tensor by tensor, and merges them; others get None."""
    import torch.distributed as dist

    states: list[dict[str, torch.Tensor]] = [{} for _ in range(world)]
    for name, t in acc.state_dict().items():
        t = t.reshape(1) if t.ndim == 0 else t
        t = t.to(device).contiguous()
        bucket = [torch.empty_like(t) for _ in range(world)] if rank == 0 else None
        dist.gather(t, bucket, dst=0, group=group)
        if rank == 0:
            for r in range(world):
                states[r][name] = bucket[r].cpu().reshape(()) if name == "tokens" else bucket[r].cpu()
    return merge_states(states, settings) if rank == 0 else None


# ---------------------------------------------------------------------------------------------- independent shards
def _shard_files(out: Path, n: int, rank: int, world: int) -> Path:
    return out / SHARD_DIR / f"layer{n}.shard{rank}-of-{world}.pt"


def _done_file(out: Path, rank: int, world: int) -> Path:
    return out / SHARD_DIR / f"shard{rank}-of-{world}.done.json"


def build_shard(scope: "Scope", corpus: Any, *, out_dir: Any, shard: int, num_shards: int, resume: bool = True,
                overwrite: bool = False, **kwargs: Any) -> Path:
    """Scan shard ``shard`` of ``num_shards`` as an independent job (e.g. one Slurm array task) and save its
    finished state under ``out_dir/_shards/``; run :func:`merge_shards` once every shard is done. Resumable like
    :func:`build_index`. Returns the shard's "done" file."""
    rank, world = _check_shard(shard, num_shards)
    plan = plan_build(scope, corpus, out_dir=out_dir, shard=(rank, world), **kwargs)
    refuse_finished(plan.out, overwrite)  # the merge replaces it (with overwrite=True); shards never delete it
    state_path = _state_path(plan.out, rank, world)
    state_path.parent.mkdir(parents=True, exist_ok=True)
    done = _done_file(plan.out, rank, world)
    if not resume:
        state_path.unlink(missing_ok=True)
        done.unlink(missing_ok=True)
    if done.is_file():
        prev = json.loads(done.read_text())
        if prev.get("settings") == plan.settings.to_dict():
            return done
        raise QScopeError(f"{done} is a finished shard with other settings; pass resume=False to scan it again")
    state = load_state(state_path, plan.settings, plan.shard) if resume else None
    prog = PassProgress.resumed(state)
    for group, accs, report, chain in scan_pending_passes(plan, prog, state_path, state):
        for n in group:
            torch_save(_shard_files(plan.out, n, rank, world), accs[n].to_cpu().state_dict())
        prog.digest, prog.report = chain, report.to_dict()
        prog.finished += group
        prog.accs, prog.batches, prog.chain = None, 0, ""
        save_state(state_path, plan, prog)
    write_json(done, {"settings": plan.settings.to_dict(), "digest": prog.digest, "report": prog.report,
                      "shard": [rank, world]})
    state_path.unlink(missing_ok=True)
    return done


def merge_shards(scope: "Scope", out_dir: Any, *, overwrite: bool = False,
                 logit_tokens: bool | str = "auto") -> FeatureIndex:
    """Merge the finished shards of :func:`build_shard` under ``out_dir`` into the index (exact; see the module
    docstring), one layer at a time, then remove the shard files."""
    out = Path(out_dir)
    dones = sorted((out / SHARD_DIR).glob("shard*-of-*.done.json"))
    if not dones:
        raise QScopeError(f"{out / SHARD_DIR} holds no finished shard: run build_shard for every shard first")
    infos = [json.loads(p.read_text()) for p in dones]
    worlds = sorted({i["shard"][1] for i in infos})
    if len(worlds) > 1:
        raise QScopeError(f"{out / SHARD_DIR} holds finished shards of runs cut into {worlds} shards: keep one "
                          "run's files (or rebuild the shards with resume=False)")
    world = worlds[0]
    have = {tuple(i["shard"]) for i in infos}
    missing = [r for r in range(world) if (r, world) not in have]
    if missing:
        raise QScopeError(f"shards {missing} of {world} are not finished yet (no done file under {out / SHARD_DIR})")
    if any(i["settings"] != infos[0]["settings"] for i in infos):
        raise QScopeError("the shards were built with different settings; rebuild them with the same arguments")
    if len({i["digest"] for i in infos}) != 1:
        raise QScopeError("the shards read different corpora (their token checksums differ)")
    refuse_finished(out, overwrite)
    clear_index(out)
    settings = IndexSettings.from_dict(infos[0]["settings"])
    plan = BuildPlan(scope=scope, corpus=None, out=out, settings=settings, group_ids=None, logit_tokens=logit_tokens)
    digest, report = infos[0]["digest"], infos[0]["report"]
    vocab = vocab_strings(scope)
    t0 = time.perf_counter()
    for n in settings.layers:
        states = []
        for r in range(world):
            p = _shard_files(out, n, r, world)
            try:
                states.append(torch.load(p, weights_only=True, map_location="cpu"))
            except (OSError, RuntimeError, EOFError, ValueError) as exc:
                raise QScopeError(f"the shard file {p} is missing or damaged ({exc}); rebuild shard {r} with "
                                  "build_shard(..., resume=False)") from None
        write_index(plan, [n], {n: merge_states(states, settings)}, digest, vocab)
    index = write_meta(plan, digest, report, time.perf_counter() - t0, vocab)
    clear_build_state(out)
    index.report = CorpusReport(**report)
    return index

