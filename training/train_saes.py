"""Train one TopK SAE per layer on the demo model's residual stream, in the Qwen-Scope layout.

Recipe (Gao et al. 2024, "Scaling and evaluating sparse autoencoders", as Qwen-Scope's TopK SAEs): width 16 x
d_model, k = 12 (the L0_100 releases' ratio: 100 / 2048 d_model = 12.5 / 256), unit-norm decoder columns (gradient
parallel to them removed), tied initialisation, b_dec initialised to the data mean, Adam; against dead features AuxK (k_aux = d_model / 2,
coefficient 1/8, on features silent for 10k tokens), resampling of dead features at 15/30/45% of training, and k
annealed from 4k down to k over the first 40% of training; a layer that still ends with more than 10% dead
features (in practice the last layer, ~30%, as k reaches its final value) gets a polish phase (``revive``): up to
five rounds of resampling the features that never fire on 64k tokens, each followed by 300 steps at the final k.
The SAE is
our package's own ``SparseAutoencoder`` (one implementation for training and use); the encoder is exactly the
release's (no b_dec subtraction, ReLU after top-k).

    python -m training.train_saes [--tokens 600000] [--epochs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from qscope_widgets.sae import SAEConfig, SparseAutoencoder, SparseCodes
from qscope_widgets.sae.io import save_qwen_scope_layer, write_release_config

from .build_corpus import WORK
from .train_model import OUT as MODEL_DIR, SEQ, token_stream

OUT = WORK / "saes"
EXPANSION = 16
K = 12
DEAD_AFTER_TOKENS = 10_000
AUX_COEF = 1 / 8
K_START = 4 * K
RESAMPLE_AT = (0.15, 0.3, 0.45)  # fractions of training at which dead features are re-initialised
REVIVE_ABOVE = 0.10  # a layer ending training with more dead features than this gets the revive phase


@torch.no_grad()
def _resample(sae: SparseAutoencoder, opt: torch.optim.Optimizer, x: torch.Tensor, err: torch.Tensor,
              dead: torch.Tensor, g: torch.Generator) -> None:
    """Anthropic-style resampling: point dead features at inputs the SAE reconstructs worst."""
    idx = dead.nonzero().flatten()
    if len(idx) == 0:
        return
    loss = err.pow(2).sum(1)
    pick = torch.multinomial(loss / loss.sum(), len(idx), replacement=True, generator=g)
    dirs = err[pick] / err[pick].norm(dim=1, keepdim=True).clamp_min(1e-8)
    alive_norm = sae.W_enc[~dead].norm(dim=1).mean() if (~dead).any() else torch.tensor(1.0)
    sae.W_dec[:, idx] = dirs.T
    sae.W_enc[idx] = dirs * alive_norm  # strong enough to enter the top-k on the inputs it was drawn from
    sae.b_enc[idx] = sae.b_enc[~dead].mean() if (~dead).any() else 0.0
    for p in (sae.W_enc, sae.W_dec, sae.b_enc):  # fresh Adam moments for the re-initialised entries
        st = opt.state.get(p)
        if st:
            for key in ("exp_avg", "exp_avg_sq"):
                if p is sae.W_dec:
                    st[key][:, idx] = 0
                else:
                    st[key][idx] = 0


def sample_windows(streams: dict[str, torch.Tensor], n_tokens: int, seed: int) -> torch.Tensor:
    """Random SEQ-token windows, equal share per genre."""
    g = torch.Generator().manual_seed(seed)
    per = n_tokens // SEQ // len(streams)
    rows = []
    for s in streams.values():
        starts = torch.randint(len(s) - SEQ - 1, (per,), generator=g)
        rows.extend(s[i:i + SEQ] for i in starts.tolist())
    return torch.stack(rows)


@torch.no_grad()
def collect(scope, windows: torch.Tensor, layers: list[int], batch: int = 32) -> dict[int, torch.Tensor]:
    out: dict[int, list[torch.Tensor]] = {n: [] for n in layers}
    for i in range(0, len(windows), batch):
        res = scope.residuals(windows[i:i + batch], layers=layers)
        for n, r in res.items():
            out[n].append(r.reshape(-1, r.shape[-1]).float())
    return {n: torch.cat(v) for n, v in out.items()}


def train_layer(x: torch.Tensor, layer: int, *, epochs: int, batch: int = 1024, lr: float = 1e-3,
                seed: int = 0, clip: float | None = None) -> tuple[SparseAutoencoder, dict]:
    d_model = x.shape[1]
    cfg = SAEConfig(d_model=d_model, d_sae=EXPANSION * d_model, k=K, layer=layer)
    g = torch.Generator().manual_seed(seed + layer)
    sae = SparseAutoencoder(cfg)
    sae.reset_parameters(generator=g)
    with torch.no_grad():
        sae.b_dec.copy_(x.mean(0))
    opt = torch.optim.Adam(sae.parameters(), lr=lr, betas=(0.9, 0.999))
    steps = epochs * (len(x) // batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50) * max(0.0, 1 - s / steps) ** 0.5)
    since_fired = torch.zeros(cfg.d_sae, dtype=torch.long)
    k_aux = d_model // 2
    var = (x - x.mean(0)).pow(2).sum(1).mean()
    step = 0
    resample_at = {int(steps * f) for f in RESAMPLE_AT}
    t0 = time.time()
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x) - batch + 1, batch):
            xb = x[perm[i:i + batch]]
            # k annealing: start wide (every feature gets gradient early), reach the release's k at 40% of training
            k_t = int(round(K + (K_START - K) * max(0.0, 1 - step / (0.4 * steps))))
            vals, ids_ = sae.pre_activations(xb).topk(k_t, dim=-1)
            codes = SparseCodes(ids_, vals.relu())
            x_hat = sae.decode_sparse(codes.ids, codes.values)
            err = xb - x_hat
            mse = err.pow(2).sum(1).mean() / var
            # AuxK: let dead features reconstruct what the live ones missed. Their pre-activations are usually
            # negative, so the raw top-k values are used (a ReLU here would block the very gradient that revives them).
            dead = since_fired > DEAD_AFTER_TOKENS
            loss = mse
            if dead.any():
                pre = sae.pre_activations(xb)
                pre = pre.masked_fill(~dead, float("-inf"))
                kk = min(k_aux, int(dead.sum()))
                av, ai = pre.topk(kk, dim=-1)
                aux_hat = torch.nn.functional.embedding_bag(ai, sae.W_dec.T, per_sample_weights=av, mode="sum")
                aux = (err.detach() - aux_hat).pow(2).sum(1).mean() / var
                loss = loss + AUX_COEF * aux
            opt.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():  # keep decoder columns unit norm: drop the gradient along each column
                W = sae.W_dec
                W.grad -= (W.grad * W).sum(0, keepdim=True) * W
            if clip:  # outlier tokens (attention sinks) make rare huge steps that kill features: clip them
                torch.nn.utils.clip_grad_norm_(sae.parameters(), clip)
            opt.step()
            sched.step()
            with torch.no_grad():
                sae.W_dec.div_(sae.W_dec.norm(dim=0, keepdim=True))
                fired = torch.zeros(cfg.d_sae, dtype=torch.bool)
                fired[codes.ids[codes.values > 0]] = True
                since_fired += batch
                since_fired[fired] = 0
            if step in resample_at:
                _resample(sae, opt, xb, err.detach(), dead, g)
                since_fired[dead] = 0
            if step % 200 == 0:
                print(f"  layer {layer} epoch {epoch} step {step}/{steps} nmse {mse.item():.4f} "
                      f"dead {float(dead.float().mean()):.3f} {time.time() - t0:.0f}s", flush=True)
            step += 1
    sae.requires_grad_(False)
    return sae, {"train_nmse": float(mse.detach()), "train_dead": float(dead.float().mean()), "steps": steps,
                 "seconds": time.time() - t0}


@torch.no_grad()
def _fired(sae: SparseAutoencoder, x: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    """How often each feature fires on ``n`` random tokens of ``x`` (at the release's k)."""
    counts = torch.zeros(sae.d_sae, dtype=torch.long)
    sample = x[torch.randperm(len(x), generator=g)[:n]]
    for i in range(0, len(sample), 4096):
        c = sae.encode_sparse(sample[i:i + 4096])
        counts += torch.bincount(c.ids[c.values > 0], minlength=sae.d_sae)
    return counts


def revive(sae: SparseAutoencoder, x: torch.Tensor, *, rounds: int = 5, steps: int = 300, batch: int = 1024,
           lr: float = 2e-4, seed: int = 0, target: float = 0.03) -> dict:
    """Polish phase for layers that end training with many dead features (the last layer loses ~30% when k reaches
    the release's value): repeatedly point the features that never fire on 64k tokens at the inputs reconstructed
    worst, then train at the final k with a small constant learning rate so they find a niche."""
    g = torch.Generator().manual_seed(seed + 1000 + sae.cfg.layer if sae.cfg.layer is not None else seed + 1000)
    sae.requires_grad_(True)
    var = (x - x.mean(0)).pow(2).sum(1).mean()
    hist = []
    for r in range(rounds):
        dead = _fired(sae, x, 65536, g) == 0
        hist.append(float(dead.float().mean()))
        print(f"  revive round {r}: dead {hist[-1]:.3f}", flush=True)
        if hist[-1] <= target:
            break
        opt = torch.optim.Adam(sae.parameters(), lr=lr)
        with torch.no_grad():
            xs = x[torch.randperm(len(x), generator=g)[:16384]]
            err = xs - sae(xs)
        _resample(sae, opt, xs, err, dead, g)
        for step in range(steps):
            xb = x[torch.randint(len(x), (batch,), generator=g)]
            x_hat = sae(xb)
            loss = (xb - x_hat).pow(2).sum(1).mean() / var
            opt.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                W = sae.W_dec
                W.grad -= (W.grad * W).sum(0, keepdim=True) * W
            opt.step()
            with torch.no_grad():
                sae.W_dec.div_(sae.W_dec.norm(dim=0, keepdim=True))
        print(f"  revive round {r}: nmse {loss.item():.4f}", flush=True)
    sae.requires_grad_(False)
    return {"revive_dead_history": hist}


def epochs_for(layer: int, n_layers: int, epochs: int) -> int:
    """The last two layers' residuals are the most varied: they get two more epochs to reach the same figures."""
    return epochs + 2 if layer >= n_layers - 2 else epochs


def main(tokens: int, epochs: int, threads: int, seed: int = 0, model_dir: Path = MODEL_DIR, out: Path = OUT,
         layers: list[int] | None = None, lr: float = 1e-3, clip: float | None = None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from qscope_widgets import Scope

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    scope = Scope(model, tok)
    windows = sample_windows(token_stream(tok, "train"), tokens, seed)
    layers = list(range(scope.n_layers)) if layers is None else layers
    t0 = time.time()
    acts = collect(scope, windows, layers)
    print(f"collected {len(windows) * SEQ} tokens x {scope.n_layers} layers in {time.time() - t0:.0f}s", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "train_log.json"
    for n in layers:
        sae, info = train_layer(acts[n], n, epochs=epochs_for(n, scope.n_layers, epochs), seed=seed,
                                lr=lr, clip=clip)
        if info["train_dead"] > REVIVE_ABOVE:
            info.update(revive(sae, acts[n][:300_000], seed=seed))
        save_qwen_scope_layer(sae, out / f"layer{n}.sae.pt")
        log = json.loads(log_path.read_text()) if log_path.is_file() else {}  # several processes may share out
        log[str(n)] = info
        log_path.write_text(json.dumps(log, indent=2))
        print(f"layer {n}: {info}", flush=True)
    write_release_config(out, sae.cfg.replace(base_model="qscope-demo (Qwen3.5 architecture, 6 layers)"),
                         num_layers=scope.n_layers, release="qscope-demo", train_tokens=len(windows) * SEQ,
                         epochs=epochs)
    return json.loads(log_path.read_text())


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=600_000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--layers", type=int, nargs="*", default=None)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--clip", type=float, default=None)
    a = ap.parse_args()
    main(a.tokens, a.epochs, a.threads, model_dir=a.model_dir, out=a.out, layers=a.layers, lr=a.lr, clip=a.clip)
