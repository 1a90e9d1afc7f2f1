"""Scope.run: the hook point is resid_post, codes are the SAE's, the trace is compact and has pandas views."""

import pytest
import torch

from qscope_widgets import Scope


def hidden_states(scope, ids):
    with torch.inference_mode():
        return scope.model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states


def test_hook_equals_output_hidden_states(scope):
    ids = scope.tokenize("The quick brown fox jumps over the lazy dog")
    tr = scope.run(ids[0], layers=[0, 1, 2, 3], return_residuals=True)
    hs = hidden_states(scope, ids)
    last = scope.n_layers - 1
    for n in range(last):
        torch.testing.assert_close(tr.residuals[n], hs[n + 1][0].float(), rtol=0, atol=0)
    # the last entry of hidden_states is after the final norm; our hook reads the layer output before it
    assert not torch.allclose(tr.residuals[last], hs[last + 1][0].float())
    normed = scope.model.model.norm(tr.residuals[last][None])[0]
    torch.testing.assert_close(normed, hs[last + 1][0].float(), rtol=1e-5, atol=1e-5)


def test_codes_are_the_saes_encoding(scope):
    tr = scope.run("In the beginning God created", layers=[1, 2], return_residuals=True)
    for n in (1, 2):
        sae = scope.sae(n)
        x = tr.residuals[n]
        codes = tr.layers[n]
        assert codes.ids.shape == (len(tr), sae.cfg.k)
        torch.testing.assert_close(codes.dense(), sae.encode(x), rtol=1e-6, atol=1e-6)
        err = (x - sae(x)).norm(dim=-1) / x.norm(dim=-1)
        torch.testing.assert_close(codes.recon_error, err, rtol=1e-5, atol=1e-6)
        assert (codes.l0 <= sae.cfg.k).all()


def test_trace_contents_and_dataframes(scope):
    tr = scope.run("The quick brown fox", layers=2, top_n=5)
    n = len(tr)
    assert tr.tokens and "".join(tr.tokens) == "The quick brown fox"
    assert tr.next_ids.shape == (n, 5) and tr.next_probs.shape == (n, 5)
    assert (tr.next_probs[:, :-1] >= tr.next_probs[:, 1:]).all()
    probs = tr.logits_last.softmax(-1)
    torch.testing.assert_close(tr.next_probs[-1], probs.topk(5).values)
    assert len(tr.next_tokens()) == 5
    df = tr.to_dataframe()
    assert list(df.columns) == ["layer", "position", "token", "feature", "activation", "rank"]
    assert (df.activation != 0).all() and set(df.layer) == {2}
    assert len(df) == int(tr.layers[2].l0.sum())
    top = tr.top_features(2, n=3)
    assert len(top) == 3 and top.activation.is_monotonic_decreasing
    assert top.activation.iloc[0] == pytest.approx(float(tr.layers[2].values.max()))
    one = tr.top_features(2, position=-1)
    assert set(one.position) == {n - 1}
    assert len(tr.tokens_dataframe()) == n and "recon_error_L2" in tr.tokens_dataframe()
    assert list(tr.next_token_dataframe().columns) == ["token", "probability"]
    f = int(tr.layers[2].ids[0, 0])
    assert tr.feature_activations(2, f)[0] == tr.layers[2].values[0, 0]
    assert "Trace(" in repr(tr) and "0x" not in repr(tr)


def test_default_layers_are_all_sae_layers(scope):
    assert sorted(scope.run("hello").layers) == scope.sae_layers == [0, 1, 2, 3]


def test_run_is_deterministic_and_matches_plain_forward(scope):
    ids = scope.tokenize("def main(argv):")
    with torch.inference_mode():
        # run projects only the last position (logits_to_keep=1): compare with the plain model doing the same
        bare = scope.model(input_ids=ids, use_cache=False, logits_to_keep=1).logits[0, -1]
        full = scope.model(input_ids=ids, use_cache=False).logits[0]
    tr = scope.run("def main(argv):", layers=[0, 3])
    assert torch.equal(tr.logits_last, bare.float()), "capturing alone must not change the forward"
    torch.testing.assert_close(tr.logits_last, full[-1].float(), rtol=1e-5, atol=1e-5)


def test_next_tokens_of_every_position_are_computed_on_first_read_and_match_the_full_logits(scope):
    """Only the last position is projected during the run; the others come from the kept final hidden states,
    equal to the top-n of the full (seq, vocab) logits of a plain forward."""
    ids = scope.tokenize("lazy next tokens for the positions read")
    with torch.inference_mode():
        full = scope.model(input_ids=ids, use_cache=False).logits[0].float()
    tr = scope.run(ids[0], layers=[1], top_n=5)
    assert tr.next_ids_ is None, "not computed by the run"
    last = tr.next_tokens(-1)
    assert tr.next_ids_ is None, "the last position is answered without computing the others"
    ref_p, ref_i = full.softmax(-1).topk(5, dim=-1)
    assert torch.equal(tr.next_ids, ref_i)
    torch.testing.assert_close(tr.next_probs, ref_p, rtol=1e-4, atol=1e-6)
    assert [t for t, _ in last] == tr.next_token_strs[-1]
    assert tr.next_source is None, "the hidden states are released once materialised"


def test_multimodal_style_wrapper_is_found(qwen3, tokenizer, sae_folder):
    """Layers are found under model.model.language_model.layers too (Qwen3_5ForConditionalGeneration)."""
    from qscope_widgets.model_layers import find_decoder_layers

    class Inner(torch.nn.Module):
        def __init__(self, lm):
            super().__init__()
            self.language_model = lm

    class Wrapper(torch.nn.Module):
        def __init__(self, base):
            super().__init__()
            self.model = Inner(base.model)
            self.config = base.config

    assert find_decoder_layers(Wrapper(qwen3)) is qwen3.model.layers


def test_from_pretrained_round_trip(tmp_path, qwen35, tokenizer, sae_folder):
    qwen35.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    scope = Scope.from_pretrained(str(tmp_path / "m"), saes=str(sae_folder))
    assert scope.n_layers == 4 and scope.d_model == 64 and scope.sae_layers == [0, 1, 2, 3]
    a = scope.run("The quick brown fox", layers=[1])
    b = Scope(qwen35, tokenizer, str(sae_folder)).run("The quick brown fox", layers=[1])
    torch.testing.assert_close(a.logits_last, b.logits_last)
    assert "Scope(" in repr(scope)


def test_trace_pickles_without_the_model(scope):
    import pickle

    tr = scope.run("The quick brown fox", layers=[1])
    blob = pickle.dumps(tr)
    assert len(blob) < 200_000, "a trace is compact: no model, no dense codes"
    back = pickle.loads(blob)
    assert back.next_token_strs == tr.next_token_strs and back.tokens == tr.tokens
    assert torch.equal(back.layers[1].ids, tr.layers[1].ids)


def test_cancelled_run_stops_between_layers_and_leaves_no_hook(scope):
    from conftest import hook_snapshot
    from qscope_widgets.hooks import RunCancelled

    before = hook_snapshot(scope)
    baseline = scope.run("cancel me please", layers=[1])
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) >= 2  # give up after the second decoder layer

    with pytest.raises(RunCancelled):
        scope.run("cancel me please", layers=[1], cancel=cancel)
    assert len(calls) == 2 and hook_snapshot(scope) == before
    again = scope.run("cancel me please", layers=[1], cancel=lambda: False)
    assert torch.equal(again.logits_last, baseline.logits_last)
