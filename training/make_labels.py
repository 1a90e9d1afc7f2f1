"""Label every feature of every layer: a feature index of the held-out slice, with genres as groups.

    python -m training.make_labels                      # the freshly trained model in training/work
    python -m training.make_labels --packaged --out DIR  # the packaged demo (Scope.demo()), e.g. to rebuild its index

The settings are the shipped index's (``qscope_widgets/demo/index/meta.json``): chunks of 128 tokens, batches of
16, the top 10 contexts and a uniform sample of 8 firings per feature (``--sample-n``; the library's default is 24,
but 24 would take the demo folder to 56 MiB, over the 48 MiB that tests/test_demo_model.py allows), 12 tokens
before and 4 after each.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from .build_corpus import WORK, load

OUT = WORK / "index"
SETTINGS = dict(chunk_len=128, batch_size=16, top_n=10)
SAMPLE_N = 8


def main(model_dir: Path | None, sae_dir: Path | None, out: Path = OUT, threads: int = 2,
         overwrite: bool = False, sample_n: int = SAMPLE_N) -> None:
    from qscope_widgets import Scope

    torch.set_num_threads(threads)
    if model_dir is None:
        scope = Scope.demo()
    else:
        scope = Scope.from_pretrained(str(model_dir), saes=str(sae_dir))
    docs = load("heldout")
    t0 = time.perf_counter()
    idx = scope.index([d["text"] for d in docs], groups=[d["genre"] for d in docs], out_dir=out, progress=False,
                      overwrite=overwrite, sample_n=sample_n, **SETTINGS)
    print(idx, idx.report, f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    from .train_model import OUT as MODEL_DIR
    from .train_saes import OUT as SAE_DIR

    ap = argparse.ArgumentParser()
    ap.add_argument("--packaged", action="store_true", help="index with the packaged demo (Scope.demo())")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--sample-n", type=int, default=SAMPLE_N)
    a = ap.parse_args()
    main(None if a.packaged else MODEL_DIR, None if a.packaged else SAE_DIR, a.out, a.threads, a.overwrite,
         a.sample_n)
