"""The steering panel's sweep (issue 14) and the label scores the sidebar, search and dashboard show."""

from __future__ import annotations

import math
import types

import pandas as pd
import pytest

from qscope_widgets import QScopeError, SteeringEdit
from qscope_widgets.steering_eval import FeatureActivation, TargetLogProb
from qscope_widgets.widgets import Explorer, FeatureDashboard, SteeringPanel
from qscope_widgets.widgets.scheduler import Superseded
from qscope_widgets.widgets.sweep_panel import NEUTRAL_PROMPTS, SweepRunner, resolve, summary_rows

PROMPT = "In the beginning God created the heaven and the earth."
PROMPTS = ["It is a", "I think that"]
TINY = dict(prompts=PROMPTS, strengths=[30.0], seeds=[0], max_new_tokens=2)


@pytest.fixture(scope="module")
def swept(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    ex.pin(3, 2360, 30.0)
    frame = ex.sweep(3, 2360, **TINY)
    yield ex, frame
    ex.close()


# ------------------------------------------------------------------------------------------------ the sweep
def test_sweep_returns_what_a_direct_steering_eval_call_returns(demo, swept):
    ex, frame = swept
    promoted = demo.feature_index.feature(3, 2360)["promoted"][:3]  # the decoder's top tokens: " which", ...
    metrics = {"feature_act": FeatureActivation(), "promoted_logprob": TargetLogProb(promoted, name="promoted_logprob")}
    direct = demo.steering_eval(PROMPTS, [SteeringEdit(3, 2360, 30.0)], strengths=[30.0], metrics=metrics,
                                controls=("random_direction", "other_feature"), max_new_tokens=2, seeds=[0])
    assert type(frame).__name__ == "SteeringEvalFrame"
    assert frame.attrs["metrics"] == {"feature_act": True, "promoted_logprob": True}
    assert set(frame.condition) == {"baseline", "feature", "random_direction", "other_feature"}
    pd.testing.assert_frame_equal(pd.DataFrame(frame), pd.DataFrame(direct))
    pd.testing.assert_frame_equal(frame.summary(), direct.summary())


def test_the_panel_shows_the_summary_of_that_frame(swept):
    ex, frame = swept
    shown = ex.sweep_result
    assert shown["state"] == "done" and (shown["layer"], shown["feature"]) == (3, 2360)
    assert shown["settings"]["prompts"] == PROMPTS and shown["settings"]["strengths"] == [30.0]
    assert shown["done"] == shown["total"] == len(frame)
    summary = frame.summary()
    assert [r["metric"] for r in shown["rows"]] == ["feature_act", "promoted_logprob"]
    assert [r["strength"] for r in shown["rows"]] == summary.strength.tolist()
    assert [r["specific"] for r in shown["rows"]] == summary.specific.tolist()
    for r, (_, s) in zip(shown["rows"], summary.iterrows()):
        for col in ("feature_mean", "baseline_mean", "random_direction_mean", "other_feature_mean"):
            assert r[col] == pytest.approx(s[col], nan_ok=True)


def test_a_finished_sweep_is_kept_not_run_again(swept):
    ex, frame = swept
    assert ex.sweep(3, 2360, **TINY) is frame  # a second click (new nonce), same settings: the kept frame


def test_a_newer_request_supersedes_a_running_sweep_between_generations(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    try:
        runner = SweepRunner(ex, lambda layer, feature: 0.0)
        request = {"layer": 3, "feature": 2360, **TINY}
        with pytest.raises(Superseded):
            runner.follow_up({"prompt": PROMPT, "edits": [], "sweep_request": request}, lambda: True)
        assert ex.sweep_result["state"] == "waiting" and ex.sweep_result["done"] == 1  # stopped after one row
        assert not runner.frames  # nothing half-done is kept
        runner.follow_up({"prompt": PROMPT, "edits": [], "sweep_request": {}}, lambda: False)
        assert ex.sweep_result["state"] == "cancelled"  # the cancel button clears the request
    finally:
        ex.close()


def test_defaults_come_from_the_view_when_the_request_arrives(demo):
    rows = [{"layer": 3, "feature": 2360, "strength": -8.0}]
    s = resolve(demo, {"layer": 3, "feature": 2360}, PROMPT, rows)
    assert s.prompts == (PROMPT, *NEUTRAL_PROMPTS)
    assert s.strengths == (-4.0, -8.0, -16.0) and s.seeds == (0,)
    assert s.controls == ("random_direction", "other_feature") and s.note == ""
    # slider at 0: the feature's typical activation; no index covering the layer: the random control only
    bare = types.SimpleNamespace(feature_index=None)
    s = resolve(bare, {"layer": 3, "feature": 7}, "", [], typical=10.0)
    assert s.prompts == NEUTRAL_PROMPTS and s.strengths == (5.0, 10.0, 20.0)
    assert s.controls == ("random_direction",) and "other-feature control" in s.note
    with pytest.raises(QScopeError, match="no strength to sweep L3/7"):
        resolve(bare, {"layer": 3, "feature": 7}, PROMPT, [], typical=0.0)


def test_the_sweep_steers_exactly_the_pinned_edit_its_mode_and_positions(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    try:
        ex.pin(3, 2360, 2.0, mode="clamp")
        ex.steer_positions = "generated"
        frame = ex.sweep(3, 2360, prompts=PROMPTS, strengths=[6.0], seeds=[0], max_new_tokens=2,
                         controls=["random_direction"])
        shown = ex.sweep_result["settings"]
        assert (shown["mode"], shown["positions"]) == ("clamp", "generated")
        assert set(frame["mode"]) == {"clamp"} and set(frame["positions"]) == {"generated"}
        promoted = demo.feature_index.feature(3, 2360)["promoted"][:3]
        metrics = {"feature_act": FeatureActivation(),
                   "promoted_logprob": TargetLogProb(promoted, name="promoted_logprob")}
        direct = demo.steering_eval(PROMPTS, [SteeringEdit(3, 2360, 6.0, "clamp", positions="generated")],
                                    strengths=[6.0], metrics=metrics, controls=("random_direction",),
                                    max_new_tokens=2, seeds=[0])
        pd.testing.assert_frame_equal(pd.DataFrame(frame), pd.DataFrame(direct))
        # the edit's mode matters where the feature fires: clamped to 6 there, not added (the comma feature on
        # a comma prompt, every position)
        ex.steer_positions = "all"
        comma = ["And God said, Let there be light: and there was light, and"]
        clamped = ex.sweep(3, 2360, prompts=comma, strengths=[6.0], seeds=[0], max_new_tokens=2,
                           controls=["random_direction"])
        added = demo.steering_eval(comma, [SteeringEdit(3, 2360, 6.0)], strengths=[6.0], metrics=metrics,
                                   controls=("random_direction",), max_new_tokens=2, seeds=[0])
        feat = clamped.condition == "feature"
        assert (clamped[feat].promoted_logprob.to_numpy() != added[feat].promoted_logprob.to_numpy()).all()
    finally:
        ex.close()


def test_a_selected_token_edit_is_swept_at_the_same_place_from_the_prompt_end(demo):
    n = int(demo.tokenize(PROMPT).shape[-1])
    rows = [{"layer": 3, "feature": 2360, "strength": 0.0, "mode": "ablate"}]
    from qscope_widgets.widgets.sweep_panel import prompt_positions

    where = prompt_positions([n - 1], n)
    assert where == (-1,) and prompt_positions("generated", n) == "generated" and prompt_positions(None, n) is None
    s = resolve(demo, {"layer": 3, "feature": 2360}, PROMPT, rows, positions=where)
    assert (s.mode, s.positions) == ("ablate", (-1,))
    assert s.strengths == (0.5, 1.0, 2.0)  # ablate at 0: fractions of the whole feature
    s = resolve(demo, {"layer": 3, "feature": 2360}, PROMPT, rows, positions=prompt_positions([0], n))
    assert s.prompts == (PROMPT,) and "shorter than" in s.note  # the neutral prompts have no token that far back
    clamp0 = resolve(demo, {"layer": 3, "feature": 2360}, PROMPT, [{**rows[0], "mode": "clamp"}])
    assert clamp0.strengths == (0.0,) and clamp0.mode == "clamp"  # clamp to 0 is an edit, swept as it is
    with pytest.raises(QScopeError, match="outside every sweep prompt"):
        resolve(demo, {"layer": 3, "feature": 2360, "prompts": ["It is"]}, PROMPT, rows, positions=(-40,))


def test_the_defaults_are_resolved_once_so_a_later_prompt_edit_does_not_restart_it(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    try:
        runner = SweepRunner(ex, lambda layer, feature: 0.0)
        req = {"layer": 3, "feature": 2360, "strengths": [4.0], "nonce": 1}
        first = runner.settings_for(req, {"prompt": PROMPT, "edits": []})
        assert runner.settings_for(req, {"prompt": "another prompt", "edits": []}) is first
        again = runner.settings_for({**req, "nonce": 2}, {"prompt": "another prompt", "edits": []})
        assert again.prompts[0] == "another prompt"  # a new click sweeps the view as it is now
    finally:
        ex.close()


@pytest.mark.parametrize("bad, match", [
    ({"layer": 3, "feature": 10**7}, "10000000"),
    ({"layer": 99, "feature": 1}, "99"),
    ({"layer": 3}, "needs 'layer' and 'feature'"),
    ({"layer": 3, "feature": 1, "strengths": [0.0]}, "non-zero"),
    ({"layer": 3, "feature": 1, "prompts": ["ok", " "]}, "empty"),
    ({"layer": 3, "feature": 1, "controls": ["shuffle"]}, "shuffle"),
    ({"layer": 3, "feature": 1, "max_new_tokens": 1}, "max_new_tokens"),
    ({"layer": 3, "feature": 1, "speed": 2}, "speed"),
    (5, "must be a dict, got int 5"),
    ("sweep", "got str 'sweep'"),
    ([3, 2360], r"got list \[3, 2360\]"),
    (None, "got NoneType None"),
])
def test_a_bad_sweep_request_is_refused_naming_the_value(demo, bad, match):
    ex = SteeringPanel(demo, PROMPT, layer=3)
    try:
        with pytest.raises(QScopeError, match=match):
            ex.sweep_request = bad
        assert ex.sweep_request == {}  # the widget keeps its value and stays usable
        assert ex.wait() is ex
    finally:
        ex.close()


def test_the_button_path_from_the_front_end_runs_the_sweep_on_the_worker(demo, swept):
    _, frame = swept
    w = SteeringPanel(demo, PROMPT, layer=3)
    try:
        w.set_state({"sweep_request": {"layer": 3, "feature": 2360, "nonce": 7, **TINY}})  # what JS sends
        w.wait(120, idle=True)
        shown = w.sweep_result
        assert shown["state"] == "done" and shown["total"] == len(frame)
        assert [r["feature_mean"] for r in shown["rows"]] == pytest.approx(frame.summary().feature_mean.tolist())
        w.set_state({"sweep_request": {"layer": 3, "feature": -4}})  # refused from the browser: shown, not raised
        assert "-4" in w.error and w.sweep_request["nonce"] == 7
    finally:
        w.close()


def test_views_without_the_sweep_panel_have_no_sweep(demo):
    from qscope_widgets.widgets import TokenHeatmap

    w = TokenHeatmap(demo, PROMPT, layer=3)
    try:
        assert not w.has_trait("sweep_request")
        with pytest.raises(QScopeError, match="no sweep panel"):
            w.sweep(3, 2360)
    finally:
        w.close()


def test_summary_rows_are_json_friendly():
    import json

    from qscope_widgets.steering_eval import SteeringEvalFrame

    rows = []
    for prompt in ("a", "b"):
        for cond, v in (("baseline", 0.0), ("feature", 2.0), ("random_direction", 1.0)):
            rows.append({"prompt": prompt, "layer": 3, "feature": 1, "strength": 4.0, "condition": cond, "seed": 0,
                         "feature_act": v + (prompt == "b"), "perplexity": 5.0, "distinct2": float("nan")})
    f = SteeringEvalFrame(rows)
    f.attrs["metrics"], f.attrs["controls"] = {"feature_act": True}, ["random_direction"]
    out = summary_rows(f)
    json.dumps(out, allow_nan=False)
    assert out[0]["feature_mean"] == 2.5 and out[0]["random_direction_mean"] == 1.5
    assert "other_feature_mean" not in out[0]


# ------------------------------------------------------------------------------------------------ label scores
def test_sidebar_rows_carry_the_label_score_from_the_index(demo, tmp_path):
    ex = Explorer(demo, PROMPT, layer=3)
    try:
        idx = demo.feature_index
        assert ex.sidebar
        for row in ex.sidebar:
            card = idx.feature(3, row["feature"])
            if card["label_score"] is None:
                assert row["label_score"] is None and row["label"] == (card["explanation"] or card["label"])
            else:
                assert row["label_score"] == pytest.approx(card["label_score"])
                assert row["label"] == card["scored_label"]  # the score belongs to the label shown
            assert row["label_weak"] == card["label_weak"]
        assert any(r["label_score"] is not None for r in ex.sidebar)
    finally:
        ex.close()
    # a layer without label scores: no score, no weak flag (every shipped layer is scored: drop layer 2's in a copy)
    import shutil

    from qscope_widgets import Scope

    shutil.copytree(demo.feature_index.path, tmp_path / "index")
    (tmp_path / "index" / "layer2" / "label_scores.parquet").unlink()
    other = Scope.demo()
    other.load_index(tmp_path / "index")
    ex = Explorer(other, PROMPT, layer=2)
    try:
        assert ex.sidebar and all(r["label_score"] is None and r["label_weak"] is None for r in ex.sidebar)
    finally:
        ex.close()


def test_label_search_results_are_sorted_by_score_and_carry_it(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    try:
        ex.search_query = "which"
        scores = [r["label_score"] for r in ex.search_results]
        assert scores and all(s is not None for s in scores[:3])
        known = [s for s in scores if s is not None]
        assert known == sorted(known, reverse=True)
        assert [r["feature"] for r in ex.search_results] == demo.feature_index.search("which").feature.tolist()
        assert all("label_weak" in r for r in ex.search_results)
    finally:
        ex.close()


def test_the_dashboard_data_carries_the_scored_label(demo):
    d = FeatureDashboard(demo, 3, 2360).data
    assert d["scored_label"] and math.isfinite(d["label_score"]) and d["label_weak"] in (True, False)
