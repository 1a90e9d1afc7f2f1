"""Rebuild the embedded demo from nothing, seeded: corpus, tokenizer, LM, SAEs, labels, figures, package.

    python -m training.build_demo      # ~60 min on 2 CPU cores; needs the Debian packages in DEMO_MODEL.md

Each step can also be run alone (``python -m training.<step>``); outputs go to ``training/work/`` and, at the end,
into ``qscope_widgets/demo/``.
"""

from __future__ import annotations

import argparse

from . import (build_corpus, evaluate, make_labels, package_demo, report_md, train_model, train_saes,
               train_tokenizer)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lm-steps", type=int, default=2600)
    ap.add_argument("--sae-tokens", type=int, default=600_000)
    ap.add_argument("--sae-epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    build_corpus.build()
    train_tokenizer.train()
    train_model.train(a.lm_steps, a.threads)
    train_saes.main(a.sae_tokens, a.sae_epochs, a.threads)
    make_labels.main(train_model.OUT, train_saes.OUT)
    evaluate.main(train_model.OUT, train_saes.OUT)
    package_demo.main()
    report_md.main()


if __name__ == "__main__":
    main()
