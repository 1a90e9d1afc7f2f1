"""Try bad inputs and broken files against the public API and print what each one raised.

    PYTHONPATH=. python3 scripts/fuzz_inputs.py            # the table, then the totals
    PYTHONPATH=. python3 scripts/fuzz_inputs.py --only bad  # only the rows that are not a clear package error

A row is "clear" when the input is refused with a ``QScopeError`` subclass whose message names the bad value (the
``needle`` of the case), or, for inputs that must be accepted (numpy integers where an int is wanted), when the
call succeeds. Everything else is "other": a foreign exception (its type is printed), a package error that does
not name the value, or silence where an error was due. After every case the scope must still run a prompt to the
same logits with no hook left behind; a case that breaks that is "other" too.

Everything runs offline on the embedded demo model and its index (copied to a temporary folder before breaking).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from qscope_widgets import Scope, SteeringEdit  # noqa: E402
from qscope_widgets.errors import QScopeError  # noqa: E402

PROMPT = "The quick brown fox"


@dataclass
class Case:
    name: str
    area: str
    fn: Callable[[], Any]
    needle: str | None = None  # the message must contain this (the bad value, as the user wrote it)
    accept: bool = False  # True: the input is valid and must work


def hooks(scope) -> list:
    return [tuple(m._forward_hooks) + tuple(m._forward_pre_hooks) for m in scope.layers]


def classify(case: Case, scope, base_logits) -> tuple[str, str]:
    before = hooks(scope)
    t0 = time.perf_counter()
    try:
        case.fn()
        outcome = ("clear", "accepted") if case.accept else ("other", "no error")
    except QScopeError as exc:
        msg = str(exc)
        if case.accept:
            outcome = ("other", f"{type(exc).__name__} on valid input: {msg[:60]}")
        elif case.needle is not None and case.needle not in msg:
            outcome = ("other", f"{type(exc).__name__} without {case.needle!r}: {msg[:60]}")
        else:
            outcome = ("clear", f"{type(exc).__name__}: {msg[:70]}")
    except BaseException as exc:  # noqa: BLE001 - the point is to see what escapes
        outcome = ("other", f"{type(exc).__module__}.{type(exc).__name__}: {str(exc)[:60]}")
    dt = time.perf_counter() - t0
    if hooks(scope) != before:
        outcome = ("other", "hook left behind; " + outcome[1])
    try:
        again = scope.run(PROMPT, layers=[scope.sae_layers[0]]).logits_last
        if not torch.equal(again, base_logits):
            outcome = ("other", "scope changed; " + outcome[1])
    except BaseException as exc:  # noqa: BLE001
        outcome = ("other", f"scope unusable ({type(exc).__name__}); " + outcome[1])
    if dt > 1.0:
        outcome = (outcome[0], outcome[1] + f" [{dt:.1f} s]")
    return outcome


def core_cases(scope: Scope, tmp: Path) -> list[Case]:
    run = scope.run
    L = scope.sae_layers[0]

    def edit(**kw):
        return lambda: run(PROMPT, layers=[L], steering=[{"layer": L, "feature": 1, **kw}])

    def gen(**kw):
        return lambda: scope.generate(PROMPT, max_new_tokens=kw.pop("max_new_tokens", 2), **kw)

    return [
        Case("prompt ''", "prompt", lambda: run(""), "empty"),
        Case("prompt with a lone surrogate", "prompt", lambda: run("fox \ud800 dog"), "surrogate"),
        Case("prompt of 2,000,000 chars", "prompt", lambda: run("a" * 2_000_000), "2,000,000"),
        Case("prompt 9,000 chars over the context", "prompt", lambda: run("ab " * 3000), "9,000"),
        Case("prompt 3.5", "prompt", lambda: run(3.5), "float"),
        Case("prompt bytes", "prompt", lambda: run(b"fox"), "bytes"),
        Case("prompt ids [1, 2.0]", "prompt", lambda: run([1, 2.0]), "2.0"),
        Case("prompt ids [1, True]", "prompt", lambda: run([1, True]), "True"),
        Case("prompt ids [1, 2**70]", "prompt", lambda: run([1, 2**70]), "int64"),
        Case("prompt ids [-1]", "prompt", lambda: run([-1]), "-1"),
        Case("prompt ids 2-D tensor", "prompt", lambda: run(torch.zeros(2, 3, dtype=torch.long)), "(2, 3)"),
        Case("prompt ids bool tensor", "prompt", lambda: run(torch.tensor([True])), "bool"),
        Case("prompt ids float tensor", "prompt", lambda: run(torch.tensor([1.0])), "float"),
        Case("prompt ids as numpy ints", "prompt", lambda: run([np.int64(3), np.int32(4)]), accept=True),
        Case("layers=np.int64", "layers", lambda: run(PROMPT, layers=np.int64(L)), accept=True),
        Case("layers=[np.int32]", "layers", lambda: run(PROMPT, layers=[np.int32(L)]), accept=True),
        Case("layers=1.0", "layers", lambda: run(PROMPT, layers=1.0), "1.0"),
        Case("layers=[1.0]", "layers", lambda: run(PROMPT, layers=[1.0]), "1.0"),
        Case("layers='3'", "layers", lambda: run(PROMPT, layers="3"), "'3'"),
        Case("layers=[True]", "layers", lambda: run(PROMPT, layers=[True]), "True"),
        Case("layers=[99]", "layers", lambda: run(PROMPT, layers=[99]), "99"),
        Case("layers=[-1]", "layers", lambda: run(PROMPT, layers=[-1]), "-1"),
        Case("top_n=True", "run", lambda: run(PROMPT, layers=[L], top_n=True), "True"),
        Case("top_n=0", "run", lambda: run(PROMPT, layers=[L], top_n=0), "0"),
        Case("top_n=2.5", "run", lambda: run(PROMPT, layers=[L], top_n=2.5), "2.5"),
        Case("top_n=np.int64(3)", "run", lambda: run(PROMPT, layers=[L], top_n=np.int64(3)), accept=True),
        Case("return_residuals='yes'", "run", lambda: run(PROMPT, layers=[L], return_residuals="yes"), "'yes'"),
        Case("cancel=5", "run", lambda: run(PROMPT, layers=[L], cancel=5), "5"),
        Case("positions=[inf]", "steering", edit(positions=[math.inf]), "inf"),
        Case("positions=[nan]", "steering", edit(positions=[math.nan]), "nan"),
        Case("positions=[1.5]", "steering", edit(positions=[1.5]), "1.5"),
        Case("positions=[True]", "steering", edit(positions=[True]), "True"),
        Case("positions='all'", "steering", edit(positions="all"), "'all'"),
        Case("positions=[]", "steering", edit(positions=[]), "empty"),
        Case("positions=[999]", "steering", edit(positions=[999]), "999"),
        Case("positions=[np.int64(1)]", "steering", edit(positions=[np.int64(1)]), accept=True),
        Case("enabled='no'", "steering", edit(enabled="no"), "'no'"),
        Case("strength=nan", "steering", edit(strength=math.nan), "nan"),
        Case("strength='big'", "steering", edit(strength="big"), "'big'"),
        Case("strength=True", "steering", edit(strength=True), "True"),
        Case("mode='boost'", "steering", edit(mode="boost"), "'boost'"),
        Case("feature=1.0", "steering", lambda: run(PROMPT, layers=[L], steering=[{"layer": L, "feature": 1.0}]),
             "1.0"),
        Case("feature=10**9", "steering", lambda: run(PROMPT, layers=[L], steering=[SteeringEdit(L, 10**9)]),
             "1000000000"),
        Case("steering dict with a typo", "steering",
             lambda: run(PROMPT, layers=[L], steering=[{"layer": L, "feture": 1}]), "feture"),
        Case("steering='x'", "steering", lambda: run(PROMPT, layers=[L], steering="x"), "str"),
        Case("steering block prompt_len=1.5", "steering", lambda: scope.steering([], prompt_len=1.5).__enter__(),
             "1.5"),
        Case("generate temperature=None", "generate", gen(temperature=None), "None"),
        Case("generate temperature='x'", "generate", gen(temperature="x"), "'x'"),
        Case("generate temperature=1e-45", "generate", gen(temperature=1e-45), "1e-45"),
        Case("generate temperature=-1", "generate", gen(temperature=-1), "-1"),
        Case("generate top_p=None", "generate", gen(top_p=None), "None"),
        Case("generate top_p=1.5", "generate", gen(top_p=1.5), "1.5"),
        Case("generate seed=1.5", "generate", gen(seed=1.5), "1.5"),
        Case("generate seed=2**70", "generate", gen(seed=2**70), str(2**70)),
        Case("generate seed=np.int64(3)", "generate", gen(seed=np.int64(3)), accept=True),
        Case("generate on_token=5", "generate", gen(on_token=5), "5"),
        Case("generate max_new_tokens=2.0", "generate", gen(max_new_tokens=2.0), "2.0"),
        Case("generate baseline='no'", "generate", gen(baseline="no"), "'no'"),
        Case("scope.sae(np.int64)", "scope", lambda: scope.sae(np.int64(L)), accept=True),
        Case("scope.sae(1.0)", "scope", lambda: scope.sae(1.0), "1.0"),
        Case("scope.residuals layers=[1.5]", "scope",
             lambda: scope.residuals(scope.tokenize(PROMPT), layers=[1.5]), "1.5"),
        Case("explore feature_url='javascript:'", "widgets",
             lambda: scope.explore(PROMPT, feature_url="javascript:alert(1)"), "javascript:alert(1)"),
        Case("feature(layer, 1.5)", "widgets", lambda: scope.feature(L, 1.5), "1.5"),
    ]


def source_cases(scope: Scope, tmp: Path) -> list[Case]:
    from safetensors.torch import save_file

    from qscope_widgets.sae import load_sae
    from qscope_widgets.sae.sources import resolve_source

    d_model = scope.d_model
    from qscope_widgets.demo import sae_dir

    folder = Path(sae_dir())

    def pt_with(kind: str) -> Path:
        st = {"W_enc": torch.zeros(d_model, 16), "W_dec": torch.zeros(16, d_model), "b_enc": torch.zeros(16),
              "b_dec": torch.zeros(d_model)}
        if kind == "meta":
            st["W_enc"] = st["W_enc"].to("meta")
        elif kind == "sparse":
            st["W_enc"] = st["W_enc"].to_sparse()
        elif kind == "list":
            st = [st["W_enc"]]
        elif kind == "nan":
            st["b_enc"] = torch.full((16,), math.nan)
        elif kind == "shape":
            st["W_dec"] = torch.zeros(15, d_model)
        p = tmp / f"{kind}.pt"
        torch.save(st, p)
        return p

    def saelens(cfg_text: str | None) -> Path:
        root = tmp / f"saelens_{abs(hash(cfg_text))}"
        f = root / "blocks.1.hook_resid_post"
        f.mkdir(parents=True, exist_ok=True)
        save_file({"W_enc": torch.zeros(d_model, 16), "W_dec": torch.zeros(16, d_model), "b_enc": torch.zeros(16),
                   "b_dec": torch.zeros(d_model)}, str(f / "sae_weights.safetensors"))
        if cfg_text is not None:
            (f / "cfg.json").write_text(cfg_text)
        return root

    def release(config_text: str) -> Path:
        root = tmp / f"release_{abs(hash(config_text))}"
        if not root.exists():
            shutil.copytree(folder, root)
        (root / "config.json").write_text(config_text)
        return root

    truncated = tmp / "truncated.pt"
    truncated.write_bytes((folder / f"layer{scope.sae_layers[0]}.sae.pt").read_bytes()[:1000])
    return [
        Case("resolve_source({'a': 'x'})", "sae source", lambda: resolve_source({"a": "x"}), "'a'"),
        Case("resolve_source({1: 42})", "sae source", lambda: resolve_source({1: 42}), "42"),
        Case("resolve_source(3.5)", "sae source", lambda: resolve_source(3.5), "float"),
        Case("resolve_source('no/such')", "sae source", lambda: resolve_source("./no/such"), "no/such"),
        Case("release k='abc'", "sae source", lambda: resolve_source(str(folder), k="abc"), "'abc'"),
        Case("release k=0", "sae source", lambda: resolve_source(str(folder), k=0), "0"),
        Case("Scope sae_cache_bytes='abc'", "sae source",
             lambda: Scope(scope.model, scope.tokenizer, str(folder), sae_cache_bytes="abc"), "'abc'"),
        Case("Scope sae_dtype='float99'", "sae source",
             lambda: Scope(scope.model, scope.tokenizer, str(folder), sae_dtype="float99"), "float99"),
        Case("release config.json invalid", "sae file", lambda: resolve_source(str(release("{oops"))), "JSON"),
        Case("release config.json a list", "sae file", lambda: resolve_source(str(release("[1]"))), "list"),
        Case("release config.json k='abc'", "sae file", lambda: resolve_source(str(release('{"k": "abc"}'))),
             "'abc'"),
        Case("SAELens cfg.json invalid", "sae file", lambda: resolve_source(str(saelens("{oops"))).layers, "JSON"),
        Case("SAELens cfg.json a list", "sae file", lambda: resolve_source(str(saelens("[1, 2]"))).layers, "list"),
        Case("SAELens cfg.json null", "sae file", lambda: resolve_source(str(saelens("null"))).layers, "NoneType"),
        Case("SAELens cfg.json d_in='wide'", "sae file",
             lambda: resolve_source(str(saelens('{"d_in": "wide", "d_sae": 16, "layer": 1}'))).load(1), "'wide'"),
        Case(".pt with a meta tensor", "sae file", lambda: load_sae(pt_with("meta"), k=4, layer=0), "meta"),
        Case(".pt with a sparse tensor", "sae file", lambda: load_sae(pt_with("sparse"), k=4, layer=0), "sparse"),
        Case(".pt holding a list", "sae file", lambda: load_sae(pt_with("list"), k=4, layer=0), "list"),
        Case(".pt with NaN", "sae file", lambda: load_sae(pt_with("nan"), k=4, layer=0), "NaN"),
        Case(".pt with mismatched shapes", "sae file", lambda: load_sae(pt_with("shape"), k=4, layer=0), "15"),
        Case(".pt truncated", "sae file", lambda: load_sae(truncated, k=4, layer=0), "truncated"),
    ]


def index_cases(scope: Scope, tmp: Path) -> list[Case]:
    from qscope_widgets.demo import index_dir
    from qscope_widgets.index import FeatureIndex

    src = index_dir()
    L = scope.sae_layers[0]

    def broken(what: str) -> Path:
        dst = tmp / f"index_{what}"
        shutil.copytree(src, dst)
        if what == "meta_invalid":
            (dst / "meta.json").write_text("{oops")
        elif what == "meta_list":
            (dst / "meta.json").write_text("[]")
        elif what == "meta_missing":
            (dst / "meta.json").unlink()
        elif what == "parquet_garbage":
            (dst / f"layer{L}" / "features.parquet").write_bytes(b"PAR1 this is not parquet")
        elif what == "parquet_empty":
            (dst / f"layer{L}" / "features.parquet").write_bytes(b"")
        return dst

    def load_and_read(what: str):
        idx = FeatureIndex.load(broken(what), scope=scope)
        return idx.features(L), idx.feature(L, 1)

    def fresh():
        dst = tmp / f"index_fresh_{len(list(tmp.iterdir()))}"
        shutil.copytree(src, dst)
        return FeatureIndex.load(dst, scope=scope)

    def label_file(name: str, data: bytes) -> Path:
        p = tmp / name
        p.write_bytes(data)
        return p

    corpus = ["The quick brown fox.", "In the beginning.", "def f(x): return x"]
    return [
        Case("index meta.json invalid", "index file", lambda: load_and_read("meta_invalid"), "meta.json"),
        Case("index meta.json a list", "index file", lambda: load_and_read("meta_list"), "meta.json"),
        Case("index meta.json missing", "index file", lambda: load_and_read("meta_missing"), "meta.json"),
        Case("index features.parquet garbage", "index file", lambda: load_and_read("parquet_garbage"),
             "features.parquet"),
        Case("index features.parquet empty", "index file", lambda: load_and_read("parquet_empty"),
             "features.parquet"),
        Case("labels file empty .csv", "labels", lambda: fresh().attach_labels(
            label_file("empty.csv", b""), layer=L, save=False), "empty.csv"),
        Case("labels file binary .json", "labels", lambda: fresh().attach_labels(
            label_file("bin.json", bytes(range(256))), layer=L, save=False), "bin.json"),
        Case("labels file binary .jsonl", "labels", lambda: fresh().attach_labels(
            label_file("bin.jsonl", b"\x00\xff{"), layer=L, save=False), "bin.jsonl"),
        Case("attach_labels id 1.5", "labels",
             lambda: fresh().attach_labels({1.5: "half"}, layer=L, save=False), "1.5"),
        Case("attach_labels id True", "labels",
             lambda: fresh().attach_labels({True: "yes"}, layer=L, save=False), "True"),
        Case("attach_labels layer=1.0", "labels", lambda: fresh().attach_labels({1: "x"}, layer=1.0, save=False),
             "1.0"),
        Case("index.features(True)", "index", lambda: fresh().features(True), "True"),
        Case("index.features(1.0)", "index", lambda: fresh().features(1.0), "1.0"),
        Case("index.features(np.int64)", "index", lambda: fresh().features(np.int64(L)), accept=True),
        Case("index.feature(L, 1.5)", "index", lambda: fresh().feature(L, 1.5), "1.5"),
        Case("index.search(None)", "index", lambda: fresh().search(None), "None"),
        Case("build groups shorter than corpus", "index build", lambda: scope.index(
            corpus, out_dir=tmp / "idx_groups", layers=[L], groups=["a"], progress=False), "groups"),
        Case("build layers=[1.5]", "index build", lambda: scope.index(
            corpus, out_dir=tmp / "idx_layers", layers=[1.5], progress=False), "1.5"),
        Case("build top_n='x'", "index build", lambda: scope.index(
            corpus, out_dir=tmp / "idx_topn", layers=[L], top_n="x", progress=False), "'x'"),
        Case("build batch_size=0", "index build", lambda: scope.index(
            corpus, out_dir=tmp / "idx_bs", layers=[L], batch_size=0, progress=False), "0"),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["all", "bad"], default="all")
    args = ap.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    scope = Scope.demo()
    saved_index = scope.feature_index
    base = scope.run(PROMPT, layers=[scope.sae_layers[0]]).logits_last
    rows = []
    with tempfile.TemporaryDirectory(prefix="qscope_fuzz_") as d:
        tmp = Path(d)
        for make in (core_cases, source_cases, index_cases):
            try:
                cases = make(scope, tmp)
            except BaseException as exc:  # noqa: BLE001
                rows.append((make.__name__, "(setup)", "other", f"{type(exc).__name__}: {exc}"))
                continue
            for case in cases:
                verdict, what = classify(case, scope, base)
                scope.feature_index = saved_index
                rows.append((case.area, case.name, verdict, what))
    width = max(len(r[1]) for r in rows)
    print(f"{'area':<12} {'case':<{width}}  {'result':<6}  what happened")
    for area, name, verdict, what in rows:
        if args.only == "bad" and verdict == "clear":
            continue
        print(f"{area:<12} {name:<{width}}  {verdict:<6}  {what}")
    print()
    print(f"{'area':<12} {'tried':>5} {'clear package error':>20} {'other':>6}")
    areas = sorted({r[0] for r in rows}, key=[r[0] for r in rows].index)
    for area in areas + ["TOTAL"]:
        sel = [r for r in rows if area in ("TOTAL", r[0])]
        n_clear = sum(r[2] == "clear" for r in sel)
        print(f"{area:<12} {len(sel):>5} {n_clear:>20} {len(sel) - n_clear:>6}")
    others: dict[str, int] = {}
    for r in rows:
        if r[2] != "clear":
            kind = r[3].split(":")[0].split(";")[0]
            others[kind] = others.get(kind, 0) + 1
    if others:
        print("\nother, by kind: " + ", ".join(f"{k} x{v}" for k, v in sorted(others.items(), key=lambda x: -x[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
