"""Readable token strings, and a cheap package import."""

import re
import subprocess
import sys

from qscope_widgets.tokens import readable_tokens, token_bytes


def _unescape(token: str) -> bytes:
    return re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]), token.encode())


def test_tokens_concatenate_to_the_text(tokenizer):
    for text in ["The quick brown fox", "def f(x):\n    return x"]:
        ids = tokenizer(text)["input_ids"]
        assert "".join(readable_tokens(tokenizer, ids)) == text
    text = "café naïve 東京"
    toks = readable_tokens(tokenizer, tokenizer(text)["input_ids"])
    assert b"".join(_unescape(t) for t in toks) == text.encode(), "escaped fragments keep every byte"


def test_fragments_of_a_character_are_escaped_not_replaced(tokenizer):
    ids = tokenizer("東京")["input_ids"]
    toks = readable_tokens(tokenizer, ids)
    assert "\ufffd" not in "".join(toks)
    raw = b"".join(token_bytes(p) for p in tokenizer.convert_ids_to_tokens(ids))
    assert raw.decode() == "東京"
    if len(toks) > 2:  # split inside a character: shown as escapes
        assert any("\\x" in t for t in toks)


def test_special_tokens_are_kept(tokenizer):
    eos = tokenizer.eos_token_id
    assert readable_tokens(tokenizer, [eos]) == ["<|endoftext|>"]


def test_import_is_light():
    code = "import sys, qscope_widgets; assert 'torch' not in sys.modules, 'torch imported eagerly'; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
