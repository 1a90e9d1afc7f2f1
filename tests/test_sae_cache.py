"""The SAE cache and file safety: weights in use never depend on a file; bad entries are rebuilt; keys follow content."""

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from qscope_widgets.errors import SAEFormatError
from qscope_widgets.sae import QwenScopeFolder, load_sae
from qscope_widgets.sae.cache import SAECacheWarning, content_key, default_cache_dir
from qscope_widgets.sae.safetensors_io import StreamWriter, read_tensors

from conftest import make_saes, write_release_folder

ROOT = Path(__file__).resolve().parents[1]


def same(a, b):
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=0)


def entries():
    return sorted((default_cache_dir() / "saes").glob("*.safetensors"))


@pytest.fixture
def folder(tmp_path):
    return write_release_folder(tmp_path / "rel", make_saes(16, [0, 1], d_sae=128, k=8), k=8)


# ------------------------------------------------------------------------------------- issue 10.1: no SIGBUS
_REWRITE_SCRIPT = """
import os, sys, torch
sys.path.insert(0, {tests!r})
from conftest import make_saes, write_release_folder
from qscope_widgets import Scope
from qscope_widgets.sae import load_sae
from qscope_widgets.sae.io import save_qwen_scope_layer
from safetensors.torch import save_file
from transformers import Qwen3Config, Qwen3ForCausalLM

tmp = {tmp!r}
from pathlib import Path
folder = write_release_folder(Path(tmp) / "rel", make_saes(16, [0, 1], d_sae=65536, k=8), k=8)
cfg = Qwen3Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=8, max_position_embeddings=64)
torch.manual_seed(0)
class Tok:
    all_special_ids = []
    def convert_ids_to_tokens(self, ids):
        return [f"t{{i}}" for i in ids]
    def decode(self, ids):
        return " ".join(f"t{{i}}" for i in ids)
scope = Scope(Qwen3ForCausalLM(cfg), Tok(), str(folder))
before = scope.run([1, 2, 3, 4], layers=[0])
w_sum = float(scope.sae(0).W_enc.sum() + scope.sae(0).W_dec.sum())
if os.path.exists("/proc/self/maps"):  # the invariant itself: no SAE file (release or cache) is mapped
    mapped = [l for l in open("/proc/self/maps") if ".sae.pt" in l or ".safetensors" in l]
    assert not mapped, mapped
# rewrite the release file in place: a smaller SAE (the file shrinks: pages of a map past the end would SIGBUS) ...
save_qwen_scope_layer(make_saes(16, [0], d_sae=64, k=8, seed=1)[0], folder / "layer0.sae.pt")
after = scope.run([1, 2, 3, 4], layers=[0])
assert torch.equal(before.layer(0).ids, after.layer(0).ids), "weights in use changed with the file"
assert float(scope.sae(0).W_enc.sum() + scope.sae(0).W_dec.sum()) == w_sum
# ... and the same for a user's safetensors file, and for a .pt loaded with the cache off
st = os.path.join(tmp, "user.safetensors")
save_file({{"W_enc": torch.randn(65536, 16), "W_dec": torch.randn(16, 65536), "b_enc": torch.zeros(65536),
           "b_dec": torch.zeros(16)}}, st)
pt = os.path.join(tmp, "other.pt")
save_qwen_scope_layer(make_saes(16, [0], d_sae=65536, k=8, seed=2)[0], pt)
a = load_sae(st, k=8)
b = load_sae(pt, k=8, cache_dir=False)
total = float(a.W_enc.sum() + b.W_enc.sum())
if os.path.exists("/proc/self/maps"):
    mapped = [l for l in open("/proc/self/maps") if ".pt" in l or ".safetensors" in l]
    assert not mapped, mapped
for p in (st, pt):
    with open(p, "r+b") as f:
        f.truncate(100)
assert float(a.W_enc.sum() + b.W_enc.sum()) == total
print("survived")
"""


def test_rewriting_a_loaded_sae_file_in_place_never_crashes_the_process(tmp_path):
    """Load, run, rewrite layer0.sae.pt in place, run again: a subprocess, so a SIGBUS is a failure, not a dead
    pytest."""
    script = _REWRITE_SCRIPT.format(tests=str(ROOT / "tests"), tmp=str(tmp_path))
    env = dict(os.environ, PYTHONPATH=str(ROOT), QSCOPE_CACHE=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)  # not the repo root: the package must come from PYTHONPATH
    assert r.returncode == 0, f"exit {r.returncode} (-7 is SIGBUS):\n{r.stderr[-2000:]}"
    assert "survived" in r.stdout


# ------------------------------------------------------------------------------------- issue 10.7: the cache
def _rewrite_header(path: Path, edit):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    edit(header)
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n:])


def _drop_tensor(path: Path):
    raw = path.read_bytes()
    _rewrite_header(path, lambda h: h.pop("b_dec"))
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) - 16 * 4])  # keep the file self-consistent in size
    assert len(path.read_bytes()) < len(raw)


