"""What the sampled contexts cost the index build: FeatureAccumulator.update on demo-shaped sparse codes
(d_sae 4096, k 32, batches of 16 x 128 tokens), with sample_n=24 against sample_n=0, runs interleaved so load on
the machine hits both alike. Prints the median time per batch of each and their ratio, early in the scan and in
its last quarter: a firing is a sample candidate only when its key is below its feature's 24th smallest so far, so
the candidates per batch (and the cost) fall like 1 / batches seen.

    PYTHONPATH=. python3 benchmarks/index_samples_overhead.py [--batches 60] [--d-sae 4096] [--k 32]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from qscope_widgets.index import FeatureAccumulator


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--d-sae", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    B, S = 16, 128
    zipf = 1.0 / torch.arange(1, a.d_sae + 1).float() ** 0.8  # a few dense features, a long tail of rare ones
    accs = {n: FeatureAccumulator(a.d_sae, top_n=10, sample_n=n, n_groups=4) for n in (0, 24)}
    times: dict[int, list[float]] = {0: [], 24: []}
    for b in range(a.batches):
        ids = torch.multinomial(zipf.expand(B * S, -1), a.k, generator=g).reshape(B, S, a.k)
        values = torch.rand(B, S, a.k, generator=g) * 10
        input_ids = torch.randint(0, 4096, (B, S), generator=g)
        lengths = torch.full((B,), S)
        doc, start = torch.arange(B) + B * b, torch.zeros(B, dtype=torch.long)
        group = torch.randint(0, 4, (B,), generator=g)
        for n in ((0, 24) if b % 2 else (24, 0)):
            t0 = time.perf_counter()
            accs[n].update(ids, values, input_ids, lengths, doc, start, group)
            times[n].append(time.perf_counter() - t0)
    print(f"update per batch of {B}x{S} tokens, d_sae {a.d_sae}, k {a.k}; state {accs[0].nbytes() / 2**20:.1f} MiB "
          f"(sample_n=0) -> {accs[24].nbytes() / 2**20:.1f} MiB (sample_n=24)")
    for name, lo, hi in (("batches 5-20", 5, 20), (f"last quarter ({a.batches * 3 // 4}-{a.batches})",
                                                    a.batches * 3 // 4, a.batches)):
        m0, m24 = statistics.median(times[0][lo:hi]), statistics.median(times[24][lo:hi])
        print(f"  {name}: sample_n=0 {m0 * 1e3:.1f} ms, sample_n=24 {m24 * 1e3:.1f} ms, ratio {m24 / m0:.2f}")

if __name__ == "__main__":
    main()
