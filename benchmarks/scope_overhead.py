"""How much does a hooked, SAE-encoded run cost over the bare forward pass?

Prints, for a tiny and a mid-size (~100M parameter) random Qwen3.5 config, the median time of
``model(input_ids)``; of the minimal hooked pass the official app does (a forward hook on one layer, dense
``x W_enc^T + b_enc``, ReLU, top-k, softmax of the last logits); of ``scope.run`` with an SAE on one layer and on
every layer; their ratios to the bare forward, and ``scope.run`` (one layer) over the minimal pass. The
measurements are interleaved (bare, minimal, one layer, all layers, bare, ...) so background load hits all alike;
compare the ratios, not the absolute times, on a shared machine.

    python benchmarks/scope_overhead.py [--seq 128] [--repeats 15] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from timing import median_ms, time_cases

from qscope_widgets import Scope
from qscope_widgets.sae import SAEConfig, SparseAutoencoder

CONFIGS = {
    # name: (hidden, layers, intermediate, vocab, heads, kv_heads, head_dim)
    "tiny (8L, d=256)": (256, 8, 512, 4096, 4, 2, 64),
    "mid (12L, d=768, ~100M)": (768, 12, 2048, 32768, 12, 4, 64),
}


class _Tok:
    """Just enough tokenizer for Scope: the benchmark feeds token ids directly."""

    all_special_ids: list[int] = []

    def convert_ids_to_tokens(self, ids):
        return [f"t{i}" for i in ids]

    def decode(self, ids):
        return " ".join(f"t{i}" for i in ids)


def build(hidden, layers, inter, vocab, heads, kv, head_dim, device, dtype):
    from transformers import Qwen3_5ForCausalLM, Qwen3_5TextConfig

    torch.manual_seed(0)
    types = (["linear_attention"] * 3 + ["full_attention"]) * (layers // 4)
    cfg = Qwen3_5TextConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                            num_attention_heads=heads, num_key_value_heads=kv, head_dim=head_dim,
                            linear_key_head_dim=head_dim, linear_value_head_dim=head_dim,
                            linear_num_key_heads=heads // 2, linear_num_value_heads=heads, layer_types=types,
                            max_position_embeddings=4096, tie_word_embeddings=True)
    model = Qwen3_5ForCausalLM(cfg).to(device=device, dtype=dtype).eval()
    saes = {}
    for n in range(layers):
        sae = SparseAutoencoder(SAEConfig(d_model=hidden, d_sae=16 * hidden, k=50, layer=n), device=device)
        saes[n] = sae.requires_grad_(False)
    return model, saes


def bench(name, spec, seq, repeats, device, dtype):
    model, saes = build(*spec, device=device, dtype=dtype)
    n_params = sum(p.numel() for p in model.parameters())
    scope = Scope(model, _Tok(), saes)
    ids = torch.randint(0, spec[3], (seq,))
    mid = spec[1] // 2
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def bare():
        with torch.inference_mode():
            model(input_ids=ids[None].to(device), use_cache=False)

    sae = saes[mid]
    top_k = sae.cfg.k

    def minimal():
        store = {}

        def hook(module, args, out):
            store["x"] = out[0] if isinstance(out, tuple) else out

        handle = scope.layers[mid].register_forward_hook(hook)
        try:
            with torch.inference_mode():
                out = model(input_ids=ids[None].to(device), use_cache=False)
                pre = F.linear(store["x"][0], sae.W_enc, sae.b_enc).relu()
                values, feats = pre.topk(top_k, dim=-1)
                probs = out.logits[0, -1].float().softmax(-1)
        finally:
            handle.remove()
        return values, feats, probs

    cases = {"bare forward": bare,
             "minimal hook (app)": minimal,
             f"run, SAE on layer {mid}": lambda: scope.run(ids, layers=[mid]),
             f"run, SAEs on all {spec[1]} layers": lambda: scope.run(ids, layers=None)}
    times = time_cases(cases, repeats, sync, warmup=2)
    base = median_ms(times["bare forward"])
    print(f"\n{name}: {n_params / 1e6:.1f}M params, SAE width {16 * spec[0]}, k=50, seq={seq}, {device} {dtype}")
    for name_, v in times.items():
        print(f"  {name_:<34} {median_ms(v):9.2f} ms   x{median_ms(v) / base:6.3f} of bare")
    one = median_ms(times[f"run, SAE on layer {mid}"])
    minimal_ms = median_ms(times["minimal hook (app)"])
    print(f"  => minimal x{minimal_ms / base:.3f} of bare, scope.run (1 layer) x{one / base:.3f} of bare; "
          f"scope.run / minimal = x{one / minimal_ms:.3f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--only", default=None, help="substring of a config name")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name, spec in CONFIGS.items():
        if a.only and a.only not in name:
            continue
        bench(name, spec, a.seq, a.repeats, a.device, getattr(torch, a.dtype))


if __name__ == "__main__":
    main()
