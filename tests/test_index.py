"""The feature index: top-N contexts equal a brute-force dense computation; resume yields the same index; messy
corpora are handled with a report; the reader's views and search work."""

import numpy as np
import pandas as pd
import pytest
import torch

from qscope_widgets import Scope
from qscope_widgets.errors import FeatureIndexError, QScopeError, UnknownLayerError
from qscope_widgets.index import FeatureIndex, build_index, search_by_example

from conftest import dense_firings, make_saes

DOCS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "In the beginning God created the heaven and the earth. And the earth was without form, and void.",
    "def main(argv):\n    return sorted(argv, key=len)\n" * 4,
    "A fortune: you will be hungry again in one hour.",
    "import torch; x = torch.zeros(3, 4); print(x.shape)",
    "café naïve 東京 and numbers 0 1 2 3 4 5 6 7 8 9",
]
DOCS = [f"{i}. {d}" for i, d in enumerate(DOCS * 2)]  # no two documents alike: no tied activations


@pytest.fixture
def scope3(qwen3, tokenizer):
    return Scope(qwen3, tokenizer, make_saes(64, range(4), d_sae=256, k=8))


def test_top_contexts_and_stats_equal_brute_force(scope3, tmp_path):
    docs = DOCS[:7]
    idx = build_index(scope3, docs, out_dir=tmp_path / "idx", layers=[1], chunk_len=24, batch_size=3, top_n=4,
                      progress=False)
    ref = dense_firings(scope3, docs, 1, 24)
    feats = idx.features(1)
    counts = ref.groupby("feature").size()
    assert feats.set_index("feature")["count"].loc[counts.index].tolist() == counts.tolist()
    assert idx.meta["tokens"] == sum(len(scope3.tokenizer(d, add_special_tokens=False)["input_ids"]) for d in docs)
    np.testing.assert_allclose(feats.density.sum() * idx.meta["tokens"], len(ref))
    maxes = ref.groupby("feature").activation.max()
    np.testing.assert_allclose(feats.set_index("feature").max_activation.loc[maxes.index], maxes, rtol=1e-5)
    ctx = idx.contexts(1)
    for f, grp in ref.groupby("feature"):
        want = grp.sort_values("activation", ascending=False, kind="stable").head(4)
        got = ctx[ctx.feature == f].sort_values("rank")
        np.testing.assert_allclose(got.activation.values, want.activation.values, rtol=1e-5)
        # every reported context really has that activation there (ties may pick either place)
        act_at = {(d, p): a for d, p, a in zip(grp.document, grp.position, grp.activation)}
        for d, p, a in zip(got.document, got.position, got.activation):
            assert act_at[(d, p)] == pytest.approx(a, rel=1e-5)
        assert len(set(zip(got.document, got.position))) == len(got)
    # the window's activation at the center is the context's activation, and its token is the right one
    for r in ctx.head(20).itertuples():
        assert r.acts[r.center] == pytest.approx(r.activation, rel=1e-3)
        ids = scope3.tokenizer(docs[r.document], add_special_tokens=False)["input_ids"]
        assert r.tokens[r.center] == scope3.token_strings([ids[r.position]])[0]


def test_resume_after_interrupt_gives_the_same_index(scope3, tmp_path):
    full = build_index(scope3, DOCS, out_dir=tmp_path / "a", layers=[1, 2], chunk_len=16, batch_size=2,
                       progress=False, checkpoint_every=2)

    def interrupt(i):
        if i == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_index(scope3, DOCS, out_dir=tmp_path / "b", layers=[1, 2], chunk_len=16, batch_size=2,
                    progress=False, checkpoint_every=2, on_batch=interrupt)
    assert (tmp_path / "b" / "_build_state.pt").is_file() and not (tmp_path / "b" / "meta.json").exists()
    calls = []
    resumed = build_index(scope3, DOCS, out_dir=tmp_path / "b", layers=[1, 2], chunk_len=16, batch_size=2,
                          progress=False, checkpoint_every=2, on_batch=calls.append)
    assert not (tmp_path / "b" / "_build_state.pt").exists()
    for layer in (1, 2):
        pd.testing.assert_frame_equal(resumed.features(layer), full.features(layer))
        pd.testing.assert_frame_equal(resumed.contexts(layer, kind="all"), full.contexts(layer, kind="all"))
    with pytest.raises(QScopeError, match="other settings"):
        (tmp_path / "c").mkdir()
        torch.save({"settings": {"x": 1}, "layers": {}, "batches": 1}, tmp_path / "c" / "_build_state.pt")
        build_index(scope3, DOCS, out_dir=tmp_path / "c", layers=[1], progress=False)


