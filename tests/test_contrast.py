"""scope.contrast: rankings with a known answer (identical sets, a planted feature), batched == one by one, layer
groups under a bank budget, presets, and bad input."""

import numpy as np
import pytest
import torch
from conftest import make_saes
from planting import PLANT_FEATURE, PLANT_LAYER, WITH, WITHOUT, planted_scope

from qscope_widgets import QScopeError, UnknownLayerError
from qscope_widgets.contrast import steering_presets


@pytest.fixture(params=["qwen3", "qwen35"])
def planted(request, tokenizer):
    model = request.getfixturevalue(request.param)
    scope, _ = planted_scope(model, tokenizer, make_saes(64, range(4), seed=1))
    return scope


def test_identical_sets_give_zero_differences_in_every_measure(planted):
    texts = WITH + WITHOUT
    df = planted.contrast(texts, list(texts), batch_size=3)
    assert len(df) > 0
    for a, b in (("rate_a", "rate_b"), ("mean_a", "mean_b"), ("text_rate_a", "text_rate_b"), ("max_a", "max_b")):
        assert np.array_equal(df[a].to_numpy(), df[b].to_numpy()), a
    assert float(df.difference.abs().max()) == 0.0 and float(df.effect_size.abs().max()) == 0.0


def test_planted_feature_ranks_first_by_mean_and_by_effect_size(planted):
    df = planted.contrast(WITH, WITHOUT, by="mean")
    top = df.iloc[0]
    assert (int(top.layer), int(top.feature)) == (PLANT_LAYER, PLANT_FEATURE)
    assert top.rate_b == 0.0 and top.rate_a > 0 and top.text_rate_a == 1.0
    by_effect = df.sort_values("effect_size", ascending=False).iloc[0]
    assert (int(by_effect.layer), int(by_effect.feature)) == (PLANT_LAYER, PLANT_FEATURE)
    # reversed sides, by effect size: it becomes the last row
    rev = planted.contrast(WITHOUT, WITH, by="effect")
    last = rev.iloc[-1]
    assert (int(last.layer), int(last.feature)) == (PLANT_LAYER, PLANT_FEATURE)
    assert rev.effect_size.to_numpy() == pytest.approx(rev.difference.to_numpy())


def test_planted_feature_rate_difference_is_exactly_its_token_share(planted, tokenizer):
    """By firing rate the planted feature's difference is the share of planted tokens in a (it never fires in b);
    random features of a random SAE can tie or beat that share, so this pins the value, and a high rank."""
    from planting import token_id

    tid = token_id(tokenizer)
    ids = [tokenizer(t)["input_ids"][1:] for t in WITH]  # skip_first
    share = sum(r.count(tid) for r in ids) / sum(len(r) for r in ids)
    df = planted.contrast(WITH, WITHOUT, by="rate")
    row = df[(df.layer == PLANT_LAYER) & (df.feature == PLANT_FEATURE)].iloc[0]
    assert row.rate_a == pytest.approx(share) and row.rate_b == 0.0 and row.difference == pytest.approx(share)
    assert row.name < 5


def test_rates_match_single_unpadded_runs(planted):
    """Right-padded batches of unequal lengths give the same statistics as one run per text (no state leaks
    from padding into real tokens, Gated DeltaNet included)."""
    texts_a, texts_b = WITH[:4], WITHOUT[:3]
    df = planted.contrast(texts_a, texts_b, layers=[0, 2], batch_size=4).set_index(["layer", "feature"])
    for layer in (0, 2):
        d_sae = planted.sae(layer).d_sae
        for texts, side in ((texts_a, "a"), (texts_b, "b")):
            count, total, n = np.zeros(d_sae), np.zeros(d_sae), 0
            for t in texts:
                lc = planted.run(t, layers=[layer]).layers[layer]
                ids, vals = lc.ids[1:], lc.values[1:]  # skip_first
                n += ids.shape[0]
                act = vals > 0
                np.add.at(count, ids[act].numpy(), 1)
                np.add.at(total, ids[act].numpy(), vals[act].double().numpy())
            got = df.xs(layer, level="layer")
            feats = got.index.to_numpy()
            np.testing.assert_allclose(got[f"rate_{side}"].to_numpy(), count[feats] / n, atol=1e-9)
            np.testing.assert_allclose(got[f"mean_{side}"].to_numpy(), total[feats] / n, rtol=1e-4, atol=1e-5)
            assert set(np.nonzero(count)[0]) <= set(feats)


