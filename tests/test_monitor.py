"""Monitors: scores with a known answer (a planted feature separates perfectly), batched == per token == from a
trace == during generation, ROC AUC against a brute-force count, save/load and refusal, bad input."""

import json

import numpy as np
import pytest
from conftest import make_saes
from planting import PLANT_FEATURE, PLANT_LAYER, WITH, WITHOUT, planted_scope

from qscope_widgets import QScopeError, Scope, UnknownLayerError
from qscope_widgets.monitor import Monitor, MonitorError, roc_auc, token_colouring

PLANT = (PLANT_LAYER, PLANT_FEATURE)


@pytest.fixture(params=["qwen3", "qwen35"])
def planted(request, tokenizer):
    model = request.getfixturevalue(request.param)
    scope, _ = planted_scope(model, tokenizer, make_saes(64, range(4), seed=1))
    return scope


@pytest.fixture
def planted35(qwen35, tokenizer):
    return planted_scope(qwen35, tokenizer, make_saes(64, range(4), seed=1))[0]


def test_roc_auc_matches_counting_pairs_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = rng.integers(0, 6, size=40).astype(float)  # many ties
        y = rng.integers(0, 2, size=40)
        if y.all() or not y.any():
            continue
        pos, neg = s[y == 1], s[y == 0]
        brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
            len(pos) * len(neg))
        assert roc_auc(s, y) == pytest.approx(brute)
    assert roc_auc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0 and roc_auc([4, 3, 2, 1], [0, 0, 1, 1]) == 0.0
    with pytest.raises(MonitorError, match="both classes"):
        roc_auc([1, 2], [1, 1])


def test_planted_feature_monitor_separates_perfectly(planted):
    m = planted.monitor([PLANT])
    ev = m.evaluate(WITH + WITHOUT, [1] * len(WITH) + [0] * len(WITHOUT))
    assert ev.auc == 1.0
    assert ev.precision == 1.0 and ev.recall == 1.0
    assert (ev.scores[len(WITH):] == 0).all() and (ev.scores[:len(WITH)] > 0).all()
    assert "optimistic" in ev.threshold_source


def test_a_monitor_from_a_contrast_head_gets_signed_scaled_weights(planted35):
    df = planted35.contrast(WITH, WITHOUT, by="mean")
    m = planted35.monitor(df.head(2))
    assert m.features[0] == PLANT
    assert m.weights[0] == pytest.approx(1.0 / df.iloc[0].active_mean_a)
    both = planted35.monitor(df.iloc[[0, -1]])
    assert both.weights[0] > 0 > both.weights[1]  # the last row is b's: it counts against


def test_score_batched_equals_per_token_and_trace(planted):
    m = planted.monitor([PLANT, (2, 5), (3, 9)], weights=[1.0, 0.5, -2.0], reduce="mean")
    texts = WITH[:3] + WITHOUT[:3]
    batched = m.score(texts, batch_size=4)
    single = m.score(texts, batch_size=1)
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)
    for t, b in zip(texts, batched):
        per = m.per_token(t)
        assert len(per.tokens) == len(per.scores) == len(planted.tokenize(t)[0])
        assert b == pytest.approx(per.scores[1:].mean(), rel=1e-4, abs=1e-5)  # skip_first
        trace = planted.run(t, layers=m.layers)
        np.testing.assert_allclose(m.scores_from_trace(trace), per.scores, rtol=1e-4, atol=1e-5)
    traces = [planted.run(t, layers=m.layers) for t in texts]
    np.testing.assert_allclose(m.score(traces), batched, rtol=1e-4, atol=1e-5)  # no forward: from the traces
    assert m.evaluate(traces, [1, 1, 1, 0, 0, 0]).auc == m.evaluate(texts, [1, 1, 1, 0, 0, 0]).auc
    with pytest.raises(MonitorError, match="lacks layers"):
        m.scores_from_trace(planted.run(texts[0], layers=[0]))


def test_precision_and_recall_at_a_given_threshold(planted35):
    m = planted35.monitor([PLANT], reduce="sum")
    texts, y = WITH + WITHOUT, [1] * 6 + [0] * 6
    scores = m.score(texts)
    thr = float(np.sort(scores[:6])[3])  # flags 3 of the 6 positives, no negative
    ev = m.with_threshold(thr).evaluate(texts, y)
    assert ev.threshold_source == "the monitor's" and ev.threshold == thr
    assert ev.recall == pytest.approx(3 / 6) and ev.precision == 1.0
    ev2 = m.evaluate(texts, y, threshold=-1.0)  # flags everything
    assert ev2.recall == 1.0 and ev2.precision == pytest.approx(0.5)
    cal = m.calibrate(texts, y)
    assert cal.threshold is not None and cal.evaluate(texts, y).recall == 1.0
    assert list(ev.to_dataframe().columns) == ["score", "label", "flagged"]
    import matplotlib

    matplotlib.use("Agg")
    fig = ev.plot()
    assert len(fig.axes) == 2


