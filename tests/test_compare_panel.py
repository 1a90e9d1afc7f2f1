"""The compare view (issue 13): the ranked list is the contrast's head, pins use its presets, both prompts are
coloured by one contrast feature; and the explorer's heatmap coloured by a monitor."""

from __future__ import annotations

import numpy as np
import pytest

from qscope_widgets import QScopeError
from qscope_widgets.contrast import steering_presets
from qscope_widgets.monitor import token_colouring
from qscope_widgets.widgets import CompareView, Explorer
from qscope_widgets.widgets.compare_panel import COMPARE_ROWS

A = "In the beginning God created the heaven and the earth."
B = "The stock market fell sharply on Monday as investors sold shares."
LAYER = 3


@pytest.fixture(scope="module")
def view(demo):
    v = demo.compare(A, B, layer=LAYER)
    yield v
    v.close()


def floats(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype="<f4")


def test_rows_equal_the_head_of_scope_contrast(demo, view):
    want = demo.contrast(A, B, layers=[LAYER]).head(COMPARE_ROWS)
    got = view.to_dataframe()
    assert len(got) == len(want) == COMPARE_ROWS
    assert got["feature"].tolist() == want["feature"].tolist()
    assert (got["layer"] == LAYER).all()
    for col in ("rate_a", "rate_b", "difference", "steer_0.5x", "steer_2x", "steer_10x"):
        np.testing.assert_allclose(got[col].to_numpy(), want[col].to_numpy(), rtol=1e-6, err_msg=col)
    assert got["difference"].is_monotonic_decreasing


def test_strips_are_coloured_by_the_top_feature_then_by_the_selected_one(demo, view):
    top = view.rows[0]["feature"]
    assert view.compare_feature == top
    ta, tb = demo.run(A, layers=[LAYER]), demo.run(B, layers=[LAYER])
    np.testing.assert_allclose(floats(view.values_a), ta.layers[LAYER].activation_of(top).numpy(), atol=1e-5)
    np.testing.assert_allclose(floats(view.values_b), tb.layers[LAYER].activation_of(top).numpy(), atol=1e-5)
    assert view.tokens_b == list(tb.tokens)
    other = view.rows[-1]["feature"]
    before = view.forwards
    view.selected_feature = other
    view.wait()
    assert view.compare_feature == other and view.forwards == before  # a row click runs no forward
    np.testing.assert_allclose(floats(view.values_b), tb.layers[LAYER].activation_of(other).numpy(), atol=1e-5)
    view.selected_feature = -1
    view.wait()


def test_identical_prompts_show_zero_differences(demo):
    v = demo.compare(A, A, layer=LAYER)
    try:
        assert v.rows, "the features of the prompt should still be listed"
        assert all(r["difference"] == 0.0 and r["rate_a"] == r["rate_b"] for r in v.rows)
        np.testing.assert_array_equal(floats(v.values_a), floats(v.values_b))
    finally:
        v.close()


def test_pin_preset_adds_the_contrast_preset_as_a_steering_edit(demo, view):
    row = view.to_dataframe().iloc[1]
    want = steering_presets(row)["10x"]
    pinned = view.pin_preset(int(row["layer"]), int(row["feature"]), "10x")
    assert (pinned["layer"], pinned["feature"]) == (want.layer, want.feature)
    assert pinned["strength"] == pytest.approx(want.strength)
    # a second preset replaces the strength, not adds a second slider; the browser's message takes the same path
    view._on_message(view, {"type": "pin_preset", "layer": want.layer, "feature": want.feature, "preset": "0.5x"}, [])
    rows = [e for e in view.edits if e["feature"] == want.feature]
    assert len(rows) == 1 and rows[0]["strength"] == pytest.approx(steering_presets(row)["0.5x"].strength)
    view.wait()
    assert view.trace is not view.baseline_trace  # the view now runs steered
    view.edits = []
    view.wait()


def test_bad_inputs_raise_named_errors_and_leave_the_view_usable(demo, view):
    with pytest.raises(QScopeError, match="prompt_b must be a string"):
        view.prompt_b = 42
    with pytest.raises(QScopeError, match="prompt_b must be a string"):
        demo.compare(A, ["not", "a", "prompt"], layer=LAYER)
    with pytest.raises(QScopeError, match="layer 99"):
        demo.compare(A, B, layer=99)
    with pytest.raises(QScopeError, match="preset '3x'"):
        view.pin_preset(LAYER, view.rows[0]["feature"], "3x")
    with pytest.raises(QScopeError, match="not in the compare list"):
        view.pin_preset(LAYER, 4095 if 4095 not in [r["feature"] for r in view.rows] else 4094, "2x")
    view._on_message(view, {"type": "pin_preset", "layer": LAYER, "feature": "x"}, [])  # from the page: shown
    assert "invalid literal" in view.status["error"] or "x" in view.status["error"]
    assert view.prompt_b == B and len(view.rows) == COMPARE_ROWS


def test_empty_second_prompt_shows_nothing_to_compare(demo):
    v = demo.compare(A, "", layer=LAYER)
    try:
        assert v.rows == [] and v.compare_feature == -1 and v.error == ""
        assert v.tokens_a == list(demo.run(A, layers=[LAYER]).tokens)
    finally:
        v.close()


# ---------------------------------------------------------------------------------------- monitor colouring
def test_explorer_colours_by_a_monitor_exactly_as_token_colouring(demo):
    m = demo.monitor(demo.contrast(A, B, layers=[LAYER]).head(3))
    ex = Explorer(demo, A, layer=LAYER, continuation_tokens=0)
    try:
        ex.color_by_monitor(m).wait()
        assert ex.color_by == "monitor" and ex.value_range == [0.0, 1.0]
        got = floats(ex.token_values)
        np.testing.assert_allclose(got, token_colouring(m, A), atol=1e-5)
        assert got.max() == pytest.approx(1.0) and (got >= 0).all()
        # a different monitor (other feature) colours differently: the colouring is not a constant
        m2 = demo.monitor([(LAYER, int(demo.contrast(A, B, layers=[LAYER]).iloc[-1]["feature"]))])
        ex.color_by_monitor(m2).wait()
        np.testing.assert_allclose(floats(ex.token_values), token_colouring(m2, A), atol=1e-5)
        ex.color_by_monitor(None).wait()
        assert ex.color_by == "strongest" and ex.monitor == {}
    finally:
        ex.close()


def test_monitor_colouring_refuses_bad_input(demo):
    ex = Explorer(demo, A, layer=LAYER, continuation_tokens=0)
    try:
        with pytest.raises(QScopeError, match="needs a Monitor"):
            ex.color_by_monitor("harmful")
        with pytest.raises(QScopeError, match="99999"):
            ex.monitor = {"features": [[LAYER, 99999]]}
        with pytest.raises(QScopeError, match="pairs"):
            ex.monitor = {"features": ["nonsense"]}
        ex.color_by = "monitor"  # without a monitor: the request fails with a clear error, the view stays
        with pytest.raises(QScopeError, match="needs a monitor"):
            ex.wait()
        ex.color_by = "strongest"
        ex.wait()
        assert ex.error == ""
    finally:
        ex.close()
