"""Memory of ``scope.index(texts)`` with the default layers (all of them) under an SAE bank budget.

A 32-layer random Qwen3 model (d_model 64) with a 32-layer release of 8.4 MB SAEs on disk (d_sae 16384), a bank
budget of 20 MB (two layers), a small corpus. Prints, for one build in a fresh process: peak resident memory above
the state just before the call, the bank's peak bytes, how many SAE loads from disk, and the wall time.

    python benchmarks/index_budget.py                        # this checkout
    PYTHONPATH=/path/to/other/checkout python benchmarks/index_budget.py   # e.g. the code before the change

The release folder is written once under --work (268 MB; delete it afterwards).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/qscope_index_budget")
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--d-sae", type=int, default=16384)
    ap.add_argument("--budget-mb", type=float, default=20.0)
    a = ap.parse_args()
    torch.set_num_threads(2)
    from conftest import make_saes, make_tokenizer, write_release_folder
    from transformers import Qwen3Config, Qwen3ForCausalLM

    import qscope_widgets
    from qscope_widgets import Scope

    tok = make_tokenizer()
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=a.layers,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=128,
                      tie_word_embeddings=True)
    model = Qwen3ForCausalLM(cfg).eval()
    rel = Path(a.work) / f"release_{a.layers}x{a.d_sae}"
    if not (rel / "config.json").is_file():
        write_release_folder(rel, make_saes(64, range(a.layers), d_sae=a.d_sae, k=8), k=8)
    budget = int(a.budget_mb * 2**20)
    scope = Scope(model, tok, str(rel), sae_cache_bytes=budget)
    bank = scope.saes
    peak_bank, real_get = [0], bank.get

    def get(n):
        sae = real_get(n)
        peak_bank[0] = max(peak_bank[0], bank.bytes_loaded())
        return sae

    bank.get = get
    docs = [f"{i}. The quick brown fox jumps over the lazy dog. In the beginning God created the heaven." for i in
            range(40)]
    out = Path(tempfile.mkdtemp(prefix="idx_budget_"))
    scope.run("warm up", layers=[0])
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    loads0 = bank.loads
    t0 = time.perf_counter()
    scope.index(docs, out_dir=out, progress=False, chunk_len=32, batch_size=8, logit_tokens=False)
    dt = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    shutil.rmtree(out)
    sae_mb = real_get(0).nbytes() / 2**20
    print(f"code: {Path(qscope_widgets.__file__).parents[1]}")
    print(f"{a.layers} layers x {sae_mb:.1f} MB SAEs ({a.layers * sae_mb:.0f} MB in all), bank budget "
          f"{a.budget_mb:.0f} MB")
    print(f"peak RSS above the start of the call: {rss1 - rss0:.0f} MB")
    print(f"bank peak bytes: {peak_bank[0] / 2**20:.1f} MB (budget {a.budget_mb:.0f} MB)")
    print(f"SAE loads from disk: {bank.loads - loads0}")
    print(f"wall time: {dt:.1f} s")


if __name__ == "__main__":
    main()
