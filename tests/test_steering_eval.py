"""steering_eval: a real effect beats same-norm controls, the controls really have the steered norm, and the
summary only calls an effect specific when it beats them."""

import math

import pytest
import torch

from conftest import hook_snapshot, make_qwen35, make_saes
from qscope_widgets import Scope, SteeringEdit
from qscope_widgets.errors import QScopeError, SteeringError
from qscope_widgets.steering_eval import (FeatureActivation, TargetLogProb, WordRate, add_direction, distinct2,
                                          matched_direction, random_direction)

PROMPTS = ["The quick brown fox", "In the beginning God", "def main(argv):"]
LAYER, PLANTED, PLAIN = 3, 7, 11


@pytest.fixture(scope="module")
def planted(tokenizer):
    """A tiny Qwen3.5 whose last-layer SAE feature 7 writes the (tied) embedding of one target token: adding it
    must raise that token's probability far more than a random direction of the same norm does."""
    model = make_qwen35(len(tokenizer), seed=3)
    saes = make_saes(64, range(4), d_sae=64, k=4, seed=1)
    target = tokenizer(" the", add_special_tokens=False)["input_ids"][0]
    emb = model.get_input_embeddings().weight.detach()[target]
    with torch.no_grad():
        saes[LAYER].W_dec[:, PLANTED] = emb / emb.norm() * 1.5  # deliberately not unit norm
        u = emb / emb.norm()  # the unplanted feature: no component along the target token's embedding
        w = saes[LAYER].W_dec[:, PLAIN]
        saes[LAYER].W_dec[:, PLAIN] = w - (w @ u) * u
    return Scope(model, tokenizer, saes), target


def test_planted_feature_beats_its_random_control(planted):
    scope, target = planted
    df = scope.steering_eval(PROMPTS, SteeringEdit(LAYER, PLANTED, 1.0), strengths=[6.0],
                             metrics=[TargetLogProb([target])], controls=("random_direction",),
                             seeds=[0, 1, 2, 3], max_new_tokens=6)
    assert set(df.condition) == {"baseline", "feature", "random_direction"}
    assert len(df) == len(PROMPTS) * 3 * 4  # prompt x condition x seed (one strength)
    summ = df.summary().set_index("metric").loc["target_logprob"]
    assert summ["margin_vs_random_direction"] > 1.0, summ
    assert summ["wins_vs_random_direction"] == 1.0
    assert bool(summ["specific"])


def test_a_feature_orthogonal_to_the_target_is_not_called_specific(planted):
    scope, target = planted
    df = scope.steering_eval(PROMPTS, SteeringEdit(LAYER, PLAIN, 1.0), strengths=[6.0],
                             metrics=[TargetLogProb([target])], controls=("random_direction",),
                             seeds=[0, 1, 2, 3], max_new_tokens=6)
    assert not df.summary()["specific"].any()


def test_controls_have_the_steered_norm(planted):
    scope, _ = planted
    s = 6.0
    d = scope.sae(LAYER).W_dec[:, PLANTED]
    norm = s * float(d.norm())
    assert math.isclose(norm, 9.0, rel_tol=1e-5)
    df = scope.steering_eval(PROMPTS[:1], SteeringEdit(LAYER, PLANTED, 1.0), strengths=[s],
                             controls=("random_direction", "other_feature"), other_features={PLANTED: [PLAIN]},
                             seeds=[0, 1], max_new_tokens=3)
    steered = df[df.condition != "baseline"]
    assert steered.direction_norm.map(lambda v: math.isclose(v, norm, rel_tol=1e-6)).all()
    assert (df[df.condition == "other_feature"].control_feature == PLAIN).all()
    # the residual really moves by that norm, at every position, under the random control's hook
    ids = scope.tokenize(PROMPTS[0])
    base = scope.residuals(ids, layers=[LAYER])[LAYER]
    vec = random_direction(scope.d_model, norm, seed=0)
    with add_direction(scope, LAYER, vec, prompt_len=ids.shape[1]):
        moved = scope.residuals(ids, layers=[LAYER])[LAYER]
    torch.testing.assert_close((moved - base).norm(dim=-1), torch.full(base.shape[:2], norm), rtol=1e-4, atol=1e-4)
    # ... and the other feature's edit is rescaled to the same norm (its decoder column has another norm)
    g_norm = float(scope.sae(LAYER).W_dec[:, PLAIN].norm())
    assert not math.isclose(g_norm, float(d.norm()), rel_tol=1e-3)


@pytest.mark.parametrize("mode, strength, positions", [("clamp", 3.0, None), ("ablate", 1.0, None),
                                                       ("clamp", 0.5, (-1, -3))])
def test_clamp_and_ablate_controls_move_the_residual_as_far_as_the_edit_at_every_position(planted, mode, strength,
                                                                                           positions):
    scope, _ = planted
    hooks = hook_snapshot(scope)
    ids = scope.tokenize(PROMPTS[1])
    plen = ids.shape[1]
    base = scope.residuals(ids, layers=[LAYER])[LAYER]
    codes = scope.sae(LAYER).encode_sparse(base[0])
    f = int(torch.bincount(codes.ids[codes.values > 0], minlength=64).argmax())  # fires most: ablating it matters
    edit = SteeringEdit(LAYER, f, strength, mode, positions=positions)
    with scope.steering(edit):
        moved = scope.residuals(ids, layers=[LAYER])[LAYER] - base
    assert float(moved.norm(dim=-1).max()) > 0.1  # the edit really moves the residual (so the check means something)
    u = random_direction(scope.d_model, 1.0, seed=0)
    for signed, direction in ((False, u), (True, scope.sae(LAYER).W_dec[:, (f + 1) % 64])):
        with scope.steering(None), matched_direction(scope, edit, direction, prompt_len=plen, signed=signed):
            ctrl = scope.residuals(ids, layers=[LAYER])[LAYER] - base
        torch.testing.assert_close(ctrl.norm(dim=-1), moved.norm(dim=-1), rtol=1e-4, atol=1e-4)
        unit = direction / direction.norm()
        torch.testing.assert_close(ctrl, (ctrl @ unit)[..., None] * unit, rtol=1e-4, atol=1e-4)  # along direction
        if signed:  # the other feature is pushed up where the edit pushes its own feature up
            along = moved @ scope.sae(LAYER).W_dec[:, f]
            assert torch.equal(torch.sign(ctrl @ unit)[along.abs() > 1e-3], torch.sign(along)[along.abs() > 1e-3])
    if positions is not None:  # only where the edit acts
        untouched = [i for i in range(plen) if i not in {plen + p for p in positions}]
        assert float(moved[0, untouched].abs().max()) == 0.0 and float(ctrl[0, untouched].abs().max()) == 0.0
    assert hook_snapshot(scope) == hooks


