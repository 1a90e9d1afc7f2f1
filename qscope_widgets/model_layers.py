"""Finding the parts of a Hugging Face Qwen model we hook, whatever wrapper it comes in.

``AutoModelForCausalLM`` gives ``model.model.layers``; the multimodal ``Qwen3_5ForConditionalGeneration`` gives
``model.model.language_model.layers``; a bare text model gives ``model.layers``. We try the known paths first and
otherwise take the one ``ModuleList`` whose length is the config's ``num_hidden_layers``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .errors import QScopeError

_KNOWN_PATHS = (
    "model.layers",
    "model.language_model.layers",
    "language_model.model.layers",
    "language_model.layers",
    "layers",
)


def text_config(model: nn.Module) -> Any:
    cfg = model.config
    get = getattr(cfg, "get_text_config", None)
    return get() if callable(get) else cfg


def _get_path(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def find_decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers, in order; layer ``n``'s output is the residual stream Qwen-Scope's ``layer{n}`` reads."""
    n = getattr(text_config(model), "num_hidden_layers", None)
    for path in _KNOWN_PATHS:
        layers = _get_path(model, path)
        if isinstance(layers, nn.ModuleList) and (n is None or len(layers) == n):
            return layers
    found = [m for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) == n
             and name.endswith("layers")]
    if len(found) == 1:
        return found[0]
    raise QScopeError(f"cannot find the decoder layers of {type(model).__name__}: looked for {', '.join(_KNOWN_PATHS)}"
                      f" and for a ModuleList of num_hidden_layers={n}")


def model_width(model: nn.Module) -> int:
    return int(text_config(model).hidden_size)


def max_context(model: nn.Module) -> int | None:
    n = getattr(text_config(model), "max_position_embeddings", None)
    return int(n) if n else None


def execution_device(module: nn.Module) -> torch.device | None:
    """Where accelerate runs ``module`` (its ``AlignDevicesHook``), when it is dispatched with ``device_map``."""
    hook = getattr(module, "_hf_hook", None)
    for h in [hook, *getattr(hook, "hooks", ())]:
        dev = getattr(h, "execution_device", None)
        if dev is not None:
            return torch.device(f"cuda:{dev}" if isinstance(dev, int) else dev)
    return None


def input_device(model: nn.Module) -> torch.device:
    """Where input ids must go: the embedding's device (also right under ``device_map="auto"``). An embedding
    offloaded by accelerate (weights on ``meta``, loaded at run time) runs on its hook's execution device."""
    emb = model.get_input_embeddings()
    dev = emb.weight.device
    if dev.type != "meta":
        return dev
    return execution_device(emb) or execution_device(model) or torch.device("cpu")


def unembedding(model: nn.Module) -> torch.Tensor:
    """``(vocab, d_model)`` output embedding (tied or not), used for the tokens a feature promotes."""
    out = model.get_output_embeddings()
    if out is None:
        raise QScopeError(f"{type(model).__name__} has no output embedding")
    return out.weight
