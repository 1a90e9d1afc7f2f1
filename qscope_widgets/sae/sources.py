"""Where a layer's SAE comes from: a local Qwen-Scope folder, a hub repo, SAELens folders, or explicit files.

A source answers two questions cheaply (which layers exist, and each layer's config) and loads one layer on
request; :class:`~qscope_widgets.sae.bank.SAEBank` decides when. Nothing here ever loads every layer.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Mapping, Protocol, runtime_checkable

import torch

from ..errors import SAEFormatError, UnknownLayerError
from . import releases
from .config import SAEConfig
from ..validate import as_int
from .io import load_sae, parse_layer_from_hook, read_json_object
from .model import SparseAutoencoder

_LAYER_FILE = re.compile(r"^layer(\d+)\.sae\.(pt|safetensors)$")


@runtime_checkable
class SAESource(Protocol):
    name: str

    @property
    def layers(self) -> list[int]: ...

    def load(self, layer: int, *, d_model: int | None, device: Any, dtype: torch.dtype | None) -> SparseAutoencoder: ...


def _check_layer(source: "SAESource", layer: int) -> None:
    if layer not in source.layers:
        raise UnknownLayerError(f"no SAE for layer {layer} in {source.name}; available layers: "
                                f"{_ranges(source.layers)}")


def _ranges(xs: list[int]) -> str:
    if not xs:
        return "none"
    xs = sorted(xs)
    if xs == list(range(xs[0], xs[-1] + 1)):
        return f"{xs[0]}..{xs[-1]}"
    return ", ".join(map(str, xs))


def _cfg_fields_from_release_json(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "k" in d and d["k"] is not None:
        out["k"] = as_int(d["k"], "k in config.json", error=SAEFormatError, min=1)
    for key in ("topk_activation", "apply_b_dec_to_input"):
        if key in d:
            out[key] = d[key]
    if "base_model" in d:
        out["base_model"] = d["base_model"]
    mt = str(d.get("model_type", "topk_sae"))
    out["architecture"] = "jumprelu" if "jump" in mt else ("relu" if mt.startswith("relu") else "topk")
    return out


class QwenScopeFolder:
    """A local folder in the release layout: ``layer{n}.sae.pt`` files and (optionally) ``config.json``."""

    def __init__(self, folder: str | os.PathLike, *, k: int | None = None, release: str | None = None, **cfg_fields: Any):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise SAEFormatError(f"SAE folder not found: {self.folder}")
        self.name = release or str(self.folder)
        self.files: dict[int, Path] = {}
        for p in sorted(self.folder.iterdir()):
            m = _LAYER_FILE.match(p.name)
            if m:
                self.files.setdefault(int(m.group(1)), p)
        if not self.files:
            raise SAEFormatError(f"{self.folder} holds no layer{{n}}.sae.pt files")
        meta: dict[str, Any] = {}
        if (self.folder / "config.json").is_file():
            meta = read_json_object(self.folder / "config.json")
        self.release_config = meta
        fields = _cfg_fields_from_release_json(meta)
        fields.update(cfg_fields)
        if k is not None:
            fields["k"] = as_int(k, "k", error=SAEFormatError, min=1)
        if "k" not in fields and release:
            fields["k"] = releases.k_from_repo_id(release)
        if fields.get("architecture", "topk") == "topk" and not fields.get("k"):
            raise SAEFormatError(f"{self.folder}: the TopK k is unknown (no config.json with 'k'); pass k=...")
        fields["release"] = release or meta.get("release")
        self.cfg_fields = fields

    @property
    def layers(self) -> list[int]:
        return sorted(self.files)

    def shape(self, layer: int) -> tuple[int, int] | None:
        """``(d_model, d_sae)`` from ``config.json`` or the release registry, without reading a layer file."""
        return _declared_shape(self.release_config, self.cfg_fields.get("release"))

    def load(self, layer: int, *, d_model: int | None = None, device: Any = None,
             dtype: torch.dtype | None = None) -> SparseAutoencoder:
        _check_layer(self, layer)
        return load_sae(self.files[layer], d_model=d_model, device=device, dtype=dtype, layer=layer, **self.cfg_fields)


class QwenScopeHubRepo:
    """A Qwen-Scope repo on the Hugging Face hub; downloads ``config.json`` and only the layer files asked for."""

    def __init__(self, repo_id: str, *, revision: str | None = None, k: int | None = None, **cfg_fields: Any):
        self.repo_id = repo_id
        self.name = repo_id
        self.revision = revision
        rel = releases.lookup(repo_id)
        meta: dict[str, Any] = {}
        try:
            meta = json.loads(Path(self._download("config.json")).read_text())
        except Exception as exc:  # offline with a known release is fine; an unknown repo is not
            if rel is None:
                raise SAEFormatError(f"could not fetch config.json of {repo_id} ({exc}); "
                                     "are you online, and is the repo id right?") from None
        fields = _cfg_fields_from_release_json(meta)
        if rel is not None:
            fields.setdefault("k", rel.k)
            fields.setdefault("base_model", rel.base_model)
        fields.setdefault("k", releases.k_from_repo_id(repo_id))
        if k is not None:
            fields["k"] = as_int(k, "k", error=SAEFormatError, min=1)
        fields.update(cfg_fields, release=repo_id)
        self.cfg_fields = fields
        n = meta.get("num_layers") or (rel.num_layers if rel else None)
        if n is None:
            raise SAEFormatError(f"{repo_id}: number of layers unknown (no num_layers in config.json)")
        self._layers = list(range(int(n)))
        self.release_config = meta
        warnings.warn(releases.licence_notice(repo_id), stacklevel=3)

    def shape(self, layer: int) -> tuple[int, int] | None:
        return _declared_shape(self.release_config, self.repo_id)

    def _download(self, filename: str) -> str:
        try:
            from huggingface_hub import hf_hub_download
        except ImportError:  # pragma: no cover - depends on the environment
            raise SAEFormatError("loading from the hub needs huggingface_hub: pip install 'qscope-widgets[hub]'") from None
        return hf_hub_download(self.repo_id, filename, revision=self.revision)

    @property
    def layers(self) -> list[int]:
        return self._layers

    def load(self, layer: int, *, d_model: int | None = None, device: Any = None,
             dtype: torch.dtype | None = None) -> SparseAutoencoder:
        _check_layer(self, layer)
        path = self._download(f"layer{layer}.sae.pt")
        return load_sae(path, d_model=d_model, device=device, dtype=dtype, layer=layer, **self.cfg_fields)


class SAELensFolders:
    """One SAELens folder (``cfg.json`` + ``sae_weights.safetensors``) or a folder of them, one per layer."""

    def __init__(self, folder: str | os.PathLike):
        root = Path(folder)
        self.name = str(root)
        cands = [root] if (root / "sae_weights.safetensors").is_file() else sorted(
            p for p in root.iterdir() if (p / "sae_weights.safetensors").is_file())
        self.folders: dict[int, Path] = {}
        for p in cands:
            cfg = read_json_object(p / "cfg.json") if (p / "cfg.json").is_file() else {}
            layer = cfg.get("layer", parse_layer_from_hook(cfg.get("hook_name", "")))
            if layer is None:
                layer = parse_layer_from_hook(p.name.replace("_", ".")) or _int_in(p.name)
            if layer is None:
                raise SAEFormatError(f"cannot tell which layer {p} belongs to (no hook_name in cfg.json)")
            self.folders[int(layer)] = p
        if not self.folders:
            raise SAEFormatError(f"{root} holds no SAELens SAE (cfg.json + sae_weights.safetensors)")

    @property
    def layers(self) -> list[int]:
        return sorted(self.folders)

    def load(self, layer: int, *, d_model: int | None = None, device: Any = None,
             dtype: torch.dtype | None = None) -> SparseAutoencoder:
        _check_layer(self, layer)
        sae = load_sae(self.folders[layer], d_model=d_model, device=device, dtype=dtype)
        return sae if sae.cfg.layer == layer else _with_layer(sae, layer)


class SAEFiles:
    """Explicit files, one per layer: ``{3: "l3.safetensors", 5: "layer5.sae.pt"}``."""

    def __init__(self, files: Mapping[int, str | os.PathLike], **cfg_fields: Any):
        self.files = {layer_key(k): _as_path(v, k) for k, v in files.items()}
        self.name = "explicit SAE files"
        self.cfg_fields = cfg_fields

    @property
    def layers(self) -> list[int]:
        return sorted(self.files)

    def load(self, layer: int, *, d_model: int | None = None, device: Any = None,
             dtype: torch.dtype | None = None) -> SparseAutoencoder:
        _check_layer(self, layer)
        return load_sae(self.files[layer], d_model=d_model, device=device, dtype=dtype, layer=layer, **self.cfg_fields)


class InMemorySAEs:
    """Already-built SAE modules (tests, freshly trained SAEs)."""

    def __init__(self, saes: Mapping[int, SparseAutoencoder]):
        self.saes = {layer_key(k): v for k, v in saes.items()}
        self.name = "in-memory SAEs"

    @property
    def layers(self) -> list[int]:
        return sorted(self.saes)

    def load(self, layer: int, *, d_model: int | None = None, device: Any = None,
             dtype: torch.dtype | None = None) -> SparseAutoencoder:
        _check_layer(self, layer)
        sae = self.saes[layer]
        if d_model is not None and sae.d_model != d_model:
            from ..errors import SAEShapeError

            raise SAEShapeError(f"the SAE for layer {layer} reads d_model={sae.d_model}, the model has {d_model}")
        return sae.to(device=device, dtype=dtype or sae.dtype)


def layer_key(key: Any) -> int:
    """A layer number used as a dict key: an int (numpy too) or a string of digits (JSON keys), >= 0."""
    if isinstance(key, str) and key.strip().isdigit():
        return int(key)
    return as_int(key, "SAE layer key", error=UnknownLayerError, min=0)


def _as_path(value: Any, layer: Any) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise SAEFormatError(f"the SAE for layer {layer!r} must be a path or a SparseAutoencoder, got {value!r}")
    return Path(value)


def _declared_shape(meta: Mapping[str, Any], release: str | None) -> tuple[int, int] | None:
    try:
        return int(meta["d_model"]), int(meta["d_sae"])
    except (KeyError, TypeError, ValueError):
        rel = releases.lookup(release) if release else None
        return (rel.d_model, rel.d_sae) if rel else None


def _int_in(s: str) -> int | None:
    m = re.search(r"(\d+)", s)
    return int(m.group(1)) if m else None


def _with_layer(sae: SparseAutoencoder, layer: int) -> SparseAutoencoder:
    sae.cfg = sae.cfg.replace(layer=layer)
    return sae


def resolve_source(spec: Any, **kw: Any) -> SAESource:
    """Turn what a user passes as ``saes=`` into a source.

    Accepts a source, a ``{layer: SparseAutoencoder}`` or ``{layer: path}`` dict, a local folder (release layout or
    SAELens), or a hub repo id of a Qwen-Scope release.
    """
    if isinstance(spec, SAESource) and not isinstance(spec, (str, os.PathLike)):
        return spec
    if isinstance(spec, Mapping):
        vals = list(spec.values())
        if vals and all(isinstance(v, SparseAutoencoder) for v in vals):
            return InMemorySAEs(spec)
        return SAEFiles(spec, **kw)
    if isinstance(spec, (str, os.PathLike)):
        p = Path(spec)
        if p.is_dir():
            if any(_LAYER_FILE.match(c.name) for c in p.iterdir()):
                return QwenScopeFolder(p, **kw)
            return SAELensFolders(p)
        if p.is_file():
            raise SAEFormatError(f"{p} is a single file; pass {{layer: path}} to say which layer it belongs to")
        if isinstance(spec, str) and "/" in spec and not spec.startswith((".", "/")):
            return QwenScopeHubRepo(spec, **kw)
        raise SAEFormatError(f"SAE source not found: {spec!r} is neither a local folder nor a hub repo id")
    raise SAEFormatError(f"cannot use {type(spec).__name__} as an SAE source")
