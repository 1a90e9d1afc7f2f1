"""The Qwen3.5-27B shapes, measured: SAE load and cache, encode, run overhead, explorer layer switching, page bytes.

Writes release-layout ``layer{n}.sae.pt`` files of the true shape (81,920 x 5,120, float32, ~3.4 GB each; a few
layers only) under a temporary folder, builds a Qwen3.5 model with the 27B's layer shapes (the text config as
published: hidden 5120, intermediate 17408, 24 attention heads / 4 KV heads of 256, Gated DeltaNet 16 key / 48 value
heads of 128, the 3-linear-then-1-full layer pattern) but few layers and a small vocabulary, and prints one table.
Every phase that reports a peak resident memory runs in a fresh subprocess (``VmHWM`` of that process), so one
phase's high-water mark never hides another's. Everything written is deleted at the end.

    python benchmarks/real_shape.py                      # CPU: 3 SAE layers, a 4-layer model (bf16), ~10 GB of /tmp
    python benchmarks/real_shape.py --device cuda --full # GPU: the full 64-layer model in bf16 (random weights)
    python benchmarks/real_shape.py --tiny               # the same code paths at toy sizes (a smoke test, seconds)

Memory: the CPU run peaks at about one fp32 layer (3.4 GB) during a load, and at the model (3 GB bf16) plus a
two-layer bf16 bank (3.4 GB) during the explorer phase.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from timing import timed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The published Qwen3.5-27B text config (see qscope_widgets/memory_plan.py for the source).
REAL = dict(hidden=5120, inter=17408, heads=24, kv=4, head_dim=256, lin_k=16, lin_v=48, lin_dim=128, d_sae=81920,
            k=50, vocab=4096, n_layers=64)
TINY = dict(hidden=64, inter=128, heads=4, kv=2, head_dim=16, lin_k=2, lin_v=4, lin_dim=16, d_sae=1024, k=8,
            vocab=512, n_layers=8)


def peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def gb(x: float) -> str:
    return f"{x / 1e9:.2f} GB"


# ------------------------------------------------------------------------------------------------ building blocks
def write_layer(path: Path, shape: dict, seed: int) -> None:
    from qscope_widgets.sae.model import RELEASE_KEYS

    g = torch.Generator().manual_seed(seed)
    d, m = shape["d_sae"], shape["hidden"]
    W_enc = torch.randn(d, m, generator=g).div_(m ** 0.5)
    state = {"W_enc": W_enc, "W_dec": W_enc.T.contiguous(), "b_enc": torch.randn(d, generator=g) * 0.01,
             "b_dec": torch.randn(m, generator=g) * 0.01}
    assert tuple(state) == RELEASE_KEYS
    torch.save(state, path)  # the release's layout: a plain dict of four contiguous float32 tensors


def build_model(shape: dict, n_layers: int, dtype: torch.dtype, device: str):
    from transformers import Qwen3_5ForCausalLM, Qwen3_5TextConfig

    pattern = ["linear_attention"] * 3 + ["full_attention"]
    cfg = Qwen3_5TextConfig(
        vocab_size=shape["vocab"], hidden_size=shape["hidden"], intermediate_size=shape["inter"],
        num_hidden_layers=n_layers, num_attention_heads=shape["heads"], num_key_value_heads=shape["kv"],
        head_dim=shape["head_dim"], linear_num_key_heads=shape["lin_k"], linear_num_value_heads=shape["lin_v"],
        linear_key_head_dim=shape["lin_dim"], linear_value_head_dim=shape["lin_dim"], linear_conv_kernel_dim=4,
        layer_types=[pattern[i % 4] for i in range(n_layers)], max_position_embeddings=4096,
        tie_word_embeddings=False)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen3_5ForCausalLM._from_config(cfg, dtype=dtype)
    return model.eval()


class Tok:
    """Just enough tokenizer for Scope and the explorer: prompts are given as token ids or digit strings."""

    all_special_ids: list[int] = []

    def __init__(self, vocab: int):
        self.vocab = vocab

    def __call__(self, text, add_special_tokens=True, return_tensors=None):
        ids = [(ord(c) * 31 + i) % self.vocab for i, c in enumerate(text)]
        return {"input_ids": torch.tensor([ids])}

    def __len__(self):
        return self.vocab

    def convert_ids_to_tokens(self, ids):
        return [f"t{i}" for i in ids]

    def decode(self, ids, **kw):
        return " ".join(f"t{i}" for i in ids)


# ------------------------------------------------------------------------------------------------ phases
def phase_load(a) -> dict:
    """One load of layer 0 through the cache (first: convert; then: cached), in this fresh process."""
    from qscope_widgets.sae import load_sae

    dtype = getattr(torch, a.dtype)
    t = time.perf_counter()
    sae = load_sae(Path(a.folder) / "layer0.sae.pt", k=a.k, dtype=dtype, device=a.device)
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    return {"seconds": dt, "peak_rss": peak_rss(), "sae_bytes": sae.nbytes()}


def phase_key(a) -> dict:
    from qscope_widgets.sae.cache import content_key, full_digest

    p = Path(a.folder) / "layer0.sae.pt"
    t = time.perf_counter()
    content_key(p)
    t_key = time.perf_counter() - t
    t = time.perf_counter()
    full_digest(p)
    return {"key_s": t_key, "sha256_s": time.perf_counter() - t, "file_bytes": p.stat().st_size}


def phase_encode(a) -> dict:
    from qscope_widgets.sae import load_sae

    out = {}
    for name in ("float32", "bfloat16"):
        sae = load_sae(Path(a.folder) / "layer0.sae.pt", k=a.k, dtype=getattr(torch, name), device=a.device)
        x = torch.randn(a.seq, sae.d_model, device=a.device)
        sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
        with torch.inference_mode():
            sae.encode_sparse(x)
            out[name] = statistics.median(timed(lambda: sae.encode_sparse(x), a.repeats, sync))
        del sae
    return out


def phase_model(a) -> dict:
    """Run overhead, explorer layer switching with a two-layer bank, slider updates, bytes per update."""
    import torch.nn.functional as F

    from qscope_widgets import Scope

    shape = TINY if a.tiny else REAL
    device, dtype = a.device, getattr(torch, a.model_dtype)
    n_layers = shape["n_layers"] if a.full else a.model_layers
    model = build_model(shape, n_layers, dtype, device)
    n_params = sum(p.numel() for p in model.parameters())
    sae_dtype = getattr(torch, a.sae_dtype)
    one = (2 * shape["hidden"] * shape["d_sae"] + shape["d_sae"] + shape["hidden"]) * torch.empty(
        (), dtype=sae_dtype).element_size()
    scope = Scope(model, Tok(shape["vocab"]), a.folder, sae_dtype=sae_dtype, sae_cache_bytes=2 * one, k=shape["k"])
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    layers = scope.sae_layers
    mid = layers[len(layers) // 2]
    ids = torch.randint(0, shape["vocab"], (a.seq,))

    def bare():
        with torch.inference_mode():
            model(input_ids=ids[None].to(device), use_cache=False)

    sae = scope.sae(mid)

    def minimal():
        store = {}
        h = scope.layers[mid].register_forward_hook(lambda m, i, o: store.__setitem__("x", o[0] if isinstance(o, tuple) else o))
        try:
            with torch.inference_mode():
                out = model(input_ids=ids[None].to(device), use_cache=False)
                pre = F.linear(store["x"][0].to(sae.dtype), sae.W_enc, sae.b_enc).relu()
                pre.topk(sae.cfg.k, dim=-1)
                out.logits[0, -1].float().softmax(-1)
        finally:
            h.remove()

    cases = {"bare": bare, "minimal": minimal, "run": lambda: scope.run(ids, layers=[mid])}
    for f in cases.values():
        f()
    times = {k: [] for k in cases}
    for _ in range(a.repeats):
        for k, f in cases.items():
            times[k] += timed(f, 1, sync)
    med = {k: statistics.median(v) for k, v in times.items()}
    del sae

    # explorer: the live widget (no page attached) under a two-layer bank, its layer moved across the layers; each
    # update's bytes are the panel outputs that changed, as the widget would send them
    from qscope_widgets.widgets import Explorer
    from qscope_widgets.widgets.panels import get_panels

    prompt = "".join(chr(65 + (i * 7) % 26) for i in range(a.seq))
    ex = Explorer(scope, prompt, layer=layers[0])
    output_names = [name for pnl in get_panels(ex.panels) for name in pnl.outputs]

    def update_bytes(before: dict) -> int:
        return _payload_bytes({k: getattr(ex, k) for k in output_names if getattr(ex, k) != before.get(k)})

    scope.saes.reset_peak()
    switch, sizes = [], []
    order = (layers * 3)[1: 1 + a.switches]
    for n in order:
        before = {k: getattr(ex, k) for k in output_names}
        sync()
        t = time.perf_counter()
        ex.layer = n
        ex.wait()
        sync()
        switch.append(time.perf_counter() - t)
        sizes.append(update_bytes(before))
    held = scope.saes.peak_live_bytes <= scope.saes.max_bytes
    # slider: one steering edit on the layer in view, strength changed each update (the kernel side of a drag)
    feat = 123 % shape["d_sae"]
    n = ex.layer
    ex.pin(n, feat)
    ex.wait()
    slider = []
    for i in range(a.repeats):
        before = {k: getattr(ex, k) for k in output_names}
        sync()
        t = time.perf_counter()
        ex.steering.set(n, feat, strength=2.0 + i)
        ex.wait()
        sync()
        slider.append(time.perf_counter() - t)
        sizes.append(update_bytes(before))
    ex.close()
    out = {"params": n_params, "model_layers": n_layers, "bare_s": med["bare"], "minimal_s": med["minimal"],
           "run_s": med["run"], "switch_s": statistics.median(switch), "switch_max_s": max(switch),
           "switches": len(switch), "budget_held": held, "peak_bank": scope.saes.peak_live_bytes,
           "budget": scope.saes.max_bytes, "loads": scope.saes.loads, "slider_s": statistics.median(slider),
           "bytes_per_update": statistics.median(sizes), "peak_rss": peak_rss(), "d_sae": shape["d_sae"]}
    if device.startswith("cuda"):
        out["peak_gpu"] = torch.cuda.max_memory_allocated()
    return out


def _payload_bytes(outputs: dict) -> int:
    """What one update sends to the page: binary buffers as they are, everything else as its JSON."""
    n = 0
    for v in outputs.values():
        n += len(v) if isinstance(v, (bytes, bytearray, memoryview)) else len(json.dumps(v))
    return n


def phase_baseline(a) -> dict:
    """The resident memory of a process that only imported torch and the package: the floor under every peak."""
    import qscope_widgets.sae  # noqa: F401

    return {"peak_rss": peak_rss()}


PHASES = {"baseline": phase_baseline, "load": phase_load, "key": phase_key, "encode": phase_encode, "model": phase_model}


def sub(a, phase: str, **over) -> dict:
    args = [sys.executable, __file__, "--phase", phase, "--folder", a.folder, "--device", a.device, "--seq",
            str(a.seq), "--repeats", str(a.repeats), "--k", str(a.k), "--model-layers", str(a.model_layers),
            "--switches", str(a.switches), "--model-dtype", a.model_dtype, "--sae-dtype", a.sae_dtype]
    args += ["--tiny"] * a.tiny + ["--full"] * a.full
    for key, v in over.items():
        args += [f"--{key.replace('_', '-')}", str(v)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), QSCOPE_CACHE=a.cache)
    r = subprocess.run(args, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"phase {phase} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase", default=None)
    ap.add_argument("--folder", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--full", action="store_true", help="the full 64-layer model (for a GPU)")
    ap.add_argument("--tiny", action="store_true", help="toy sizes: a smoke test of every code path")
    ap.add_argument("--sae-layers", default=None, help="comma-separated layers to write (default 0,1,2)")
    ap.add_argument("--model-layers", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--switches", type=int, default=6)
    ap.add_argument("--k", type=int, default=None)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--model-dtype", default="bfloat16")
    ap.add_argument("--sae-dtype", default="bfloat16")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the written files (default: delete)")
    a = ap.parse_args()
    shape = TINY if a.tiny else REAL
    a.k = a.k or shape["k"]
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.phase:
        print(json.dumps(PHASES[a.phase](a)))
        return

    layers = ([int(x) for x in a.sae_layers.split(",")] if a.sae_layers else
              ([0, shape["n_layers"] // 2, shape["n_layers"] - 1] if a.full else [0, 1, 2]))
    if not a.full and max(layers) >= a.model_layers:
        raise SystemExit(f"SAE layers {layers} need a model of more than {a.model_layers} layers")
    per_file = 4 * (2 * shape["hidden"] * shape["d_sae"] + shape["d_sae"] + shape["hidden"])
    need = len(layers) * per_file * 1.6  # the files, their bf16 cache entries, and a fp32 entry of one
    tmp_root = Path(tempfile.gettempdir())
    free = shutil.disk_usage(tmp_root).free
    print(f"{tmp_root}: {gb(free)} free; this run writes about {gb(need)}")
    if free < need + 5e9:
        raise SystemExit("not enough free disk under the temp folder (keeps 5 GB spare)")
    work = Path(tempfile.mkdtemp(prefix="qscope_real_shape_", dir=tmp_root))
    a.folder, a.cache = str(work / "release"), str(work / "cache")
    try:
        from qscope_widgets.sae.io import write_release_config
        from qscope_widgets.sae.config import SAEConfig

        Path(a.folder).mkdir()
        t = time.perf_counter()
        for i, n in enumerate(layers):
            write_layer(Path(a.folder) / f"layer{n}.sae.pt", shape, seed=i)
        write_release_config(a.folder, SAEConfig(d_model=shape["hidden"], d_sae=shape["d_sae"], k=a.k),
                             num_layers=shape["n_layers"])
        print(f"wrote {len(layers)} layer files of {gb(per_file)} in {time.perf_counter() - t:.1f} s")
        rows = []
        floor = sub(a, "baseline")["peak_rss"]
        rows.append(("peak RSS of a process that only imported torch + qscope_widgets", gb(floor), "the floor"))
        for dt in ("float32", "bfloat16"):
            first = sub(a, "load", dtype=dt)
            cached = sub(a, "load", dtype=dt)
            rows.append((f"first load, {dt} cache (read .pt, write cache)", f"{first['seconds']:.2f} s",
                         f"peak RSS {gb(first['peak_rss'])} for a {gb(first['sae_bytes'])} SAE"))
            rows.append((f"cached load, {dt}", f"{cached['seconds']:.2f} s",
                         f"peak RSS {gb(cached['peak_rss'])}"))
        key = sub(a, "key")
        rows.append(("cache key: zip CRC digest vs full SHA-256", f"{key['key_s'] * 1e3:.1f} ms",
                     f"SHA-256 of {gb(key['file_bytes'])}: {key['sha256_s']:.2f} s"))
        enc = sub(a, "encode")
        rows.append((f"encode + top-k, {a.seq} tokens, fp32 / bf16 SAE", f"{enc['float32'] * 1e3:.0f} ms",
                     f"bf16: {enc['bfloat16'] * 1e3:.0f} ms"))
        m = sub(a, "model")
        rows.append((f"bare forward, {m['model_layers']} layers ({m['params'] / 1e9:.2f} B params, "
                     f"{a.model_dtype}), {a.seq} tokens", f"{m['bare_s'] * 1e3:.0f} ms", ""))
        rows.append(("minimal hook (app) / bare", f"x{m['minimal_s'] / m['bare_s']:.3f}",
                     f"{m['minimal_s'] * 1e3:.0f} ms"))
        rows.append(("scope.run, 1 SAE layer / bare", f"x{m['run_s'] / m['bare_s']:.3f}",
                     f"{m['run_s'] * 1e3:.0f} ms; run / minimal x{m['run_s'] / m['minimal_s']:.3f}"))
        rows.append((f"explorer layer switch, bank budget 2 layers ({a.sae_dtype})",
                     f"{m['switch_s']:.2f} s median", f"max {m['switch_max_s']:.2f} s over {m['switches']} "
                     f"switches; budget held: {m['budget_held']} (peak {gb(m['peak_bank'])} of {gb(m['budget'])})"))
        rows.append(("explorer slider update (steered run)", f"{m['slider_s'] * 1e3:.0f} ms", ""))
        rows.append((f"bytes per explorer update at {m['d_sae']:,} features", f"{m['bytes_per_update'] / 1e3:.1f} kB",
                     "codes (seq x k), token values, sidebar, layer chart, next tokens"))
        rows.append(("peak RSS of the model phase", gb(m["peak_rss"]), ""))
        if "peak_gpu" in m:
            rows.append(("peak GPU memory", gb(m["peak_gpu"]), ""))
        dev = a.device if not a.device.startswith("cuda") else torch.cuda.get_device_name(0)
        print(f"\nQwen3.5-27B shapes ({'toy sizes' if a.tiny else 'real sizes'}), {dev}, torch {torch.__version__}, "
              f"{os.cpu_count()} cores, threads {torch.get_num_threads()}")
        w = max(len(r[0]) for r in rows)
        print(f"| {'measure':<{w}} | value | detail |\n|{'-' * (w + 2)}|---|---|")
        for r in rows:
            print(f"| {r[0]:<{w}} | {r[1]} | {r[2]} |")
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
