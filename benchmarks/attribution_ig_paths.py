"""Why is integrated gradients worse than grad_x_act at predicting single-feature ablations? The path.

``method="ig"`` (Marks et al.'s IG with a zero patch) scales a layer's whole output, every position at once, down
to ``b_dec``; its attributions sum exactly to the effect of that whole-layer ablation (tested), but ``verify``
ablates one feature at one position with everything else clean. This script keeps IG's bookkeeping and changes
only the path, to see which part of it hurts (Spearman with the exact ablation over the top-N feature nodes of
``grad_x_act``, the same nodes for every column):

* ``grad_x_act``: the gradient at the clean point;
* ``ig layer``: the shipped IG (all positions scaled together);
* ``ig sink held``: the same, with position 0 (the attention sink, the largest residual) kept clean;
* ``ig own position``: each position scaled alone (one batch per layer and position), so a node's path moves only
  its own position's layer output: closest to the single-node ablation.

    python benchmarks/attribution_ig_paths.py [--n 20] [--steps 8]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

from qscope_widgets import Scope
from qscope_widgets.attribution.result import spearman
from qscope_widgets.attribution.splice import forward_logits, frozen_weights, sae_splice
from qscope_widgets.notebook_utils import quiet_transformers

from attribution_faithfulness import PROMPTS  # noqa: E402  (the same 12 prompts)


def ig_grads(scope, ids, target, layer, steps, mask):
    """Mean gradient of the codes and error of ``layer`` along the path that scales the positions in ``mask``
    (``(seq,)`` bool) from 0 to 1 (midpoints) and keeps the others clean."""
    alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps
    a = torch.where(mask[None, :], alphas[:, None], torch.ones(steps, len(mask)))
    with sae_splice(scope.layers, {layer: scope.sae(layer)}, alphas={layer: a}) as nodes:
        logits = forward_logits(scope, ids.expand(steps, -1))
    m = target.metric(logits).sum()
    nd = nodes[layer]
    gv, = torch.autograd.grad(m, [nd.values])
    return nd.ids[0], nd.clean_values[0], gv.mean(0)


def estimates(scope, attr, rows, steps, path):
    """IG estimates of ``rows`` (layer, position, feature) along ``path``: 'layer', 'sink' or 'own'."""
    ids = attr.token_ids[None]
    seq = ids.shape[1]
    out = []
    cache = {}
    with frozen_weights(scope.model), torch.enable_grad():
        for layer, pos, feat in rows:
            if path == "layer":
                mask, key = torch.ones(seq, dtype=torch.bool), (layer, "all")
            elif path == "sink":
                mask, key = torch.arange(seq) > 0, (layer, "sink")
            else:
                mask, key = torch.arange(seq) == pos, (layer, pos)
            if key not in cache:
                cache[key] = ig_grads(scope, ids, attr.target, layer, steps, mask)
            fids, z, g = cache[key]
            hit = fids[pos] == feat
            out.append(float((z[pos] * g[pos])[hit].sum()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    quiet_transformers()
    scope = Scope.demo()
    cols = ["grad_x_act", "ig layer", "ig sink held", "ig own position"]
    res = {c: [] for c in cols}
    print(f"Spearman with the exact ablation over the top {args.n} feature nodes of grad_x_act (steps={args.steps})")
    print(f"{'split':4} {'prompt':46} " + " ".join(f"{c:>15}" for c in cols))
    for split, prompts in PROMPTS.items():
        for p in prompts:
            target = int(scope.run(p, layers=[scope.sae_layers[0]]).next_ids[-1, 0])
            attr = scope.attribute(p, target)
            v = attr.verify(args.n)
            rows = list(zip(v.table["layer"], v.table["position"], v.table["feature"]))
            true = v.table["true_effect"].to_numpy(float)
            cells = [spearman(v.table["estimate"].to_numpy(float), true)]
            for path in ("layer", "sink", "own"):
                cells.append(spearman(np.asarray(estimates(scope, attr, rows, args.steps, path)), true))
            for c, x in zip(cols, cells):
                res[c].append(x)
            print(f"{split:4} {p[:46]:46} " + " ".join(f"{x:15.3f}" for x in cells))
    print()
    for c in cols:
        print(f"{c:>16}: median {statistics.median(res[c]):.3f}, min {min(res[c]):.3f}, "
              f">= 0.8 on {sum(x >= 0.8 for x in res[c])}/{len(res[c])}")


if __name__ == "__main__":
    main()
