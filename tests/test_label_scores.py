"""Scored labels: a label is scored by how well what it names predicts where its feature fires on other text.
A feature planted to fire on one token gets a high score; a feature that fires at random gets a low one."""

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TOKENIZER_TEXT, make_qwen35, make_saes
from qscope_widgets import Scope
from qscope_widgets.errors import QScopeError
from qscope_widgets.index.labels import (WEAK_BELOW, LabelSpec, TokenFirings, detection_score, fit_label,
                                         scan_firings, score_labels)

PLANTED = 5
FIT_DOCS = [line for line in TOKENIZER_TEXT.splitlines() if line.strip()]
HELD_DOCS = ["the dog and the fox sat by the door of the house.", "print(the_value); the end of the line",
             "In the morning the earth was quiet and the sky was clear."]


def synthetic(seed: int, n: int = 20000, vocab: int = 30) -> TokenFirings:
    """Feature 0 fires on random positions (10%), feature 1 exactly on token 7, feature 2 on token 3 after 9."""
    g = np.random.default_rng(seed)
    tokens = g.integers(0, vocab, n)
    prev = np.concatenate([[-1], tokens[:-1]])
    f0 = np.nonzero(g.random(n) < 0.1)[0]
    f1 = np.nonzero(tokens == 7)[0]
    f2 = np.nonzero((tokens == 3) & (prev == 9))[0]
    feat = np.concatenate([np.zeros(len(f0)), np.ones(len(f1)), np.full(len(f2), 2)]).astype(np.int64)
    pos = np.concatenate([f0, f1, f2]).astype(np.int64)
    order = np.argsort(feat, kind="stable")
    return TokenFirings(layer=0, d_sae=3, tokens=tokens, prev=prev, group=np.zeros(n, dtype=np.int64),
                        group_names=["all"], feature=feat[order], position=pos[order],
                        activation=g.random(len(pos)).astype(np.float32)[order], doc=np.zeros(n, dtype=np.int64))


def test_token_feature_scores_high_and_random_feature_low_on_other_text():
    fit, held = synthetic(0), synthetic(1)
    tok_spec = fit_label(fit, 1)
    assert tok_spec.tokens == (7,)
    assert detection_score(tok_spec, held, 1)["f1"] == pytest.approx(1.0)
    rand = detection_score(fit_label(fit, 0), held, 0)
    assert rand["f1"] < 0.25 and rand["f1"] < WEAK_BELOW
    ctx = fit_label(fit, 2)  # fires on 3 only after 9: the previous token is part of the label
    assert ctx.tokens == (3,) and ctx.prev == 9
    assert detection_score(ctx, held, 2)["f1"] == pytest.approx(1.0)
    assert detection_score(LabelSpec((3,)), held, 2)["f1"] < 0.2  # the token alone explains little


@pytest.fixture(scope="module")
def planted_scope(tokenizer):
    """Layer 0 feature 5 of a tiny Qwen3.5 is planted to fire on the token ' the' (a separating direction of the
    layer-0 residual, measured on the fixture text), with a large scale so top-k keeps it."""
    model = make_qwen35(len(tokenizer))
    saes = make_saes(64, range(4), d_sae=64, k=4, seed=1)
    scope = Scope(model, tokenizer, saes)
    the = tokenizer(" the", add_special_tokens=False)["input_ids"][0]
    ids = scope.tokenize(TOKENIZER_TEXT[:250])
    r = scope.residuals(ids, layers=[0])[0][0, 1:]
    is_the = ids[0, 1:] == the
    d = r[is_the].mean(0) - r[~is_the].mean(0)
    d = d / d.norm()
    proj = r @ d
    mid = float(proj[is_the].min() + proj[~is_the].max()) / 2
    with torch.no_grad():
        scope.sae(0).W_enc[PLANTED] = d * 1000
        scope.sae(0).b_enc[PLANTED] = -1000 * mid
    return scope, the


def test_planted_token_feature_gets_a_high_score_and_a_random_feature_a_low_one(planted_scope):
    scope, the = planted_scope
    fit = scan_firings(scope, 0, FIT_DOCS)
    held = scan_firings(scope, 0, HELD_DOCS, ["held"] * len(HELD_DOCS))
    df = score_labels(scope, 0, fit, held)
    row = df.set_index("feature").loc[PLANTED]
    assert row.label_score > 0.8, row.to_dict()
    assert "the" in row.scored_label and not row.label_weak
    others = df[(df.feature != PLANTED) & df.label_score.notna()]
    assert len(others) > 5
    assert others.label_score.median() < row.label_score - 0.3
    assert len(row.examples) == 3 and all("⟦" in e for e in row.examples)


