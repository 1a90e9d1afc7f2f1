"""Steering does exactly what it says, only where it says, and never outlives its ``with`` block."""

import pytest
import torch

from qscope_widgets import SteeringEdit, Steering
from qscope_widgets.errors import SteeringError

PROMPT = "The quick brown fox jumps over the lazy dog"


from conftest import hook_snapshot


def test_strength_zero_is_bit_identical(scope):
    base = scope.run(PROMPT, layers=[3])
    for mode in ("add", "ablate"):
        zero = scope.run(PROMPT, layers=[3], steering=[SteeringEdit(1, 5, 0.0, mode)])
        assert torch.equal(zero.logits_last, base.logits_last)
        assert torch.equal(zero.next_probs, base.next_probs)
        assert torch.equal(zero.layers[3].values, base.layers[3].values)
    off = scope.run(PROMPT, layers=[3], steering=[SteeringEdit(1, 5, 50.0, enabled=False)])
    assert torch.equal(off.logits_last, base.logits_last)


def test_add_changes_layer_n_by_exactly_a_times_w_dec_and_nothing_before(scope):
    hooks = hook_snapshot(scope)
    a, f, n = 3.5, 17, 1
    base = scope.run(PROMPT, layers=[0, 1, 2, 3], return_residuals=True)
    steer = scope.run(PROMPT, layers=[0, 1, 2, 3], steering=[SteeringEdit(n, f, a)], return_residuals=True)
    d = scope.sae(n).W_dec[:, f]
    assert torch.equal(steer.residuals[0], base.residuals[0]), "layers before n are untouched"
    torch.testing.assert_close(steer.residuals[n] - base.residuals[n], (a * d).expand_as(base.residuals[n]),
                               rtol=0, atol=1e-5)
    assert not torch.allclose(steer.residuals[3], base.residuals[3]), "the edit flows on to later layers"
    assert not torch.equal(steer.logits_last, base.logits_last)
    assert hook_snapshot(scope) == hooks


def test_positions_limit_the_edit(scope):
    base = scope.run(PROMPT, layers=[2], return_residuals=True)
    seq = len(base)
    steer = scope.run(PROMPT, layers=[2], steering=[SteeringEdit(2, 9, 4.0, positions=[2, -1])], return_residuals=True)
    diff = (steer.residuals[2] - base.residuals[2]).norm(dim=-1)
    changed = set(torch.nonzero(diff > 1e-6).flatten().tolist())
    assert changed == {2, seq - 1}
    steer1 = scope.run(PROMPT, layers=[3], steering=[SteeringEdit(1, 9, 4.0, positions=[4])], return_residuals=True)
    base3 = scope.run(PROMPT, layers=[3], return_residuals=True)
    assert torch.equal(steer1.residuals[3][:4], base3.residuals[3][:4]), "causal: tokens before 4 unchanged"
    assert not torch.allclose(steer1.residuals[3][4:], base3.residuals[3][4:])


def test_clamp_sets_the_code_and_ablate_removes_it(scope):
    n = 2
    base = scope.run(PROMPT, layers=[n], return_residuals=True)
    sae = scope.sae(n)
    f = int(base.layers[n].ids[3, 0])  # the strongest feature of token 3
    z = base.layers[n].activation_of(f)
    d = sae.W_dec[:, f]
    clamp = scope.run(PROMPT, layers=[n], steering=[SteeringEdit(n, f, 10.0, "clamp")], return_residuals=True)
    expected = base.residuals[n] + (10.0 - z)[:, None] * d
    torch.testing.assert_close(clamp.residuals[n], expected, rtol=0, atol=1e-5)
    # with a strong clamp the feature is active at every position, near the clamped value
    assert (clamp.layers[n].activation_of(f) > 5.0).all()
    abl = scope.run(PROMPT, layers=[n], steering=[SteeringEdit(n, f, 1.0, "ablate")], return_residuals=True)
    torch.testing.assert_close(abl.residuals[n], base.residuals[n] - z[:, None] * d, rtol=0, atol=1e-5)
    half = scope.run(PROMPT, layers=[n], steering=[SteeringEdit(n, f, 0.5, "ablate")], return_residuals=True)
    torch.testing.assert_close(half.residuals[n], base.residuals[n] - 0.5 * z[:, None] * d, rtol=0, atol=1e-5)


