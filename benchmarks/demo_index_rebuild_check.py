"""How the rebuilt demo index relates to the one it replaced, and to what Scope.demo() computes live.

The old index (git ``b0843f9``) was built with the float32 checkpoint in training/work (not shipped); the rebuild
uses the packaged demo (float16-stored weights, upcast), i.e. what ``Scope.demo()`` and the explorer run. For each
layer this prints how many cells of each pre-existing features.parquet column differ, the largest relative density
change, how many top contexts point at another (document, position), and, for top contexts of short held-out
documents (one chunk), the largest |index activation - live activation| of each index.

    git archive b0843f9 qscope_widgets/demo/index | tar -x -C /tmp/old_index
    PYTHONPATH=. python3 benchmarks/demo_index_rebuild_check.py /tmp/old_index/qscope_widgets/demo/index
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import torch


def main(old_dir: str, contexts_per_layer: int = 40) -> None:
    from qscope_widgets import Scope
    from qscope_widgets.index import FeatureIndex
    from training.build_corpus import load

    torch.set_num_threads(2)
    scope = Scope.demo()
    new, old = scope.feature_index, FeatureIndex.load(old_dir)
    docs = load("heldout")
    for n in new.layers:
        fo = pd.read_parquet(f"{old_dir}/layer{n}/features.parquet")
        fn = pd.read_parquet(new.path / f"layer{n}" / "features.parquet")  # the file, without label scores
        diff = {}
        for c in fo.columns:
            a, b = fo[c].tolist(), fn[c].tolist()
            same = [list(x) == list(y) if isinstance(x, (list, np.ndarray)) else x == y for x, y in zip(a, b)]
            if not all(same):
                diff[c] = len(same) - sum(same)
        live = (fo["count"] > 0) & (fn["count"] > 0)
        rel = ((fn.density - fo.density).abs() / fo.density)[live]
        co, cn = old.contexts(n), new.contexts(n)
        moved = f"{int(((co.document.values != cn.document.values) | (co.position.values != cn.position.values)).sum())}" \
            if len(co) == len(cn) else f"n/a (rows {len(co)} -> {len(cn)})"
        print(f"layer {n}: differing cells {diff}; density |rel. change| median {rel.median():.4f} max "
              f"{rel.max():.3f}; labels changed {diff.get('label', 0)}/{len(fo)}; top contexts at another "
              f"(document, position): {moved}/{len(co)}")
        errs = {"old": [], "new": []}
        rows = cn[cn.position < 128].drop_duplicates("document").head(contexts_per_layer)
        for r in rows.itertuples():
            ids = scope.tokenizer(docs[r.document]["text"], add_special_tokens=False)["input_ids"]
            if len(ids) > 128:
                continue
            live_act = float(scope.run(ids, layers=[n]).layers[n].dense()[r.position, r.feature])
            errs["new"].append(abs(live_act - r.activation))
            o = co[(co.feature == r.feature) & (co.document == r.document) & (co.position == r.position)]
            if len(o):
                errs["old"].append(abs(live_act - float(o.activation.iloc[0])))
        print(f"  live Scope.demo() vs index activation on {len(errs['new'])} top contexts: max |diff| new "
              f"{max(errs['new'], default=float('nan')):.2e}, old {max(errs['old'], default=float('nan')):.2e}")


if __name__ == "__main__":
    main(sys.argv[1])
