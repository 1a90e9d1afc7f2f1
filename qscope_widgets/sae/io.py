"""Reading and writing SAE files, safely.

Formats:

* Qwen-Scope ``layer{n}.sae.pt``: a pickled dict of four tensors. Read **only** with
  ``torch.load(weights_only=True)``, which refuses any pickle that would construct arbitrary objects (and so run
  code); a file that is not a plain ``{str: Tensor}`` dict is refused too.
* Plain ``.safetensors`` with the Qwen-Scope names, in either orientation (Qwen-Scope ``W_enc (d_sae, d_model)`` or
  SAELens ``W_enc (d_model, d_sae)``).
* SAELens folders: ``cfg.json`` + ``sae_weights.safetensors``.

A ``.pt`` is converted once into a safetensors cache entry (feature-major decoder, as :class:`SparseAutoencoder`
keeps it, in the compute dtype) so later loads skip the unpickling and the transpose copy; see :mod:`.cache`.

No loaded weight is ever backed by a memory map of a file: every read copies into memory this process owns, so a
file rewritten in place while its SAE is in use (a re-download, ``save_qwen_scope_layer`` to the same path) cannot
crash the process with SIGBUS or change the weights under a running model.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from ..errors import SAEFormatError, SAEShapeError
from . import cache
from .cache import default_cache_dir
from .config import SAEConfig
from .model import RELEASE_KEYS, SparseAutoencoder
from .safetensors_io import read_tensors

PathLike = str | os.PathLike

__all__ = ["default_cache_dir", "load_sae", "read_pt", "read_safetensors", "save_qwen_scope_layer",
           "to_release_orientation", "write_release_config", "parse_layer_from_hook"]


# ---------------------------------------------------------------------------------------------- raw tensor dicts
def read_pt(path: PathLike) -> dict[str, Tensor]:
    """Read a ``.pt`` tensor dict with ``weights_only=True``; refuse anything else with a clear error.

    Read into memory, not memory-mapped: the tensors must outlive any later rewrite of the file (SIGBUS otherwise).
    """
    path = Path(path)
    if not path.is_file():
        raise SAEFormatError(f"SAE file not found: {path}")
    if path.stat().st_size == 0:
        raise SAEFormatError(f"SAE file {path} is empty (0 bytes): truncated download?")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as exc:
        raise SAEFormatError(
            f"refused to load {path}: it is not a plain tensor file. weights_only loading blocked it "
            f"because unpickling it would construct objects or run code ({_first_line(exc)})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise SAEFormatError(f"SAE file {path} is corrupt or truncated: {_first_line(exc)}") from None
    if not isinstance(obj, Mapping):
        raise SAEFormatError(f"SAE file {path} holds a {type(obj).__name__}, expected a dict of tensors")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise SAEFormatError(f"SAE file {path} is not a plain {{name: tensor}} dict (bad entries: {bad[:5]})")
    odd = [f"{k} ({'meta' if v.is_meta else v.layout})" for k, v in obj.items()
           if v.is_meta or v.layout != torch.strided or v.is_quantized]
    if odd:
        raise SAEFormatError(f"SAE file {path} holds tensors without plain dense data: {', '.join(odd[:5])}; "
                             "save dense tensors (tensor.to_dense()) with real values")
    return dict(obj)


def read_json_object(path: PathLike) -> dict[str, Any]:
    """A JSON file that must hold an object (``config.json``, ``cfg.json``); anything else is a clear error."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SAEFormatError(f"{path} is not valid JSON: {_first_line(exc)}") from None
    except OSError as exc:
        raise SAEFormatError(f"cannot read {path}: {_first_line(exc)}") from None
    if not isinstance(obj, dict):
        raise SAEFormatError(f"{path} must hold a JSON object, got {type(obj).__name__}: {str(obj)[:60]}")
    return obj


def read_safetensors(path: PathLike) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a safetensors file (tensors and its string metadata), copied into memory (never a memory map)."""
    return read_tensors(path)


def to_release_orientation(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Return the tensors with Qwen-Scope shapes, transposing a SAELens-oriented dict (``W_enc (d_model, d_sae)``).

    The orientation is read from the biases, which are unambiguous: ``b_enc`` has ``d_sae`` entries.
    """
    missing = [k for k in RELEASE_KEYS if k not in state]
    if missing:
        raise SAEFormatError(f"SAE tensors {missing} missing; found {sorted(state)}")
    out = dict(state)
    d_sae = state["b_enc"].shape[0] if state["b_enc"].ndim == 1 else None
    W_enc = state["W_enc"]
    if W_enc.ndim == 2 and d_sae is not None and W_enc.shape[1] == d_sae and W_enc.shape[0] != d_sae:
        out["W_enc"] = W_enc.T
        out["W_dec"] = state["W_dec"].T
    return out