def _flip_metadata_byte(path: Path):
    raw = bytearray(path.read_bytes())
    i = raw.index(b'"k": 8') + 5 if b'"k": 8' in raw else raw.index(b"\\\"k\\\": 8") + 7
    raw[i] = ord("9")  # still valid JSON, a different k: only the header digest can tell
    path.write_bytes(bytes(raw))


def _truncate(path: Path):
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 100])


@pytest.mark.parametrize("damage", [_drop_tensor, _flip_metadata_byte, _truncate],
                         ids=["missing tensor", "flipped metadata byte", "truncated"])
def test_a_corrupt_cache_entry_is_reported_and_rebuilt(folder, damage):
    src = QwenScopeFolder(folder)
    good = src.load(0, d_model=16)
    (entry,) = entries()
    damage(entry)
    with pytest.warns(SAECacheWarning, match="SAEFormatError"):
        again = src.load(0, d_model=16)
    same(again, good)
    assert again.cfg.k == 8
    assert len(entries()) == 1
    with _no_warning():
        same(src.load(0, d_model=16), good)  # the rebuilt entry is served silently


class _no_warning:
    def __enter__(self):
        import warnings

        self.cm = warnings.catch_warnings()
        self.cm.__enter__()
        warnings.simplefilter("error", SAECacheWarning)

    def __exit__(self, *exc):
        return self.cm.__exit__(*exc)


def test_a_pt_replaced_by_one_of_the_same_size_and_mtime_is_not_served_stale(folder):
    src = QwenScopeFolder(folder)
    old = src.load(0, d_model=16)
    path = folder / "layer0.sae.pt"
    st = path.stat()
    new = make_saes(16, [0], d_sae=128, k=8, seed=7)[0]
    torch.save(new.release_state_dict(), path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    loaded = src.load(0, d_model=16)
    same(loaded, new)
    assert not torch.equal(loaded.W_enc, old.W_enc)
    assert len([e for e in entries() if "layer0" in e.name]) == 1, "the stale entry of the same path is removed"


def test_the_content_key_ignores_path_and_time_but_not_bytes(tmp_path):
    sae = make_saes(16, [0], d_sae=64, k=4)[0]
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(sae.release_state_dict(), a)
    torch.save(sae.release_state_dict(), b)
    assert content_key(a) == content_key(b), "same tensors, another file: same content"
    sd = sae.release_state_dict()
    sd["b_dec"][3] += 1e-3
    torch.save(sd, b)
    assert content_key(a) != content_key(b)
    legacy = tmp_path / "legacy.pt"
    torch.save(sae.release_state_dict(), legacy, _use_new_zipfile_serialization=False)
    assert content_key(legacy).startswith("s"), "a non-zip file is hashed in full"


# ------------------------------------------------------------------------------------- issue 15.3: compute dtype
def test_the_cache_keeps_the_compute_dtype(folder):
    f32 = load_sae(folder / "layer0.sae.pt", k=8)
    bf16 = load_sae(folder / "layer0.sae.pt", k=8, dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16 and bf16.W_dec.T.is_contiguous()
    torch.testing.assert_close(bf16.W_enc.float(), f32.W_enc, rtol=1e-2, atol=1e-2)
    sizes = {e.name.split(".")[-2]: e.stat().st_size for e in entries()}
    assert set(sizes) == {"f32", "bf16"}
    assert sizes["bf16"] < 0.55 * sizes["f32"], sizes
    again = load_sae(folder / "layer0.sae.pt", k=8, dtype=torch.bfloat16)
    assert torch.equal(again.W_enc, bf16.W_enc)


def test_stream_writer_output_is_standard_safetensors_and_atomic(tmp_path):
    from safetensors.torch import load_file

    dest = tmp_path / "x.safetensors"
    t = torch.randn(300, 7)
    w = StreamWriter(dest, [("t", (300, 7), torch.float32)], {"who": "test"})
    assert not dest.exists(), "nothing at the destination before commit"
    for blk in t.split(64):
        w.write(blk)
    w.commit()
    assert torch.equal(load_file(dest)["t"], t)
    got, meta = read_tensors(dest)
    assert torch.equal(got["t"], t) and meta == {"who": "test"}
    w = StreamWriter(dest, [("t", (300, 7), torch.float32)], {})
    w.write(t[:10])
    with pytest.raises(SAEFormatError, match="wrote"):
        w.commit()
    assert torch.equal(load_file(dest)["t"], t), "a failed write leaves the old file whole"
    assert [p.name for p in tmp_path.iterdir()] == ["x.safetensors"], "no temp file left behind"


def test_a_nan_in_a_cache_entry_is_rebuilt_but_a_wrong_width_is_the_callers_error(folder):
    from qscope_widgets.errors import SAEShapeError

    src = QwenScopeFolder(folder)
    good = src.load(0, d_model=16)
    (entry,) = entries()
    raw = bytearray(entry.read_bytes())
    raw[-4:] = struct.pack("<f", float("nan"))  # the last value of b_dec
    entry.write_bytes(bytes(raw))
    with pytest.warns(SAECacheWarning, match="NaN"):
        same(src.load(0, d_model=16), good)
    with pytest.raises(SAEShapeError, match="d_model=16"):
        src.load(0, d_model=32)
    assert len(entries()) == 1, "the entry survives a caller's wrong width"
