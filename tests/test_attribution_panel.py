"""The attribution panel and AttributionView (issue 12, "in the explorer"): the panel shows exactly what
``scope.attribute`` computes for the same inputs, runs the backward pass once per (prompt, edits, target,
position), never for view-only changes, refuses bad targets by name, and "verify" round-trips through Python."""

from __future__ import annotations

import time

import numpy as np
import pytest

from qscope_widgets import SteeringEdit
from qscope_widgets.widgets import AttributionView, Explorer, WidgetInputError
from qscope_widgets.widgets import attribution_panel as ap

PROMPT = "In the beginning God created the heaven and the"


@pytest.fixture(scope="module")
def view(demo):
    v = AttributionView(demo, PROMPT, " earth", layer=3)
    yield v
    v.close()


def test_panel_output_equals_scope_attribute_byte_for_byte(demo, view):
    attr = demo.attribute(PROMPT, " earth", position=8)
    expected = ap.attribution_outputs(attr)
    assert view.attribution_grid == expected["attribution_grid"]
    assert view.attribution == expected["attribution"]
    assert view.attribution["position"] == 8 and view.attribution["target"] == "logit(' earth')"
    # the grid is the per-(layer, position) sum of every node: its rows are by_layer()'s totals
    grid = np.frombuffer(view.attribution_grid, dtype="<f4").reshape(view.attribution["shape"])
    assert grid.shape == (len(demo.sae_layers), 9)
    np.testing.assert_allclose(grid.sum(axis=1), attr.by_layer()["total"].to_numpy(), rtol=1e-4, atol=1e-5)
    top = attr.top(ap.TOP_NODES)
    assert [(n["layer"], n["position"], n["feature"], n["kind"]) for n in view.attribution["top"]] == \
        list(zip(top["layer"], top["position"], top["feature"], top["kind"]))
    assert view.attribution["error_share"] == attr.error_share
    assert any(n["kind"] == "error" and n["feature"] == -1 for n in view.attribution["top"])


def test_graph_is_plain_lists_of_nodes_and_strongest_edges(view):
    g = view.attribution["graph"]
    ids = {n["id"] for n in g["nodes"]}
    assert "target" in ids and len(g["nodes"]) == ap.GRAPH_NODES + 1
    assert 0 < len(g["edges"]) <= ap.GRAPH_EDGES
    for src, dst, w in g["edges"]:
        assert src in ids and dst in ids and isinstance(w, float)
    weights = [abs(w) for _, _, w in g["edges"]]
    assert weights == sorted(weights, reverse=True) or max(weights) == weights[0]


def test_selected_token_moves_the_position_and_view_only_changes_reuse_the_cache(demo):
    v = AttributionView(demo, PROMPT, " the", layer=3)
    try:
        start = ap.cache_for(demo).computed
        v.selected_token = 4
        v.wait()
        assert v.attribution["position"] == 4
        expected = ap.attribution_outputs(demo.attribute(PROMPT, " the", position=4))
        assert v.attribution_grid == expected["attribution_grid"]
        computed = ap.cache_for(demo).computed
        assert computed == start + 1   # one backward for the new position
        for change in ({"color_by": "error"}, {"selected_feature": 7}):   # view-only: the panel does not even run
            v.set_state(change)
            v.wait()
            assert "attribution" not in v.status["panels"], change
        v.set_state({"layer": 5})  # new traces (a forward for the new layer's codes) but no new backward
        v.wait()
        assert ap.cache_for(demo).computed == computed
        v.selected_token = -1      # back to the last token, seen at creation: served from the cache
        v.wait()
        assert v.attribution["position"] == 8 and ap.cache_for(demo).computed == computed
        v.selected_token = 4
        v.wait()
        assert v.attribution_grid == expected["attribution_grid"] and ap.cache_for(demo).computed == computed
    finally:
        v.close()


def test_view_syncs_heatmap_next_tokens_and_attribution_traits_only(view):
    assert view._panels == ["heatmap", "next_tokens", "attribution"]
    assert view.next_tokens["position"] == 8       # the predictions a click can turn into the target
    assert not view.has_trait("sidebar") and not view.has_trait("layer_chart")


def test_no_target_means_no_attribution(demo):
    v = AttributionView(demo, PROMPT, layer=3)
    try:
        assert v.attribution == {} and v.attribution_grid == b"" and v.current_attribution is None
        with pytest.raises(Exception, match="set attribution_target"):
            v.verify(5)
    finally:
        v.close()


