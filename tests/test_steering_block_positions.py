"""Inside ``with scope.steering(...)`` positions mean what they mean in ``scope.run`` and ``scope.generate``: with
and without a KV cache, in a single forward, in ``model.generate`` and in a hand-written decoding loop."""

import inspect

import pytest
import torch

from qscope_widgets import SteeringEdit
from qscope_widgets.errors import SteeringError

PROMPT = "The quick brown fox jumps over the lazy dog"
N_NEW = 6


def _edit(positions):
    return SteeringEdit(1, 5, 40.0, positions=positions)


def _hf_generate(scope, ids, **kw):
    with torch.inference_mode():
        return scope.model.generate(ids, max_new_tokens=N_NEW, do_sample=False, pad_token_id=0,
                                    return_dict_in_generate=True, output_logits=True, **kw)


@pytest.mark.parametrize("positions", [(-1,), (-3, 0), (2,)])
def test_block_positions_in_one_forward_equal_scope_run(scope, positions):
    ids = scope.tokenize(PROMPT)
    want = scope.run(PROMPT, layers=[3], steering=[_edit(positions)]).logits_last
    base = scope.run(PROMPT, layers=[3]).logits_last
    assert not torch.allclose(want, base), "the edit must matter for this test to mean anything"
    with scope.steering([_edit(positions)]), torch.inference_mode():
        got = scope.model(input_ids=ids, use_cache=False).logits[0, -1]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("positions", ["generated", (-1,), (0,), None])
@pytest.mark.parametrize("use_cache", [True, False])
def test_model_generate_in_a_block_equals_scope_generate(scope, positions, use_cache):
    ids = scope.tokenize(PROMPT)
    plen = ids.shape[1]
    want = scope.generate(PROMPT, [_edit(positions)], max_new_tokens=N_NEW, baseline=False, stop_at_eos=False)
    # without a KV cache every step is a fresh forward of the whole sequence: the block must be told the prompt
    kw = {} if use_cache else {"prompt_len": plen}
    with scope.steering([_edit(positions)], **kw):
        out = _hf_generate(scope, ids, use_cache=use_cache)
    assert out.sequences[0, plen:].tolist() == want.token_ids


@pytest.mark.parametrize("use_cache", [True, False])
def test_position_zero_with_prompt_len_edits_only_token_zero_while_decoding(scope, use_cache):
    """Each decoding step's logits equal a cache-free ``scope.run`` of the sequence so far with the same edit:
    under the KV cache the decoded tokens (chunk position 0) must not be edited as if they were token 0."""
    ids = scope.tokenize(PROMPT)
    plen = ids.shape[1]
    edit = SteeringEdit(1, 5, 200.0, positions=[0])
    with scope.steering([edit], prompt_len=plen):
        out = _hf_generate(scope, ids, use_cache=use_cache)
    seq = out.sequences[0]
    for step, logits in enumerate(out.logits):
        want = scope.run(seq[: plen + step].tolist(), layers=[3], steering=[edit]).logits_last
        torch.testing.assert_close(logits[0].float(), want, rtol=1e-4, atol=1e-4)


def test_generated_in_a_hand_written_cached_loop_leaves_the_prompt_alone(scope):
    ids = scope.tokenize(PROMPT)
    base = scope.run(PROMPT, layers=[3]).logits_last
    edit = SteeringEdit(1, 5, 80.0, positions="generated")
    with scope.steering([edit]), torch.inference_mode():
        first = scope.model(input_ids=ids, use_cache=True)
        nxt = first.logits[0, -1].argmax().view(1, 1)
        cache = getattr(first, "cache", None) or first.past_key_values
        name = "cache" if "cache" in inspect.signature(scope.model.forward).parameters else "past_key_values"
        second = scope.model(input_ids=nxt, use_cache=True, **{name: cache})
    torch.testing.assert_close(first.logits[0, -1], base, rtol=1e-5, atol=1e-5)  # the prompt is untouched
    full = ids[0].tolist() + [int(nxt)]
    want = scope.run(full, layers=[3], steering=[SteeringEdit(1, 5, 80.0, positions=[-1])]).logits_last
    torch.testing.assert_close(second.logits[0, -1], want, rtol=1e-4, atol=1e-4)  # the new token is steered


def test_block_positions_are_checked(scope):
    ids = scope.tokenize(PROMPT)
    with pytest.raises(SteeringError, match="position -99"):
        with scope.steering([SteeringEdit(1, 5, 1.0, positions=[-99])]), torch.inference_mode():
            scope.model(input_ids=ids)
    with pytest.raises(SteeringError, match="position 4096"):
        with scope.steering([SteeringEdit(1, 5, 1.0, positions=[4096])]):
            pass
    with pytest.raises(SteeringError, match="prompt_len"):
        with scope.steering([SteeringEdit(1, 5, 1.0)], prompt_len=1.5):
            pass
    assert torch.equal(scope.run(PROMPT, layers=[3]).logits_last, scope.run(PROMPT, layers=[3]).logits_last)
