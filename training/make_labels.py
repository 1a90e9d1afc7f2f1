"""Label every feature of every layer: a feature index of the held-out slice, with genres as groups.

    python -m training.make_labels
"""

from __future__ import annotations

from pathlib import Path

import torch

from .build_corpus import WORK, load

OUT = WORK / "index"


def main(model_dir: Path, sae_dir: Path, out: Path = OUT, threads: int = 2) -> None:
    from qscope_widgets import Scope

    torch.set_num_threads(threads)
    scope = Scope.from_pretrained(str(model_dir), saes=str(sae_dir))
    docs = load("heldout")
    idx = scope.index([d["text"] for d in docs], groups=[d["genre"] for d in docs], out_dir=out, chunk_len=128,
                      batch_size=16, top_n=10, progress=False)
    print(idx, idx.report)


if __name__ == "__main__":
    from .train_model import OUT as MODEL_DIR
    from .train_saes import OUT as SAE_DIR

    main(MODEL_DIR, SAE_DIR)
