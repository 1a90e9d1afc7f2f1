"""What does attribution cost, as a multiple of one forward pass?

For the embedded demo (6 layers, d 256, 4096 features) and the mid random Qwen3.5 config of
``scope_overhead.py`` (12 layers, d 768, 12,288 features, k 50, ~100M parameters), the median time of

* ``model(input_ids)`` (the bare forward, inference mode: the 1x baseline);
* ``scope.run`` with SAEs on every layer (what the explorer pays; a second baseline);
* ``scope.attribute`` over every SAE layer with ``grad_x_act`` (one spliced forward + one backward);
* ``scope.attribute(method="ig", steps=S)`` over every layer (one batched forward + backward per layer);
* ``Attribution.graph(max_nodes=50)`` (one forward + one backward per downstream node);
* ``Attribution.verify(n=20)`` (20 ablated forwards).

Cases are interleaved (each repeat runs them all) so background load hits them alike; compare the ratios.

    python benchmarks/attribution_speed.py [--seq 64] [--repeats 3] [--steps 8] [--only demo|mid] [--device cpu]
                                           [--no-ig] [--no-warmup] [--clock wall|cpu] [--baseline-rev REV]

``--clock cpu`` times with ``time.process_time`` (the process's CPU time: what other jobs on a shared machine
steal does not count; use it with ``--threads 1``, where idle worker threads cannot spin). ``--baseline-rev REV``
adds a case running ``attribute`` as it was at git revision ``REV`` (its ``attribution/compute.py`` loaded beside
the current one), so a before/after ratio comes from one run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from qscope_widgets import Scope
from qscope_widgets.notebook_utils import quiet_transformers

from scope_overhead import CONFIGS, _Tok, build  # noqa: E402  (the same mid config, built the same way)

DEMO_TEXT = ("And God said, Let there be light: and there was light. And God saw the light, that it was good: and "
             "God divided the light from the darkness. And God called the light Day, and the darkness he called "
             "Night. And the evening and the morning were the first day.")


def load_compute_at(rev: str):
    """``qscope_widgets/attribution/compute.py`` as it was at git revision ``rev``, as a module of the package."""
    import importlib.util
    import pathlib
    import subprocess
    import tempfile

    root = pathlib.Path(__file__).resolve().parents[1]
    src = subprocess.run(["git", "-C", str(root), "show", f"{rev}:qscope_widgets/attribution/compute.py"],
                         check=True, capture_output=True, text=True).stdout
    path = pathlib.Path(tempfile.mkdtemp()) / "compute_at_rev.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("qscope_widgets.attribution._compute_at_rev", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cases_for(scope: Scope, ids: torch.Tensor, target: int, steps: int, device: str, ig: bool = True,
              baseline=None, rev: str = ""):
    model = scope.model
    a = scope.attribute(ids, target)  # graph/verify run on one fixed attribution

    def bare():
        with torch.inference_mode():
            model(input_ids=ids[None].to(device), use_cache=False)

    cases = {
        "bare forward": bare,
        "run, SAEs on all layers": lambda: scope.run(ids),
        "attribute grad_x_act, all layers": lambda: scope.attribute(ids, target),
        f"attribute ig (steps={steps}), all layers": lambda: scope.attribute(ids, target, method="ig", steps=steps),
        "graph, 50 nodes": lambda: a.graph(max_nodes=50),
        "verify, top 20": lambda: a.verify(20),
    }
    if not ig:
        cases = {k: v for k, v in cases.items() if not k.startswith("attribute ig")}
    if baseline is not None:
        cases = {**{k: cases[k] for k in list(cases)[:3]},
                 f"attribute grad_x_act @{rev[:10]}": lambda: baseline.attribute(scope, ids, target),
                 **{k: cases[k] for k in list(cases)[3:]}}
    return cases


def bench(name: str, scope: Scope, ids: torch.Tensor, repeats: int, steps: int, device: str, ig: bool = True,
          warmup: bool = True, clock=time.perf_counter, baseline=None, rev: str = "") -> None:
    with torch.inference_mode():
        logits = scope.model(input_ids=ids[None].to(device), use_cache=False).logits[0, -1]
    target = int(logits.argmax())
    cases = cases_for(scope, ids, target, steps, device, ig, baseline, rev)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for f in cases.values() if warmup else [cases["bare forward"]]:  # warm up
        f()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for k, f in cases.items():
            sync()
            t = clock()
            f()
            sync()
            times[k].append(clock() - t)
    base = statistics.median(times["bare forward"])
    n_params = sum(p.numel() for p in scope.model.parameters())
    print(f"\n{name}: {n_params / 1e6:.1f}M params, {len(scope.sae_layers)} SAE layers of {scope.d_sae} features, "
          f"seq={len(ids)}, {device}, median of {repeats}, "
          f"{'CPU time' if clock is time.process_time else 'wall clock'}")
    for k, v in times.items():
        m = statistics.median(v)
        print(f"  {k:<36} {1000 * m:10.1f} ms   x{m / base:6.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", default=None, help="'demo' or 'mid'")
    ap.add_argument("--no-ig", action="store_true", help="skip integrated gradients (the slowest case)")
    ap.add_argument("--no-warmup", action="store_true", help="warm up the bare forward only")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--baseline-rev", default="", help="also time attribute() as it was at this git revision")
    a = ap.parse_args()
    clock = time.process_time if a.clock == "cpu" else time.perf_counter
    baseline = load_compute_at(a.baseline_rev) if a.baseline_rev else None
    extra = {"clock": clock, "baseline": baseline, "rev": a.baseline_rev}
    torch.set_num_threads(a.threads)
    quiet_transformers()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    if a.only in (None, "demo"):
        scope = Scope.demo(device=a.device) if a.device != "cpu" else Scope.demo()
        ids = scope.tokenize(DEMO_TEXT)[0, :a.seq].cpu()
        bench("demo (6L, d=256)", scope, ids, a.repeats, a.steps, a.device, not a.no_ig, not a.no_warmup, **extra)
    if a.only in (None, "mid"):
        spec = CONFIGS["mid (12L, d=768, ~100M)"]
        model, saes = build(*spec, device=a.device, dtype=torch.float32)
        scope = Scope(model, _Tok(), saes)
        ids = torch.randint(0, spec[3], (a.seq,), generator=torch.Generator().manual_seed(0))
        bench("mid (12L, d=768, ~100M)", scope, ids, a.repeats, a.steps, a.device, not a.no_ig, not a.no_warmup, **extra)


if __name__ == "__main__":
    main()
