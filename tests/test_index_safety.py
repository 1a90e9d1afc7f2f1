"""The feature index never loses or mixes data: a finished index is not replaced without overwrite=True, a rebuild
with fewer layers leaves no old layer behind, files of two builds are refused on load, a damaged checkpoint says
resume=False, a process SIGKILLed in the middle of any write leaves a folder that either loads whole or says it is
unfinished (and resumes to the same index); bad index files and label inputs get the package's own errors; and
the default layers keep the SAE bank's byte budget."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from qscope_widgets import Scope
from qscope_widgets.errors import FeatureIndexError, QScopeError, UnknownLayerError
from qscope_widgets.index import FeatureIndex, build_index, layers_that_fit

from conftest import make_saes

DOCS_A = [f"{i}. " + t for i, t in enumerate([
    "The quick brown fox jumps over the lazy dog.",
    "In the beginning God created the heaven and the earth.",
    "def main(argv): return sorted(argv, key=len)",
    "A fortune: you will be hungry again in one hour.",
] * 2)]
DOCS_B = [d.upper() for d in DOCS_A][::-1]
KW = dict(chunk_len=16, batch_size=2, progress=False)


@pytest.fixture
def scope2(qwen3, tokenizer):
    return Scope(qwen3, tokenizer, make_saes(64, [1, 2], d_sae=128, k=6))


def assert_same_index(a: FeatureIndex, b: FeatureIndex) -> None:
    assert a.layers == b.layers and a.meta["build_id"] == b.meta["build_id"]
    for n in a.layers:
        pd.testing.assert_frame_equal(a.features(n), b.features(n), check_exact=True)
        pd.testing.assert_frame_equal(a.contexts(n, kind="all"), b.contexts(n, kind="all"), check_exact=True)
        assert len(a.contexts(n, kind="sample")) > 0 or a.meta["settings"].get("sample_n") == 0


# ---------------------------------------------------------------------------------------------- item 2
def test_second_build_into_a_finished_index_is_refused_unless_overwrite(scope2, tmp_path):
    out = tmp_path / "idx"
    first = build_index(scope2, DOCS_A, out_dir=out, layers=[1, 2], **KW)
    with pytest.raises(QScopeError, match="overwrite=True") as err:
        build_index(scope2, DOCS_B, out_dir=out, layers=[1, 2], **KW)
    assert str(out) in str(err.value)
    assert_same_index(FeatureIndex.load(out), first)  # untouched
    # a rebuild with fewer layers leaves no folder of the old layer 2 behind
    again = build_index(scope2, DOCS_B, out_dir=out, layers=[1], overwrite=True, **KW)
    assert again.layers == [1] and not (out / "layer2").exists()
    assert again.meta["build_id"] != first.meta["build_id"]
    assert sorted(p.name for p in out.iterdir()) == ["layer1", "meta.json", "vocab.parquet"]


def test_load_refuses_layers_of_another_build(scope2, tmp_path):
    a = build_index(scope2, DOCS_A, out_dir=tmp_path / "a", layers=[1, 2], **KW)
    build_index(scope2, DOCS_B, out_dir=tmp_path / "b", layers=[1, 2], **KW)
    (tmp_path / "a" / "layer2" / "features.parquet").unlink()
    shutil.copy(tmp_path / "b" / "layer2" / "features.parquet", tmp_path / "a" / "layer2" / "features.parquet")
    with pytest.raises(FeatureIndexError, match="another build") as err:
        FeatureIndex.load(tmp_path / "a")
    assert "layer2" in str(err.value) and "overwrite=True" in str(err.value)
    (tmp_path / "a" / "layer2" / "features.parquet").unlink()
    with pytest.raises(FeatureIndexError, match="missing"):
        FeatureIndex.load(tmp_path / "a")
    assert a.meta["corpus_digest"] and len(a.meta["build_id"]) == 24


def test_rebuild_stopped_midway_leaves_no_loadable_mixture(scope2, tmp_path, monkeypatch):
    out = tmp_path / "idx"
    build_index(scope2, DOCS_A, out_dir=out, layers=[1, 2], **KW)
    from qscope_widgets.index import builder

    real = builder.write_layer
    written = []

    def write_one_then_fail(out_, n, *a, **k):
        if written:
            raise KeyboardInterrupt
        written.append(n)
        real(out_, n, *a, **k)

    monkeypatch.setattr(builder, "write_layer", write_one_then_fail)
    with pytest.raises(KeyboardInterrupt):
        build_index(scope2, DOCS_B, out_dir=out, layers=[1, 2], overwrite=True, **KW)
    monkeypatch.setattr(builder, "write_layer", real)
    # layer 1 of corpus B sits beside layer 2 of corpus A: never loadable as one index
    with pytest.raises(FeatureIndexError, match="unfinished build"):
        FeatureIndex.load(out)
    resumed = build_index(scope2, DOCS_B, out_dir=out, layers=[1, 2], **KW)
    assert_same_index(resumed, build_index(scope2, DOCS_B, out_dir=tmp_path / "ref", layers=[1, 2], **KW))


@pytest.mark.parametrize("damage", ["empty", "truncated", "not a dict"])
def test_damaged_checkpoint_says_resume_false(scope2, tmp_path, damage):
    out = tmp_path / "idx"

    def interrupt(i):
        if i == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_index(scope2, DOCS_A, out_dir=out, layers=[1], checkpoint_every=2, on_batch=interrupt, **KW)
    state = out / "_build_state.pt"
    data = state.read_bytes()
    if damage == "empty":
        state.write_bytes(b"")
    elif damage == "truncated":
        state.write_bytes(data[: len(data) // 2])
    else:
        torch.save([1, 2, 3], state)
    with pytest.raises(QScopeError, match="resume=False"):
        build_index(scope2, DOCS_A, out_dir=out, layers=[1], **KW)
    idx = build_index(scope2, DOCS_A, out_dir=out, layers=[1], resume=False, **KW)
    assert idx.meta["tokens"] > 0


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from conftest import make_qwen3, make_saes, make_tokenizer
    from qscope_widgets import Scope
    from qscope_widgets.index import FeatureIndex, build_index, files

    docs = {docs!r}
    tok = make_tokenizer()
    scope = Scope(make_qwen3(len(tok)), tok, make_saes(64, [1, 2], d_sae=128, k=6))
    real_open, calls = open, [0]

    class DiesMidWrite:
        def __init__(self, fh):
            self.fh = fh
        def write(self, b):
            self.fh.write(bytes(b)[: max(1, len(b) // 2)])
            self.fh.flush()
            os.fsync(self.fh.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        def __getattr__(self, name):
            return getattr(self.fh, name)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            self.fh.close()

    def open_dying_at(path, mode="r", *a, **k):
        fh = real_open(path, mode, *a, **k)
        calls[0] += 1
        return DiesMidWrite(fh) if calls[0] == int(sys.argv[3]) else fh

    files.open = open_dying_at  # the n-th file the index writes dies half-written
    if sys.argv[1] == "labels":
        FeatureIndex.load(sys.argv[2]).attach_labels({{3: "a new label"}}, layer=1)
    else:
        build_index(scope, docs, out_dir=sys.argv[2], layers=[1, 2], overwrite=True, chunk_len=16, batch_size=2,
                    progress=False, checkpoint_every=3)
    print("finished without being killed")
""")


