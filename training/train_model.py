"""Train the demo's Qwen3.5-architecture language model on the corpus, on CPU, seeded.

The architecture is transformers' ``Qwen3_5ForCausalLM`` (Gated DeltaNet linear attention + gated full attention,
like Qwen3.5-27B), shrunk to 6 layers of width 256. Documents are tokenized, joined with ``<|endoftext|>`` and
cut into random 128-token windows (seeded). Held-out loss per genre is written to ``metrics.json``.

    python -m training.train_model [--steps 2600] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from .build_corpus import WORK, load
from .train_tokenizer import OUT as TOKENIZER_DIR

OUT = WORK / "model"
SEQ = 128
BATCH = 16
LAYER_TYPES = ["linear_attention"] * 3 + ["full_attention", "linear_attention", "full_attention"]


def model_config(vocab: int, eos: int):
    from transformers import Qwen3_5TextConfig

    return Qwen3_5TextConfig(
        vocab_size=vocab, hidden_size=256, intermediate_size=512, num_hidden_layers=len(LAYER_TYPES),
        num_attention_heads=4, num_key_value_heads=2, head_dim=64, linear_key_head_dim=64, linear_value_head_dim=64,
        linear_num_key_heads=2, linear_num_value_heads=4, linear_conv_kernel_dim=4, layer_types=LAYER_TYPES,
        max_position_embeddings=512, tie_word_embeddings=True, eos_token_id=eos, pad_token_id=eos, bos_token_id=None,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
    )


def token_stream(tok, split: str) -> dict[str, torch.Tensor]:
    """One long token stream per genre (documents joined by EOS)."""
    out = {}
    for genre in ("bible", "python", "wordnet", "fortune"):
        ids: list[int] = []
        for d in load(split, genres=(genre,)):
            ids.extend(tok(d["text"])["input_ids"])
            ids.append(tok.eos_token_id)
        out[genre] = torch.tensor(ids, dtype=torch.long)
    return out


def batches(streams: dict[str, torch.Tensor], gen: torch.Generator):
    """Random windows, each genre equally likely (genres differ in tokens per character)."""
    genres = list(streams)
    while True:
        rows = []
        for _ in range(BATCH):
            s = streams[genres[int(torch.randint(len(genres), (1,), generator=gen))]]
            i = int(torch.randint(len(s) - SEQ - 1, (1,), generator=gen))
            rows.append(s[i:i + SEQ])
        yield torch.stack(rows)


@torch.no_grad()
def heldout_loss(model, streams: dict[str, torch.Tensor], max_windows: int = 64) -> dict[str, float]:
    model.eval()
    out = {}
    for genre, s in streams.items():
        n = min(max_windows, (len(s) - 1) // SEQ)
        x = s[: n * SEQ].view(n, SEQ)
        losses = [model(input_ids=x[i:i + 16], labels=x[i:i + 16]).loss.item() for i in range(0, n, 16)]
        out[genre] = float(sum(losses) / len(losses))
    model.train()
    return out


def train(steps: int, threads: int, seed: int = 0, lr: float = 3e-3, warmup: int = 100) -> dict:
    from transformers import AutoTokenizer, Qwen3_5ForCausalLM

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    train_s, held_s = token_stream(tok, "train"), token_stream(tok, "heldout")
    print({g: len(s) for g, s in train_s.items()}, "training tokens per genre", flush=True)
    model = Qwen3_5ForCausalLM(model_config(len(tok), tok.eos_token_id))
    print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters", flush=True)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * (
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))))
    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()
    model.train()
    it = batches(train_s, gen)
    for step in range(steps):
        x = next(it)
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == steps - 1:
            el = time.time() - t0
            print(f"step {step:5d} loss {loss.item():.3f} lr {sched.get_last_lr()[0]:.2e} "
                  f"{(step + 1) * BATCH * SEQ / el:.0f} tok/s {el / 60:.1f} min", flush=True)
        if step and step % 500 == 0:
            model.save_pretrained(WORK / "model_ckpt")
            tok.save_pretrained(WORK / "model_ckpt")
    metrics = {"steps": steps, "batch": BATCH, "seq": SEQ, "tokens_seen": steps * BATCH * SEQ,
               "train_minutes": (time.time() - t0) / 60, "threads": threads, "seed": seed,
               "heldout_loss": heldout_loss(model.eval(), held_s)}
    print(metrics, flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(OUT)
    tok.save_pretrained(OUT)
    (OUT / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2600)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    train(a.steps, a.threads, a.seed)
