"""Measure the demo: held-out LM loss per genre, per-layer SAE figures, samples, and the steering demonstration.

    python -m training.evaluate   # writes training/work/report.json
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .build_corpus import WORK
from .train_model import token_stream
from .train_saes import sample_windows

NEUTRAL_PROMPTS = ["It is a", "The value of the", "This is a", "I think that", "The man said that", "There was a"]
BIBLE_WORDS = {"unto", "thou", "thee", "thy", "hath", "shall", "lord", "god", "ye", "israel", "saith", "thine", "behold"}

PROMPTS = {
    "bible": "And the LORD said unto Moses,",
    "python": "The function returns a list of",
    "wordnet": "oak, oak tree (noun):",
    "fortune": "You will meet a",
}


def main(model_dir: Path, sae_dir: Path, out: Path = WORK / "report.json", eval_tokens: int = 65536,
         index_dir: Path = WORK / "index") -> dict:
    from qscope_widgets import Scope
    from qscope_widgets.evaluation import evaluate_sae

    torch.set_num_threads(2)
    scope = Scope.from_pretrained(str(model_dir), saes=str(sae_dir))
    scope.load_index(index_dir)
    held = token_stream(scope.tokenizer, "heldout")
    windows = sample_windows(held, eval_tokens, seed=1)
    report: dict = {"sae": {}, "samples": {}}
    for n in scope.sae_layers:
        m = evaluate_sae(scope, windows, n)
        report["sae"][n] = m
        print(f"layer {n}: FVE {m['fve']:.3f} dead {m['dead_fraction']:.3f} CE recovered {m['ce_recovered']:.3f}",
              flush=True)
    for genre, prompt in PROMPTS.items():
        g = scope.generate(prompt, max_new_tokens=40, temperature=0.8, top_p=0.95, seed=0, baseline=False)
        report["samples"][genre] = {"prompt": prompt, "continuation": g.text}
        print(f"[{genre}] {prompt!r} -> {g.text!r}", flush=True)
    report["steering"] = steering_demo(scope)
    out.write_text(json.dumps(report, indent=2))
    return report


def genre_features(scope, layer: int, genre: str, n: int = 5, min_density: float = 0.002):
    """Features of ``layer`` that fire mostly on ``genre``'s held-out text, densest first."""
    feats = scope.feature_index.features(layer)
    col = f"group_{genre}"
    cand = feats[(feats.density > min_density)].copy()
    cand["score"] = cand[col] * cand.density.pow(0.25)
    return cand.sort_values("score", ascending=False).head(n)


def bible_word_rate(text: str) -> float:
    words = [w.strip(".,;:!?'\"()").lower() for w in text.split()]
    return sum(w in BIBLE_WORDS for w in words) / max(len(words), 1)


def steering_pick(scope, layer: int = 3) -> tuple[int, float]:
    """The steering demo's feature and strength: of layer 3's three most biblical features (``genre_features``), the
    most bible-specific one (largest share of its activation mass on biblical text), added with strength equal to
    its 90th-percentile activation (one typical strong firing; 4x that makes the text repeat "which which...")."""
    cand = genre_features(scope, layer, "bible", n=3)
    f = int(cand.sort_values("group_bible", ascending=False).feature.iloc[0])
    return f, float(scope.feature_index.features(layer).q90.iloc[f])


def steering_demo(scope, layer: int = 3, max_new_tokens: int = 24) -> dict:
    """Add the picked biblical feature to neutral prompts (greedy decoding) and measure the shift toward biblical
    style: the rate of biblical marker words and the feature's own activation on the generated tokens."""
    from qscope_widgets import SteeringEdit

    f, strength = steering_pick(scope, layer)
    rows = []
    for prompt in NEUTRAL_PROMPTS:
        g = scope.generate(prompt, steering=[SteeringEdit(layer, f, strength)], max_new_tokens=max_new_tokens, seed=0)
        n_prompt = scope.tokenize(prompt).shape[1]
        acts = []
        for text in (g.baseline_text, g.text):  # the feature's activation, unsteered, on each continuation
            tr = scope.run(prompt + text, layers=[layer])
            acts.append(float(tr.layers[layer].activation_of(f)[n_prompt:].mean()))
        rows.append({"prompt": prompt, "baseline": g.baseline_text, "steered": g.text,
                     "bible_rate_baseline": bible_word_rate(g.baseline_text), "bible_rate_steered": bible_word_rate(g.text),
                     "feature_act_baseline": acts[0], "feature_act_steered": acts[1]})
    return {"layer": layer, "feature": f, "label": scope.feature_index.label(layer, f), "strength": strength,
            "rows": rows}


if __name__ == "__main__":
    from .train_model import OUT as MODEL_DIR
    from .train_saes import OUT as SAE_DIR

    main(MODEL_DIR, SAE_DIR)
