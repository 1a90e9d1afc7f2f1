"""The feature index's parts on plain tensors (accumulator vs a dense reference, bounded state), chunked encoding,
file / JSONL streaming, refusing to resume on another corpus, on-demand logit tokens, and label imports."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from qscope_widgets import Scope
from qscope_widgets.errors import FeatureIndexError, QScopeError
from qscope_widgets.index import FeatureIndex, build_index, search_by_example
from qscope_widgets.index.accumulator import HIST_BINS, FeatureAccumulator, hist_edges
from qscope_widgets.index.builder import _encode_chunked
from qscope_widgets.index.corpus import CorpusReport, chunk_documents, iter_documents

from conftest import make_saes

DOCS = [f"{i}. " + t for i, t in enumerate([
    "The quick brown fox jumps over the lazy dog.",
    "In the beginning God created the heaven and the earth.",
    "def main(argv): return sorted(argv, key=len)",
    "A fortune: you will be hungry again in one hour.",
] * 2)]


@pytest.fixture
def scope2(qwen3, tokenizer):
    return Scope(qwen3, tokenizer, make_saes(64, [1, 2], d_sae=128, k=6))


def random_batch(g, B=3, S=9, k=4, d_sae=20):
    ids = torch.stack([torch.randperm(d_sae, generator=g)[:k] for _ in range(B * S)]).reshape(B, S, k)
    vals = torch.rand(B, S, k, generator=g) * 5 - 1  # some <= 0: inactive
    lengths = torch.randint(3, S + 1, (B,), generator=g)
    input_ids = torch.randint(0, 50, (B, S), generator=g)
    return ids, vals, input_ids, lengths


def test_accumulator_equals_dense_reference_and_state_is_bounded():
    g = torch.Generator().manual_seed(0)
    d_sae, N, left, right = 20, 3, 2, 1
    acc = FeatureAccumulator(d_sae, top_n=N, left=left, right=right)
    sizes = []
    dense_rows = []  # (doc, pos, dense codes, window tokens)
    for b in range(6):
        ids, vals, input_ids, lengths = random_batch(g, d_sae=d_sae)
        doc = torch.arange(3) + 3 * b
        acc.update(ids, vals, input_ids, lengths, doc, torch.zeros(3, dtype=torch.long))
        sizes.append(acc.nbytes())
        dense = torch.zeros(3, 9, d_sae).scatter_(2, ids, vals.clamp_min(0))
        for r in range(3):
            for p in range(int(lengths[r])):
                dense_rows.append((int(doc[r]), p, dense[r, p], dense[r], input_ids[r], int(lengths[r])))
    assert len(set(sizes)) == 1  # memory fixed by d_sae, top_n and the window, not by how much was seen
    assert acc.tokens == len(dense_rows)
    D = torch.stack([r[2] for r in dense_rows])  # (tokens, d_sae)
    assert acc.count.tolist() == (D > 0).sum(0).tolist()
    torch.testing.assert_close(acc.max, D.max(0).values)
    torch.testing.assert_close(acc.sum, D.double().sum(0))
    # histogram: every activation in its log bin
    for f in range(d_sae):
        v = D[:, f][D[:, f] > 0]
        want = torch.histc(v.clamp(1e-3, 999).log10(), bins=HIST_BINS, min=-3, max=3).long()
        assert acc.hist[f].sum() == len(v) and (acc.hist[f] - want).abs().sum() <= 1  # edge rounding
    # quantiles are bin upper edges bracketing the exact quantile
    q = acc.quantiles((0.5,))[:, 0]
    edges = hist_edges()
    for f in range(d_sae):
        v = D[:, f][D[:, f] > 0]
        if len(v):
            exact = v.sort().values[int(np.ceil(0.5 * len(v))) - 1]
            i = int(torch.searchsorted(edges, q[f]))
            assert edges[i - 1] <= exact * 1.0001 and exact <= q[f] * 1.0001
    # top-N values, references and windows
    for f in range(d_sae):
        col = D[:, f]
        order = torch.argsort(col, descending=True, stable=True)[:N]
        want = [float(col[i]) for i in order if col[i] > 0]
        got = acc.top_vals[f][: len(want)].tolist()
        np.testing.assert_allclose(got, want, rtol=1e-6)
        for j in range(len(want)):
            d, p = acc.top_refs[f, j].tolist()
            row = next(r for r in dense_rows if r[0] == d and r[1] == p)
            assert float(row[2][f]) == pytest.approx(got[j])
            for w in range(left + 1 + right):
                pos = p - left + w
                inside = 0 <= pos < row[5]
                assert int(acc.top_tokens[f, j, w]) == (int(row[4][pos]) if inside else -1)
                want_act = float(row[3][pos, f]) if inside else 0.0
                assert float(acc.top_acts[f, j, w]) == pytest.approx(want_act, rel=2e-3, abs=1e-3)


def test_chunked_encoding_equals_whole(scope2):
    sae = scope2.sae(1)
    x = torch.randn(2, 11, 64)
    ids_a, vals_a = _encode_chunked(sae, x)
    ids_b, vals_b = _encode_chunked(sae, x, max_elems=sae.d_sae * 5)  # 5 rows at a time
    assert torch.equal(ids_a, ids_b) and ids_a.shape == (2, 11, 6)
    torch.testing.assert_close(vals_a, vals_b)  # BLAS blocking may differ in the last bit


def test_files_stream_lines_paragraphs_and_jsonl(tmp_path, tokenizer):
    f = tmp_path / "c.txt"
    f.write_bytes(b"first line\nsecond \xff line\n\nthird para\nstill third\n")
    assert list(iter_documents(str(f))) == [b"first line", b"second \xff line", b"", b"third para",
                                            b"still third"]
    assert len(list(iter_documents(f, split="paragraph"))) == 2
    j = tmp_path / "c.jsonl"
    j.write_text("\n".join(json.dumps({"body": t}) for t in ["alpha", "", "beta"]) + "\n")
    rep = CorpusReport()
    chunks = list(chunk_documents(tokenizer, str(j), chunk_len=4, report=rep, text_column="body"))
    assert {c[0] for c in chunks} == {0, 2} and rep.empty_skipped == 1 and rep.documents == 3
    rep = CorpusReport()
    got = list(chunk_documents(tokenizer, [b"ok", b"bad \xff", "lone \udcff surrogate"], chunk_len=64, report=rep))
    assert rep.non_utf8_repaired == 2 and {c[0] for c in got} == {0, 1, 2}
    assert tokenizer.decode(got[2][2]) == "lone \ufffd surrogate"
    # a huge document is tokenized piecewise with continuous offsets
    rep = CorpusReport()
    chunks = list(chunk_documents(tokenizer, ["the earth " * 300], chunk_len=50, report=rep, max_chars=500))
    starts = [c[1] for c in chunks]
    assert starts == sorted(starts) and rep.long_split == 1
    assert all(b - a == len(c[2]) for a, b, c in zip(starts, starts[1:], chunks))


def test_resume_refuses_another_corpus(scope2, tmp_path):
    def interrupt(i):
        if i == 3:
            raise KeyboardInterrupt

    kw = dict(out_dir=tmp_path / "r", layers=[1], chunk_len=8, batch_size=1, checkpoint_every=2, progress=False)
    with pytest.raises(KeyboardInterrupt):
        build_index(scope2, DOCS[:3], on_batch=interrupt, **kw)
    with pytest.raises(QScopeError, match="different corpus"):
        build_index(scope2, DOCS[3:0:-1], **kw)
    idx = build_index(scope2, DOCS[3:0:-1], resume=False, **kw)  # starting over works
    assert idx.meta["tokens"] > 0 and not (tmp_path / "r" / "_build_state.pt").exists()


def test_logit_tokens_on_demand_and_context_window(scope2, tmp_path):
    full = build_index(scope2, DOCS, out_dir=tmp_path / "a", layers=[2], logit_tokens=True, context_window=9,
                       progress=False)
    lazy = build_index(scope2, DOCS, out_dir=tmp_path / "b", layers=[2], logit_tokens=False, context_window=9,
                       progress=False)
    f = int(full.features(2).sort_values("count").feature.iloc[-1])
    assert lazy.features(2).promoted.map(len).sum() == 0
    a, b = full.feature(2, f), lazy.feature(2, f)
    assert a["promoted"] == b["promoted"] and a["suppressed"] == b["suppressed"] and len(a["promoted"]) == 5
    assert a["contexts"] == b["contexts"]
    assert all(len(c["tokens"]) <= 9 and len(c["tokens"]) == len(c["acts"]) for c in a["contexts"])
    reopened = FeatureIndex.load(tmp_path / "b")
    assert reopened.feature(2, f)["promoted"] == []  # no model attached: nothing computed
    with pytest.raises(FeatureIndexError, match="attach_scope"):
        reopened.logit_tokens(2, f)
    assert reopened.attach_scope(scope2).feature(2, np.int64(f))["promoted"] == a["promoted"]
    # search in the text of top contexts: every hit really has the phrase in one of its contexts
    hits = full.search("God", layer=2, where="contexts", n=1000)
    assert len(hits) > 0 and (hits.hits > 0).all()
    for f_hit, h in zip(hits.feature, hits.hits):
        texts = ["".join(c["tokens"]).lower() for c in full.feature(2, int(f_hit))["contexts"]]
        assert sum("god" in t for t in texts) == h
    ex = search_by_example(scope2, "In the beginning God", 2, n=5, index=full, by="relative")
    assert len(ex) == 5 and ex.relative.is_monotonic_decreasing and (ex.relative > 0).all()
    with pytest.raises(QScopeError):
        full.search("x", where="nowhere")
    # per-feature context reads (parquet filters) equal slicing the whole layer
    whole = reopened.contexts(2)
    one = FeatureIndex.load(tmp_path / "b").contexts(2, f)
    pd.testing.assert_frame_equal(one, whole[whole.feature == f].sort_values("rank").reset_index(drop=True))


def test_attach_labels_neuronpedia_export(scope2, tmp_path):
    idx = build_index(scope2, DOCS[:4], out_dir=tmp_path / "l", layers=[1, 2], progress=False)
    export = [
        {"modelId": "x", "layer": "1-res-qs", "index": "5", "description": " fires on fox "},
        {"modelId": "x", "layer": "1-res-qs", "index": "5", "description": "a second opinion"},
        {"modelId": "x", "layer": "2-res-qs", "index": "7", "description": "layer two only"},
        {"modelId": "x", "layer": "1-res-qs", "index": "9", "description": "genesis"},
    ]
    path = tmp_path / "np.json"
    path.write_text(json.dumps(export))
    assert idx.attach_labels(path, layer=1) == 2
    again = FeatureIndex.load(tmp_path / "l")
    assert again.label(1, 5) == "fires on fox" and again.label(1, 9) == "genesis"
    assert again.features(2).explanation.eq("").all()  # the layer-2 row went nowhere else
    assert again.search("genesis").feature.tolist() == [9] or again.features(1)["count"].iloc[9] == 0
    csv = tmp_path / "l.csv"
    pd.DataFrame({"feature_id": [3], "my_text": ["from a csv"]}).to_csv(csv, index=False)
    assert again.attach_labels(csv, layer=2, column="my_text", save=False) == 1
    assert again.label(2, 3) == "from a csv"
    assert again.attach_labels({4: "a dict"}, layer=2, save=False) == 1 and again.label(2, 4) == "a dict"
    with pytest.raises(QScopeError, match="which column"):
        again.attach_labels(pd.DataFrame({"what": [1]}), layer=2)
