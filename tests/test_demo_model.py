"""The shipped demo: loads through the public loaders, its SAE figures hold on held-out text, its labels match its
weights, and steering a biblical feature measurably moves neutral text toward biblical style."""

import json
from pathlib import Path

import pytest
import torch

from qscope_widgets import Scope, SteeringEdit
from qscope_widgets.demo import DEMO_DIR, index_dir, model_dir, sae_dir

BUDGET_MB = 48  # see DEMO_MODEL.md, "Size": 25 MB cannot hold 16x-wide SAEs for 6 layers of width 256


@pytest.fixture(scope="module")
def demo():
    torch.manual_seed(0)
    return Scope.demo()


@pytest.fixture(scope="module")
def heldout():
    rows = [json.loads(line) for line in (DEMO_DIR / "heldout_sample.jsonl").read_text().splitlines()]
    return rows


def test_loads_with_plain_transformers_and_release_layout():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir())
    tok = AutoTokenizer.from_pretrained(model_dir())
    assert type(model).__name__ == "Qwen3_5ForCausalLM" and model.config.model_type == "qwen3_5_text"
    assert "linear_attention" in model.config.layer_types and "full_attention" in model.config.layer_types
    assert 4000 <= len(tok) <= 8192 and tok.eos_token == "<|endoftext|>"
    cfg = json.loads((sae_dir() / "config.json").read_text())
    for n in range(model.config.num_hidden_layers):
        raw = torch.load(sae_dir() / f"layer{n}.sae.pt", weights_only=True)
        assert sorted(raw) == ["W_dec", "W_enc", "b_dec", "b_enc"]
        d, f = model.config.hidden_size, cfg["d_sae"]
        assert raw["W_enc"].shape == (f, d) and raw["W_dec"].shape == (d, f) and f == 16 * d
        assert raw["b_enc"].shape == (f,) and raw["b_dec"].shape == (d,)
    total = sum(p.stat().st_size for p in DEMO_DIR.rglob("*") if p.is_file())
    assert total < BUDGET_MB * 2**20


def test_demo_loads_fast():
    """The files load in under 2 s on CPU (imports of torch/transformers' modelling code excluded: any model pays them)."""
    import time

    import transformers.models.qwen3_5.modeling_qwen3_5  # noqa: F401

    Scope.demo()  # warm the file cache and the lazy imports
    t = time.perf_counter()
    scope = Scope.demo()
    scope.sae(0)
    assert time.perf_counter() - t < 2.0


def test_scope_demo(demo):
    assert demo.n_layers == 6 and demo.d_model == 256 and demo.sae_layers == list(range(6))
    sae = demo.sae(3)
    assert sae.d_sae == 4096 and sae.cfg.k == 12 and sae.dtype == torch.float32
    tr = demo.run("In the beginning God created the heaven and the earth.", layers=[3])
    assert (tr.layers[3].l0 <= 12).all() and tr.layers[3].recon_error.median() < 0.5
    assert demo.feature_index is not None and demo.feature_index.layers == list(range(6))


def test_labels_match_weights(demo):
    idx = demo.feature_index
    for n in demo.sae_layers:
        feats = idx.features(n)
        assert len(feats) == demo.sae(n).d_sae and feats.feature.tolist() == list(range(len(feats)))
        ctx = idx.contexts(n)
        assert ctx.feature.between(0, len(feats) - 1).all()
        live = feats[feats["count"] > 0]
        assert (live.label.str.len() > 0).all() and set(idx.groups) == {"bible", "fortune", "python", "wordnet"}
        assert (feats["count"] == 0).mean() < 0.10, f"layer {n}: too many features never fire on held-out text"


def test_sae_figures_on_heldout_sample(demo, heldout):
    from qscope_widgets.evaluation import evaluate_sae

    ids = []
    for row in heldout:
        ids.extend(demo.tokenizer(row["text"])["input_ids"] + [demo.tokenizer.eos_token_id])
    n = len(ids) // 128
    windows = torch.tensor(ids[: n * 128]).view(n, 128)[:24]
    for layer in demo.sae_layers:
        m = evaluate_sae(demo, windows, layer)
        assert m["fve"] >= 0.80, m  # tolerant: DEMO_MODEL.md reports the full held-out figures (>= 0.85)
        assert m["ce_recovered"] >= 0.80, m
        assert m["l0"] <= 12


def test_genre_text_is_learned(demo, heldout):
    """Held-out loss of every genre is far below chance (ln 4096 = 8.3 nats)."""
    for genre in ("bible", "python", "wordnet", "fortune"):
        texts = [r["text"] for r in heldout if r["genre"] == genre][:6]
        losses = []
        for t in texts:
            ids = demo.tokenize(t[:600])
            with torch.inference_mode():
                losses.append(float(demo.model(input_ids=ids, labels=ids).loss))
        assert sum(losses) / len(losses) < 5.0, (genre, losses)


def test_steering_moves_neutral_text_toward_biblical_style(demo):
    """Adding the demo's biblical feature (layer 3, strength = its 90th-percentile activation) to neutral prompts
    raises the rate of biblical marker words in greedy continuations and the feature's own activation on them."""
    from training.evaluate import NEUTRAL_PROMPTS, steering_demo

    d = steering_demo(demo)
    rows = d["rows"]
    assert len(rows) == len(NEUTRAL_PROMPTS) and d["strength"] > 0
    base_rate = sum(r["bible_rate_baseline"] for r in rows) / len(rows)
    steer_rate = sum(r["bible_rate_steered"] for r in rows) / len(rows)
    assert steer_rate > base_rate + 0.05, (base_rate, steer_rate, rows)
    assert sum(r["bible_rate_steered"] > r["bible_rate_baseline"] for r in rows) >= len(rows) // 2, rows
    assert sum(r["feature_act_steered"] for r in rows) > sum(r["feature_act_baseline"] for r in rows), rows
    assert all(r["steered"] != r["baseline"] for r in rows)
