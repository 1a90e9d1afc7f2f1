"""The explorer's state logic with no browser: what the kernel sends is exactly what Scope.run computes,
edits from Python and from the front end take one path, stale results are never drawn, errors leave it working."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qscope_widgets import QScopeError, SteeringEdit
from qscope_widgets.widgets import Explorer, FeatureDashboard, TokenHeatmap
from qscope_widgets.widgets.scheduler import Job
from qscope_widgets.widgets.view_state import normalize_edit_rows, slider_bounds

PROMPT = "In the beginning God created the heaven and the earth."


def f32(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype="<f4")


def front_end_sets(widget, **state):
    """What a message from JS does: ipywidgets' set_state, inside the property lock."""
    widget.set_state(state)


def test_initial_state_is_exactly_scope_run(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    trace = demo.run(PROMPT, layers=[3])
    assert ex.result_seq == ex.request_seq == 1 and not ex.status["busy"] and ex.error == ""
    assert ex.tokens == trace.tokens
    ids = np.frombuffer(ex.codes_ids, dtype="<i4").reshape(len(trace), ex.k)
    vals = f32(ex.codes_values).reshape(len(trace), ex.k)
    np.testing.assert_array_equal(ids, trace.layers[3].ids.numpy())
    np.testing.assert_array_equal(vals, trace.layers[3].values.numpy())
    np.testing.assert_array_equal(f32(ex.token_values), trace.layers[3].values[:, 0].numpy())
    assert ex.diff_values == b""  # no edit is active
    assert [r[0] for r in ex.next_tokens["baseline"]] == [t for t, _ in trace.next_tokens(-1)][:10]
    assert ex.layer_state == ["ready"] * 6
    chart = f32(ex.layer_chart).reshape(6, 4)
    assert np.isfinite(chart[:, 1:]).all()  # every layer's L0 / error / top activation is charted on the demo
    assert ex.sidebar and ex.sidebar[0]["label"]  # labels from the shipped index


def test_binary_traits_travel_as_buffers(demo):
    from ipywidgets.widgets.widget import _remove_buffers

    ex = Explorer(demo, PROMPT, layer=3)
    state, paths, buffers = _remove_buffers(ex.get_state())
    names = {p[0] for p in paths}
    assert {"codes_ids", "codes_values", "token_values", "layer_chart"} <= names
    assert sum(len(b) for b in buffers) < 4096  # 13 tokens x 12 codes x 8 bytes + small arrays


def test_feature_colouring_and_steering_match_scope_run(demo):
    ex = Explorer(demo, PROMPT, layer=3, feature=2360)
    assert ex.color_by == "feature"
    np.testing.assert_array_equal(f32(ex.token_values), demo.run(PROMPT, layers=[3]).layers[3]
                                  .activation_of(2360).numpy())
    row = ex.pin(3, 2360)
    lo, hi, default = slider_bounds("add", demo.feature_index.features(3).max_activation[2360])
    assert (row["min"], row["max"], row["strength"]) == (pytest.approx(lo), pytest.approx(hi), default)
    ex.steering.set(3, 2360, strength=31.5)
    ex.wait()
    steered = demo.run(PROMPT, layers=[3], steering=[SteeringEdit(3, 2360, 31.5)]).layers[3]
    base = demo.run(PROMPT, layers=[3]).layers[3]
    np.testing.assert_array_equal(f32(ex.token_values), steered.activation_of(2360).numpy())
    np.testing.assert_array_equal(f32(ex.diff_values),
                                  (steered.activation_of(2360) - base.activation_of(2360)).numpy())
    assert ex.next_tokens["steered"] != ex.next_tokens["baseline"]
    ex.steering.set(3, 2360, strength=0.0)  # back to zero: bit-identical to the baseline again
    ex.wait()
    np.testing.assert_array_equal(f32(ex.token_values), base.activation_of(2360).numpy())
    assert ex.diff_values == b""


def test_front_end_edits_take_the_same_path(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    seq = ex.request_seq
    front_end_sets(ex, layer=4)
    ex.wait()
    assert ex.request_seq > seq and ex.result_seq == ex.request_seq
    np.testing.assert_array_equal(f32(ex.token_values), demo.run(PROMPT, layers=[4]).layers[4].values[:, 0].numpy())
    front_end_sets(ex, selected_token=3)
    ex.wait()
    assert ex.sidebar_title.startswith("token 3")
    trace = demo.run(PROMPT, layers=[4])
    assert [r["feature"] for r in ex.sidebar] == [int(f) for f in trace.layers[4].ids[3]][:len(ex.sidebar)]
    rows = normalize_edit_rows([{"layer": 4, "feature": 7, "strength": 5.0, "mode": "add", "typical": 10.0}])
    front_end_sets(ex, edits=rows)
    ex.wait()
    assert ex.trace.steering == (SteeringEdit(4, 7, 5.0),)


def test_mode_switch_resets_strength_into_the_new_range(demo):
    rows = normalize_edit_rows([{"layer": 3, "feature": 1, "strength": 40.0, "mode": "add", "typical": 20.0}])
    assert (rows[0]["min"], rows[0]["max"], rows[0]["strength"]) == (-40.0, 40.0, 40.0)
    rows[0]["mode"] = "ablate"
    rows = normalize_edit_rows(rows)
    assert (rows[0]["min"], rows[0]["max"], rows[0]["strength"]) == (0.0, 1.0, 0.0)
    big = normalize_edit_rows([{"layer": 3, "feature": 1, "strength": 500.0, "mode": "add", "typical": 20.0}])
    assert big[0]["max"] == 500.0  # a Python-given strength widens the slider instead of being clipped


def test_older_result_is_never_drawn_over_a_newer_one(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    old_result = ex._result
    ex.prompt = "And God said"
    ex.wait()
    drawn = (ex.result_seq, list(ex.tokens))
    ex._publish(Job(1, {}), old_result)  # a late result of request 1 arrives after request 2's
    assert (ex.result_seq, list(ex.tokens)) == drawn


@pytest.mark.parametrize("change, message", [
    ({"prompt": ""}, "prompt is empty"),
    ({"selected_feature": 99999}, "out of range"),
    ({"edits": [{"layer": 3, "feature": 5, "strength": math.nan, "mode": "add"}]}, "finite"),
    ({"edits": [{"layer": 3, "feature": 10**6, "strength": 1.0, "mode": "add"}]}, "out of range"),
    ({"edits": [{"layer": 3, "feature": 5, "strength": 1.0, "mode": "boost"}]}, "unknown steering mode"),
    ({"color_by": "rainbow"}, "color_by"),
])
def test_bad_input_shows_an_error_and_the_widget_keeps_working(demo, change, message):
    ex = Explorer(demo, PROMPT, layer=3)
    drawn = ex.result_seq
    front_end_sets(ex, **change)
    with pytest.raises(QScopeError, match=message):
        ex.wait()
    assert message.split()[0] in ex.error and ex.result_seq == drawn  # the last good result stays drawn
    front_end_sets(ex, prompt="The LORD is my shepherd", selected_feature=-1, edits=[], color_by="strongest")
    ex.wait()
    assert ex.error == "" and ex.result_seq == ex.request_seq and "shepherd" in "".join(ex.tokens)


def test_layer_change_from_python_resets_the_feature(demo):
    ex = Explorer(demo, PROMPT, layer=3, feature=2360)
    ex.layer = 5
    ex.wait()
    assert ex.selected_feature == -1 and ex.trace.layers.keys() >= {5}


def test_search_by_id_and_label_and_bad_ids(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    front_end_sets(ex, search_query="L3/2360")
    assert ex.search_results[0]["feature"] == 2360 and ex.search_results[0]["layer"] == 3
    front_end_sets(ex, search_query="lord")
    assert ex.search_results and all("lord" in (r["label"].lower()) or r["label"] for r in ex.search_results)
    front_end_sets(ex, search_query="999999")
    assert ex.search_results == [] and "out of range" in ex.error and "out of range" in ex.search_error
    front_end_sets(ex, search_query="L9/1")
    assert "layer 9" in ex.error
    front_end_sets(ex, search_query="2360")
    assert ex.search_results and ex.error == ""
    front_end_sets(ex, search_query='"In the beginning God created"')  # by example, at the layer in view
    # searched as it reads in running text: with the leading space the words have inside a sentence
    top = demo.run(" In the beginning God created", layers=[3]).top_features(3, n=20, skip_first=True)
    assert [r["feature"] for r in ex.search_results] == [int(f) for f in top.feature]
    assert ex.search_results[0]["activation"] == pytest.approx(float(top.activation[0]))
    assert ex.search_results[0]["label"] and ex.error == "" and ex.search_error == ""
    assert [r["token"] for r in ex.search_results] == list(top.token)  # which token each feature peaked on
    front_end_sets(ex, search_query='""')
    assert "phrase is empty" in ex.error


def test_messages_pin_and_select(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    ex._on_message(ex, {"type": "pin", "layer": 3, "feature": 2360}, [])
    assert [(r["layer"], r["feature"]) for r in ex.edits] == [(3, 2360)]
    ex._on_message(ex, {"type": "select_feature", "layer": 4, "feature": 12}, [])
    ex.wait()
    assert (ex.layer, ex.selected_feature, ex.color_by) == (4, 12, "feature")
    ex._on_message(ex, {"type": "pin", "layer": 3, "feature": -4}, [])
    assert "feature" in ex.error and len(ex.edits) == 1
    ex._on_message(ex, {"type": "explode"}, [])
    assert "unknown message" in ex.error


def test_continuation_streams_and_is_superseded(demo):
    ex = Explorer(demo, "The man said that", layer=3, continuation_tokens=12)
    ex.wait(idle=True)
    base = demo.generate("The man said that", max_new_tokens=12, baseline=False).text
    assert ex.continuation == {"seq": ex.result_seq, "baseline": base, "steered": base, "done": True, "note": ""}
    ex.steering.add(3, 2360, 31.6)
    ex.steering.set(3, 2360, strength=-31.6)  # supersedes the stream of the first edit
    ex.wait(idle=True)
    steered = demo.generate("The man said that", steering=[SteeringEdit(3, 2360, -31.6)], max_new_tokens=12,
                            baseline=False).text
    assert ex.continuation["seq"] == ex.result_seq == ex.request_seq
    assert ex.continuation["steered"] == steered and ex.continuation["done"]


def test_component_alone_and_repr_is_stable(demo):
    heat = TokenHeatmap(demo, "Hello world", layer=0)
    assert heat._view == "heatmap" and heat.tokens
    assert "0x" not in repr(heat) and repr(heat).startswith("TokenHeatmap(layer=0")
    df = heat.to_dataframe()
    assert list(df.token) == heat.tokens and "strongest_feature" in df


def test_explorer_refuses_a_layer_without_sae(demo):
    from qscope_widgets import UnknownLayerError

    with pytest.raises(UnknownLayerError, match="layer 9"):
        Explorer(demo, PROMPT, layer=9)


def test_dashboard_from_the_index_and_pin(demo):
    ex = demo.explore(PROMPT, layer=3, continuation_tokens=0)
    dash = demo.feature(3, 2360)
    assert isinstance(dash, FeatureDashboard) and dash.data["indexed"]
    assert dash.data["contexts"] and dash.data["promoted"] and len(dash.data["hist"]["counts"]) > 0
    assert len(dash.contexts_dataframe()) == len(dash.data["contexts"])
    dash._on_message(dash, {"type": "pin"}, [])
    assert (3, 2360) in {(r["layer"], r["feature"]) for r in ex.edits}
    with pytest.raises(Exception, match="out of range"):
        demo.feature(3, 10**6)
    dash.feature = 10**6  # a bad id typed in: the dashboard shows the error and keeps its data
    assert "out of range" in dash.status["error"] and dash.data["feature"] == 2360


def test_dashboard_and_explorer_without_an_index(scope):
    """A scope with random SAEs and no index: decoder facts only, and id search still works."""
    dash = FeatureDashboard(scope, 1, 3)
    assert not dash.data["indexed"] and len(dash.data["promoted"]) == 10
    ex = Explorer(scope, "a small test prompt", layer=1)
    assert ex.sidebar and ex.sidebar[0]["label"] == ""
    ex.set_state({"search_query": "some words"})
    assert "no feature index" in ex.error


def test_a_long_forward_is_abandoned_for_a_newer_request(demo, monkeypatch):
    """A slow model (simulated: every decoder layer sleeps) gives up a stale forward instead of finishing it."""
    import time as _time

    from qscope_widgets.widgets import scope_widget as explorer_mod

    monkeypatch.setattr(explorer_mod, "SUPERSEDE_AFTER_S", 0.05)
    ex = Explorer(demo, PROMPT, layer=3)
    import threading

    in_forward = threading.Event()

    def slow_layer(*_args):
        in_forward.set()
        _time.sleep(0.05)

    handles = [layer.register_forward_hook(slow_layer) for layer in demo.layers]
    try:
        ex.prompt = "And God said, Let there be light"  # ~0.3 s of forward on the slowed model
        assert in_forward.wait(10)  # that forward has started
        ex.prompt = "The LORD is my shepherd"
        ex.wait(timeout=30)
    finally:
        for h in handles:
            h.remove()
    assert "shepherd" in "".join(ex.tokens)
    assert ex._scheduler.runs == 2  # the first request and the last one; the middle one was abandoned mid-forward


def test_a_script_that_ends_while_a_continuation_streams_exits_cleanly(tmp_path):
    """No 'terminate called' abort: the worker is stopped before the interpreter tears torch down."""
    import subprocess
    import sys

    script = ("from qscope_widgets import Scope\n"
              "s = Scope.demo()\n"
              "ex = s.explore('In the beginning', layer=3, continuation_tokens=64)\n"
              "ex.pin(3, 2360)\n"
              "ex.steering.set(3, 2360, strength=30.0)\n")  # returns while the steered continuation streams
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "terminate called" not in run.stderr


def test_scrubbing_to_an_unloaded_layer_shows_loading_then_ready(qwen35, tokenizer, sae_folder):
    """With a bank budget below the whole release, only resident layers are charted; moving the scrubber to an
    unloaded layer publishes a 'loading' state while its SAE loads, then 'ready'."""
    from qscope_widgets import Scope

    one_layer = 2 * 64 * 256 * 4 + (256 + 64) * 4
    scope = Scope(qwen35, tokenizer, str(sae_folder), sae_cache_bytes=2 * one_layer)
    ex = Explorer(scope, "a small test prompt", layer=1)
    assert ex.layer_state == ["unloaded", "ready", "unloaded", "unloaded"]
    chart = f32(ex.layer_chart).reshape(4, 4)
    assert np.isnan(chart[[0, 2, 3], 1]).all() and np.isfinite(chart[1, 1])
    seen = []
    ex.observe(lambda change: seen.append(list(change["new"])), names="layer_state")
    ex.layer = 3
    ex.wait()
    assert ["unloaded", "ready", "unloaded", "loading"] in seen
    assert ex.layer_state[3] == "ready" and scope.saes.loads == 2


def test_out_of_memory_shows_in_the_widget_and_it_recovers(demo, monkeypatch):
    import torch

    ex = Explorer(demo, PROMPT, layer=3)
    real_run = demo.run

    def oom_once(*args, **kwargs):
        monkeypatch.setattr(demo, "run", real_run)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(demo, "run", oom_once)
    ex.prompt = "And God said"
    with pytest.raises(QScopeError, match="out of GPU memory"):
        ex.wait()
    ex.prompt = "And God said, Let there be light"
    ex.wait()
    assert ex.error == "" and "light" in "".join(ex.tokens)


def test_bad_constructor_arguments_raise_in_python(demo):
    from qscope_widgets import FeatureIndexError

    with pytest.raises(FeatureIndexError, match="out of range"):
        demo.explore(PROMPT, layer=3, feature=10**6)
    with pytest.raises(QScopeError, match="context|too long|tokens"):
        demo.explore("word " * 100_000, layer=3)
    with pytest.raises(QScopeError, match="finite"):
        demo.explore(PROMPT, layer=3, steering=[{"layer": 3, "feature": 1, "strength": float("nan")}])
    assert demo.explore("", layer=3).tokens == []  # nothing to run yet: the prompt box is waiting


def test_a_quoted_word_is_searched_as_in_running_text(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    front_end_sets(ex, search_query='"God"')
    assert ex.search_results and {r["token"] for r in ex.search_results} == {" God"}
