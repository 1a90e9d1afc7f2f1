"""The panel architecture: view-only inputs redraw from the cached trace, each view syncs only its panels'
traits, and inputs are validated when set (issue 11)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from qscope_widgets import QScopeError
from qscope_widgets.widgets import (Explorer, FeatureDashboard, LayerScrubber, SteeringPanel, TokenHeatmap)
from qscope_widgets.widgets.panels import PANELS, Panel, PanelInput, register_panel, token_values
from qscope_widgets.widgets.view_state import normalize_edit_rows, slider_bounds

PROMPT = "In the beginning God created the heaven and the earth."


def front_end_sets(widget, **state):
    widget.set_state(state)


@pytest.mark.parametrize("change", [{"selected_token": 3}, {"selected_feature": 2360}, {"color_by": "error"},
                                    {"layer": 4}])
def test_view_only_changes_run_no_forward(demo, change):
    ex = Explorer(demo, PROMPT, layer=3)
    before = ex.forwards
    front_end_sets(ex, **change)
    ex.wait()
    assert ex.forwards == before, f"{change} ran the model"
    assert ex.result_seq == ex.request_seq and not ex.status["forward"]


def test_prompt_and_edit_changes_run_a_forward(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    n = ex.forwards
    ex.prompt = "The LORD is my shepherd"
    ex.wait()
    assert ex.forwards == n + 1 and ex.status["forward"]
    ex.pin(3, 2360, strength=20.0)
    ex.wait()
    assert ex.forwards == n + 2


def test_only_the_panels_that_read_an_input_are_recomputed(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    front_end_sets(ex, color_by="error")
    ex.wait()
    assert ex.status["panels"] == ["heatmap"]
    front_end_sets(ex, selected_token=2)
    ex.wait()
    assert ex.status["panels"] == ["layers", "next_tokens", "sidebar"]


def test_view_only_redraw_equals_a_fresh_run(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    front_end_sets(ex, selected_feature=2360, color_by="feature", selected_token=4)
    ex.wait()
    fresh = Explorer(demo, PROMPT, layer=3, feature=2360)
    fresh.selected_token = 4
    fresh.wait()
    for name in ("token_values", "codes_ids", "sidebar", "layer_chart", "next_tokens"):
        assert getattr(ex, name) == getattr(fresh, name), name
    want = demo.run(PROMPT, layers=[3]).layers[3].activation_of(2360).numpy()
    np.testing.assert_array_equal(np.frombuffer(ex.token_values, "<f4"), want)


def test_next_tokens_follow_the_selected_token(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    assert ex.next_tokens["position"] == len(ex.tokens) - 1
    ex.selected_token = 2
    ex.wait()
    trace = demo.run(PROMPT, layers=[3])
    assert ex.next_tokens["position"] == 2 and ex.next_tokens["token"] == trace.tokens[2]
    assert [r[0] for r in ex.next_tokens["baseline"]] == [t for t, _ in trace.next_tokens(2)]


def test_each_view_syncs_only_its_panels_traits(demo):
    def synced(cls):
        return {n for n in cls.class_trait_names(sync=True)}
    heat, steer, layers = synced(TokenHeatmap), synced(SteeringPanel), synced(LayerScrubber)
    assert "codes_ids" in heat and "sidebar" not in heat and "layer_chart" not in heat and "continuation" not in heat
    assert "next_tokens" in steer and "continuation" in steer and "codes_ids" not in steer
    assert "layer_chart" in layers and "tokens" not in layers and "search_query" not in layers
    assert synced(Explorer) >= heat | steer | layers
    assert TokenHeatmap.class_traits()["_panels"].default() == ["heatmap"]


def test_a_new_panel_is_one_function_and_one_registry_line(demo):
    import traitlets as t

    from qscope_widgets.widgets import ScopeWidget

    def l0_panel(p: PanelInput):
        return {"l0_bytes": p.codes.l0.numpy().astype("<i4").tobytes()}

    register_panel(Panel("test_l0", l0_panel, outputs={"l0_bytes": lambda: t.Bytes(b"")}, depends=("layer",)))
    try:
        class L0View(ScopeWidget):
            _view = t.Unicode("test_l0").tag(sync=True)
            panels = ("test_l0",)

        v = L0View(demo, PROMPT, layer=3)
        assert np.frombuffer(v.l0_bytes, "<i4").tolist() == demo.run(PROMPT, layers=[3]).layers[3].l0.tolist()
        assert "codes_ids" not in v.class_trait_names(sync=True)
        v.close()
    finally:
        PANELS.pop("test_l0")


def test_registering_a_clashing_panel_is_refused():
    import traitlets as t

    with pytest.raises(QScopeError, match="already owned"):
        register_panel(Panel("other_heatmap", lambda p: {}, outputs={"tokens": lambda: t.List()}))
    with pytest.raises(QScopeError, match="unknown inputs"):
        register_panel(Panel("bad_inputs", lambda p: {}, inputs=("nope",)))


# ---------------------------------------------------------------------------------------- defect 5
@pytest.mark.parametrize("name, value, message", [
    ("layer", 99, "out of range"),
    ("color_by", "rainbow", "color_by"),
    ("selected_token", 500, "out of range"),
    ("selected_feature", 10**6, "out of range"),
    ("continuation_tokens", -1, "continuation_tokens"),
])
def test_invalid_value_from_python_raises_at_once_and_changes_nothing(demo, name, value, message):
    ex = Explorer(demo, "The LORD said", layer=3)
    before = (getattr(ex, name), ex.request_seq)
    with pytest.raises(QScopeError, match=message):
        setattr(ex, name, value)
    assert (getattr(ex, name), ex.request_seq) == before
    ex.selected_token = 1  # and the widget keeps working
    ex.wait()
    assert ex.error == "" and ex.result_seq == ex.request_seq


def test_invalid_steering_mode_from_python_raises_and_keeps_the_edit(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    ex.pin(3, 2360, strength=10.0)
    ex.wait()
    with pytest.raises(QScopeError, match="unknown steering mode"):
        ex.steering.set(3, 2360, mode="boost")
    assert ex.edits[0]["mode"] == "add" and ex.edits[0]["strength"] == 10.0
    ex.steering.set(3, 2360, strength=5.0)
    ex.wait()
    assert ex.error == ""


# ---------------------------------------------------------------------------------------- defect 2
def test_status_returns_to_ready_after_fast_cached_results(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    ex.pin(3, 2360, strength=10.0)
    ex.wait()
    for i in range(30):  # toggling a pinned feature: results cached within a millisecond
        ex.steering.set(3, 2360, enabled=bool(i % 2))
        ex.wait()
        assert not ex.status["busy"], f"still busy after toggle {i}"
        assert ex.status["done_seq"] == ex.request_seq


def test_error_then_fix_brings_status_back_to_ready(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    front_end_sets(ex, prompt="")
    ex.wait(raise_error=False)
    assert "empty" in ex.error and not ex.status["busy"]
    assert ex.status["done_seq"] == ex.request_seq  # the front end stops marking the old result stale
    front_end_sets(ex, prompt="The LORD is my shepherd")
    ex.wait()
    assert ex.error == "" and not ex.status["busy"] and ex.result_seq == ex.request_seq


# ---------------------------------------------------------------------------------------- defect 3
def test_dashboard_pins_into_an_explorer_not_a_standalone_scrubber(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    scrubber = LayerScrubber(demo, PROMPT, layer=3)  # newer, but has no steering sliders
    dash = FeatureDashboard(demo, 3, 2360)
    assert dash.pin_target() is ex
    dash._on_message(dash, {"type": "pin"}, [])
    assert (3, 2360) in {(r["layer"], r["feature"]) for r in ex.edits}
    assert dash.status["pinned"] and "Explorer #" in dash.status["message"]
    assert scrubber.edits == []


# ---------------------------------------------------------------------------------------- defect 4
@pytest.mark.parametrize("typical", [42.135, 3.3, 0.077, 1234.5])
def test_slider_range_reaches_zero_and_both_ends_exactly(typical):
    row = normalize_edit_rows([{"layer": 3, "feature": 1, "mode": "add", "typical": typical}])[0]
    lo, hi, step = row["min"], row["max"], row["step"]
    for x in (lo, hi, 0.0):
        n = (x - lo) / step
        assert abs(n - round(n)) < 1e-9, (x, lo, step)
    assert lo <= -2 * typical and hi >= 2 * typical and 80 <= (hi - lo) / step <= 420
    assert row["strength"] == 0.0 and slider_bounds("add", typical)[2] == 0.0


# ---------------------------------------------------------------------------------------- defect 8
def test_continuation_says_why_it_is_empty_and_offers_sampling(demo):
    ex = Explorer(demo, PROMPT, layer=3, continuation_tokens=8)
    ex.wait(idle=True)
    c = ex.continuation
    gen = demo.generate(PROMPT, max_new_tokens=8, baseline=False)
    assert c["baseline"] == gen.text
    if len(gen.token_ids) < 8:
        assert "end of text" in c["note"]
    ex.stop_at_eos = False
    ex.wait(idle=True)
    long = demo.generate(PROMPT, max_new_tokens=8, baseline=False, stop_at_eos=False)
    assert ex.continuation["baseline"] == long.text and len(long.token_ids) == 8
    ex.temperature, ex.seed = 1.0, 7
    ex.wait(idle=True)
    sampled = demo.generate(PROMPT, max_new_tokens=8, baseline=False, stop_at_eos=False, temperature=1.0, seed=7)
    assert ex.continuation["baseline"] == sampled.text


def test_copy_as_code_reproduces_the_steered_trace(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    ex.pin(3, 2360, strength=12.5)
    ex.wait()
    code = ex.steering_code()
    ns = {"scope": demo}
    exec(code, ns)
    assert ns["trace"].layers[3].values.tolist() == demo.run(PROMPT, steering=list(ex.steering)).layers[3].values.tolist()


@pytest.mark.parametrize("color_by, feature", [("feature", 2360), ("feature", 5), ("strongest", -1), ("error", -1)])
def test_the_page_can_recompute_token_values_from_the_shipped_codes(demo, color_by, feature):
    """What js/src/heatmap.js localValues does (a feature's value where it is among a token's top k, else 0;
    the first code for 'strongest'; recon_error for 'error') equals the kernel's token_values bit for bit."""
    ex = Explorer(demo, PROMPT, layer=3)
    front_end_sets(ex, selected_feature=feature, color_by=color_by)
    ex.wait()
    n, k = len(ex.tokens), ex.k
    ids = np.frombuffer(ex.codes_ids, "<i4").reshape(n, k)
    vals = np.frombuffer(ex.codes_values, "<f4").reshape(n, k)
    if color_by == "error":
        local = np.frombuffer(ex.recon_error, "<f4")
    elif feature >= 0:
        local = np.array([v[i == feature][0] if (i == feature).any() else 0.0 for i, v in zip(ids, vals)], "<f4")
    else:
        local = vals[:, 0]
    np.testing.assert_array_equal(local, np.frombuffer(ex.token_values, "<f4"))


