"""The feature dashboard inside the Explorer (issue 11 leftovers): clicking any feature opens its dashboard with no
forward; contexts from several activation ranges; a box to try your own text; a click on a context opens it in
the explorer. The panel and the standalone FeatureDashboard draw the same dict from one pure function."""

from __future__ import annotations

import types

import numpy as np
import pytest

from qscope_widgets import QScopeError
from qscope_widgets.errors import PromptError
from qscope_widgets.tokens import readable_tokens
from qscope_widgets.widgets import Explorer, FeatureDashboard
from qscope_widgets.widgets.dashboard_data import (NO_SAMPLES_NOTE, activation_bands, band_label, context_prompt,
                                                   feature_data, try_text)
from qscope_widgets.widgets.dashboard_panel import dashboard_panel
from qscope_widgets.widgets.panels import PanelInput
from qscope_widgets.widgets.view_state import TraceCache, TraceRequest, ViewInputs

PROMPT = "In the beginning God created the heaven and the earth."
LAYER, FEATURE = 3, 2360  # the demo's biblical feature


def sample(act: float, rank: int = 0) -> dict:
    return {"rank": rank, "activation": act, "document": rank, "position": 5, "tokens": ["a", " b", " c"],
            "acts": [0.0, act, 0.0], "center": 1, "token_ids": [1, 2, 3]}


# ------------------------------------------------------------------------------------------------ bands
def test_samples_fall_into_equal_width_bands_of_the_maximum_highest_first():
    samples = [sample(a, i) for i, a in enumerate([10.0, 9.0, 7.4, 6.0, 5.1, 4.9, 3.0, 2.4, 1.0, 0.2])]
    bands = activation_bands(samples, 10.0, n_bands=4, per_band=2)
    assert [b["label"] for b in bands] == ["75-100% of max", "50-75% of max", "25-50% of max", "0-25% of max"]
    assert [b["count"] for b in bands] == [2, 3, 2, 3]
    assert [[c["activation"] for c in b["contexts"]] for b in bands] == [[10.0, 9.0], [7.4, 5.1], [4.9, 3.0],
                                                                          [2.4, 0.2]]
    for b in bands:  # every shown context lies in its band
        assert all(b["min"] <= c["activation"] <= b["max"] for c in b["contexts"])
    assert bands[0]["min"] == 7.5 and bands[0]["max"] == 10.0


def test_a_band_shows_its_range_strongest_middle_weakest_not_only_its_top():
    samples = [sample(a, i) for i, a in enumerate([7.4, 7.0, 6.5, 6.0, 5.5, 5.1])]
    band = activation_bands(samples, 10.0, n_bands=4, per_band=3)[1]
    assert [c["activation"] for c in band["contexts"]] == [7.4, 6.5, 5.1]
    assert band["count"] == 6


def test_no_samples_or_no_maximum_gives_no_bands():
    assert activation_bands(None, 10.0) == []
    assert activation_bands([], 10.0) == []
    assert activation_bands([sample(3.0)], 0.0) == []
    assert activation_bands([sample(3.0)], None) == []
    assert band_label(0.25, 0.5) == "25-50% of max"
    with pytest.raises(QScopeError):
        activation_bands([sample(1.0)], 1.0, n_bands=0)


# ------------------------------------------------------------------------------------------------ synthetic index
class FakeIndex:
    """Serves synthetic cards in the FeatureIndex.feature contract (with or without the samples)."""

    def __init__(self, samples: bool):
        self.layers = [LAYER]
        self.samples = samples
        self.calls = 0

    def feature(self, layer: int, feature: int) -> dict:
        self.calls += 1
        card = {"layer": layer, "feature": feature, "label": "God / LORD", "explanation": "", "density": 0.01,
                "count": 40, "mean_activation": 4.0, "max_activation": 20.0, "quantiles": {"q50": 3.0},
                "hist": {"edges": [0.0, 10.0, 20.0], "counts": [30, 10]}, "top_tokens": [" God"],
                "promoted": [" unto"], "suppressed": [" the"], "groups": {},
                "contexts": [sample(20.0, 0), sample(18.0, 1)]}
        if self.samples:
            card["samples"] = [sample(a, i) for i, a in enumerate([19.0, 14.0, 12.0, 8.0, 6.0, 3.0, 1.0])]
        return card


def fake_scope(demo, index):
    return types.SimpleNamespace(sae=demo.sae, feature_index=index)