def test_messy_corpus_is_reported(scope3, tmp_path):
    long_doc = "And it came to pass. " * 200
    docs = ["", "   ", None, b"valid bytes", b"caf\xe9 \xff broken", long_doc, 42]
    idx = build_index(scope3, docs, out_dir=tmp_path / "m", layers=[2], chunk_len=32, progress=False)
    r = idx.report
    assert (r.documents, r.empty_skipped, r.non_utf8_repaired, r.long_split) == (7, 3, 1, 1)
    assert any("non-UTF-8" in e for e in r.examples)
    assert idx.meta["report"]["empty_skipped"] == 3
    assert r.chunks >= 200 * 5 // 32
    assert "3 empty skipped" in str(r)


def test_inputs_series_file_and_max_tokens(scope3, tmp_path):
    f = tmp_path / "corpus.txt"
    f.write_text("\n".join(DOCS[:4]))
    a = build_index(scope3, str(f), out_dir=tmp_path / "f", layers=[0], progress=False)
    b = build_index(scope3, pd.Series(DOCS[:4]), out_dir=tmp_path / "s", layers=[0], progress=False)
    assert a.report.documents >= 4 and b.report.documents == 4
    c = build_index(scope3, DOCS, out_dir=tmp_path / "t", layers=[0], max_tokens=30, chunk_len=16, progress=False)
    assert c.meta["tokens"] <= 30 and c.report.stopped_at_max_tokens


def test_reader_views_search_groups_and_labels(scope3, tmp_path):
    genres = ["pangram", "bible", "code", "fortune", "code", "misc"] * 2
    idx = build_index(scope3, DOCS, out_dir=tmp_path / "g", layers=[1, 3], groups=genres, progress=False)
    again = FeatureIndex.load(tmp_path / "g")
    assert again.layers == [1, 3] and again.groups == sorted(set(genres))
    feats = again.features(3)
    assert len(feats) == 256 and {"label", "density", "q90", "promoted", "group_bible"} <= set(feats.columns)
    live = feats[feats["count"] > 0]
    shares = live[[f"group_{g}" for g in again.groups]].sum(axis=1)
    np.testing.assert_allclose(shares, 1.0, rtol=1e-5)
    f = int(live.sort_values("count").feature.iloc[-1])
    card = again.feature(3, f)
    import json

    json.dumps(card)  # JSON-friendly
    assert card["count"] == int(feats["count"].iloc[f]) and sum(card["hist"]["counts"]) == card["count"]
    assert len(card["hist"]["edges"]) == len(card["hist"]["counts"]) + 1
    assert card["contexts"] and card["contexts"][0]["activation"] == pytest.approx(card["max_activation"])
    assert len(card["promoted"]) == 5 and card["label"]
    assert "dead" in again.label(3, int(feats[feats["count"] == 0].feature.iloc[0])) or (feats["count"] > 0).all()
    tok = card["top_tokens"][0].strip()
    if tok:
        hits = again.search(tok, layer=3)
        assert f in hits.feature.tolist() or len(hits) == 20
    n = again.attach_labels(pd.DataFrame({"feature": [f], "explanation": ["my favourite feature"]}), layer=3)
    assert n == 1 and FeatureIndex.load(tmp_path / "g").label(3, f) == "my favourite feature"
    assert FeatureIndex.load(tmp_path / "g").search("favourite").feature.tolist() == [f]
    with pytest.raises(FeatureIndexError):
        again.attach_labels(pd.DataFrame({"feature": [999], "explanation": ["x"]}), layer=3)
    with pytest.raises(FeatureIndexError):
        again.feature(3, 256)
    with pytest.raises(UnknownLayerError):
        again.features(2)
    with pytest.raises(QScopeError):
        again.search("")
    scope3.feature_index = again
    ex = search_by_example(scope3, "In the beginning God created", 3)
    assert {"feature", "activation", "label"} <= set(ex.columns) and len(ex) > 0


def test_load_refuses_non_index(tmp_path):
    with pytest.raises(QScopeError, match="not a feature index"):
        FeatureIndex.load(tmp_path)