def test_steering_the_selected_token_only_changes_that_position_onwards(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    ex.pin(3, 2360, strength=40.0)
    ex.selected_token = 5
    ex.steer_positions = "selected"
    ex.wait()
    from qscope_widgets import SteeringEdit

    want = demo.run(PROMPT, layers=[3], steering=[SteeringEdit(3, 2360, 40.0, positions=[5])]).layers[3]
    np.testing.assert_array_equal(ex.trace.layers[3].values.numpy(), want.values.numpy())
    base = demo.run(PROMPT, layers=[3]).layers[3]
    np.testing.assert_array_equal(ex.trace.layers[3].values[:5].numpy(), base.values[:5].numpy())
    assert "positions=[5]" in ex.steering_code()
    with pytest.raises(QScopeError, match="steer_positions"):
        ex.steer_positions = "everywhere"


def test_tooltips_have_a_label_for_every_feature_of_the_prompt(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    ids = set(np.frombuffer(ex.codes_ids, "<i4").tolist())
    feats = demo.feature_index.features(3)
    labelled = {f for f in ids if (feats.explanation[f] or feats.label[f])}
    assert labelled and set(map(int, ex.feature_labels)) == labelled
    assert len(ex.feature_labels) > len(ex.sidebar)  # more than the sidebar shows


def test_a_panel_with_an_input_of_its_own_is_validated_and_recomputed_only_when_it_changes(demo):
    """What a contrast view does: a second prompt as a registered input, validated when set, read by its panel."""
    import traitlets as t

    from qscope_widgets.widgets import ScopeWidget
    from qscope_widgets.widgets.panels import INPUT_TRAITS, INPUT_VALIDATORS, register_input

    def check_other(scope, value):
        if not isinstance(value, str) or not value.strip():
            raise QScopeError(f"other_prompt must be non-empty text, got {value!r}")
        return value

    calls = []

    def other_panel(p: PanelInput):
        calls.append(p.inputs["other_prompt"])
        other = p.scope.run(p.inputs["other_prompt"], layers=[p.view.layer])
        return {"other_tokens": list(other.tokens)}

    register_input("other_prompt", lambda: t.Unicode("x"), check_other)
    register_panel(Panel("test_other", other_panel, outputs={"other_tokens": lambda: t.List(t.Unicode())},
                         inputs=("other_prompt",), depends=("layer", "other_prompt")))
    try:
        class OtherView(ScopeWidget):
            _view = t.Unicode("test_other").tag(sync=True)
            panels = ("heatmap", "test_other")

        v = OtherView(demo, PROMPT, layer=3)
        v.other_prompt = "The LORD said"
        v.wait()
        assert v.other_tokens == demo.run("The LORD said", layers=[3]).tokens
        n = len(calls)
        front_end_sets(v, color_by="error")
        v.wait()
        assert len(calls) == n, "a colour-by change recomputed a panel that does not read it"
        with pytest.raises(QScopeError, match="other_prompt"):
            v.other_prompt = "  "
        assert v.other_prompt == "The LORD said"
        v.close()
    finally:
        PANELS.pop("test_other")
        INPUT_TRAITS.pop("other_prompt")
        INPUT_VALIDATORS.pop("other_prompt")
