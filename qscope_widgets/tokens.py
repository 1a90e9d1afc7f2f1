"""Readable strings for tokens.

Qwen tokenizers are byte-level BPE: a token is a sequence of *bytes*, spelled with GPT-2's byte-to-unicode alphabet
(``Ġ`` is a space, ``Ċ`` a newline). Decoding each id alone with ``tokenizer.decode`` turns a token that holds
half of a multi-byte character into ``�``. Here a token's bytes are recovered exactly, decoded as UTF-8 when they
are whole characters, and shown as ``\\xNN`` escapes when they are a fragment, so no two different tokens look
alike and the concatenation of whole tokens is the text.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def token_bytes(piece: str) -> bytes | None:
    """Bytes of a byte-level BPE piece, or None if the piece is not in that alphabet (a special token, say)."""
    table = _unicode_to_byte()
    try:
        return bytes(table[ch] for ch in piece)
    except KeyError:
        return None


def readable_tokens(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """One display string per id (see module docstring)."""
    ids = [int(i) for i in ids]
    pieces = tokenizer.convert_ids_to_tokens(ids)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    out = []
    for i, piece in zip(ids, pieces):
        if piece is None:
            out.append(f"<{i}>")
            continue
        if i in special:
            out.append(piece)
            continue
        raw = token_bytes(piece)
        if raw is None:  # not byte-level (e.g. sentencepiece): let the tokenizer decode it
            out.append(tokenizer.decode([i]))
            continue
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(raw.decode("utf-8", errors="backslashreplace"))
    return out