def test_steering_eval_runs_clamp_edits_beside_matched_controls(planted):
    scope, target = planted
    edit = SteeringEdit(LAYER, PLANTED, 1.0, "clamp", positions="generated")
    df = scope.steering_eval(PROMPTS[:2], edit, strengths=[4.0], metrics=[TargetLogProb([target])],
                             controls=("random_direction", "other_feature"), other_features={PLANTED: [PLAIN]},
                             seeds=[0], max_new_tokens=4)
    assert set(df.condition) == {"baseline", "feature", "random_direction", "other_feature"}
    assert (df["mode"] == "clamp").all() and (df["positions"] == "generated").all()
    assert df[df.condition != "baseline"].direction_norm.isna().all()  # per-position norms: no single figure
    summ = df.summary().set_index("metric").loc["target_logprob"]
    assert summ["margin_vs_random_direction"] > 0.5, summ  # clamping the planted feature up raises its token
    # the controls changed the text's log-probabilities: they are not silently the baseline
    lp = df.set_index(["prompt", "condition"])["target_logprob"]
    assert any(abs(lp[(p, "random_direction")] - lp[(p, "baseline")]) > 1e-4 for p in PROMPTS[:2])


def test_direction_hook_along_the_feature_reproduces_the_add_edit(planted):
    scope, _ = planted
    hooks = hook_snapshot(scope)
    prompt, s = PROMPTS[1], 4.0
    for positions in (None, "generated"):
        edit = SteeringEdit(LAYER, PLANTED, s, positions=positions)
        ref = scope.generate(prompt, edit, max_new_tokens=8, baseline=False).token_ids
        plen = scope.tokenize(prompt).shape[1]
        vec = s * scope.sae(LAYER).W_dec[:, PLANTED]
        with scope.steering(None), add_direction(scope, LAYER, vec, positions=positions, prompt_len=plen):
            got = scope.generate(prompt, None, max_new_tokens=8, baseline=False).token_ids
        assert got == ref, positions
    assert hook_snapshot(scope) == hooks


def test_rows_are_tidy_and_fluency_is_measured(planted):
    scope, _ = planted
    df = scope.steering_eval(PROMPTS[:2], SteeringEdit(LAYER, PLANTED, 1.0), strengths=[0.5, 4.0],
                             metrics={"fa": FeatureActivation(), "wr": WordRate(["the"])},
                             controls=("random_direction",), seeds=[0, 1], max_new_tokens=5)
    assert len(df) == 2 * 2 * 3 * 2
    assert df.groupby(["prompt", "strength", "condition", "seed"]).size().eq(1).all()
    assert (df.perplexity > 1.0).all() and df.distinct2.between(0, 1).all()
    assert set(df.summary().metric) == {"fa", "wr"}
    ax = df.plot_effect("fa")
    assert ax.get_xlabel() == "strength"


def test_distinct2_counts_repeated_bigrams():
    from qscope_widgets.steering_eval import Continuation

    c = Continuation(scope=None, prompt="x", prompt_ids=[1], token_ids=[5, 6, 5, 6, 5, 6], text="",
                     edit=SteeringEdit(0, 0, 1.0), condition="feature")
    assert distinct2(c) == pytest.approx(2 / 5)


@pytest.mark.parametrize("kwargs, err, words", [
    (dict(edits=SteeringEdit(LAYER, PLANTED, 1.0, positions=[-40]), controls=("random_direction",)), SteeringError,
     "-40"),
    (dict(controls=("shuffle",)), QScopeError, "shuffle"),
    (dict(prompts=[]), QScopeError, "prompts is empty"),
    (dict(strengths=[float("nan")]), SteeringError, "finite"),
    (dict(seeds=["a"]), QScopeError, "'a'"),
    (dict(max_new_tokens=1), QScopeError, "max_new_tokens"),
    (dict(metrics=["word_rate"]), QScopeError, "callable"),
    (dict(controls=("other_feature",)), QScopeError, "feature index"),
    (dict(edits=SteeringEdit(LAYER, 999, 1.0)), QScopeError, "999"),
])
def test_bad_input_names_the_bad_value(planted, kwargs, err, words):
    scope, _ = planted
    args = dict(prompts=PROMPTS[:1], edits=SteeringEdit(LAYER, PLANTED, 1.0), strengths=[1.0], max_new_tokens=3)
    args.update(kwargs)
    with pytest.raises(err, match=words):
        scope.steering_eval(args.pop("prompts"), args.pop("edits"), **args)
    assert scope.steering_eval(PROMPTS[:1], SteeringEdit(LAYER, PLANTED, 1.0), controls=(), max_new_tokens=2)\
        .shape[0] == 2  # still usable
