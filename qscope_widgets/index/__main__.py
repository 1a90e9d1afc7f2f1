"""Command line for corpus indexes, one process or many.

    python -m qscope_widgets.index build --model demo --corpus corpus.txt --out my_index
    torchrun --nproc-per-node 4 -m qscope_widgets.index build --model Qwen/Qwen3.5-2B-Base \\
        --saes Qwen/SAE-Res-Qwen3.5-2B-Base-W32K-L0_100 --device cuda --corpus corpus.jsonl --out my_index
    python -m qscope_widgets.index build ... --shard 3 --num-shards 16    # one job of a Slurm array
    python -m qscope_widgets.index merge --model ... --out my_index        # once every shard is done

Under ``torchrun`` (``WORLD_SIZE`` > 1, no ``--shard``) the ranks form a torch.distributed process group (NCCL on
CUDA, gloo on CPU) and build one index together; see ``docs/distributed-index.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def _layers(text: str | None) -> list[int] | None:
    if not text:
        return None
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    return out


def _logit(text: str) -> bool | str:
    return {"true": True, "false": False, "auto": "auto"}[text.lower()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m qscope_widgets.index", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def model_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--model", required=True, help='a model folder or hub id, or "demo" (the embedded demo)')
        sp.add_argument("--saes", help="the SAE release (folder or hub repo); default: the demo's for --model demo")
        sp.add_argument("--device", default=None, help="cpu, cuda (each rank uses cuda:LOCAL_RANK), ...")
        sp.add_argument("--dtype", default=None)
        sp.add_argument("--sae-cache-bytes", type=int, default=None, help="the SAE bank's budget per process")
        sp.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
        sp.add_argument("--logit-tokens", type=_logit, default="auto", help="true, false or auto")

    b = sub.add_parser("build", help="scan a corpus (one process, a torchrun rank, or one shard)")
    model_args(b)
    b.add_argument("--corpus", required=True, help="a text file (a document per line) or a .jsonl file")
    b.add_argument("--out", required=True)
    b.add_argument("--text-column", default="text")
    b.add_argument("--group-column", default=None, help="(.jsonl) a column naming each document's group")
    b.add_argument("--split", default="line", choices=["line", "paragraph"])
    b.add_argument("--layers", default=None, help='e.g. "3" or "0,4,8" or "0-15" (default: every SAE layer)')
    b.add_argument("--max-tokens", type=int, default=None)
    b.add_argument("--batch-size", type=int, default=16)
    b.add_argument("--chunk-len", type=int, default=128)
    b.add_argument("--top-n", type=int, default=10)
    b.add_argument("--sample-n", type=int, default=24, help="uniformly sampled contexts per feature (0: none)")
    b.add_argument("--context-window", type=int, default=None)
    b.add_argument("--checkpoint-every", type=int, default=50)
    b.add_argument("--no-resume", action="store_true", help="start over instead of resuming a checkpoint")
    b.add_argument("--overwrite", action="store_true", help="replace a finished index in --out")
    b.add_argument("--shard", type=int, default=None, help="run only this shard (no process group), then merge")
    b.add_argument("--num-shards", type=int, default=None)
    b.add_argument("--progress", action="store_true")

    m = sub.add_parser("merge", help="merge the finished shards of --shard runs into the index")
    model_args(m)
    m.add_argument("--out", required=True)
    m.add_argument("--overwrite", action="store_true")
    return p


def make_scope(args: argparse.Namespace, device: str | None) -> Any:
    import torch

    from ..scope import Scope

    if args.threads:
        torch.set_num_threads(args.threads)
    kw: dict[str, Any] = {"sae_cache_bytes": args.sae_cache_bytes}
    if device is not None:
        kw["device"] = device
    if args.dtype is not None:
        kw["dtype"] = args.dtype
    if args.model == "demo" and args.saes is None:
        return Scope.demo(**kw)
    return Scope.from_pretrained(args.model, saes=args.saes, **kw)


def _groups(args: argparse.Namespace) -> list[Any] | None:
    if args.group_column is None:
        return None
    if not args.corpus.endswith(".jsonl"):
        raise SystemExit("--group-column needs a .jsonl corpus")
    with open(args.corpus, "rb") as fh:
        return [json.loads(line).get(args.group_column) for line in fh if line.strip()]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = args.device
    if device == "cuda" and world > 1:
        device = f"cuda:{local}"
    scope = make_scope(args, device)
    if args.command == "merge":
        from .distributed import merge_shards

        idx = merge_shards(scope, args.out, overwrite=args.overwrite, logit_tokens=args.logit_tokens)
        print(idx, idx.report)
        return 0
    kw = dict(out_dir=args.out, layers=_layers(args.layers), max_tokens=args.max_tokens, batch_size=args.batch_size,
              chunk_len=args.chunk_len, top_n=args.top_n, sample_n=args.sample_n, context_window=args.context_window,
              groups=_groups(args), resume=not args.no_resume, overwrite=args.overwrite, progress=args.progress,
              checkpoint_every=args.checkpoint_every, text_column=args.text_column, split=args.split,
              logit_tokens=args.logit_tokens)
    if args.shard is not None or args.num_shards is not None:
        from .distributed import build_shard

        if args.shard is None or args.num_shards is None:
            raise SystemExit("--shard and --num-shards go together")
        done = build_shard(scope, args.corpus, shard=args.shard, num_shards=args.num_shards, **kw)
        print(f"shard {args.shard} of {args.num_shards} done: {done}")
        return 0
    if world > 1:
        import torch
        import torch.distributed as dist

        from .distributed import build_index_distributed

        backend = "nccl" if device is not None and device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend)
        try:
            idx = build_index_distributed(scope, args.corpus, **kw)
            if dist.get_rank() == 0:
                print(idx, idx.report)
        finally:
            dist.destroy_process_group()
        return 0
    from .builder import build_index

    idx = build_index(scope, args.corpus, **kw)
    print(idx, idx.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