def test_bad_target_is_refused_by_name_and_the_view_stays_usable(view):
    before = view.attribution
    with pytest.raises(WidgetInputError, match="' the heaven'.*2 tokens"):
        view.attribution_target = " the heaven"
    view.set_state({"attribution_target": " and the"})     # from the browser: refused, shown in the status line
    assert view.attribution_target == " earth" and "' and the'" in view.error
    view.selected_token = -1
    view.wait(raise_error=False)
    assert view.attribution == before


def test_int_target_becomes_its_token_string(demo):
    tid = demo.tokenizer(" earth", add_special_tokens=False)["input_ids"][0]
    assert ap.check_attribution_target(demo, tid) == " earth"
    with pytest.raises(Exception, match="out of the vocabulary"):
        ap.check_attribution_target(demo, 10 ** 9)


def test_steered_view_attributes_the_steered_model(demo):
    edit = SteeringEdit(2, 2360, 20.0, "add")
    v = AttributionView(demo, PROMPT, " earth", layer=3, steering=[edit])
    try:
        with demo.steering(edit):
            attr = demo.attribute(PROMPT, " earth", position=8)
        assert v.attribution_grid == ap.f32(ap.attribution_grid(attr))
        plain = demo.attribute(PROMPT, " earth", position=8)
        assert v.attribution["metric"] == attr.metric != plain.metric
    finally:
        v.close()


