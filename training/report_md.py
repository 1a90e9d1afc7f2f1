"""Write DEMO_MODEL.md from the measured figures (report.json, metrics.json) and the feature index.

    python -m training.report_md
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "qscope_widgets" / "demo"


def _ctx(row: dict, width: int = 70) -> str:
    toks = row["tokens"]
    c = row["center"]
    s = "".join(toks[:c]) + "⟦" + toks[c] + "⟧" + "".join(toks[c + 1:])
    s = s.replace("\n", "⏎").replace("|", "\\|")
    return s[-width:] if len(s) > width else s


def main() -> None:
    from qscope_widgets import Scope

    from .evaluate import genre_features

    report = json.loads((DEMO / "report.json").read_text())
    metrics = json.loads((DEMO / "metrics.json").read_text())
    corpus = json.loads((DEMO / "corpus_stats.json").read_text())
    sae_cfg = json.loads((DEMO / "saes" / "config.json").read_text())
    scope = Scope.demo()
    size = sum(f.stat().st_size for f in DEMO.rglob("*") if f.is_file()) / 2**20
    L = []
    w = L.append
    w("# The embedded demo model\n")
    w("`qscope_widgets.Scope.demo()` loads a tiny Qwen3.5-architecture language model and one Qwen-Scope-format "
      "TopK SAE per layer, trained by this repository's own script on text we may ship, so the tutorials, the "
      "widgets and the tests run offline on a laptop CPU. Rebuild everything from nothing with\n")
    w("```bash\napt-get install -y python3.11-doc wordnet-base bible-kjv-text bible-kjv fortunes\n"
      "python -m training.build_demo          # seeded; ~60 min on 2 CPU cores\n```\n")
    w("## Corpus\n")
    w("| genre | source (Debian package) | licence | training docs | training chars | held-out docs |")
    w("|---|---|---|---|---|---|")
    for g, (pkg, lic) in corpus["sources"].items():
        st = corpus["stats"][g]
        w(f"| {g} | `{pkg}` | {lic} | {st['docs_train']} | {st['chars_train'] / 1e6:.2f} M | {st['docs_heldout']} |")
    w("\nEvery 50th document of each genre is held out; training windows are drawn with each genre equally likely.\n")
    cfg = scope.model.config
    w("## Model\n")
    w(f"transformers `Qwen3_5ForCausalLM` (`qwen3_5_text`): {cfg.num_hidden_layers} layers "
      f"({', '.join(t.replace('_attention', '') for t in cfg.layer_types)}), d_model {cfg.hidden_size}, "
      f"MLP {cfg.intermediate_size}, {cfg.num_attention_heads} attention heads, tied embeddings, "
      f"byte-level BPE vocabulary of {len(scope.tokenizer)}; "
      f"{sum(p.numel() for p in scope.model.parameters()) / 1e6:.2f} M parameters, stored in float16.\n")
    w(f"Trained {metrics['steps']} steps of {metrics['batch']} x {metrics['seq']} tokens "
      f"({metrics['tokens_seen'] / 1e6:.1f} M tokens, ~{metrics['tokens_seen'] / sum(corpus['stats'][g]['chars_train'] for g in corpus['stats']) * 3.6:.1f} "
      f"epochs) with AdamW (lr 3e-3, cosine), seed {metrics['seed']}, in {metrics['train_minutes']:.0f} min on "
      f"{metrics['threads']} CPU threads.\n")
    w("| genre | held-out loss (nats/token) |\n|---|---|")
    for g, v in metrics["heldout_loss"].items():
        w(f"| {g} | {v:.2f} |")
    w("\n### Samples (temperature 0.8, top-p 0.95, seed 0)\n")
    for g, s in report["samples"].items():
        w(f"- **{g}**: *{s['prompt']}* {s['continuation'].strip()!r}")
    w("\n## SAEs\n")
    w(f"One TopK SAE per layer on the residual stream (the output of each decoder layer, `resid_post`, the hook "
      f"point of the Qwen-Scope release), width {sae_cfg['d_sae']} = 16 x d_model, k = {sae_cfg['k']} "
      f"(the L0_100 releases' ratio: 100 / 2048 = 12.5 / 256; the L0_50 ratio would be 6), encoder exactly the "
      "release's (no `b_dec` subtraction, ReLU after top-k), trained with the package's own `SparseAutoencoder` "
      "(see `training/train_saes.py` for the recipe: unit-norm decoder, AuxK, resampling, k annealing). Files: "
      "`layer{n}.sae.pt`, the four release tensors with the release's names and shapes.\n")
    log_path = ROOT / "training" / "work" / "saes" / "train_log.json"  # the build's own log
    if log_path.is_file():
        tl = json.loads(log_path.read_text())
        mins = sum(v["seconds"] for v in tl.values()) / 60
        w(f"Training: {sae_cfg.get('train_tokens', 0):,} training-split tokens of activations per layer, "
          + ', '.join(f"layer {n}: {v['steps']} steps" for n, v in sorted(tl.items())) + " of 1024 tokens "
          + f"(~{mins:.0f} CPU-thread minutes in all, run as parallel processes of 1 thread each). "
          + "".join(f"Layer {n} ended the main run with {100 * v['train_dead']:.0f} % of its features silent, so it "
                    f"went through the revive phase (dead fraction per round on training tokens: "
                    f"{', '.join(f'{100 * d:.1f} %' for d in v['revive_dead_history'])}). "
                    for n, v in sorted(tl.items()) if "revive_dead_history" in v) + "\n")
    w("Measured on 65,536 held-out tokens (`python -m training.evaluate`; the test suite re-measures a smaller "
      "sample):\n")
    w("| layer | FVE | dead features | CE clean | CE with SAE spliced | CE zero-ablated | CE loss recovered | L0 |")
    w("|---|---|---|---|---|---|---|---|")
    for n, m in report["sae"].items():
        w(f"| {n} | {m['fve']:.3f} | {100 * m['dead_fraction']:.1f} % | {m['ce_clean']:.3f} | {m['ce_sae']:.3f} | "
          f"{m['ce_zero']:.3f} | {m['ce_recovered']:.3f} | {m['l0']:.1f} |")
    idx = scope.feature_index
    dead_idx = {n: float((idx.features(n)["count"] == 0).mean()) for n in idx.layers}
    w("\nFeatures that never fire on the whole held-out slice (the index's counts, "
      f"{idx.meta['tokens']} tokens): " + ", ".join(f"layer {n}: {100 * v:.1f} %" for n, v in dead_idx.items()) + ".\n")
    w("## Features a person would call interpretable\n")
    w("Chosen automatically (`training.evaluate.genre_features`): at layer 3, the features whose activation mass "
      "falls mostly on one genre's held-out text, weighted toward dense ones. Contexts show the activating token "
      "in ⟦brackets⟧.\n")
    for g in ("bible", "python", "wordnet", "fortune"):
        w(f"### {g}\n")
        w("| feature | label (fires on → promotes) | genre share | density | top contexts |\n|---|---|---|---|---|")
        for f in genre_features(scope, 3, g, n=5).feature:
            card = idx.feature(3, int(f))
            ctx = "<br>".join(_ctx(c) for c in card["contexts"][:3])
            w(f"| L3/{f} | {card['label'].replace('|', '/')} | {card['groups'][g]:.2f} | {card['density']:.4f} | {ctx} |")
        w("")
    st = report["steering"]
    w("## Steering demonstration\n")
    w(f"Adding feature {st['feature']} of layer {st['layer']} (*{st['label']}*; chosen by "
      "`training.evaluate.steering_pick`: the most bible-specific of layer 3's three most biblical features) with "
      f"strength {st['strength']:.1f} (its 90th-percentile activation) to every position of neutral prompts, greedy "
      "decoding, 24 tokens. Measured: the share of biblical marker words (unto, thou, hath, shall, LORD, ...) and "
      "the feature's own mean activation (unsteered re-run) on the generated tokens. "
      f"Mean over the {len(st['rows'])} prompts: biblical words "
      f"{sum(r['bible_rate_baseline'] for r in st['rows']) / len(st['rows']):.3f} → "
      f"{sum(r['bible_rate_steered'] for r in st['rows']) / len(st['rows']):.3f}, feature activation "
      f"{sum(r['feature_act_baseline'] for r in st['rows']) / len(st['rows']):.2f} → "
      f"{sum(r['feature_act_steered'] for r in st['rows']) / len(st['rows']):.2f}. "
      "`tests/test_demo_model.py` asserts both rise (the word rate by more than 0.05). Four times that strength "
      "makes the text repeat the promoted token (\"which which is the which...\"); see the controls measured by "
      "`benchmarks/demo_metrics.py --sections steer`.\n")
    w("| prompt | baseline | steered | biblical words (base → steered) | feature activation (base → steered) |")
    w("|---|---|---|---|---|")
    for r in st["rows"]:
        b = r["baseline"].strip().replace("\n", " ").replace("|", "/")
        s = r["steered"].strip().replace("\n", " ").replace("|", "/")
        w(f"| {r['prompt']} | {b} | {s} | {r['bible_rate_baseline']:.2f} → {r['bible_rate_steered']:.2f} | "
          f"{r['feature_act_baseline']:.2f} → {r['feature_act_steered']:.2f} |")
    w("\n## Reproducibility\n")
    w("Every step is seeded (`seed=0`: corpus split, tokenizer, LM init and batches, SAE windows, init and batches). "
      "The shipped files were built step by step with the same scripts `training.build_demo` chains: the SAEs of "
      "layers 0-2, 3, 4 and 5 in parallel processes (`python -m training.train_saes --layers N --threads 1`), "
      "and layer 5's revive phase as a separate run on a fresh 300k-token sample of training activations "
      "(`build_demo` runs it inline on the first 300k tokens of its own sample). A rebuild therefore reproduces "
      "the recipe and the figures above (to within run-to-run noise of float summation order across thread "
      "counts), not the bytes.\n")
    w("\n## Size\n")
    w(f"The demo folder is {size:.1f} MiB. The budget asked for was 25 MB, which cannot hold what else was asked: "
      "6 SAEs of 16 x 256 = 4096 features hold 6 x 2 x 256 x 4096 = 12.6 M weights, 50 MB in the release's "
      "float32 and still 25 MB in float16, before the model. We kept the architecture, the width and one SAE per "
      "layer, and stored the SAE tensors and the model in float16 inside the otherwise identical files (the "
      "loader upcasts to float32, so every computation is the release's). `saes/config.json` says "
      "`\"dtype\": \"float16\"`. This is the one deviation from the release layout.\n")
    part = {sub: sum(f.stat().st_size for f in (DEMO / sub).rglob("*") if f.is_file()) / 2**20
            for sub in ("model", "saes", "index")}
    w(f"Where the {size:.1f} MiB go: model {part['model']:.1f} MiB (float16 weights + tokenizer), SAEs "
      f"{part['saes']:.1f} MiB (float16), feature index {part['index']:.1f} MiB (statistics, labels and the 10 top "
      "held-out contexts of each of the 24,576 features, parquet recompressed with zstd), the rest small. To reach "
      "25 MB we would have had to halve the SAE width (8 x d_model) or drop SAEs for some layers, or ship fewer "
      "contexts; we judged the release-like width, an SAE on every layer and full feature cards worth more than "
      "the last 20 MB. Loading is fast: with torch and transformers imported, `Scope.demo()` takes ~0.1 s "
      "(model and tokenizer at once, index metadata, each SAE lazily on first use, ~10 ms); a cold Python process "
      "first spends ~2-3 s importing torch and transformers' Qwen3.5 modelling code, whatever the model. "
      "`tests/test_demo_model.py` asserts the load stays under 2 s.\n")
    w("| file | size |\n|---|---|")
    for f in sorted(DEMO.rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts:
            w(f"| `{f.relative_to(DEMO)}` | {f.stat().st_size / 2**20:.2f} MiB |")
    w("")
    (ROOT / "DEMO_MODEL.md").write_text("\n".join(L) + "\n")
    print("DEMO_MODEL.md written")


if __name__ == "__main__":
    main()