def test_a_card_with_samples_gets_bands_and_leaves_the_raw_samples_out(demo):
    d = feature_data(fake_scope(demo, FakeIndex(samples=True)), LAYER, FEATURE)
    assert "samples" not in d and d["bands_note"] == "" and d["indexed"] is True
    assert [b["count"] for b in d["bands"]] == [1, 2, 2, 2]  # 19 | 14 12 | 8 6 | 3 1 (bands of width 5)
    assert [c["activation"] for c in d["bands"][0]["contexts"]] == [19.0]
    assert len(d["contexts"]) == 2  # the top contexts beside the bands


def test_an_old_index_without_samples_shows_the_top_contexts_and_says_so(demo):
    d = feature_data(fake_scope(demo, FakeIndex(samples=False)), LAYER, FEATURE)
    assert d["bands"] == [] and d["bands_note"] == NO_SAMPLES_NOTE
    assert len(d["contexts"]) == 2


def test_the_card_is_read_once_per_feature(demo):
    index = FakeIndex(samples=True)
    scope = fake_scope(demo, index)
    a = feature_data(scope, LAYER, FEATURE)
    b = feature_data(scope, LAYER, FEATURE, url="https://example.org/{layer}/{feature}")
    assert index.calls == 1 and b["url"] == "https://example.org/3/2360" and a["url"] == ""


# ------------------------------------------------------------------------------------------------ the panel
def panel_input(demo, feature: int, text: str = "") -> PanelInput:
    traces = TraceCache().get(demo, TraceRequest(PROMPT, (), (LAYER,)))
    from qscope_widgets.widgets.features import FeatureInfo

    return PanelInput(demo, traces, ViewInputs(layer=LAYER, selected_feature=feature), FeatureInfo(demo),
                      {"dashboard_text": text})


def test_the_panel_and_the_standalone_dashboard_draw_the_same_dict(demo):
    out = dashboard_panel(panel_input(demo, FEATURE))
    assert out["dashboard"] == FeatureDashboard(demo, LAYER, FEATURE).data == feature_data(demo, LAYER, FEATURE)
    assert out["dashboard_try"] == {}
    assert dashboard_panel(panel_input(demo, -1)) == {"dashboard": {}, "dashboard_try": {}}


def test_the_demo_index_has_no_samples_yet_or_bands_them(demo):
    d = feature_data(demo, LAYER, FEATURE)
    assert d["contexts"] and (d["bands_note"] == NO_SAMPLES_NOTE) == (not d["bands"])


def test_clicking_a_feature_opens_its_dashboard_without_a_forward(demo):
    ex = Explorer(demo, PROMPT, layer=LAYER)
    assert ex.dashboard == {}
    before = ex.forwards
    ex.set_state({"selected_feature": FEATURE, "color_by": "feature"})  # a sidebar row / tooltip row, same layer
    ex.wait()
    assert ex.forwards == before and not ex.status["forward"]
    assert ex.dashboard == feature_data(demo, LAYER, FEATURE)
    ex._on_message(ex, {"type": "open_feature", "layer": 2, "feature": 7}, [])  # another layer: a message
    ex.wait()
    assert (ex.layer, ex.selected_feature, ex.color_by) == (2, 7, "feature")
    assert ex.dashboard["feature"] == 7 and ex.dashboard["layer"] == 2 and ex.forwards == before
    assert "dashboard" in ex.status["panels"]
    ex.close()


def test_open_feature_refuses_bad_ids_and_keeps_the_view(demo):
    ex = Explorer(demo, PROMPT, layer=LAYER)
    with pytest.raises(QScopeError, match="99"):
        ex.open_feature(99, 1)
    with pytest.raises(QScopeError, match="999999"):
        ex.open_feature(LAYER, 999_999)
    ex._on_message(ex, {"type": "open_feature", "layer": LAYER, "feature": -5}, [])
    assert "-5" in ex.status["error"] and ex.layer == LAYER and ex.selected_feature == -1
    ex.close()


# ------------------------------------------------------------------------------------------------ try your own
def test_try_text_reports_the_features_activation_on_each_token(demo):
    text = "And God said, Let there be light"
    row = try_text(demo, LAYER, FEATURE, text)
    want = demo.run(text, layers=[LAYER]).layers[LAYER].activation_of(FEATURE).numpy()
    np.testing.assert_array_equal(np.asarray(row["acts"], dtype=np.float32), want)
    assert row["center"] == int(want.argmax()) and row["activation"] == pytest.approx(float(want.max()))
    assert row["tokens"] == demo.run(text, layers=[LAYER]).tokens and row["error"] == ""


