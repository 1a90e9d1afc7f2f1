"""Score the demo's labels: fit a label per feature on half of the shipped held-out sample, score it (detection
precision / recall / F1) on the other half, score the index's existing label the same way, and write
``qscope_widgets/demo/index/layer{n}/label_scores.parquet`` (read by ``FeatureIndex`` as ``label_score``).

    PYTHONPATH=. python3 -m training.score_labels            # all layers; ~2 min per layer on 2 busy cores
    PYTHONPATH=. python3 -m training.score_labels --layers 3 --no-write

Caveat printed with the figures: the sample (48 documents, ~12k tokens) is small, so features firing fewer than
MIN_FIRES times on the scoring half stay unscored, and its documents belong to the held-out slice the index (and so
the old labels' top contexts) was built from, which flatters the old labels, not the new ones.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, nargs="*")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    from qscope_widgets import Scope, demo
    from qscope_widgets.index.labels import MIN_FIRES, WEAK_BELOW, scan_firings, score_labels

    scope = Scope.demo()
    docs = [json.loads(x) for x in (Path(demo.__file__).parent / "heldout_sample.jsonl").read_text().splitlines()]
    fit_docs, held_docs = docs[0::2], docs[1::2]
    vocab = scope.token_strings(list(range(len(scope.tokenizer))))
    print(f"fit: {len(fit_docs)} documents, score: {len(held_docs)} documents; weak below F1 {WEAK_BELOW}, "
          f"unscored below {MIN_FIRES} firings on the scoring half")
    print("| layer | live features | scored | median F1 new label | median F1 old label (same features) | "
          "new > old | weak (new) | F1 >= 0.7 (new) |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.layers or scope.sae_layers:
        fit = scan_firings(scope, n, [d["text"] for d in fit_docs], [d["genre"] for d in fit_docs])
        held = scan_firings(scope, n, [d["text"] for d in held_docs], [d["genre"] for d in held_docs])
        df = score_labels(scope, n, fit, held, index=scope.feature_index, vocab=vocab)
        live = int((scope.feature_index.features(n)["count"] > 0).sum())
        both = df.dropna(subset=["label_score", "old_label_score"])
        print(f"| {n} | {live} | {df.label_score.notna().sum()} | {both.label_score.median():.3f} | "
              f"{both.old_label_score.median():.3f} | {(both.label_score > both.old_label_score).mean():.0%} | "
              f"{df.label_weak.mean():.0%} | {(df.label_score >= 0.7).mean():.0%} |", flush=True)
        if not args.no_write:  # stamped with the index's build id: FeatureIndex.load refuses a file of another build
            import pyarrow as pa

            from qscope_widgets.index.files import LABEL_SCORES, write_table

            index = scope.feature_index
            write_table(index.path / f"layer{n}" / LABEL_SCORES, pa.Table.from_pandas(df, preserve_index=False),
                        index.meta.get("build_id"), compression="zstd")


if __name__ == "__main__":
    main()
