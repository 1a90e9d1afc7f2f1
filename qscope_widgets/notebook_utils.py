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