def test_the_explorer_box_runs_text_and_reports_bad_input_by_the_box(demo):
    ex = Explorer(demo, PROMPT, layer=LAYER, feature=FEATURE)
    ex.dashboard_text = "And God said, Let there be light"
    ex.wait()
    assert ex.dashboard_try["activation"] > 0 and ex.dashboard_try["feature"] == FEATURE
    ex.dashboard_text = "   "
    ex.wait()  # the update itself succeeds: the other panels are drawn, the box says why
    assert ex.dashboard_try["error"].startswith("PromptError: the text to try is empty")
    ex.dashboard_text = "x " * 600
    ex.wait()
    assert "601 tokens" in ex.dashboard_try["error"] and "context" in ex.dashboard_try["error"]
    ex.dashboard_text = "the LORD God"
    ex.wait()
    assert ex.dashboard_try["error"] == "" and ex.error == ""
    with pytest.raises(QScopeError, match="must be a string"):
        ex.dashboard_text = 3
    with pytest.raises(QScopeError, match="20,000"):
        ex.dashboard_text = "x" * 20_001
    assert ex.dashboard_text == "the LORD God"
    ex.close()


def test_the_standalone_box_is_sequence_numbered_and_never_draws_a_stale_row(demo):
    d = FeatureDashboard(demo, LAYER, FEATURE)
    row = d.try_text("And God said, Let there be light")
    assert row["activation"] > 0 and d.result_seq == d.request_seq
    with pytest.raises(PromptError, match="empty"):
        d.try_text("  ")
    with pytest.raises(PromptError, match="empty"):
        d.try_text("")
    assert d.dashboard_try["error"] and d.status["busy"] is False
    good = d.try_text("the LORD")
    from qscope_widgets.widgets.scheduler import Job

    d._publish_try(Job(1, (LAYER, FEATURE, "old text")), {"text": "old text"})  # a late, older result
    assert d.dashboard_try == good
    d.feature = 7  # another feature re-runs the same text for it
    d._tries.wait(d._tries.latest_seq)
    assert d.dashboard_try["feature"] == 7 and d.dashboard_try["text"] == "the LORD"
    d.close()


# ------------------------------------------------------------------------------------------------ open a context
def test_a_context_with_token_ids_opens_as_its_text_with_the_activating_token_selected(demo):
    text = "And God said, Let there be light"
    ids = demo.tokenize(text)[0].tolist()
    ctx = {"tokens": readable_tokens(demo.tokenizer, ids), "token_ids": ids, "center": 1}
    assert context_prompt(demo, ctx) == (text, 1, "")
    ex = Explorer(demo, PROMPT, layer=2)
    before = ex.forwards
    note = ex.open_context(LAYER, FEATURE, ctx)
    ex.wait()
    assert note == "" and ex.prompt == text and ex.layer == LAYER and ex.selected_feature == FEATURE
    assert ex.selected_token == 1 and ex.tokens[1] == " God" and ex.color_by == "feature"
    assert ex.forwards == before + 1
    ex.close()


def test_a_context_that_retokenizes_differently_still_points_at_its_token(demo):
    vocab = demo.tokenizer.get_vocab()
    parts = [vocab[p] for p in ("ĠG", "od") if p in vocab]
    if len(parts) != 2:
        pytest.skip("the demo vocabulary has no ' G' + 'od' split")
    head = demo.tokenize("And")[0].tolist()
    ids = head + parts + demo.tokenize(" said")[0].tolist()
    ctx = {"tokens": readable_tokens(demo.tokenizer, ids), "token_ids": ids, "center": len(head) + 1}  # "od"
    prompt, pos, _ = context_prompt(demo, ctx)
    assert prompt == "And God said"
    assert readable_tokens(demo.tokenizer, demo.tokenize(prompt)[0].tolist())[pos] == " God"


def test_a_context_without_ids_joins_its_tokens_and_says_so(demo):
    ctx = {"tokens": ["In", " the", " beginning"], "center": 2}
    prompt, pos, note = context_prompt(demo, ctx)
    assert prompt == "In the beginning" and pos == 2 and "no token ids" in note
    ex = Explorer(demo, PROMPT, layer=LAYER)
    ex._on_message(ex, {"type": "open_context", "layer": LAYER, "feature": FEATURE, "context": ctx}, [])
    ex.wait()
    assert ex.prompt == "In the beginning" and "no token ids" in ex.status["message"]
    ex.close()