def _wait_check(v, timeout=120.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        c = v.attribution_check
        if c and not c.get("running"):
            return c
        time.sleep(0.05)
    raise TimeoutError("verify did not answer")


def test_verify_message_round_trip_writes_estimate_vs_true_effect(demo, view):
    view._on_message(view, {"type": "verify", "n": 5}, [])
    check = _wait_check(view)
    ref = demo.attribute(PROMPT, " earth", position=8).verify(5)
    assert check["n"] == 5 and check["target"] == "logit(' earth')" and check["position"] == 8
    assert [r["true_effect"] for r in check["rows"]] == pytest.approx(ref.table["true_effect"].tolist(), rel=1e-5)
    assert [r["estimate"] for r in check["rows"]] == ref.table["estimate"].tolist()
    assert check["spearman"] == pytest.approx(ref.spearman)


def test_verify_with_a_bad_n_reports_the_value(view):
    view._on_message(view, {"type": "verify", "n": "lots"}, [])
    check = _wait_check(view)
    assert "'lots'" in check["error"] and "'lots'" in view.error


def test_explorer_attribute_opens_a_view_on_its_prompt_layer_and_token(demo):
    ex = Explorer(demo, PROMPT, layer=4)
    try:
        ex.selected_token = 4
        av = ex.attribute(" God")
        try:
            assert isinstance(av, AttributionView) and av.prompt == PROMPT and av.layer == 4
            assert av.attribution["position"] == 4 and av.attribution["target"] == "logit(' God')"
            assert demo.attribution_view(PROMPT, " God", selected_token=4).attribution == av.attribution
        finally:
            av.close()
    finally:
        ex.close()


def test_pin_message_pins_into_the_newest_explorer_or_says_there_is_none(demo, view):
    from qscope_widgets.widgets.explorer import live_widgets

    for w in live_widgets():  # the other tests' explorers are closed; make sure none is left open
        if isinstance(w, Explorer):
            w.close()
    view._on_message(view, {"type": "pin", "layer": 3, "feature": 2396}, [])
    assert "no explorer" in view.error and view.edits == []
    ex = Explorer(demo, PROMPT, layer=3)
    try:
        view._on_message(view, {"type": "pin", "layer": 3, "feature": 2396}, [])
        assert [(r["layer"], r["feature"]) for r in ex.edits] == [(3, 2396)] and view.edits == []
    finally:
        ex.close()


def test_explorer_attributes_a_clicked_next_token_at_its_prediction_position_on_request_only(demo):
    """A click on a next-token row sets target + position together (one browser message); the explorer's panel
    then equals scope.attribute at that position; token clicks afterwards cost nothing; no target, no backward."""
    ex = Explorer(demo, PROMPT, layer=3)
    try:
        assert "attribution" in ex._panels and ex.attribution == {} and ex.attribution_grid == b""
        cache = ap.cache_for(demo)
        ex.selected_token = 4
        ex.wait()
        start = cache.computed
        assert ex.next_tokens["position"] == 4 and cache.computed == start   # no target: no attribution
        tok = next(t for t, _ in ex.next_tokens["baseline"] if t not in (" the", " earth", " God"))  # not cached yet
        ex.set_state({"attribution_target": tok, "attribution_position": ex.next_tokens["position"]})
        ex.wait()
        expected = ap.attribution_outputs(demo.attribute(PROMPT, tok, position=4))
        assert ex.attribution == expected["attribution"] and ex.attribution_grid == expected["attribution_grid"]
        assert cache.computed == start + 1
        for change in ({"selected_token": 2}, {"selected_token": -1}, {"color_by": "error"}, {"layer": 5}):
            ex.set_state(change)
            ex.wait()
            assert ex.attribution["position"] == 4 and cache.computed == start + 1, change
        assert ex.current_attribution.position == 4
        # clicking a node: the common select_feature message selects layer + feature in the explorer
        node = next(n for n in ex.attribution["top"] if n["kind"] == "feature")
        ex._on_message(ex, {"type": "select_feature", "layer": node["layer"], "feature": node["feature"]}, [])
        ex.wait()
        assert (ex.layer, ex.selected_feature, ex.color_by) == (node["layer"], node["feature"], "feature")
        ex._on_message(ex, {"type": "pin", "layer": node["layer"], "feature": node["feature"]}, [])  # pin to steer
        assert (node["layer"], node["feature"]) in [(r["layer"], r["feature"]) for r in ex.edits]
        assert cache.computed == start + 1      # a pinned slider at strength 0 changes no active edit
        assert ex.attribution_target == tok
    finally:
        ex.close()


def test_explorer_clears_the_target_when_the_prompt_or_active_steering_changes(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    try:
        ex.attribution_target = " earth"      # from Python: the position follows the selected token (last)
        ex.wait()
        assert ex.attribution["position"] == 8
        cache = ap.cache_for(demo)
        n = cache.computed
        ex.pin(2, 2360, strength=15.0)           # an active edit: the attribution is not recomputed per step
        ex.wait()
        assert ex.attribution_target == "" and ex.attribution == {} and cache.computed == n
        ex.attribution_target = " earth"      # asked again: computed under the steering
        ex.wait()
        with demo.steering(SteeringEdit(2, 2360, 15.0, "add")):
            steered = demo.attribute(PROMPT, " earth")
        assert ex.attribution["metric"] == pytest.approx(steered.metric) and cache.computed == n + 1
        ex.prompt = "And God said"
        ex.wait()
        assert ex.attribution_target == "" and ex.attribution == {} and cache.computed == n + 1
        with pytest.raises(WidgetInputError, match="attribution_position"):
            ex.attribution_position = -2
    finally:
        ex.close()


def test_explorer_verify_message_runs_on_the_explorer(demo):
    ex = Explorer(demo, PROMPT, layer=3)
    try:
        ex.set_state({"attribution_target": " earth", "attribution_position": 8})
        ex.wait()
        ex._on_message(ex, {"type": "verify", "n": 4}, [])
        check = _wait_check(ex)
        ref = demo.attribute(PROMPT, " earth", position=8).verify(4)
        assert check["n"] == 4 and check["position"] == 8
        assert [r["true_effect"] for r in check["rows"]] == pytest.approx(ref.table["true_effect"].tolist(), rel=1e-5)
    finally:
        ex.close()


def test_the_cache_is_per_scope_and_never_keeps_a_scope_alive(tokenizer, qwen35):
    """The cache holds attributions (which point at their scope) without keeping the scope alive: weakly keyed,
    entries stored without their scope and given it back when read. (Widgets themselves are kept alive by
    anywidget after close, so the check holds the cache entry, not a view.)"""
    import gc
    import weakref

    from conftest import make_saes
    from qscope_widgets import Scope

    scope = Scope(qwen35, tokenizer, make_saes(64, range(4)))
    attr = scope.attribute("The quick brown fox", " the")
    cache = ap.cache_for(scope)
    key = ("The quick brown fox", (), " the", attr.position)
    cache.put(key, (attr, ap.attribution_outputs(attr)))
    back, outputs = cache.get(scope, key)
    assert back.scope is scope and outputs["attribution"]["target"] == "logit(' the')"
    assert back.verify(2).table["true_effect"].tolist() == attr.verify(2).table["true_effect"].tolist()
    assert len(cache) == 1 and ap.cache_for(scope) is cache
    ref = weakref.ref(scope)
    del scope, attr, back, outputs
    gc.collect()
    assert ref() is None, "the attribution cache kept the Scope alive"
    other = Scope(qwen35, tokenizer, make_saes(64, range(4)))
    assert len(ap.cache_for(other)) == 0