# ---------------------------------------------------------------------------------------------- loading
def load_sae(
    path: PathLike,
    *,
    cfg: SAEConfig | None = None,
    d_model: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    cache_dir: PathLike | None | bool = None,
    **cfg_fields: Any,
) -> SparseAutoencoder:
    """Load one SAE from a ``.pt``, a ``.safetensors`` or a SAELens folder.

    Args:
        cfg: the SAE's config, when known (else it is read from a SAELens ``cfg.json`` or built from the shapes
            and ``cfg_fields``, e.g. ``k=50``).
        d_model: the model's width; an SAE for another width is refused with :class:`SAEShapeError`.
        cache_dir: where a ``.pt`` is converted to safetensors once; ``False`` disables the cache, ``None`` uses
            :func:`default_cache_dir`.
    """
    path = Path(path)
    if not path.exists():
        raise SAEFormatError(f"SAE file not found: {path}")
    if path.is_dir():
        return _load_saelens_folder(path, cfg=cfg, d_model=d_model, device=device, dtype=dtype, **cfg_fields)
    if path.suffix == ".safetensors":
        tensors, meta = read_safetensors(path)
        if meta.get("format") == cache.CACHE_FORMAT:
            tensors, cached_cfg = cache.read_entry(path)
            cfg = cfg or cached_cfg
        state = to_release_orientation(tensors)
    elif path.suffix in (".pt", ".pth", ".bin") or path.name.endswith(".sae.pt"):
        if cache_dir is not False:
            return _load_pt_cached(path, cfg=cfg, d_model=d_model, device=device, dtype=dtype,
                                   cache_dir=default_cache_dir() if cache_dir in (None, True) else Path(cache_dir),
                                   **cfg_fields)
        state = to_release_orientation(read_pt(path))
    else:
        raise SAEFormatError(f"don't know how to read {path}: expected .pt, .safetensors or a SAELens folder")
    return SparseAutoencoder.from_state_dict(state, cfg, d_model=d_model, device=device, dtype=dtype, **cfg_fields)


def _load_pt_cached(path: Path, *, cfg: SAEConfig | None, d_model: int | None, device: Any, dtype: torch.dtype | None,
                    cache_dir: Path, **cfg_fields: Any) -> SparseAutoencoder:
    """A release ``.pt`` through the cache: served from an entry of the same content and dtype, else converted
    tensor by tensor into a new entry (peak memory: the source's tensors plus one block) and read back."""
    try:
        key = cache.content_key(path)
    except OSError as exc:
        raise SAEFormatError(f"could not read {path}: {exc}") from None
    cdtype = dtype or torch.float32  # the release's dtype unless a compute dtype is asked for
    entry = cache.entry_path(path, key, cdtype, cache_dir)
    if entry.is_file():
        try:
            state, cached_cfg = cache.read_entry(entry, key, device=device)
            return SparseAutoencoder.from_state_dict(state, cfg or cached_cfg, d_model=d_model, device=device,
                                                     dtype=cdtype, **cfg_fields)
        except SAEShapeError:
            raise  # an SAE for another model is the caller's mistake, not a damaged entry
        except SAEFormatError as err:  # damaged (e.g. NaN where a data byte flipped): rebuilt from the source
            cache.report_bad_entry(entry, err)
    state = to_release_orientation(read_pt(path))
    full_cfg = SparseAutoencoder.check_state(state, cfg, d_model=d_model, **cfg_fields)
    try:
        cache.write_entry(entry, state, full_cfg, key, cdtype)
    except OSError:  # a read-only or full cache directory must not break loading: the cache is an optimisation
        return SparseAutoencoder.from_state_dict(state, full_cfg, device=device, dtype=cdtype)
    del state  # the source's tensors go before the entry is read back: one layer in memory at a time
    state, cached_cfg = cache.read_entry(entry, key, device=device)
    return SparseAutoencoder.from_state_dict(state, cached_cfg, d_model=d_model, device=device, dtype=cdtype)


def _load_saelens_folder(folder: Path, *, cfg: SAEConfig | None, **kw: Any) -> SparseAutoencoder:
    cfg_path = folder / "cfg.json"
    weights = folder / "sae_weights.safetensors"
    if not weights.is_file():
        raise SAEFormatError(f"{folder} is not a SAELens SAE folder: no sae_weights.safetensors")
    if cfg is None and cfg_path.is_file():
        raw = read_json_object(cfg_path)
        layer = raw.get("layer", parse_layer_from_hook(raw.get("hook_name", "")))
        raw = {k: v for k, v in raw.items() if k in ("d_in", "d_sae", "k", "architecture", "activation_fn",
                                                     "activation_fn_kwargs", "apply_b_dec_to_input", "model_name")}
        raw["layer"] = layer
        if "model_name" in raw:
            raw["base_model"] = raw.pop("model_name")
        cfg = SAEConfig.from_dict(raw)
    tensors, _ = read_safetensors(weights)
    state = to_release_orientation(tensors)
    return SparseAutoencoder.from_state_dict(state, cfg, **kw)


def parse_layer_from_hook(hook_name: str) -> int | None:
    """``blocks.12.hook_resid_post`` / ``model.layers.12`` -> 12."""
    import re

    m = re.search(r"(?:blocks|layers)\.(\d+)", hook_name or "")
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------------------------------------- writing
def save_qwen_scope_layer(sae: SparseAutoencoder, path: PathLike, *, dtype: torch.dtype | None = torch.float32) -> Path:
    """Write ``sae`` as a Qwen-Scope ``layer{n}.sae.pt``: a plain dict of the four tensors in the release layout."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sae.release_state_dict(dtype=dtype), path)
    return path


def write_release_config(folder: PathLike, cfg: SAEConfig, num_layers: int, **extra: Any) -> Path:
    """Write a Qwen-Scope style ``config.json`` for a folder of ``layer{n}.sae.pt`` files."""
    d = {
        "model_type": f"{cfg.architecture}_sae",
        "base_model": cfg.base_model,
        "d_model": cfg.d_model,
        "d_sae": cfg.d_sae,
        "k": cfg.k,
        "num_layers": num_layers,
        "hook_point": cfg.hook_point,
        "dtype": "float32",
        "topk_activation": cfg.topk_activation,
        "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
        **extra,
    }
    p = Path(folder) / "config.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(d, indent=2) + "\n")
    return p


def _first_line(exc: BaseException) -> str:
    s = str(exc).strip().splitlines()
    return s[0][:300] if s else type(exc).__name__