def test_sigkill_during_any_write_leaves_a_loadable_or_clearly_unfinished_index(scope2, tmp_path):
    """The files a rebuild (overwrite=True over a finished index) writes, in order: checkpoints 1-5, layer 1's
    contexts 6 and features 7, layer 2's 8 and 9, the finished-pass state 10, meta.json 11. Killed half-way
    through write 7 (a mixture of builds on disk) and 11; and through attach_labels(save=True)."""
    base = tmp_path / "base"
    old = build_index(scope2, DOCS_A, out_dir=base, layers=[1, 2], **KW)
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT.format(tests=str(Path(__file__).parent), docs=DOCS_B))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1])] + sys.path))
    runs = {("build", 7), ("build", 11), ("labels", 1)}
    procs = {}
    for mode, n in sorted(runs):
        d = tmp_path / f"{mode}{n}"
        shutil.copytree(base, d)
        procs[(mode, n)] = subprocess.Popen([sys.executable, str(script), mode, str(d), str(n)], env=env,
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ref = build_index(scope2, DOCS_B, out_dir=tmp_path / "ref", layers=[1, 2], checkpoint_every=3, **KW)
    for (mode, n), p in procs.items():
        log = p.communicate(timeout=300)[0]
        assert p.returncode == -signal.SIGKILL, log[-2000:]
        d = tmp_path / f"{mode}{n}"
        if mode == "labels":  # the old features file stays whole: the index loads, the label is not half-saved
            idx = FeatureIndex.load(d)
            assert idx.label(1, 3) == old.label(1, 3)
            assert_same_index(idx, old)
            continue
        with pytest.raises(FeatureIndexError, match="unfinished build"):
            FeatureIndex.load(d)  # meta.json of the old build went first; the new one never half-exists
        assert_same_index(build_index(scope2, DOCS_B, out_dir=d, layers=[1, 2], checkpoint_every=3, **KW), ref)


# ---------------------------------------------------------------------------------------------- item 8
def test_bad_index_files_give_feature_index_errors(scope2, tmp_path):
    out = tmp_path / "idx"
    build_index(scope2, DOCS_A, out_dir=out, layers=[1], **KW)
    meta = (out / "meta.json").read_text()
    for bad, match in (("{not json", "not valid JSON"), ("[1, 2]", "holds a list"), ('{"format": "x"}', "format"),
                       (meta.replace('"layers": [\n    1\n  ]', '"layers": "one"'), "layers")):
        (out / "meta.json").write_text(bad)
        with pytest.raises(FeatureIndexError, match=match):
            FeatureIndex.load(out)
    (out / "meta.json").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(FeatureIndexError, match="meta.json"):
        FeatureIndex.load(out)
    (out / "meta.json").write_text(meta)
    good = (out / "layer1" / "features.parquet").read_bytes()
    (out / "layer1" / "features.parquet").write_bytes(b"PAR1 garbage " * 10)
    with pytest.raises(FeatureIndexError, match="features.parquet"):
        FeatureIndex.load(out)
    (out / "layer1" / "features.parquet").write_bytes(good)
    idx = FeatureIndex.load(out)
    (out / "layer1" / "contexts.parquet").write_bytes(b"")  # damaged after loading: the lazy read says so too
    with pytest.raises(FeatureIndexError, match="contexts.parquet"):
        idx.contexts(1)


def test_index_rejects_bad_layers_labels_and_groups(scope2, tmp_path):
    idx = build_index(scope2, DOCS_A, out_dir=tmp_path / "idx", layers=[1, 2], **KW)
    for bad in (True, 1.0, "1", None):
        with pytest.raises(UnknownLayerError, match=repr(bad)):
            idx.features(bad)
    assert len(idx.features(np.int64(1))) == 128  # integer numpy scalars are ints
    before = idx.label(1, 1)
    with pytest.raises(FeatureIndexError, match="1.5"):
        idx.attach_labels({1.5: "not feature one"}, layer=1)
    with pytest.raises(FeatureIndexError, match="True"):
        idx.attach_labels(pd.DataFrame({"feature": [True], "explanation": ["x"]}), layer=1)
    assert idx.label(1, 1) == before
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(QScopeError, match="empty"):
        idx.attach_labels(empty, layer=1)
    binary = tmp_path / "labels.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(QScopeError, match="binary"):
        idx.attach_labels(binary, layer=1)
    for name, data in (("bad.json", b"\x89PNG\r\n\x1a\n\x00"), ("bad.parquet", b"not parquet"),
                       ("num.json", b"42")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(QScopeError, match=name):
            idx.attach_labels(tmp_path / name, layer=1)
    with pytest.raises(QScopeError, match="groups has 3 labels"):
        build_index(scope2, DOCS_A, out_dir=tmp_path / "g", layers=[1], groups=["a", "b", "c"], **KW)
    with pytest.raises(QScopeError, match="groups has 3 labels"):  # a generator: found while scanning
        build_index(scope2, (d for d in DOCS_A), out_dir=tmp_path / "g2", layers=[1], groups=["a", "b", "c"], **KW)


# ---------------------------------------------------------------------------------------------- item 3
def test_default_layers_keep_the_sae_bank_budget(qwen3, tokenizer, tmp_path):
    saes = make_saes(64, range(4), d_sae=128, k=6)
    size = saes[0].nbytes()
    budget = int(2.5 * size)
    scope = Scope(qwen3, tokenizer, saes, sae_cache_bytes=budget)
    assert layers_that_fit(scope.saes, [0, 1, 2, 3]) == 2
    peak, real_get = [0], scope.saes.get

    def get(n):
        sae = real_get(n)
        peak[0] = max(peak[0], scope.saes.bytes_loaded())
        return sae

    scope.saes.get = get
    idx = build_index(scope, DOCS_A, out_dir=tmp_path / "budget", **KW)  # layers=None: all four
    assert idx.layers == [0, 1, 2, 3] and 0 < peak[0] <= budget
    assert scope.saes.loads <= 4 + 2  # two passes; not a reload per batch
    unbounded = Scope(qwen3, tokenizer, saes)
    assert_same_index(idx, build_index(unbounded, DOCS_A, out_dir=tmp_path / "all", **KW))
    with pytest.raises(QScopeError, match="holds 2 of the 4 layers"):
        build_index(scope, iter(DOCS_A), out_dir=tmp_path / "once", **KW)
