"""A corpus index built in shards equals a one-process build exactly: the accumulator merge on its own (ties
included), independent shards (resumed after an interruption) merged from disk, and two torchrun ranks on gloo
through ``python -m qscope_widgets.index``.

"Equal" means: every layer's features.parquet and contexts.parquet are equal cell for cell (``check_exact``), the
build ids match, and meta.json matches in every key but ``seconds``."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from qscope_widgets import Scope
from qscope_widgets.errors import QScopeError
from qscope_widgets.index import FeatureAccumulator, FeatureIndex, build_index, build_shard, merge_shards
from qscope_widgets.index.accumulator import STATE_KEYS

from conftest import make_saes

DOCS = [f"{i}. " + t for i, t in enumerate([
    "The quick brown fox jumps over the lazy dog.",
    "In the beginning God created the heaven and the earth.",
    "def main(argv): return sorted(argv, key=len)",
    "A fortune: you will be hungry again in one hour.",
    "import torch; x = torch.zeros(3, 4); print(x.shape)",
] * 2)]
GENRES = ["pangram", "bible", "code", "fortune", "code"] * 2
KW = dict(chunk_len=12, batch_size=2, progress=False, groups=GENRES)


def assert_same_index(a: FeatureIndex, b: FeatureIndex) -> None:
    assert a.layers == b.layers and a.meta["build_id"] == b.meta["build_id"]
    assert {k: v for k, v in a.meta.items() if k != "seconds"} == {k: v for k, v in b.meta.items() if k != "seconds"}
    for n in a.layers:
        pd.testing.assert_frame_equal(a.features(n), b.features(n), check_exact=True)
        pd.testing.assert_frame_equal(a.contexts(n, kind="all"), b.contexts(n, kind="all"), check_exact=True)
        assert len(a.contexts(n, kind="sample")) > 0 or a.meta["settings"].get("sample_n") == 0


def test_merged_shards_equal_one_scan_bit_for_bit_ties_included():
    g = torch.Generator().manual_seed(1)
    d_sae, N, W = 16, 3, 3
    one = FeatureAccumulator(d_sae, top_n=N, left=2, right=1, n_groups=2)
    shards = [FeatureAccumulator(d_sae, top_n=N, left=2, right=1, n_groups=2) for _ in range(W)]
    for b in range(12):
        B, S, k = 3, 7, 4
        ids = torch.stack([torch.randperm(d_sae, generator=g)[:k] for _ in range(B * S)]).reshape(B, S, k)
        vals = torch.randint(-1, 4, (B, S, k), generator=g).float() * 0.37  # few levels: many exact ties
        lengths = torch.randint(2, S + 1, (B,), generator=g)
        input_ids = torch.randint(0, 50, (B, S), generator=g)
        doc, start = torch.arange(B) + B * b, torch.zeros(B, dtype=torch.long)
        group = torch.randint(0, 2, (B,), generator=g)
        args = (ids, vals, input_ids, lengths, doc, start, group)
        one.update(*args)
        shards[b % W].update(*args)
    merged = shards[0]
    for s in shards[1:]:
        merged.merge(s)
    for name in STATE_KEYS:
        assert torch.equal(getattr(merged, name), getattr(one, name)), name
    assert merged.tokens == one.tokens
    assert torch.equal(merged.quantiles(), one.quantiles())  # read from the merged histograms
    assert (one.top_vals[:, 0] == one.top_vals[:, 1]).any()  # the case ties are about did occur


def test_independent_shards_resume_and_merge_to_the_one_process_index(qwen3, tokenizer, tmp_path):
    scope = Scope(qwen3, tokenizer, make_saes(64, [1, 2], d_sae=128, k=6))
    ref = build_index(scope, DOCS, out_dir=tmp_path / "one", layers=[1, 2], **KW)
    out = tmp_path / "sharded"

    def interrupt(i):
        if i == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_shard(scope, DOCS, out_dir=out, shard=0, num_shards=2, layers=[1, 2], checkpoint_every=2,
                    on_batch=interrupt, **KW)
    assert (out / "_shards" / "rank0-of-2.pt").is_file()
    build_shard(scope, DOCS, out_dir=out, shard=1, num_shards=2, layers=[1, 2], **KW)
    with pytest.raises(QScopeError, match="shards \\[0\\] of 2 are not finished"):
        merge_shards(scope, out)
    for r in (0, 1):
        build_shard(scope, DOCS, out_dir=out, shard=r, num_shards=2, layers=[1, 2], checkpoint_every=2, **KW)
    merged = merge_shards(scope, out)
    assert_same_index(merged, ref)
    assert not (out / "_shards").exists()
    assert merged.report.tokens == ref.report.tokens


def test_torchrun_two_gloo_ranks_build_the_same_index_as_one_process(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    docs = [json.loads(line) for line in (Path(__file__).parents[1] / "qscope_widgets" / "demo" /
                                          "heldout_sample.jsonl").read_text().splitlines()[:8]]
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    args = ["--model", "demo", "--corpus", str(corpus), "--layers", "1,4", "--max-tokens", "500",
            "--batch-size", "3", "--chunk-len", "40", "--group-column", "genre", "--top-n", "5",
            "--logit-tokens", "false"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1])] + sys.path),
               OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "qscope_widgets.index", "build", "--out", str(tmp_path / "ddp"), *args],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    scope = Scope.demo()
    ref = build_index(scope, str(corpus), out_dir=tmp_path / "one", layers=[1, 4], max_tokens=500, batch_size=3,
                      chunk_len=40, groups=[d["genre"] for d in docs], top_n=5, progress=False, logit_tokens=False)
    ddp = FeatureIndex.load(tmp_path / "ddp")
    assert_same_index(ddp, ref)
    assert ddp.features(4)["count"].sum() > 0 and len(ddp.contexts(4)) > 0
    assert len(ddp.contexts(4, kind="sample")) > 0 and ddp.meta["settings"]["sample_n"] == 24
    assert not (tmp_path / "ddp" / "_shards").exists()
