"""The demo's figures against fair baselines, in and out of distribution: the numbers DEMO_MODEL.md quotes.

    PYTHONPATH=. python3 benchmarks/demo_metrics.py            # minutes on 2 idle CPU cores; prints markdown tables
    PYTHONPATH=. python3 benchmarks/demo_metrics.py --json /tmp/demo_metrics.json

* near-distribution: ``qscope_widgets/demo/heldout_sample.jsonl`` (12 held-out documents per genre, shipped);
* out-of-distribution: licence texts from ``/usr/share/common-licenses`` (legal English; none of the demo's four
  genres: KJV bible, Python 3.11 docs, WordNet glosses, fortunes), read on this machine, not shipped.

Per layer: FVE, L0, dead fraction on the sample, CE clean / with the SAE spliced, the CE increase in nats, and CE
recovered against zero ablation, mean ablation and a unigram model. Then the dead fraction against sample size,
layer 5's near-duplicate encoder rows, features firing on > 35% of tokens, and the steering demo at 1x / 4x q90
with same-norm controls.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEQ = 128
OOD_FILES = ["GPL-3", "Apache-2.0", "MPL-2.0", "LGPL-2.1", "Artistic", "GFDL-1.3", "CC0-1.0"]
NEUTRAL_PROMPTS = ["It is a", "The value of the", "This is a", "I think that", "The man said that", "There was a"]
BIBLE_WORDS = {"unto", "thou", "thee", "thy", "hath", "shall", "lord", "god", "ye", "israel", "saith", "thine", "behold"}


def windows_of(tokenizer, texts: list[str], max_tokens: int | None = None) -> torch.Tensor:
    """Non-overlapping SEQ-token windows of the documents joined by EOS."""
    ids: list[int] = []
    for t in texts:
        ids.extend(tokenizer(t)["input_ids"])
        ids.append(tokenizer.eos_token_id)
    if max_tokens:
        ids = ids[:max_tokens]
    n = len(ids) // SEQ
    return torch.tensor(ids[:n * SEQ], dtype=torch.long).view(n, SEQ)


def heldout_texts() -> list[str]:
    from qscope_widgets import demo

    path = Path(demo.__file__).parent / "heldout_sample.jsonl"
    return [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]


def ood_texts(folder: Path = Path("/usr/share/common-licenses")) -> list[str]:
    out = []
    for name in OOD_FILES:
        p = folder / name
        if p.is_file():
            out.append(p.read_text(errors="replace"))
    if not out:
        raise SystemExit(f"no licence texts under {folder}: the OOD sample needs Debian's base-files")
    return out


def dup_clusters(W_enc: torch.Tensor, alive: torch.Tensor, thr: float = 0.99) -> tuple[int, int, float]:
    """Features whose encoder rows have cosine > thr with another live feature: (features, clusters, mean cos)."""
    W = W_enc.float()
    W = W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = W @ W.T
    cos.fill_diagonal_(0)
    cos[~alive] = 0
    cos[:, ~alive] = 0
    adj = cos > thr
    parent = list(range(len(W)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in torch.nonzero(torch.triu(adj)).tolist():
        parent[find(i)] = find(j)
    members = torch.nonzero(adj.any(1)).flatten().tolist()
    roots = {find(i) for i in members}
    mean_cos = float(cos[adj].mean()) if adj.any() else float("nan")
    return len(members), len(roots), mean_cos


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", type=Path)
    ap.add_argument("--tokens", type=int, default=6144, help="tokens per sample (held-out, OOD)")
    ap.add_argument("--sections", default="ce,dup,steer", help="any of ce (CE, FVE, dead curve), dup, steer")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args(argv)
    sections = set(args.sections.split(","))
    torch.manual_seed(0)
    torch.set_num_threads(2)
    from qscope_widgets import Scope, SteeringEdit
    from qscope_widgets.evaluation import evaluate_saes
    from qscope_widgets.steering_eval import FeatureActivation, TargetLogProb, WordRate

    scope = Scope.demo()
    tok = scope.tokenizer
    held = windows_of(tok, heldout_texts())  # documents in genre blocks: keep evenly spaced windows
    held = held[torch.linspace(0, len(held) - 1, min(len(held), args.tokens // SEQ)).round().long()]
    sets = {"held-out": held, "OOD (licences)": windows_of(tok, ood_texts(), args.tokens)}
    out: dict = {"sets": {k: int(v.numel()) for k, v in sets.items()}, "layers": {}}
    print(f"samples: " + ", ".join(f"{k}: {v.shape[0]} windows x {SEQ} = {v.numel()} tokens" for k, v in sets.items()))
    print(f"ln(vocab) = ln {len(tok)} = {math.log(len(tok)):.3f}\n")

    if "ce" in sections:
        print("| set | layer | FVE | L0 | dead on sample | CE clean | CE SAE | CE increase (nats) | CE zero-abl. | "
              "CE mean-abl. | CE unigram | recovered vs zero | vs mean | vs unigram |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        evals = {}
        for name, w in sets.items():
            ev = evals[name] = evaluate_saes(scope, w, batch_size=args.batch_size)
            out["layers"][name] = ev.rows
            for e in ev.rows:
                print(f"| {name} | {e['layer']} | {e['fve']:.3f} | {e['l0']:.1f} | {e['dead_fraction']:.1%} | "
                      f"{e['ce_clean']:.3f} | {e['ce_sae']:.3f} | {e['ce_increase_nats']:.3f} | {e['ce_zero']:.3f} | "
                      f"{e['ce_mean_ablation']:.3f} | {e['ce_unigram']:.3f} | {e['recovered_vs_zero']:.3f} | "
                      f"{e['recovered_vs_mean']:.3f} | {e['recovered_vs_unigram']:.3f} |", flush=True)

        # dead fraction vs sample size, beside the index's figure on its 157k held-out tokens
        print(f"\ndead fraction after the first n scored tokens (position 0 of each window left out), and on the "
              f"index's {scope.feature_index.meta['tokens']} held-out tokens")
        out["dead_curve"] = {}
        for name, ev in evals.items():
            sizes = [s for s in (500, 1000, 2000, 5000) if s < ev.rows[0]["tokens"]] + [ev.rows[0]["tokens"]]
            print(f"\n{name}\n| layer | " + " | ".join(f"n={s}" for s in sizes) + " | index (157k held-out) |")
            print("|---|" + "---|" * (len(sizes) + 1))
            for n, curve in ev.dead_fraction_curve(sizes).items():
                idx_dead = float((scope.feature_index.features(n)["count"] == 0).mean())
                out["dead_curve"].setdefault(name, {})[n] = {"curve": curve, "index": idx_dead}
                print(f"| {n} | " + " | ".join(f"{v:.1%}" for v in curve.values()) + f" | {idx_dead:.1%} |")

    if "dup" in sections:
        # near-duplicate features and very dense features, every layer (layer 5 is the one the check flagged)
        print("\nnear-duplicate encoder rows (cosine > 0.99 with another feature alive in the index) and dense features")
        print("| layer | features in duplicate clusters | clusters | mean cosine of duplicate pairs | "
              "features with density > 35% (index) | their densities |")
        print("|---|---|---|---|---|---|")
        out["duplicates"] = {}
        for n in scope.sae_layers:
            feats = scope.feature_index.features(n)
            alive = torch.tensor((feats["count"] > 0).to_numpy())
            m, c, mc = dup_clusters(scope.sae(n).W_enc.detach(), alive)
            dense = feats[feats.density > 0.35].sort_values("density", ascending=False)
            out["duplicates"][n] = {"features": m, "clusters": c, "mean_cos": mc,
                                    "dense": dense[["feature", "density", "label"]].to_dict("records")}
            print(f"| {n} | {m} | {c} | {mc:.4f} | {len(dense)} | "
                  + ", ".join(f"{int(r.feature)} ({r.density:.0%}: {r.label})" for r in dense.itertuples()) + " |")

    if "steer" in sections:
        # the steering demo: 1x and 4x the feature's q90, beside same-norm controls
        layer, f = 3, 2360
        q90 = float(scope.feature_index.features(layer).q90.iloc[f])
        df = scope.steering_eval(NEUTRAL_PROMPTS, SteeringEdit(layer, f, 1.0), strengths=[q90, 4 * q90],
                                 metrics=[WordRate(BIBLE_WORDS, name="bible_rate"), FeatureActivation(),
                                          TargetLogProb([" which", " who"], name="which_who_logprob")],
                                 seeds=[0, 1, 2, 3], max_new_tokens=24)
        summ = df.summary()
        out["steering"] = {"q90": q90, "summary": summ.to_dict("records"),
                           "texts": df[df.seed == 0][["prompt", "strength", "condition", "control_feature", "text"]]
                           .to_dict("records")}
        print(f"\nsteering L{layer}/{f} ('{scope.feature_index.label(layer, f)}') at q90 = {q90:.1f} and 4 x q90; "
              "6 neutral prompts x 4 seeds (random direction / other feature drawn per seed), greedy, 24 tokens")
        print("| strength | metric | feature | baseline | random dir. | other feature | margin vs random (sd) | "
              "margin vs other (sd) | specific (n prompts) | perplexity feature / baseline | distinct-2 feature / baseline |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in summ.itertuples():
            print(f"| {r.strength:.1f} | {r.metric} | {r.feature_mean:.3f} | {r.baseline_mean:.3f} | "
                  f"{r.random_direction_mean:.3f} | {r.other_feature_mean:.3f} | "
                  f"{r.margin_vs_random_direction:+.3f} ({r.sd_vs_random_direction:.3f}) | "
                  f"{r.margin_vs_other_feature:+.3f} ({r.sd_vs_other_feature:.3f}) | {r.specific} ({r.n_prompts}) | "
                  f"{r.perplexity_feature:.1f} / {r.perplexity_baseline:.1f} | "
                  f"{r.distinct2_feature:.2f} / {r.distinct2_baseline:.2f} |")
        fluency = df.groupby(["strength", "condition"])[["perplexity", "distinct2"]].mean()
        print("\nfluency per condition (mean over prompts x seeds)\n" + fluency.round(3).to_string())
        print("\ncontinuations at 4 x q90, seed 0:")
        for r in df[(df.seed == 0) & (df.strength == 4 * q90)].itertuples():
            print(f"  [{r.condition}{'' if r.control_feature != r.control_feature else f' {int(r.control_feature)}'}] "
                  f"{r.prompt!r} -> {r.text!r}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    return out


if __name__ == "__main__":
    main()
