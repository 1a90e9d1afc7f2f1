"""SIGKILL in the middle of every file write of an index rebuild, and of attach_labels(save=True).

For each write n of a rebuild (overwrite=True over a finished index of another corpus) a subprocess is killed
half-way through writing file n. Then: does the folder load (and as what), and does running the same call again
finish with the index an uninterrupted build writes? The control does the same with writes done in place
(``files.atomic_write`` replaced by a plain open-truncate-write), as the index wrote before.

    python benchmarks/index_kill_sweep.py            # prints one table per mode
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "tests"))

SCRIPT = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from conftest import make_qwen3, make_saes, make_tokenizer
from qscope_widgets import Scope
from qscope_widgets.index import FeatureIndex, build_index, files

tok = make_tokenizer()
scope = Scope(make_qwen3(len(tok)), tok, make_saes(64, [1, 2], d_sae=128, k=6))
real_open, calls, names = open, [0], []

class DiesMidWrite:
    def __init__(self, fh): self.fh = fh
    def write(self, b):
        self.fh.write(bytes(b)[: max(1, len(b) // 2)]); self.fh.flush(); os.fsync(self.fh.fileno())
        print("KILLED", names[-1], flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    def __getattr__(self, k): return getattr(self.fh, k)
    def __enter__(self): return self
    def __exit__(self, *e): self.fh.close()

def open_dying_at(path, mode="r", *a, **k):
    fh = real_open(path, mode, *a, **k)
    calls[0] += 1
    names.append(os.path.relpath(path, sys.argv[2]))
    return DiesMidWrite(fh) if calls[0] == int(sys.argv[3]) else fh

files.open = open_dying_at
if sys.argv[4] == "inplace":  # the control: no temp file, no rename
    def inplace(path, write):
        with files.open(path, "wb") as fh:
            write(fh)
    files.atomic_write = inplace
if sys.argv[1] == "labels":
    FeatureIndex.load(sys.argv[2]).attach_labels({{3: "a new label"}}, layer=1)
else:
    build_index(scope, {docs!r}, out_dir=sys.argv[2], layers=[1, 2], overwrite=True, chunk_len=16, batch_size=2,
                progress=False, checkpoint_every=3)
print("NOT KILLED after", calls[0], "writes")
"""


def classify(folder: Path, ref, old, scope, docs_b) -> tuple[str, str]:
    import pandas as pd

    from qscope_widgets.errors import QScopeError
    from qscope_widgets.index import FeatureIndex, build_index

    def same(a, b) -> bool:
        try:
            for n in b.layers:
                pd.testing.assert_frame_equal(a.features(n), b.features(n), check_exact=True)
                pd.testing.assert_frame_equal(a.contexts(n), b.contexts(n), check_exact=True)
            return a.layers == b.layers
        except Exception:
            return False

    try:
        idx = FeatureIndex.load(folder)
        for n in idx.layers:
            idx.features(n), idx.contexts(n)
        load = "loads: the old index" if same(idx, old) else "loads: the new index" if same(idx, ref) \
            else "LOADS A MIXTURE"
    except QScopeError as exc:
        load = "clear error: " + ("unfinished build" if "unfinished" in str(exc) else str(exc)[:40])
    except Exception as exc:
        load = f"RAW {type(exc).__name__}"
    try:
        again = build_index(scope, docs_b, out_dir=folder, layers=[1, 2], overwrite=True, chunk_len=16,
                            batch_size=2, progress=False, checkpoint_every=3)
        rerun = "= uninterrupted build" if same(again, ref) else "DIFFERS"
    except Exception as exc:
        rerun = f"{type(exc).__name__}: {str(exc)[:40]}"
    return load, rerun


def main() -> None:
    import torch

    from conftest import make_qwen3, make_saes, make_tokenizer
    from qscope_widgets import Scope
    from qscope_widgets.index import build_index

    torch.set_num_threads(1)
    docs_a = [f"{i}. " + t for i, t in enumerate(["The quick brown fox jumps over the lazy dog.",
                                                   "In the beginning God created the heaven and the earth.",
                                                   "def main(argv): return sorted(argv, key=len)",
                                                   "A fortune: you will be hungry again in one hour."] * 2)]
    docs_b = [d.upper() for d in docs_a][::-1]
    tok = make_tokenizer()
    scope = Scope(make_qwen3(len(tok)), tok, make_saes(64, [1, 2], d_sae=128, k=6))
    work = Path(tempfile.mkdtemp(prefix="kill_sweep_"))
    kw = dict(layers=[1, 2], chunk_len=16, batch_size=2, progress=False, checkpoint_every=3)
    old = build_index(scope, docs_a, out_dir=work / "base", **kw)
    ref = build_index(scope, docs_b, out_dir=work / "ref", **kw)
    script = work / "kill.py"
    script.write_text(SCRIPT.format(tests=str(ROOT / "tests"), docs=docs_b))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + sys.path), OMP_NUM_THREADS="1")
    for mode in ("atomic", "inplace"):
        print(f"\n## writes: {mode}\n\n| killed in write | file | load afterwards | same call again |\n|---|---|---|---|")
        jobs = [("build", n) for n in range(1, 12)] + [("labels", 1)]
        for what, n in jobs:
            d = work / f"{mode}_{what}{n}"
            shutil.copytree(work / "base", d)
            p = subprocess.run([sys.executable, str(script), what, str(d), str(n), mode], env=env,
                               capture_output=True, text=True, timeout=600)
            killed = p.returncode == -signal.SIGKILL
            fname = next((ln.split(" ", 1)[1] for ln in p.stdout.splitlines() if ln.startswith("KILLED")), "-")
            if not killed:
                print(f"| {what} {n} | not killed (rc {p.returncode}) | | |")
                continue
            if what == "labels":
                from qscope_widgets.index import FeatureIndex

                try:
                    idx = FeatureIndex.load(d)
                    idx.features(1)
                    load = "loads: old labels" if idx.label(1, 3) == old.label(1, 3) else "loads: new labels"
                except Exception as exc:
                    load = f"{type(exc).__name__}"
                print(f"| attach_labels | {fname} | {load} | - |")
                continue
            load, rerun = classify(d, ref, old, scope, docs_b)
            print(f"| rebuild {n} | {fname} | {load} | {rerun} |")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
