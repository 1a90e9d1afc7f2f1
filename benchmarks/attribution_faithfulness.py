"""How well do attributions predict exact single-feature ablations? Spearman over the top-N feature nodes.

For each prompt the target is the demo's own top next-token prediction at the last position (its logit is the
metric). ``Attribution.verify(n)`` ablates each of the top-n feature nodes exactly (one forward each, steering
``ablate`` at that layer and position) and compares ``metric(clean) - metric(ablated)`` with the estimate.
Prompts: 8 in the demo's training distribution (King James Bible, Python docs, fortunes, WordNet glosses) and
4 outside it (modern prose). A control row: the same correlation for a random ranking of the same nodes.

    python benchmarks/attribution_faithfulness.py [--n 20] [--steps 8] [--methods grad_x_act,ig]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from qscope_widgets import Scope
from qscope_widgets.attribution.result import spearman
from qscope_widgets.notebook_utils import quiet_transformers

PROMPTS = {
    "in": [
        "And God said, Let there be light: and there was",
        "In the beginning God created the heaven and the",
        "And the LORD spake unto Moses, saying,",
        "Blessed are the meek: for they shall inherit the",
        "The return statement exits the function and returns a",
        "To read a file in Python, use the built-in open",
        "You will be hungry again in one",
        "dog: a domesticated carnivorous mammal that typically has a long snout and",
    ],
    "out": [
        "The capital of France is Paris, and the capital of Germany is",
        "My phone battery died during the meeting, so I",
        "The stock market fell sharply on Monday after the",
        "She opened her laptop and started typing an email to",
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--methods", default="grad_x_act,ig")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    quiet_transformers()
    scope = Scope.demo()
    methods = args.methods.split(",")
    rng = np.random.default_rng(0)
    res: dict[str, dict[str, list[float]]] = {m: {"in": [], "out": []} for m in methods + ["random ranking"]}
    print(f"Spearman(estimate, exact ablation effect) over the top {args.n} feature nodes; target = top prediction")
    print(f"{'split':4} {'prompt':52} {'target':>10} " + " ".join(f"{m:>12}" for m in methods) + "  random")
    for split, prompts in PROMPTS.items():
        for p in prompts:
            trace = scope.run(p, layers=[scope.sae_layers[0]])
            target = int(trace.next_ids[-1, 0])
            cells = []
            for m in methods:
                t0 = time.perf_counter()
                a = scope.attribute(p, target, method=m, steps=args.steps)
                v = a.verify(args.n)
                res[m][split].append(v.spearman)
                cells.append(v.spearman)
                if m == methods[0]:
                    ctrl = spearman(rng.permutation(v.table["estimate"].to_numpy()), v.table["true_effect"])
                    res["random ranking"][split].append(ctrl)
            tok = scope.token_strings([target])[0]
            print(f"{split:4} {p[:52]:52} {tok!r:>10} " + " ".join(f"{c:12.3f}" for c in cells) + f"  {ctrl:6.3f}")
    print()
    for m, by in res.items():
        allv = by["in"] + by["out"]
        print(f"{m:>15}: median in-dist {statistics.median(by['in']):.3f}, out-of-dist "
              f"{statistics.median(by['out']):.3f}, all {statistics.median(allv):.3f} (min {min(allv):.3f}); "
              f"prompts >= 0.8: {sum(x >= 0.8 for x in allv)}/{len(allv)}")


if __name__ == "__main__":
    main()
