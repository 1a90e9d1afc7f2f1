"""Bytes of static exports: the demo explorer, and a 27B-shaped one (81,920 features per SAE, k = 100, 64 layers).

The 27B shape is built cheaply: the demo's tokenizer, a random Qwen3 of 64 decoder layers with hidden size 64, and
random TopK SAEs of the release's width (d_sae = 81,920, k = 100, the L0_100 variant) on three layers, ~42 MB each
instead of 3.4 GB: the page's size depends on tokens x k x saved layers and the feature ids' range, not on d_model.
As a control, the bytes a dense export of the same codes would need (tokens x d_sae float32 per layer).

    PYTHONPATH=. python3 scripts/export_size.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from qscope_widgets import Scope
from qscope_widgets.widgets.export import snapshot_of

SHORT = "In the beginning God created the heaven and the earth."
LONG = ("And God said, Let there be light: and there was light. And God saw the light, that it was good: and God "
        "divided the light from the darkness. And God called the light Day, and the darkness he called Night. And "
        "the evening and the morning were the first day.")


def report(name: str, ex, layers, out: Path) -> None:
    t0 = time.perf_counter()
    path = ex.to_html(out / f"{name}.html", layers=layers)
    secs = time.perf_counter() - t0
    snap = snapshot_of(ex, layers=layers)
    kind, packed = snap.packed()
    data, _ = ex._repr_mimebundle_()
    n_layers = len(set(layers) | {ex.layer})
    dense = len(ex.tokens) * ex.d_sae * 4 * n_layers
    print(f"{name:34s} tokens={len(ex.tokens):3d} saved_layers={n_layers} d_sae={ex.d_sae:6d} k={ex.k:3d}  "
          f"page={path.stat().st_size:9,d} B  data={len(packed):8,d} B (json {len(snap.to_json()):9,d} B, "
          f"{len(snap.variants)} variants)  mimebundle_html={len(data['text/html']):6,d} B  "
          f"dense_codes_control={dense:12,d} B  export_s={secs:.2f}")


def fake_27b() -> Scope:
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    from qscope_widgets import demo
    from qscope_widgets.sae import SAEConfig, SparseAutoencoder

    tok = AutoTokenizer.from_pretrained(str(demo.model_dir()))
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=64,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                      tie_word_embeddings=True)
    model = Qwen3ForCausalLM(cfg).eval()
    g = torch.Generator().manual_seed(0)
    saes = {}
    for n in (15, 31, 47):
        sae = SparseAutoencoder(SAEConfig(d_model=64, d_sae=81920, k=100, layer=n))
        sae.reset_parameters(generator=g)
        saes[n] = sae.requires_grad_(False)
    return Scope(model, tok, saes)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="qscope-export-size-") as tmp:
        out = Path(tmp)
        scope = Scope.demo()
        for prompt, tag in ((SHORT, "short"), (LONG, "long")):
            ex = scope.explore(prompt)
            report(f"demo {tag}, layer in view", ex, [ex.layer], out)
            report(f"demo {tag}, all {len(scope.sae_layers)} SAE layers", ex, scope.sae_layers, out)
            ex.close()
        big = fake_27b()
        for prompt, tag in ((SHORT, "short"), (LONG, "long")):
            ex = big.explore(prompt, layer=31)
            report(f"27B-shaped {tag}, layer in view", ex, [31], out)
            report(f"27B-shaped {tag}, 3 SAE layers", ex, big.sae_layers, out)
            ex.close()


if __name__ == "__main__":
    main()