def test_scores_attach_to_the_index_and_sort_search(planted_scope, tmp_path):
    scope, _ = planted_scope
    idx = scope.index(FIT_DOCS, out_dir=tmp_path / "idx", layers=[0], progress=False)
    fit = scan_firings(scope, 0, FIT_DOCS)
    held = scan_firings(scope, 0, HELD_DOCS)
    scores = score_labels(scope, 0, fit, held, index=idx)
    assert scores.old_label_score.notna().any()
    idx.attach_label_scores(scores, layer=0)
    d = idx.feature(0, PLANTED)
    assert d["label_score"] == pytest.approx(float(scores.label_score[PLANTED]))
    reloaded = type(idx).load(tmp_path / "idx", scope=scope)
    assert reloaded.feature(0, PLANTED)["label_score"] == d["label_score"]
    hits = reloaded.search("the", layer=0, n=50)
    s = hits.label_score.to_numpy(dtype=float)
    s = s[~np.isnan(s)]
    assert len(s) and (np.diff(s) <= 1e-12).all(), "scored hits come best first"
    with pytest.raises(QScopeError, match="label_score"):
        idx.attach_label_scores(pd.DataFrame({"feature": [0]}), layer=0)


def test_bad_input_names_the_problem(planted_scope):
    scope, _ = planted_scope
    with pytest.raises(QScopeError, match="non-empty"):
        scan_firings(scope, 0, [])
    with pytest.raises(QScopeError, match="2 group names for 1"):
        scan_firings(scope, 0, ["text"], ["a", "b"])
    fit = scan_firings(scope, 0, FIT_DOCS[:2])
    with pytest.raises(QScopeError, match="layers 0"):
        score_labels(scope, 1, fit, fit)


def test_explain_and_simulate_mechanics_on_the_demo():
    """Bills et al. mechanics only: an explanation is generated from the top contexts, the remaining contexts are
    simulated token by token, and the score is the correlation (no claim about the tiny explainer's quality)."""
    from qscope_widgets.index.labels import simulate

    demo = Scope.demo()
    idx = demo.feature_index
    df = idx.explain([2360], layer=3, max_new_tokens=6)
    row = df.iloc[0]
    assert row.feature == 2360 and isinstance(row.explanation, str) and row.explainer == "qscope-demo"
    assert -1.0 <= row.simulation_score <= 1.0
    toks = list(idx.contexts(3, 2360).tokens.iloc[0])
    sim = simulate(demo, row.explanation, toks)
    assert len(sim) == len(toks) and all(0.0 <= v <= 9.0 for v in sim)
    assert idx.features(3).explanation.iloc[2360] == "", "save=False leaves the index alone"
    with pytest.raises(QScopeError, match="has 10 contexts"):
        idx.explain([2360], layer=3, n_explain=10)


def test_neuronpedia_links_and_export_import(planted_scope, tmp_path):
    from qscope_widgets.index.labels import neuronpedia_export_url, neuronpedia_url

    assert neuronpedia_url("qwen3.5-27b", 31, 7) == "https://www.neuronpedia.org/qwen3.5-27b/31-qwenscope-res-80k/7"
    assert neuronpedia_url("qwen3.5-27b", 30, 7) is None
    assert neuronpedia_url("m", 1, 2, sae_id="1-x") == "https://www.neuronpedia.org/m/1-x/2"
    assert "modelId=qwen3.5-27b&saeId=31-qwenscope-res-80k" in neuronpedia_export_url("qwen3.5-27b",
                                                                                       "31-qwenscope-res-80k")
    with pytest.raises(QScopeError, match="-1"):
        neuronpedia_url("qwen3.5-27b", 31, -1)
    scope, _ = planted_scope
    idx = scope.index(FIT_DOCS, out_dir=tmp_path / "idx", layers=[0], progress=False)
    export = [  # the shape of Neuronpedia's explanation export records
        {"modelId": "x", "layer": "0-qwenscope-res-64", "index": "5", "description": " the word the",
         "explanationModelName": "gpt-4o-mini", "typeName": "oai_token-act-pair"},
        {"modelId": "x", "layer": "1-qwenscope-res-64", "index": "5", "description": "other layer"},
    ]
    import json

    (tmp_path / "export.json").write_text(json.dumps(export))
    assert idx.attach_labels(tmp_path / "export.json", layer=0) == 1
    assert idx.label(0, 5) == "the word the"
