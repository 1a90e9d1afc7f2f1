"""Feature-index throughput and memory, on the embedded demo model.

Prints tokens/s of ``build_index`` against a bare forward pass over the very same batches (target >= 0.8x), and
the peak resident memory of a build as the corpus grows 10x (target: flat), each build in a fresh process.

    python benchmarks/index_throughput.py [--tokens 20000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time


def corpus(n_tokens_hint: int) -> list[str]:
    from qscope_widgets.demo import DEMO_DIR

    docs = [json.loads(line)["text"] for line in (DEMO_DIR / "heldout_sample.jsonl").read_text().splitlines()]
    out, total = [], 0
    i = 0
    while total < n_tokens_hint * 4:  # ~4 characters per token
        d = f"{i}: {docs[i % len(docs)]}"
        out.append(d)
        total += len(d)
        i += 1
    return out


def child(n_tokens: int, threads: int, layers: list[int] | None) -> None:
    import torch

    from qscope_widgets import Scope

    torch.set_num_threads(threads)
    scope = Scope.demo()
    docs = corpus(n_tokens)
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        idx = scope.index(docs, out_dir=d, max_tokens=n_tokens, progress=False, layers=layers)
        build_s = time.perf_counter() - t
    print(json.dumps({"tokens": idx.meta["tokens"], "build_s": build_s,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def bare(n_tokens: int, threads: int) -> float:
    """Seconds of plain model(input_ids) forwards over the same chunks and batches build_index uses."""
    import torch

    from qscope_widgets import Scope
    from qscope_widgets.index.corpus import CorpusReport, chunk_documents

    torch.set_num_threads(threads)
    scope = Scope.demo()
    chunks = []
    total = 0
    for c in chunk_documents(scope.tokenizer, corpus(n_tokens), chunk_len=128, report=CorpusReport()):
        if total + len(c[2]) > n_tokens:
            break
        chunks.append(c[2])
        total += len(c[2])
    t = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(chunks), 16):
            rows = chunks[i:i + 16]
            S = max(map(len, rows))
            ids = torch.zeros(len(rows), S, dtype=torch.long)
            mask = torch.zeros(len(rows), S, dtype=torch.long)
            for j, r in enumerate(rows):
                ids[j, : len(r)] = torch.tensor(r)
                mask[j, : len(r)] = 1
            scope.model(input_ids=ids, attention_mask=mask, use_cache=False)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", type=int, default=None)
    ap.add_argument("--layers", type=int, nargs="*", default=None)
    a = ap.parse_args()
    if a.child is not None:
        child(a.child, a.threads, a.layers)
        return

    def run_child(n: int, layers: list[int] | None) -> dict:
        cmd = [sys.executable, __file__, "--child", str(n), "--threads", str(a.threads)]
        if layers:
            cmd += ["--layers", *map(str, layers)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    base_s = bare(a.tokens, a.threads)
    print(f"demo model (6 layers, d 256, SAE 4096, k 12), {a.threads} threads, chunks of 128, batches of 16")
    print(f"  bare forward                  {a.tokens / base_s:9.0f} tok/s")
    for layers, name in (([3], "layer 3"), (None, "all 6 layers")):
        r = run_child(a.tokens, layers)
        print(f"  build_index, {name:<13}    {r['tokens'] / r['build_s']:9.0f} tok/s   x{base_s / r['build_s']:.2f} of bare"
              " (includes writing the parquet index)")
    for n in (a.tokens, 10 * a.tokens):
        r = run_child(n, [3])
        print(f"  corpus {r['tokens']:8d} tokens, layer 3: peak RSS {r['peak_rss_mb']:7.0f} MB, {r['build_s']:.1f} s")


if __name__ == "__main__":
    main()