def test_a_small_bank_budget_processes_layer_groups_with_the_same_result(qwen3, tokenizer):
    saes = make_saes(64, range(4), seed=2)
    one = next(iter(saes.values()))
    size = sum(p.numel() * p.element_size() for p in one.parameters())
    from qscope_widgets import Scope

    small = Scope(qwen3, tokenizer, dict(saes), sae_cache_bytes=size)  # one SAE resident at a time
    big = Scope(qwen3, tokenizer, dict(saes))
    peak = []
    small.saes.on_load = lambda n, sae: peak.append(small.saes.bytes_loaded())
    got = small.contrast(WITH, WITHOUT, by="mean")
    want = big.contrast(WITH, WITHOUT, by="mean")
    assert max(peak) <= size
    cols = ["layer", "feature", "rate_a", "rate_b", "mean_a", "mean_b", "difference"]
    np.testing.assert_allclose(got[cols].to_numpy(float), want[cols].to_numpy(float), rtol=1e-5, atol=1e-6)
    assert small.saes.loads == 4  # each layer loaded once: one pass per group, not a reload per batch


def test_a_prompt_against_a_prompt_and_a_layer_range(planted):
    df = planted.contrast(WITH[0], WITHOUT[0], layers=range(0, 2))
    assert set(df.layer) <= {0, 1} and df.attrs["texts_a"] == 1
    assert list(df.columns[:8]) == ["layer", "feature", "label", "rate_a", "rate_b", "mean_a", "mean_b",
                                    "active_mean_a"]
    assert df.difference.is_monotonic_decreasing


def test_steering_presets_are_the_apps_multiples_of_the_activation_difference(planted):
    df = planted.contrast(WITH, WITHOUT, by="mean")
    row = df.iloc[0]
    p = steering_presets(row)
    basis = row.active_mean_a - row.active_mean_b
    assert basis > 0
    assert [p[k].strength for k in ("0.5x", "2x", "10x")] == pytest.approx([0.5 * basis, 2 * basis, 10 * basis])
    assert (p["2x"].layer, p["2x"].feature) == (PLANT_LAYER, PLANT_FEATURE)
    same = planted.contrast(WITH, WITH).iloc[0]  # no difference: the app's fixed 5 / 20 / 100
    assert [steering_presets(same)[k].strength for k in ("0.5x", "2x", "10x")] == [5.0, 20.0, 100.0]
    with pytest.raises(QScopeError, match="steer_"):
        steering_presets({"layer": 0, "feature": 1})


def test_labels_come_from_the_attached_index(planted, tmp_path):
    planted.index(WITH + WITHOUT, out_dir=tmp_path / "idx", layers=[PLANT_LAYER], progress=False)
    df = planted.contrast(WITH, WITHOUT, layers=[PLANT_LAYER])
    assert df.label.iloc[0] == planted.feature_index.label(PLANT_LAYER, PLANT_FEATURE)
    assert "earth" in df.label.iloc[0]


@pytest.mark.parametrize("a, b, match", [
    ([], ["x y"], "a is empty"),
    (["fine text", 3], ["x y"], r"a\[1\] is a int"),
    (["ok"], ["ok", None], r"b\[1\] is a NoneType"),
    (["ok", "  "], ["x y"], r"a\[1\] is an empty or blank"),
    (b"bytes", ["x y"], "not bytes"),
    (42, ["x y"], "got int"),
])
def test_bad_sets_are_clear_errors(planted, a, b, match):
    with pytest.raises(QScopeError, match=match):
        planted.contrast(a, b)


def test_bad_options_are_clear_errors_and_the_scope_stays_usable(planted):
    with pytest.raises(UnknownLayerError, match="layer 9 is out of range"):
        planted.contrast(WITH, WITHOUT, layers=[0, 9])
    with pytest.raises(QScopeError, match="by must be one of"):
        planted.contrast(WITH, WITHOUT, by="median")
    with pytest.raises(QScopeError, match="layers is empty"):
        planted.contrast(WITH, WITHOUT, layers=[])
    with pytest.raises(QScopeError, match="batch_size"):
        planted.contrast(WITH, WITHOUT, batch_size=0)
    import pandas as pd

    with pytest.raises(QScopeError, match="one column"):
        planted.contrast(pd.DataFrame({"text": WITH}), WITHOUT)
    with pytest.raises(QScopeError, match="single token"):
        planted.contrast(["A"], ["B"])
    assert len(planted.contrast(WITH, WITHOUT, layers=0)) > 0


def test_long_texts_are_cut_and_counted(planted):
    long = " ".join(["the earth jumps"] * 200)
    df = planted.contrast([long], WITHOUT, max_tokens=32)
    assert df.attrs["truncated"] == 1 and df.attrs["tokens_a"] == 31


def test_contrast_leaves_no_hooks_behind(planted):
    from conftest import hook_snapshot

    before = hook_snapshot(planted)
    planted.contrast(WITH, WITHOUT)
    with pytest.raises(QScopeError):
        planted.contrast(WITH, WITHOUT, by="nope")
    assert hook_snapshot(planted) == before
    assert torch.is_grad_enabled()
