"""Shared fixtures: tiny random Qwen3 / Qwen3.5 models with a real byte-level BPE tokenizer, and SAE folders in
the exact Qwen-Scope release layout. Everything is built offline in a second or two and cached per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

TOKENIZER_TEXT = """\
The quick brown fox jumps over the lazy dog. In the beginning God created the heaven and the earth.
def main(argv): return sorted(argv, key=len)  # Python code, with symbols: {}, [], (), ==, ->
A fortune: you will be hungry again in one hour. Numbers 0 1 2 3 4 5 6 7 8 9 and unicode: café, naïve, 東京.
And the earth was without form, and void; and darkness was upon the face of the deep.
import torch; x = torch.zeros(3, 4); print(x.shape)
"""


def make_tokenizer(vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([TOKENIZER_TEXT] * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def make_qwen3(vocab: int, seed: int = 0):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen3Config(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=128,
                      tie_word_embeddings=True)
    return Qwen3ForCausalLM(cfg).eval()


def make_qwen35(vocab: int, seed: int = 0):
    from transformers import Qwen3_5ForCausalLM, Qwen3_5TextConfig

    torch.manual_seed(seed)
    cfg = Qwen3_5TextConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                            num_attention_heads=4, num_key_value_heads=2, head_dim=16, linear_key_head_dim=16,
                            linear_value_head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4,
                            layer_types=["linear_attention"] * 3 + ["full_attention"], max_position_embeddings=128,
                            tie_word_embeddings=True)
    return Qwen3_5ForCausalLM(cfg).eval()


def make_saes(d_model: int, layers, d_sae: int = 256, k: int = 8, seed: int = 0):
    """Random TopK SAEs with non-trivial biases, one per layer."""
    from qscope_widgets.sae import SAEConfig, SparseAutoencoder

    g = torch.Generator().manual_seed(seed)
    out = {}
    for n in layers:
        sae = SparseAutoencoder(SAEConfig(d_model=d_model, d_sae=d_sae, k=k, layer=n))
        sae.reset_parameters(generator=g)
        with torch.no_grad():
            sae.b_enc.copy_(torch.randn(d_sae, generator=g) * 0.1)
            sae.b_dec.copy_(torch.randn(d_model, generator=g) * 0.1)
        out[n] = sae.requires_grad_(False)
    return out


def write_release_folder(folder: Path, saes: dict, k: int) -> Path:
    """Write ``layer{n}.sae.pt`` + ``config.json`` exactly as the Qwen-Scope release does."""
    from qscope_widgets.sae.io import save_qwen_scope_layer, write_release_config

    folder.mkdir(parents=True, exist_ok=True)
    for n, sae in saes.items():
        save_qwen_scope_layer(sae, folder / f"layer{n}.sae.pt")
    first = next(iter(saes.values()))
    write_release_config(folder, first.cfg, num_layers=max(saes) + 1)
    return folder


@pytest.fixture(scope="session")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="session")
def qwen3(tokenizer):
    return make_qwen3(len(tokenizer))


@pytest.fixture(scope="session")
def qwen35(tokenizer):
    return make_qwen35(len(tokenizer))


@pytest.fixture(scope="session")
def sae_folder(tmp_path_factory):
    """A release-layout folder with SAEs for layers 0..3 of a d_model=64 model."""
    folder = tmp_path_factory.mktemp("qwen_scope_release")
    return write_release_folder(folder, make_saes(64, range(4)), k=8)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Each test gets its own SAE conversion cache."""
    monkeypatch.setenv("QSCOPE_CACHE", str(tmp_path / "qscope_cache"))


@pytest.fixture(params=["qwen3", "qwen35"])
def scope(request, tokenizer, sae_folder):
    from qscope_widgets import Scope

    model = request.getfixturevalue(request.param)
    return Scope(model, tokenizer, str(sae_folder))


def hook_snapshot(scope) -> list[tuple]:
    """Forward hooks on every decoder layer. transformers installs its own persistent output-recording hooks the
    first time ``output_hidden_states`` is used, so tests compare snapshots rather than expecting none."""
    return [tuple(layer._forward_hooks) + tuple(layer._forward_pre_hooks) for layer in scope.layers]


def dense_firings(scope, docs, layer, chunk_len):
    """Every nonzero code of every token, straight from ``scope.run`` per chunk of ``chunk_len`` tokens (the index
    builder's windows): the brute-force reference the index tests compare against. Columns: feature, activation,
    document, position (token offset in the document)."""
    import pandas as pd

    rows = []
    for d, text in enumerate(docs):
        ids = scope.tokenizer(text, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids), chunk_len):
            chunk = ids[start:start + chunk_len]
            dense = scope.run(chunk, layers=[layer]).layers[layer].dense()
            for p in range(len(chunk)):
                for f in torch.nonzero(dense[p]).flatten().tolist():
                    rows.append((f, float(dense[p, f]), d, start + p))
    return pd.DataFrame(rows, columns=["feature", "activation", "document", "position"])


@pytest.fixture(scope="module")
def demo():
    """The embedded demo scope, one per test module (a module's widgets and caches don't leak into the next)."""
    from qscope_widgets import Scope

    return Scope.demo()
