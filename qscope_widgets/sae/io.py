"""Reading and writing SAE files, safely.

Formats:

* Qwen-Scope ``layer{n}.sae.pt``: a pickled dict of four tensors. Read **only** with
  ``torch.load(weights_only=True)``, which refuses any pickle that would construct arbitrary objects (and so run
  code); a file that is not a plain ``{str: Tensor}`` dict is refused too.
* Plain ``.safetensors`` with the Qwen-Scope names, in either orientation (Qwen-Scope ``W_enc (d_sae, d_model)`` or
  SAELens ``W_enc (d_model, d_sae)``).
* SAELens folders: ``cfg.json`` + ``sae_weights.safetensors``.

A ``.pt`` is converted once into a safetensors cache (feature-major decoder, as :class:`SparseAutoencoder` keeps it)
so later loads skip the unpickling and the transpose copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from ..errors import SAEFormatError
from .config import SAEConfig
from .model import RELEASE_KEYS, SparseAutoencoder

PathLike = str | os.PathLike

_CACHE_FORMAT = "qscope-sae-cache-v1"


def default_cache_dir() -> Path:
    """``$QSCOPE_CACHE`` or ``~/.cache/qscope_widgets``."""
    return Path(os.environ.get("QSCOPE_CACHE", Path.home() / ".cache" / "qscope_widgets"))


# ---------------------------------------------------------------------------------------------- raw tensor dicts
def read_pt(path: PathLike) -> dict[str, Tensor]:
    """Read a ``.pt`` tensor dict with ``weights_only=True``; refuse anything else with a clear error."""
    path = Path(path)
    if not path.is_file():
        raise SAEFormatError(f"SAE file not found: {path}")
    if path.stat().st_size == 0:
        raise SAEFormatError(f"SAE file {path} is empty (0 bytes): truncated download?")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
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
    """Read a safetensors file (tensors and its string metadata)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise SAEFormatError(f"SAE file not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise SAEFormatError(f"safetensors file {path} is corrupt or truncated: {_first_line(exc)}") from None
    return tensors, meta


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
        if meta.get("format") == _CACHE_FORMAT:
            tensors = _from_cache_layout(tensors)
            if cfg is None and "config" in meta:
                cfg = SAEConfig.from_dict(json.loads(meta["config"]))
        state = to_release_orientation(tensors)
    elif path.suffix in (".pt", ".pth", ".bin") or path.name.endswith(".sae.pt"):
        if cache_dir is not False:
            cached = _cache_path(path, cache_dir)
            if cached.is_file():
                try:
                    return load_sae(cached, cfg=cfg, d_model=d_model, device=device, dtype=dtype, cache_dir=False,
                                    **cfg_fields)
                except SAEFormatError:
                    cached.unlink(missing_ok=True)  # a broken cache entry is rebuilt, never trusted
        state = to_release_orientation(read_pt(path))
    else:
        raise SAEFormatError(f"don't know how to read {path}: expected .pt, .safetensors or a SAELens folder")
    sae = SparseAutoencoder.from_state_dict(state, cfg, d_model=d_model, device=device, dtype=dtype, **cfg_fields)
    if path.suffix != ".safetensors" and cache_dir is not False:
        _write_cache(sae, _cache_path(path, cache_dir))
    return sae


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


# ---------------------------------------------------------------------------------------------- the cache
def _cache_path(src: Path, cache_dir: PathLike | None | bool) -> Path:
    root = default_cache_dir() if cache_dir in (None, True) else Path(cache_dir)  # type: ignore[arg-type]
    st = src.stat()
    key = hashlib.sha256(f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return root / "saes" / f"{src.name}.{key}.safetensors"


def _write_cache(sae: SparseAutoencoder, dest: Path) -> None:
    from safetensors.torch import save_file

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tensors = {
            "W_enc": sae.W_enc.detach().cpu().contiguous(),
            "W_dec_rows": sae.W_dec.detach().T.cpu().contiguous(),  # feature-major: no transpose on load
            "b_enc": sae.b_enc.detach().cpu().contiguous(),
            "b_dec": sae.b_dec.detach().cpu().contiguous(),
        }
        tmp = dest.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata={"format": _CACHE_FORMAT, "config": sae.cfg.to_json()})
        os.replace(tmp, dest)
    except OSError:
        pass  # a read-only home directory must not break loading; the cache is an optimisation


def _from_cache_layout(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    out = dict(tensors)
    out["W_dec"] = out.pop("W_dec_rows").T
    return out


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