def test_edits_combine_and_order_does_not_matter(scope):
    e1, e2 = SteeringEdit(1, 3, 2.0), SteeringEdit(1, 40, -1.5, "clamp")
    e3 = SteeringEdit(2, 7, 1.0, "ablate")
    a = scope.run(PROMPT, layers=[3], steering=[e1, e2, e3])
    b = scope.run(PROMPT, layers=[3], steering=[e3, e2, e1])
    torch.testing.assert_close(a.logits_last, b.logits_last, rtol=1e-5, atol=1e-5)
    single = scope.run(PROMPT, layers=[3], steering=[e1])
    assert not torch.allclose(a.logits_last, single.logits_last)


def test_context_manager_removes_hooks_on_every_path(scope):
    hooks = hook_snapshot(scope)
    ids = scope.tokenize(PROMPT)
    with torch.inference_mode():
        base = scope.model(input_ids=ids).logits
    with pytest.raises(RuntimeError, match="boom"):
        with scope.steering([SteeringEdit(1, 5, 30.0)]):
            with torch.inference_mode():
                steered = scope.model(input_ids=ids).logits
            assert not torch.allclose(steered, base)
            raise RuntimeError("boom")
    assert hook_snapshot(scope) == hooks
    with pytest.raises(KeyboardInterrupt):
        with scope.steering([SteeringEdit(1, 5, 30.0)]):
            raise KeyboardInterrupt
    assert hook_snapshot(scope) == hooks
    with torch.inference_mode():
        after = scope.model(input_ids=ids).logits
    assert torch.equal(after, base)


def test_error_inside_a_steered_forward_leaves_the_model_clean(scope, monkeypatch):
    hooks = hook_snapshot(scope)
    base = scope.run(PROMPT, layers=[3])
    calls = {"n": 0}
    orig = scope.model.forward

    def exploding(*a, **k):
        calls["n"] += 1
        raise KeyboardInterrupt  # a user hitting stop mid-forward

    monkeypatch.setattr(scope.model, "forward", exploding)
    with pytest.raises(KeyboardInterrupt):
        scope.run(PROMPT, layers=[3], steering=[SteeringEdit(1, 5, 30.0)])
    monkeypatch.setattr(scope.model, "forward", orig)
    assert calls["n"] == 1 and hook_snapshot(scope) == hooks
    again = scope.run(PROMPT, layers=[3])
    assert torch.equal(again.logits_last, base.logits_last)
    assert torch.equal(again.layers[3].values, base.layers[3].values)


def test_steering_edit_validation():
    for bad in (float("nan"), float("inf"), -float("inf"), "x"):
        with pytest.raises(SteeringError, match="strength"):
            SteeringEdit(0, 1, bad)
    with pytest.raises(SteeringError, match="mode"):
        SteeringEdit(0, 1, 1.0, "multiply")
    with pytest.raises(SteeringError, match="feature"):
        SteeringEdit(0, -1, 1.0)
    with pytest.raises(SteeringError, match="positions"):
        SteeringEdit(0, 1, 1.0, positions=[])
    with pytest.raises(SteeringError, match="positions"):
        SteeringEdit(0, 1, 1.0, positions="all")
    s = Steering()
    s.add(1, 2, 3.0)
    s.add(1, 4, 1.0, "clamp")
    s.remove(1, 2)
    assert [e.feature for e in s] == [4]
    assert list(s.to_dataframe().columns) == ["layer", "feature", "strength", "mode", "positions", "enabled"]
    assert SteeringEdit(1, 2, positions=(0, 1)).to_dict()["positions"] == [0, 1]