def test_save_load_round_trip_and_refusal_on_another_scope(planted35, tmp_path, qwen3, tokenizer):
    m = planted35.monitor([PLANT, (3, 9)], weights=[1.0, -0.25], threshold=2.5, reduce="mean")
    path = m.save(tmp_path / "m.json")
    back = Monitor.load(path, planted35)
    assert (back.features, back.weights, back.threshold, back.spec) == (m.features, m.weights, m.threshold, m.spec)
    np.testing.assert_array_equal(back.score(WITH[:2]), m.score(WITH[:2]))
    data = json.loads(path.read_text())
    assert data["identity"]["model"] == planted35.name
    # another model (same SAE widths)
    other_model = Scope(qwen3, tokenizer, make_saes(64, range(4), seed=1))
    with pytest.raises(MonitorError, match="saved for model="):
        Monitor.load(path, other_model)
    # the same model with other SAEs of the same shape: the fingerprint refuses
    same_model_other_saes = Scope(planted35.model, tokenizer, make_saes(64, range(4), seed=7))
    with pytest.raises(MonitorError, match="encoder weights differ"):
        Monitor.load(path, same_model_other_saes)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(MonitorError, match="not a monitor file"):
        Monitor.load(tmp_path / "bad.json", planted35)
    with pytest.raises(MonitorError, match="no monitor file"):
        Monitor.load(tmp_path / "missing.json", planted35)


@pytest.mark.parametrize("features, kwargs, err, match", [
    ([], {}, MonitorError, "at least one"),
    ([(0, 1)], {"reduce": "median"}, MonitorError, "reduce must be one of"),
    ([(9, 1)], {}, UnknownLayerError, "layer 9 is out of range"),
    ([(0, 10_000)], {}, QScopeError, "feature 10000 is out of range"),
    ([(0, 1), (0, 1)], {}, MonitorError, "listed twice"),
    ([(0, 1)], {"weights": [1.0, 2.0]}, MonitorError, "1 features but 2 weights"),
    ([(0, 1)], {"weights": [float("nan")]}, MonitorError, "finite"),
    ([(0, "1")], {}, MonitorError, r"features\[0\]"),
    ("L0/1", {}, MonitorError, "list of \\(layer, feature\\) pairs"),
    ([(0, 1)], {"threshold": float("inf")}, MonitorError, "threshold"),
])
def test_bad_monitor_arguments_are_clear_errors(planted35, features, kwargs, err, match):
    with pytest.raises(err, match=match):
        planted35.monitor(features, **kwargs)


def test_bad_texts_and_labels_are_clear_errors(planted35):
    m = planted35.monitor([PLANT])
    with pytest.raises(QScopeError, match="texts is empty"):
        m.score([])
    with pytest.raises(QScopeError, match=r"texts\[1\] is a float"):
        m.score(["ok text", 1.5])
    with pytest.raises(MonitorError, match="2 texts but 3 labels"):
        m.evaluate(WITH[:2], [1, 0, 1])
    with pytest.raises(MonitorError, match="0/1 or booleans"):
        m.evaluate(WITH[:2], ["yes", "no"])
    with pytest.raises(MonitorError, match="both classes"):
        m.evaluate(WITH[:2], [1, 1])
    assert m.score(WITH[:1]).shape == (1,)  # still usable


def test_generation_reports_monitor_scores_and_stops_above(planted35):
    m = planted35.monitor([PLANT, (3, 9)], weights=[1.0, 1.0])
    g = planted35.generate("The earth", max_new_tokens=8, monitor=m, stop_at_eos=False)
    assert len(g.monitor_scores) == len(g.token_ids) == 8 and g.stopped_at is None
    assert g.baseline_monitor_scores == pytest.approx(g.monitor_scores)
    # the same scores as re-reading prompt + continuation in one forward
    prompt_ids = planted35.tokenize("The earth")[0].tolist()
    per = m.per_token(prompt_ids + g.token_ids)
    np.testing.assert_allclose(g.monitor_scores, per.scores[len(prompt_ids):], rtol=1e-3, atol=1e-3)
    # stop right after the first token whose score beats every earlier one (or the first token)
    s = np.array(g.monitor_scores)
    records = [i for i in range(1, len(s)) if s[i] > s[:i].max()]
    i = records[0] if records else 0
    thr = float((s[:i].max() + s[i]) / 2) if i else float(s[0] - 1.0)
    g2 = planted35.generate("The earth", max_new_tokens=8, monitor=m, stop_above=thr, stop_at_eos=False)
    assert g2.stopped_at == i and len(g2.token_ids) == i + 1 and g2.token_ids == g.token_ids[:i + 1]
    assert g2.baseline_stopped_at == i
    plain = planted35.generate("The earth", max_new_tokens=8, stop_at_eos=False)
    assert plain.token_ids == g.token_ids and plain.monitor_scores == []
    with pytest.raises(QScopeError, match="stop_above needs a monitor"):
        planted35.generate("The earth", stop_above=1.0)
    with pytest.raises(QScopeError, match="monitor must be a Monitor"):
        planted35.generate("The earth", monitor=[PLANT])


def test_token_colouring_is_per_token_floats_in_unit_range(planted35):
    m = planted35.monitor([PLANT])
    c = token_colouring(m, WITH[0])
    assert len(c) == len(planted35.tokenize(WITH[0])[0]) and all(0.0 <= v <= 1.0 for v in c)
    assert max(c) == 1.0
    trace = planted35.run(WITH[0], layers=[PLANT_LAYER])
    assert token_colouring(m, trace) == pytest.approx(c, abs=1e-6)
    with_thr = token_colouring(m.with_threshold(1e9), WITH[0])
    assert max(with_thr) < 1e-3
