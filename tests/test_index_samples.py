"""Sampled contexts in the feature index: each feature keeps the ``sample_n`` firings with the smallest
splitmix64 key of (document, position, feature), so the sample is a uniform random subset of its real firings,
equals a brute-force selection over all firings, and is the same whatever the batch order, sharding or resume; the
window's token ids rebuild the text; an index written before samples still loads (no samples, no token ids)."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from qscope_widgets import Scope
from qscope_widgets.errors import QScopeError
from qscope_widgets.index import FeatureAccumulator, FeatureIndex, build_index
from qscope_widgets.index.accumulator import STATE_KEYS, sample_keys, splitmix64
from qscope_widgets.index.files import BUILD_KEY, write_json, write_table

from conftest import dense_firings, make_saes

DOCS = [f"{i}. " + t for i, t in enumerate([
    "The quick brown fox jumps over the lazy dog. " * 2,
    "In the beginning God created the heaven and the earth. And the earth was without form, and void.",
    "def main(argv):\n    return sorted(argv, key=len)\n" * 3,
    "A fortune: you will be hungry again in one hour.",
    "import torch; x = torch.zeros(3, 4); print(x.shape)",
] * 2)]
SAMPLE_N = 5
SAMPLE_KEYS = ("sample_keys", "sample_vals", "sample_refs", "sample_tokens", "sample_acts")


@pytest.fixture
def scope2(qwen3, tokenizer):
    return Scope(qwen3, tokenizer, make_saes(64, [1, 2], d_sae=128, k=6))


def _splitmix_reference(x: int) -> int:
    """splitmix64 on Python ints (uint64), as published (Steele, Lea, Flood 2014; Vigna)."""
    m = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & m
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    return x ^ (x >> 31)


def _signed(u: int) -> int:
    return u - (1 << 64) if u >= 1 << 63 else u


def test_sample_key_is_splitmix64_of_document_position_feature():
    xs = [0, 1, 2, 12345, 2**40 + 7, 2**62, -1, -(2**63)]
    got = splitmix64(torch.tensor(xs, dtype=torch.long)).tolist()
    assert got == [_signed(_splitmix_reference(x & ((1 << 64) - 1))) for x in xs]
    d, p, f = torch.tensor([3, 3, 3, 4]), torch.tensor([10, 11, 10, 10]), torch.tensor([7, 7, 8, 7])
    k = sample_keys(d, p, f)
    ref = [_splitmix_reference(_splitmix_reference(_splitmix_reference(a) ^ b) ^ c) >> 2
           for a, b, c in zip(d.tolist(), p.tolist(), f.tolist())]
    assert k.tolist() == ref and len(set(ref)) == 4 and all(0 <= v < 2**62 for v in ref)
    # uniform enough to sample with: the low key quartile takes ~1/4 of 40k firings
    g = torch.Generator().manual_seed(0)
    many = sample_keys(torch.randint(0, 500, (40000,), generator=g), torch.arange(40000), torch.zeros(40000))
    assert abs(float((many < 2**60).float().mean()) - 0.25) < 0.01


def brute_force(scope, docs, layer, chunk_len):
    """Every firing (a positive code), from dense codes of each chunk via scope.run, with its sampling key."""
    df = dense_firings(scope, docs, layer, chunk_len)
    df = df[df.activation > 0].reset_index(drop=True)
    df["key"] = sample_keys(torch.tensor(df.document.values), torch.tensor(df.position.values),
                            torch.tensor(df.feature.values)).numpy()
    return df


def test_samples_equal_the_brute_force_smallest_keys_of_all_firings(scope2, tmp_path):
    idx = build_index(scope2, DOCS, out_dir=tmp_path / "idx", layers=[1], chunk_len=16, batch_size=3, top_n=3,
                      sample_n=SAMPLE_N, progress=False)
    ref = brute_force(scope2, DOCS, 1, 16)
    samples = idx.contexts(1, kind="sample")
    assert idx.meta["settings"]["sample_n"] == SAMPLE_N and len(samples)
    fired = ref.groupby("feature").size()
    assert (fired > SAMPLE_N).sum() > 10 and (fired < SAMPLE_N).any()  # both cases occur: sampled and all kept
    for f, grp in ref.groupby("feature"):
        want = grp.sort_values(["key", "document", "position"]).head(SAMPLE_N)
        got = samples[samples.feature == f]
        assert len(got) == min(SAMPLE_N, len(grp))
        assert set(zip(got.document, got.position)) == set(zip(want.document, want.position))
        # the activations are the feature's real activations there, and the rows are in activation order
        act_at = dict(zip(zip(want.document, want.position), want.activation))
        np.testing.assert_allclose(got.activation, [act_at[k] for k in zip(got.document, got.position)], rtol=1e-5)
        assert got.activation.is_monotonic_decreasing and got["rank"].tolist() == list(range(len(got)))
    # windows: acts[center] is the activation, and the token ids are the document's tokens around it
    for r in samples.head(40).itertuples():
        assert r.acts[r.center] == pytest.approx(r.activation, rel=1e-3)
        ids = scope2.tokenizer(DOCS[r.document], add_special_tokens=False)["input_ids"]
        lo = r.position - r.center
        assert list(r.token_ids) == ids[lo:lo + len(r.token_ids)] and r.token_ids[r.center] == ids[r.position]
        assert list(r.tokens) == scope2.token_strings(list(r.token_ids))
    # top contexts are untouched by sampling: the same rows as an index built without samples
    plain = build_index(scope2, DOCS, out_dir=tmp_path / "plain", layers=[1], chunk_len=16, batch_size=3, top_n=3,
                        sample_n=0, progress=False)
    assert len(plain.contexts(1, kind="sample")) == 0
    cols = ["feature", "rank", "activation", "document", "position", "tokens", "acts", "center", "token_ids"]
    pd.testing.assert_frame_equal(plain.contexts(1)[cols].reset_index(drop=True),
                                  idx.contexts(1)[cols].reset_index(drop=True), check_exact=True)
    pd.testing.assert_frame_equal(plain.features(1), idx.features(1), check_exact=True)


def _random_batches(n, seed=3, d_sae=12, B=3, S=8, k=4):
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in range(n):
        ids = torch.stack([torch.randperm(d_sae, generator=g)[:k] for _ in range(B * S)]).reshape(B, S, k)
        vals = torch.randint(-1, 4, (B, S, k), generator=g).float() * 0.37
        lengths = torch.randint(2, S + 1, (B,), generator=g)
        input_ids = torch.randint(0, 50, (B, S), generator=g)
        out.append((ids, vals, input_ids, lengths, torch.arange(B) + B * b, torch.zeros(B, dtype=torch.long)))
    return out


def test_sample_does_not_depend_on_batch_order_and_merges_bit_for_bit():
    batches = _random_batches(15)
    kw = dict(top_n=3, left=2, right=1, sample_n=4)
    one = FeatureAccumulator(12, **kw)
    for b in batches:
        one.update(*b)
    backwards = FeatureAccumulator(12, **kw)
    for b in reversed(batches):
        backwards.update(*b)
    for name in SAMPLE_KEYS:
        assert torch.equal(getattr(backwards, name), getattr(one, name)), name
    shards = [FeatureAccumulator(12, **kw) for _ in range(3)]
    for i, b in enumerate(batches):
        shards[(i * 7) % 3].update(*b)  # an interleaving unlike the scan's
    merged = shards[2].merge(shards[0]).merge(shards[1].state_dict())
    for name in STATE_KEYS:
        assert torch.equal(getattr(merged, name), getattr(one, name)), name
    # samples were really replaced along the way (the buffers filled up and kept the smallest keys)
    assert (one.count > 4).all() and (one.sample_keys < 2**62).all()
    assert one.sample_keys.diff(dim=1).ge(0).all()
    # the sample is the smallest keys of all firings
    for f in range(12):
        keys = []
        for ids, vals, _, lengths, doc, start in batches:
            for r in range(ids.shape[0]):
                for p in range(int(lengths[r])):
                    hit = (ids[r, p] == f) & (vals[r, p] > 0)
                    if hit.any():
                        keys.append(int(sample_keys(doc[r:r + 1], (start[r] + p).reshape(1),
                                                    torch.tensor([f]))[0]))
        assert one.sample_keys[f].tolist() == sorted(keys)[:4]


def test_resume_and_independent_shards_keep_the_same_samples(scope2, tmp_path):
    from qscope_widgets.index import build_shard, merge_shards

    kw = dict(layers=[1, 2], chunk_len=12, batch_size=2, sample_n=SAMPLE_N, progress=False)
    full = build_index(scope2, DOCS, out_dir=tmp_path / "a", **kw)

    def interrupt(i):
        if i == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_index(scope2, DOCS, out_dir=tmp_path / "b", checkpoint_every=2, on_batch=interrupt, **kw)
    state = torch.load(tmp_path / "b" / "_build_state.pt", weights_only=True)
    assert (state["layers"][1]["sample_refs"][..., 0] >= 0).any()  # the checkpoint carries the samples
    resumed = build_index(scope2, DOCS, out_dir=tmp_path / "b", checkpoint_every=2, **kw)
    for r in range(2):
        build_shard(scope2, DOCS, out_dir=tmp_path / "c", shard=r, num_shards=2, **kw)
    sharded = merge_shards(scope2, tmp_path / "c")
    for other in (resumed, sharded):
        assert other.meta["build_id"] == full.meta["build_id"]
        for n in (1, 2):
            pd.testing.assert_frame_equal(other.contexts(n, kind="all"), full.contexts(n, kind="all"),
                                          check_exact=True)
            assert 0 < len(full.contexts(n, kind="sample")) <= SAMPLE_N * len(full.features(n))


def test_card_samples_schema_and_token_ids(scope2, tmp_path):
    idx = build_index(scope2, DOCS, out_dir=tmp_path / "idx", layers=[2], chunk_len=16, sample_n=SAMPLE_N,
                      progress=False)
    feats = idx.features(2)
    f = int(feats.sort_values("count").feature.iloc[-1])
    card = idx.feature(2, f)
    json.dumps(card)
    keys = {"rank", "activation", "document", "position", "tokens", "acts", "center", "token_ids"}
    assert len(card["samples"]) == SAMPLE_N and card["contexts"]
    assert all(set(c) == keys for c in card["samples"] + card["contexts"])
    acts = [c["activation"] for c in card["samples"]]
    assert acts == sorted(acts, reverse=True) and [c["rank"] for c in card["samples"]] == list(range(SAMPLE_N))
    assert min(acts) < card["contexts"][-1]["activation"]  # the sample reaches below the top contexts
    for c in card["samples"] + card["contexts"]:
        assert len(c["token_ids"]) == len(c["tokens"]) == len(c["acts"])
        assert scope2.token_strings(c["token_ids"]) == c["tokens"]  # the ids are the window's tokens
    # a feature that fired fewer times than sample_n: its sample is every firing
    few = feats[(feats["count"] > 0) & (feats["count"] < SAMPLE_N)]
    if len(few):
        g = int(few.feature.iloc[0])
        assert len(idx.feature(2, g)["samples"]) == int(few["count"].iloc[0])
    with pytest.raises(QScopeError, match="kind"):
        idx.contexts(2, f, kind="random")
    for bad in (-1, 2.5, "24"):
        with pytest.raises(QScopeError, match="sample_n"):
            build_index(scope2, DOCS, out_dir=tmp_path / "bad", layers=[2], sample_n=bad, progress=False)


def test_an_index_written_before_samples_still_loads(scope2, tmp_path):
    out = tmp_path / "old"
    build_index(scope2, DOCS, out_dir=out, layers=[1], chunk_len=16, top_n=4, sample_n=SAMPLE_N, progress=False)
    # turn it into the old format: token strings stored, no kind / token_ids columns, no sample rows, no
    # vocab.parquet, no sample_n in the settings
    path = out / "layer1" / "contexts.parquet"
    build = pq.read_schema(path).metadata[BUILD_KEY].decode()
    new = FeatureIndex.load(out).contexts(1)  # the top rows, token strings read back through vocab.parquet
    old = pa.Table.from_pandas(new.drop(columns=["kind", "token_ids"]), preserve_index=False)
    assert old.column_names == ["feature", "rank", "activation", "document", "position", "tokens", "acts", "center"]
    write_table(path, old, build)
    (out / "vocab.parquet").unlink()
    meta = json.loads((out / "meta.json").read_text())
    del meta["settings"]["sample_n"]
    write_json(out / "meta.json", meta)

    idx = FeatureIndex.load(out)
    assert len(idx.contexts(1, kind="sample")) == 0 and len(idx.contexts(1)) == len(old)
    f = int(idx.contexts(1).feature.iloc[0])
    card = idx.feature(1, f)
    assert card["samples"] == [] and card["contexts"]
    assert all(c["token_ids"] == [] and c["tokens"] for c in card["contexts"])
    assert [c["tokens"] for c in card["contexts"]] == [list(t) for t in new[new.feature == f].tokens]
    assert len(idx.contexts(1, f)) == len(card["contexts"]) and len(idx.contexts(1, f, kind="all")) == len(
        card["contexts"])
    from qscope_widgets.index.records import IndexSettings

    assert IndexSettings.from_dict(meta["settings"]).sample_n == 0


def test_windows_are_stored_as_ids_and_read_back_through_the_vocabulary_file(scope2, tmp_path):
    out = tmp_path / "idx"
    build_index(scope2, DOCS, out_dir=out, layers=[1], chunk_len=16, sample_n=SAMPLE_N, progress=False)
    assert "tokens" not in pq.read_schema(out / "layer1" / "contexts.parquet").names
    vocab = pq.read_table(out / "vocab.parquet").column("token").to_pylist()
    assert vocab == scope2.token_strings(list(range(len(scope2.tokenizer))))
    ctx = FeatureIndex.load(out).contexts(1, kind="all")
    assert all(list(t) == [vocab[i] for i in ids] for t, ids in zip(ctx.tokens, ctx.token_ids))
    # a vocabulary file of another build is refused on load; a missing one is named when contexts are read
    from qscope_widgets.errors import FeatureIndexError

    write_table(out / "vocab.parquet", pa.table({"token": vocab}), "another-build")
    with pytest.raises(FeatureIndexError, match="vocab.parquet comes from another build"):
        FeatureIndex.load(out)
    (out / "vocab.parquet").unlink()
    idx = FeatureIndex.load(out)
    with pytest.raises(FeatureIndexError, match="vocab.parquet is missing"):
        idx.contexts(1)


def test_key_order_settles_equal_keys_by_document_then_position():
    from qscope_widgets.index.accumulator import NO_KEY, _key_order, _lex_order

    g = torch.Generator().manual_seed(5)
    group = torch.randint(0, 3, (200,), generator=g)
    key = torch.randint(0, 4, (200,), generator=g)  # many equal keys within a group: the four-key sort decides
    doc, pos = torch.randint(0, 5, (200,), generator=g), torch.randperm(200, generator=g)
    assert torch.equal(_key_order(group, key, doc, pos), _lex_order(group, key, doc, pos))
    unique = torch.randperm(200, generator=g)  # no ties: the two-sort path gives the same order
    assert torch.equal(_key_order(group, unique, doc, pos), _lex_order(group, unique, doc, pos))
    empty = torch.full((6,), NO_KEY)
    assert _key_order(torch.zeros(6, dtype=torch.long), empty, torch.full((6,), -1), torch.full((6,), -1)).tolist() \
        == list(range(6))
