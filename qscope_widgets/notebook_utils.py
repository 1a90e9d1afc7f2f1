"""Small helpers the tutorial notebooks share."""

from __future__ import annotations

import os


class StopNotebook(Exception):
    """Stops a notebook's Run All with one line of explanation and no traceback."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        return [str(self)]


def gpu_and_hub_status(timeout: float = 3.0) -> str | None:
    """None when a CUDA GPU and the Hugging Face hub are both reachable, else the reason why not."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is available"
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return "HF_HUB_OFFLINE=1 is set"
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
    except OSError:
        return "the Hugging Face hub cannot be reached"
    return None


def require_gpu_and_hub() -> None:
    """Raise :class:`StopNotebook` (one clear line) unless a GPU and the hub are available."""
    reason = gpu_and_hub_status()
    if reason is not None:
        raise StopNotebook(f"This notebook needs a GPU and the Hugging Face hub, and {reason}: stopping here. "
                           "Notebooks 1-4 run offline on a CPU.")


# ---------------------------------------------------------------------------------------------- tutorials 1-4
BIBLE_WORDS = frozenset({"unto", "thou", "thee", "thy", "hath", "shall", "lord", "god", "ye", "israel", "saith",
                         "thine", "behold"})
"""Marker words of King James English (the set ``DEMO_MODEL.md``'s steering demonstration counts)."""


def bible_word_rate(text: str) -> float:
    """Share of the words of ``text`` that are biblical marker words (:data:`BIBLE_WORDS`); 0 for empty text."""
    words = [w.strip(".,;:!?'\"()").lower() for w in text.split()]
    return sum(w in BIBLE_WORDS for w in words) / max(len(words), 1)


def demo_texts(genre: str | None = None) -> list[dict]:
    """The held-out sample shipped with the demo: ``[{"genre": ..., "text": ...}]`` (12 documents per genre:
    bible, python, wordnet, fortune), optionally of one genre only."""
    import json

    from .demo import DEMO_DIR

    rows = [json.loads(line) for line in (DEMO_DIR / "heldout_sample.jsonl").read_text().splitlines() if line]
    if genre is not None:
        genres = sorted({r["genre"] for r in rows})
        if genre not in genres:
            raise ValueError(f"unknown genre {genre!r}; the sample has {genres}")
        rows = [r for r in rows if r["genre"] == genre]
    return rows


def mark_context(tokens: list[str], center: int, left: str = "⟦", right: str = "⟧") -> str:
    """One context as text, with the activating token in brackets and newlines shown as ⏎."""
    parts = [t if i != center else f"{left}{t}{right}" for i, t in enumerate(tokens)]
    return "".join(parts).replace("\n", "⏎")


def contexts_table(index, layer: int, feature: int, n: int = 5):
    """A feature's ``n`` best contexts from a feature index as a DataFrame: rank, activation, text (⟦marked⟧)."""
    import pandas as pd

    ctx = index.contexts(layer, feature).head(n)
    return pd.DataFrame({"rank": ctx["rank"].astype(int).to_numpy(), "activation": ctx.activation.to_numpy(),
                         "text": [mark_context(list(t), int(c)) for t, c in zip(ctx.tokens, ctx.center)]})


def with_labels(df, index, layer: int | None = None, column: str = "label"):
    """``df`` (with a ``feature`` column, and a ``layer`` column unless ``layer`` is given) plus each feature's
    label from the index (the attached explanation when there is one). Returns a copy."""
    out = df.copy()
    layers = [layer] * len(out) if layer is not None else out["layer"].tolist()
    out[column] = [index.label(int(n), int(f)) for n, f in zip(layers, out["feature"].tolist())]
    return out


def quiet_transformers() -> None:
    """Hide transformers' progress bars and its notices (e.g. "falling back to the reference PyTorch
    implementation" of the linear-attention kernels on a CPU): warnings only, errors still show."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