@pytest.mark.parametrize("ctx, match", [
    ({"tokens": [], "center": 0}, "non-empty list"),
    ({"tokens": ["a", "b"], "center": 5}, "center 5"),
    ({"tokens": ["a", "b"], "center": 0, "token_ids": [1]}, "2 tokens but 1 token_ids"),
    ({"tokens": ["a"], "center": 0, "token_ids": [10**9]}, "token_ids must be in"),
    ({"tokens": ["a"], "center": 0, "token_ids": ["x"]}, "list of ints"),
    ("not a dict", "must be a dict"),
])
def test_a_bad_context_is_refused_and_the_explorer_is_unchanged(demo, ctx, match):
    ex = Explorer(demo, PROMPT, layer=LAYER)
    with pytest.raises(QScopeError, match=match):
        ex.open_context(LAYER, FEATURE, ctx)
    assert ex.prompt == PROMPT and ex.layer == LAYER
    ex.close()


def test_the_standalone_dashboard_opens_a_context_in_its_pin_target_and_says_which(demo):
    ex = Explorer(demo, PROMPT, layer=2)
    d = FeatureDashboard(demo, LAYER, FEATURE, explorer=ex)
    ctx = d.data["contexts"][0]
    d._on_message(d, {"type": "open_context", "context": ctx}, [])
    ex.wait()
    assert ex.layer == LAYER and ex.selected_feature == FEATURE and ex.selected_token == ctx["center"]
    assert "Explorer #" in d.status["message"] and d.status["error"] == ""
    ex.close()  # every explorer on this scope is closed now: nowhere to open it
    lonely = FeatureDashboard(demo, LAYER, FEATURE)
    lonely._on_message(lonely, {"type": "open_context", "context": ctx}, [])
    assert "no explorer to open the context in" in lonely.status["error"]
    d.close()
    lonely.close()


# ------------------------------------------------------------------------------------------------ a real index
CORPUS = [
    "In the beginning God created the heaven and the earth. And the earth was without form, and void.",
    "And God said, Let there be light: and there was light. And God saw the light, that it was good.",
    "The LORD is my shepherd; I shall not want. He maketh me to lie down in green pastures.",
    "def main(argv):\n    return sorted(argv, key=len)\n",
    "The quick brown fox jumps over the lazy dog, and the dog sleeps on.",
    "And the LORD God formed man of the dust of the ground, and breathed into his nostrils.",
] * 3


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    """The demo model with a small index built by the index's own code, with sampled firings (and one without)."""
    from qscope_widgets import Scope
    from qscope_widgets.index import build_index

    scope = Scope.demo()
    root = tmp_path_factory.mktemp("idx")
    old = build_index(scope, CORPUS, out_dir=root / "old", layers=[LAYER], chunk_len=32, sample_n=0, progress=False)
    new = build_index(scope, CORPUS, out_dir=root / "new", layers=[LAYER], chunk_len=32, sample_n=12,
                      progress=False)
    return scope, old, new


def test_a_real_index_with_samples_gives_bands_whose_contexts_open_at_their_token(sampled):
    scope, _old, new = sampled
    scope.feature_index = new
    feats = new.features(LAYER)
    f = int(feats.sort_values("count").feature.iloc[-1])  # the feature firing most often
    d = feature_data(scope, LAYER, f)
    assert d["bands_note"] == "" and d["bands"] and "samples" not in d
    card = new.feature(LAYER, f)
    m = card["max_activation"]
    assert sum(b["count"] for b in d["bands"]) == len(card["samples"])
    for b in d["bands"]:
        assert all(b["lo"] * m <= c["activation"] <= b["hi"] * m + 1e-6 for c in b["contexts"])
    shown = next(c for b in d["bands"] for c in b["contexts"])
    assert shown["token_ids"] and shown in card["samples"]
    prompt, pos, note = context_prompt(scope, shown)
    assert note == "" and prompt == scope.tokenizer.decode(shown["token_ids"], skip_special_tokens=True)
    assert scope.run(prompt, layers=[LAYER]).tokens[pos] == shown["tokens"][shown["center"]]
    ex = Explorer(scope, PROMPT, layer=LAYER)
    ex._on_message(ex, {"type": "open_context", "layer": LAYER, "feature": f, "context": shown}, [])
    ex.wait()
    assert (ex.prompt, ex.selected_token, ex.selected_feature) == (prompt, pos, f)
    assert ex.dashboard["bands"] == d["bands"] and ex.status["message"] == f"opened a context of L{LAYER} #{f}"
    ex.close()


def test_a_real_index_built_without_samples_says_so(sampled):
    scope, old, _new = sampled
    scope.feature_index = old
    f = int(old.features(LAYER).sort_values("count").feature.iloc[-1])
    d = feature_data(scope, LAYER, f)
    assert d["bands"] == [] and d["bands_note"] == NO_SAMPLES_NOTE and d["contexts"]
