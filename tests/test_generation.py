"""Steered generation: deterministic, streamed, with the baseline beside it."""

import pytest
import torch

from qscope_widgets import SteeringEdit
from qscope_widgets.errors import QScopeError

from conftest import hook_snapshot


def test_zero_strength_equals_baseline_and_streams(scope):
    seen = []
    g = scope.generate("The quick", steering=[SteeringEdit(1, 5, 0.0)], max_new_tokens=6, stop_at_eos=False,
                       on_token=lambda step, tok, which: seen.append((step, tok, which)))
    assert g.token_ids == g.baseline_token_ids and len(g.token_ids) == 6
    assert [s for s, _, w in seen if w == "steered"] == list(range(6))
    assert [t for _, t, w in seen if w == "baseline"] == g.baseline_tokens
    assert g.text == scope.tokenizer.decode(g.token_ids)


def test_greedy_generation_matches_a_manual_loop(scope):
    ids = scope.tokenize("In the beginning")
    manual = []
    cur = ids
    with torch.inference_mode():
        for _ in range(5):
            nxt = int(scope.model(input_ids=cur, use_cache=False).logits[0, -1].argmax())
            manual.append(nxt)
            cur = torch.cat([cur, torch.tensor([[nxt]])], dim=1)
    g = scope.generate("In the beginning", max_new_tokens=5, baseline=False, stop_at_eos=False)
    assert g.token_ids == manual and g.baseline_text is None


def test_strong_steering_changes_the_continuation(scope):
    hooks = hook_snapshot(scope)
    g = scope.generate("The quick", steering=[SteeringEdit(2, 11, 40.0)], max_new_tokens=6, stop_at_eos=False)
    assert g.token_ids != g.baseline_token_ids
    assert hook_snapshot(scope) == hooks


def test_generated_positions_leave_the_prompt_alone(scope):
    """A 'generated'-only edit cannot change the first new token (predicted from prompt positions only)."""
    g = scope.generate("The quick", steering=[SteeringEdit(2, 11, 40.0, positions="generated")],
                       max_new_tokens=4, stop_at_eos=False)
    assert g.token_ids[0] == g.baseline_token_ids[0]
    assert g.token_ids != g.baseline_token_ids


def test_sampling_is_seeded(scope):
    a = scope.generate("The", max_new_tokens=6, temperature=1.0, seed=3, baseline=False, stop_at_eos=False)
    b = scope.generate("The", max_new_tokens=6, temperature=1.0, seed=3, baseline=False, stop_at_eos=False)
    assert a.token_ids == b.token_ids
    df = a.to_dataframe()
    assert list(df.columns) == ["step", "steered", "baseline"] and len(df) == 6


@pytest.mark.parametrize("kw, match", [({"max_new_tokens": 0}, "max_new_tokens"),
                                       ({"temperature": -1.0}, "temperature"),
                                       ({"top_p": 0.0}, "top_p")])
def test_bad_generation_arguments(scope, kw, match):
    with pytest.raises(QScopeError, match=match):
        scope.generate("The", **kw)
