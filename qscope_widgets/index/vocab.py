"""Readable strings for every token id of a model's vocabulary (index files and dashboards show tokens, not ids)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..scope import Scope


def vocab_strings(scope: "Scope") -> list[str]:
    """One readable string per row of the input embedding; ids the tokenizer lacks read as ``"<id>"``."""
    n = scope.model.get_input_embeddings().weight.shape[0]
    n_tok = len(scope.tokenizer)
    strs = scope.token_strings(list(range(min(n, n_tok))))
    return strs + [f"<{i}>" for i in range(len(strs), n)]
