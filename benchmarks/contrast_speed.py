"""What does a contrast of N texts cost over the bare forward of the same texts, and how fast does a monitor score?

On the embedded demo model (real tokenizer, real text: passages of the demo's held-out sample, cycled to N), it
times

* the bare forward: ``model(input_ids, attention_mask)`` over the same right-padded batches contrast uses, no hooks;
* ``scope.contrast(a, b)`` with ``a`` and ``b`` each N / 2 of the texts, every SAE layer (the forward, the capture,
  the SAE encodings of every layer, the running sums and the final table);
* ``monitor.score(texts)`` of a 5-feature monitor read from the contrast (its deepest layer bounds the forward).

Runs are interleaved (bare, contrast, monitor, bare, ...) so background load hits all alike: compare the ratios,
not the absolute times, on a shared machine.

    python benchmarks/contrast_speed.py [--n 1000] [--repeats 1] [--threads 2] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from qscope_widgets import Scope
from qscope_widgets.textsets import plan_batches, tokenize_set


def passages(n: int, words: int = 40) -> list[str]:
    from qscope_widgets import demo

    rows = [json.loads(line) for line in (Path(demo.__file__).parent / "heldout_sample.jsonl").open()]
    ps = []
    for r in rows:
        w = r["text"].split()
        ps += [" ".join(w[i:i + words]) for i in range(0, len(w), words) if len(w[i:i + words]) >= 5]
    return [ps[i % len(ps)] for i in range(n)]


@torch.inference_mode()
def bare_forward(scope: Scope, texts: list[str], batch_size: int) -> int:
    tset = tokenize_set(scope, texts)
    lengths = [len(r) for r in tset.ids]
    pad = scope.tokenizer.pad_token_id or 0
    for rows in plan_batches(lengths, batch_size, 8192):
        S = max(lengths[i] for i in rows)
        ids = torch.full((len(rows), S), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), S), dtype=torch.long)
        for j, i in enumerate(rows):
            ids[j, :lengths[i]] = torch.tensor(tset.ids[i])
            mask[j, :lengths[i]] = 1
        scope.model(input_ids=ids, attention_mask=mask, use_cache=False)
    return tset.n_tokens


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    scope = Scope.demo()
    texts = passages(args.n)
    a, b = texts[: args.n // 2], texts[args.n // 2:]
    bare_forward(scope, texts[:32], args.batch_size)  # warm up
    head = scope.contrast(a[:50], b[:50], progress=False)
    monitor = scope.monitor(head.head(5))
    t_bare, t_con, t_mon = [], [], []
    n_tok = 0
    for _ in range(args.repeats):
        t = time.perf_counter()
        n_tok = bare_forward(scope, texts, args.batch_size)
        t_bare.append(time.perf_counter() - t)
        t = time.perf_counter()
        df = scope.contrast(a, b, batch_size=args.batch_size, progress=False)
        t_con.append(time.perf_counter() - t)
        t = time.perf_counter()
        monitor.score(texts, batch_size=args.batch_size, progress=False)
        t_mon.append(time.perf_counter() - t)
    bare, con, mon = (statistics.median(x) for x in (t_bare, t_con, t_mon))
    print(f"demo model ({scope.n_layers} layers, d_model {scope.d_model}, d_sae {scope.d_sae}), {args.threads} threads, "
          f"batch {args.batch_size}: {args.n} texts, {n_tok} tokens (median of {args.repeats})")
    print(f"bare forward           {bare:8.2f} s   {n_tok / bare:9.0f} tok/s")
    print(f"contrast, {len(scope.sae_layers)} SAE layers  {con:8.2f} s   {n_tok / con:9.0f} tok/s   "
          f"x{con / bare:.2f} the bare forward   ({len(df)} rows)")
    print(f"monitor.score, 5 feat. {mon:8.2f} s   {n_tok / mon:9.0f} tok/s   {args.n / mon:7.1f} texts/s   "
          f"x{mon / bare:.2f} the bare forward   (layers {monitor.layers})")


if __name__ == "__main__":
    main()
