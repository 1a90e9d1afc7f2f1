"""Sparse autoencoders: the model, its config, file formats, the release registry and the lazy per-layer bank."""

from .bank import SAEBank
from .cache import SAECacheWarning
from .config import SAEConfig
from .io import load_sae, save_qwen_scope_layer, write_release_config
from .model import SparseAutoencoder, SparseCodes
from .releases import RELEASES, Release, list_releases
from .sources import InMemorySAEs, QwenScopeFolder, QwenScopeHubRepo, SAEFiles, SAELensFolders, resolve_source

__all__ = [
    "SAEBank", "SAECacheWarning", "SAEConfig", "SparseAutoencoder", "SparseCodes", "load_sae", "save_qwen_scope_layer",
    "write_release_config", "RELEASES", "Release", "list_releases", "InMemorySAEs", "QwenScopeFolder",
    "QwenScopeHubRepo", "SAEFiles", "SAELensFolders", "resolve_source",
]
