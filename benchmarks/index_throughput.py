"""Feature-index throughput and memory.

Prints tokens/s of ``build_index`` against a bare forward pass (``model(input_ids)``, logits included) over the very
same batches (target >= 0.8x), the time split (capture forward / SAE encode + accumulate / writing the index), and
the peak resident memory of a build as the corpus grows 10x (target: flat), each build in a fresh process.

    python benchmarks/index_throughput.py [--tokens 20000] [--threads 1]          # the embedded demo, CPU
    python benchmarks/index_throughput.py --model-dir training/work/model --sae-dir training/work/saes
    python benchmarks/index_throughput.py --random-2b --device cuda --tokens 200000 # Qwen3.5-2B shape, 32K SAE

``--random-2b`` builds a random-weight model of Qwen3.5-2B's shape (24 layers, d_model 2048, vocab 248,320) and
random 32K-wide k=50 SAEs on layers 6, 12 and 18: nothing is downloaded. It needs a GPU to be quick.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = ("the of and to in is was for on with as by at from that this which be are it not or have had but an they "
         "his her their one all were when we there can been has more if will would so what about out up into "
         "def return import class self print for while lambda None True False").split()


def make_corpus(n_tokens_hint: int, real: bool) -> list[str]:
    """Held-out demo text when there is some, else deterministic pseudo-text; ~4 characters per token."""
    docs: list[str] = []
    if real:
        for p in [ROOT / "qscope_widgets/demo/heldout_sample.jsonl", *sorted((ROOT / "training/work/corpus")
                                                                             .glob("*.heldout.jsonl"))]:
            if p.is_file():
                docs += [json.loads(line)["text"] for line in p.read_text().splitlines() if line.strip()]
    if not docs:
        import random

        rng = random.Random(0)
        docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 400))) for _ in range(200)]
    out, total, i = [], 0, 0
    while total < n_tokens_hint * 5:
        d = f"{i}: {docs[i % len(docs)]}"
        out.append(d)
        total += len(d)
        i += 1
    return out


def make_scope(a):
    import torch

    from qscope_widgets import Scope

    if a.random_2b:
        from transformers import AutoTokenizer, Qwen3_5ForCausalLM, Qwen3_5TextConfig

        from qscope_widgets.sae import SAEConfig, SparseAutoencoder

        torch.manual_seed(0)
        cfg = Qwen3_5TextConfig(vocab_size=248320, hidden_size=2048, intermediate_size=6144, num_hidden_layers=24,
                                num_attention_heads=8, num_key_value_heads=2, head_dim=256,
                                linear_key_head_dim=128, linear_value_head_dim=128, linear_num_key_heads=16,
                                linear_num_value_heads=16, tie_word_embeddings=True,
                                layer_types=(["linear_attention"] * 3 + ["full_attention"]) * 6)
        dt = torch.bfloat16 if a.device.startswith("cuda") else torch.float32
        with torch.device(a.device):
            model = Qwen3_5ForCausalLM(cfg).to(dt).eval()
        saes = {}
        for n in a.layers or [6, 12, 18]:
            sae = SparseAutoencoder(SAEConfig(d_model=2048, d_sae=32768, k=50, layer=n), device=a.device)
            sae.reset_parameters()
            saes[n] = sae.to(dt).requires_grad_(False)
        tok = _byte_tokenizer()
        return Scope(model, tok, saes, name="random-qwen3.5-2b-shape"), False
    if a.model_dir:
        return Scope.from_pretrained(a.model_dir, saes=a.sae_dir, device=a.device), True
    try:
        return Scope.demo(device=a.device), True
    except Exception:  # demo not built yet: its training outputs
        return Scope.from_pretrained(str(ROOT / "training/work/model"), saes=str(ROOT / "training/work/saes"),
                                     device=a.device), True


def _byte_tokenizer():
    """A byte-level BPE tokenizer trained on the fly (ids stay below the model's 248,320 vocab)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([" ".join(WORDS)] * 10, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def batches(scope, docs, n_tokens, chunk_len, batch_size):
    import torch

    from qscope_widgets.index.corpus import CorpusReport, chunk_documents

    chunks, total = [], 0
    for c in chunk_documents(scope.tokenizer, docs, chunk_len=chunk_len, report=CorpusReport()):
        if total + len(c[2]) > n_tokens:
            break
        chunks.append(c[2])
        total += len(c[2])
    out = []
    for i in range(0, len(chunks), batch_size):
        rows = chunks[i:i + batch_size]
        S = max(map(len, rows))
        ids = torch.zeros(len(rows), S, dtype=torch.long)
        mask = torch.zeros(len(rows), S, dtype=torch.long)
        for j, r in enumerate(rows):
            ids[j, : len(r)] = torch.tensor(r)
            mask[j, : len(r)] = 1
        out.append((ids, mask))
    return out, total


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def child(a) -> None:
    """One build in this process: throughput, its split, and peak memory."""
    import torch

    from qscope_widgets.index import builder

    torch.set_num_threads(a.threads)
    scope, real = make_scope(a)
    docs = make_corpus(a.child, real)
    layers = a.layers or scope.sae_layers
    times = {"encode+accumulate": 0.0, "capture forward": 0.0}
    orig_res, orig_enc = scope.residuals, builder._encode_chunked

    def timed_res(*args, **kw):
        t = time.perf_counter()
        out = orig_res(*args, **kw)
        _sync(a.device)
        times["capture forward"] += time.perf_counter() - t
        return out

    scope.residuals = timed_res
    if a.bare:  # the bare forward over the same batches, in this same process
        bs, total = batches(scope, docs, a.child, a.chunk_len, a.batch_size)
        with torch.inference_mode():
            scope.model(input_ids=bs[0][0].to(scope.device), use_cache=False)  # warm-up
            _sync(a.device)
            t = time.perf_counter()
            for ids, mask in bs:
                scope.model(input_ids=ids.to(scope.device), attention_mask=mask.to(scope.device), use_cache=False)
            _sync(a.device)
            bare_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as d:
        if a.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        idx = builder.build_index(scope, docs, out_dir=d, max_tokens=a.child, progress=False, layers=layers,
                                  chunk_len=a.chunk_len, batch_size=a.batch_size)
        _sync(a.device)
        build_s = time.perf_counter() - t
        scan_s = idx.meta["seconds"]
    out = {"tokens": idx.meta["tokens"], "build_s": build_s, "scan_s": scan_s, "write_s": build_s - scan_s,
           "forward_s": times["capture forward"], "layers": layers,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "state_mb": sum(builder.FeatureAccumulator(scope.sae(n).d_sae).nbytes() for n in layers) / 2**20}
    if a.device.startswith("cuda"):
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if a.bare:
        out["bare_s"] = bare_s
        out["bare_tokens"] = total
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--chunk-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--layers", type=int, nargs="*", default=None)
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--sae-dir", default=None)
    ap.add_argument("--random-2b", action="store_true")
    ap.add_argument("--no-growth", action="store_true", help="skip the 10x-corpus memory runs")
    ap.add_argument("--child", type=int, default=None)
    ap.add_argument("--bare", action="store_true")
    a = ap.parse_args()
    if a.child is not None:
        child(a)
        return

    def run_child(n: int, layers: list[int] | None, bare: bool = False) -> dict:
        cmd = [sys.executable, __file__, "--child", str(n), "--threads", str(a.threads), "--device", a.device,
               "--chunk-len", str(a.chunk_len), "--batch-size", str(a.batch_size)]
        for flag, val in (("--model-dir", a.model_dir), ("--sae-dir", a.sae_dir)):
            if val:
                cmd += [flag, val]
        if a.random_2b:
            cmd.append("--random-2b")
        if bare:
            cmd.append("--bare")
        if layers:
            cmd += ["--layers", *map(str, layers)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(out.stderr[-3000:])
        return json.loads(out.stdout.strip().splitlines()[-1])

    what = "random Qwen3.5-2B shape, 32K SAEs (k 50)" if a.random_2b else "demo model"
    print(f"{what} on {a.device}, {a.threads} thread(s), chunks of {a.chunk_len}, batches of {a.batch_size}")
    configs = [(a.layers, "layers " + ",".join(map(str, a.layers)))] if a.layers else []
    if not a.random_2b and not a.layers:
        configs = [([3], "layer 3"), (None, "all layers")]
    if a.random_2b and not a.layers:
        configs = [([12], "layer 12"), (None, "layers 6,12,18")]
    for layers, name in configs:
        r = run_child(a.tokens, layers, bare=True)
        bare_tps = r["bare_tokens"] / r["bare_s"]
        print(f"  bare forward (logits incl.)     {bare_tps:10.0f} tok/s")
        print(f"  index scan, {name:<18} {r['tokens'] / r['scan_s']:10.0f} tok/s   x{r['tokens'] / r['scan_s'] / bare_tps:.2f}"
              f" of bare   (capture forward {r['forward_s']:.1f} s, SAE encode + accumulate "
              f"{r['scan_s'] - r['forward_s']:.1f} s)")
        print(f"    with writing the index          {r['tokens'] / r['build_s']:10.0f} tok/s   x"
              f"{r['tokens'] / r['build_s'] / bare_tps:.2f} of bare   (write {r['write_s']:.1f} s, once per build)")
    if not a.no_growth:
        layers = (a.layers or [12]) if a.random_2b else (a.layers or [3])
        for n in (a.tokens, 10 * a.tokens):
            r = run_child(n, layers)
            gpu = f", peak GPU {r['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in r else ""
            print(f"  corpus {r['tokens']:9d} tokens, layers {layers}: peak RSS {r['peak_rss_mb']:7.0f} MB{gpu}, "
                  f"accumulator state {r['state_mb']:.1f} MB, {r['build_s']:.1f} s")


if __name__ == "__main__":
    main()
