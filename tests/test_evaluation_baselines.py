"""evaluate_saes: the same figures as evaluate_sae where they overlap, plus fair baselines computed as defined."""


import pytest
import torch

from qscope_widgets.errors import QScopeError
from qscope_widgets.evaluation import dead_fraction_curve, evaluate_sae, evaluate_saes, unigram_log_probs


@pytest.fixture
def windows(scope):
    g = torch.Generator().manual_seed(0)
    vocab = scope.model.get_input_embeddings().weight.shape[0]
    return torch.randint(0, vocab, (6, 24), generator=g)


def test_one_pass_figures_match_the_per_layer_evaluation(scope, windows):
    ev = evaluate_saes(scope, windows, [1, 3], batch_size=4)
    for row in ev.rows:
        ref = evaluate_sae(scope, windows, row["layer"], batch_size=4, skip_first=True)
        for k in ("fve", "dead_fraction", "ce_clean", "ce_sae", "ce_zero", "l0"):
            assert row[k] == pytest.approx(ref[k], rel=1e-4, abs=1e-5), k
        assert row["recovered_vs_zero"] == pytest.approx(ref["ce_recovered"], rel=1e-4)
        assert row["ce_increase_nats"] == pytest.approx(row["ce_sae"] - row["ce_clean"])
        for base, col in (("ce_mean_ablation", "recovered_vs_mean"), ("ce_unigram", "recovered_vs_unigram")):
            want = (row[base] - row["ce_sae"]) / (row[base] - row["ce_clean"])
            assert row[col] == pytest.approx(want)
    assert list(ev.to_dataframe().layer) == [1, 3]


def test_unigram_baseline_is_the_cross_entropy_of_token_frequencies(scope, windows):
    vocab = scope.model.get_input_embeddings().weight.shape[0]
    lp = unigram_log_probs(windows, vocab, smoothing=0.0 + 1e-9)
    targets = windows[:, 1:].reshape(-1)
    counts = torch.bincount(targets, minlength=vocab).double()
    p = counts / counts.sum()
    entropy = -float((p[p > 0] * p[p > 0].log()).sum())
    row = evaluate_saes(scope, windows, [2], unigram=lp).rows[0]
    assert row["ce_unigram"] == pytest.approx(entropy, rel=1e-6)
    with pytest.raises(QScopeError, match=r"\(7,\)"):
        evaluate_saes(scope, windows, [2], unigram=torch.zeros(7))


def test_dead_fraction_falls_as_the_sample_grows(scope, windows):
    ev = evaluate_saes(scope, windows, [0])
    n = ev.rows[0]["tokens"]
    curve = ev.dead_fraction_curve([1, 10, n])[0]
    vals = list(curve.values())
    assert vals == sorted(vals, reverse=True)
    assert curve[n] == pytest.approx(ev.rows[0]["dead_fraction"])
    assert dead_fraction_curve(torch.tensor([-1, 0, 5]), [1, 6]) == {1: 2 / 3, 6: 1 / 3}


def test_groups_give_each_halfs_figures_from_the_same_passes(scope, windows):
    """Stability without a second run: with ``groups`` every figure is also measured on each group of windows,
    exactly as a separate run on that group would (mean ablation excepted: the whole sample's mean is the
    baseline in every group)."""
    halves = torch.arange(len(windows)) % 2
    ev = evaluate_saes(scope, windows, [1, 3], batch_size=4, groups=halves)
    plain = evaluate_saes(scope, windows, [1, 3], batch_size=4)
    for a, b in zip(ev.rows, plain.rows):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-9)  # grouping changes nothing in the pooled figures
    assert sorted(ev.group_rows) == [0, 1] and not plain.group_rows
    for g in (0, 1):
        alone = evaluate_saes(scope, windows[halves == g], [1, 3], batch_size=4, unigram=unigram_log_probs(
            windows, scope.model.get_input_embeddings().weight.shape[0]))
        for a, b in zip(ev.group_rows[g], alone.rows):
            for k in ("tokens", "fve", "l0", "dead_fraction", "ce_clean", "ce_sae", "ce_zero", "ce_unigram",
                      "recovered_vs_zero", "recovered_vs_unigram"):
                assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), (g, k)
    both = ev.groups_dataframe()
    assert len(both) == 4 and set(both.group) == {0, 1}
    # the two halves' CE averages to the whole sample's (equal token counts)
    for n, row in enumerate(ev.rows):
        assert row["ce_sae"] == pytest.approx((ev.group_rows[0][n]["ce_sae"] + ev.group_rows[1][n]["ce_sae"]) / 2)
    with pytest.raises(QScopeError, match="one int per window"):
        evaluate_saes(scope, windows, [1], groups=[0, 1])
