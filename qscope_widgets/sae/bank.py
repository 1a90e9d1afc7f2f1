"""A lazily filled, byte-bounded bank of per-layer SAEs.

One layer of the Qwen3.5-27B release is 3.4 GB in fp32; all 64 would be 215 GB. The bank therefore loads a layer
the first time it is asked for and keeps at most ``max_bytes`` of SAEs on the device, evicting the least recently
used layer first (the official app keeps an LRU of 8 layers). Loading is thread-safe so a widget can prefetch a
layer in the background while the kernel answers other requests.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable

import torch

from ..errors import QScopeError, UnknownLayerError
from .model import SparseAutoencoder
from .sources import SAESource, resolve_source


class SAEBank:
    def __init__(
        self,
        source: SAESource | Any,
        *,
        d_model: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        max_bytes: int | None = None,
        on_load: Callable[[int, SparseAutoencoder], None] | None = None,
    ):
        self.source = resolve_source(source)
        self.d_model = d_model
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype
        self.max_bytes = max_bytes
        self.on_load = on_load
        self._cache: OrderedDict[int, SparseAutoencoder] = OrderedDict()
        self._lock = threading.RLock()
        self.loads = 0  # how many times a layer was read from its source (a test and a benchmark figure)

    @property
    def layers(self) -> list[int]:
        return list(self.source.layers)

    @property
    def loaded_layers(self) -> list[int]:
        with self._lock:
            return list(self._cache)

    def is_loaded(self, layer: int) -> bool:
        return layer in self._cache

    def bytes_loaded(self) -> int:
        with self._lock:
            return sum(s.nbytes() for s in self._cache.values())

    def __contains__(self, layer: object) -> bool:
        return layer in self.source.layers

    def __getitem__(self, layer: int) -> SparseAutoencoder:
        return self.get(layer)

    def get(self, layer: int) -> SparseAutoencoder:
        if not isinstance(layer, int) or isinstance(layer, bool):
            raise UnknownLayerError(f"layer must be an int, got {layer!r}")
        with self._lock:
            sae = self._cache.get(layer)
            if sae is not None:
                self._cache.move_to_end(layer)
                return sae
            if layer not in self.source.layers:
                raise UnknownLayerError(f"no SAE for layer {layer}; layers with SAEs: {self.layers}")
            # Loaded outside inference mode even when first asked for inside a Scope.run: weights created there
            # would be inference tensors, unusable in ordinary autograd-tracked maths later (W_U @ W_dec[:, f]).
            with torch.inference_mode(False):
                sae = self.source.load(layer, d_model=self.d_model, device=self.device, dtype=self.dtype)
            sae.requires_grad_(False)
            self.loads += 1
            size = sae.nbytes()
            if self.max_bytes is not None:
                if size > self.max_bytes:
                    raise QScopeError(f"the SAE of layer {layer} needs {size / 2**20:.1f} MiB, more than the bank's "
                                      f"whole budget of {self.max_bytes / 2**20:.1f} MiB; raise sae_cache_bytes")
                while self._cache and self.bytes_loaded() + size > self.max_bytes:
                    self._cache.popitem(last=False)
            self._cache[layer] = sae
        if self.on_load is not None:
            self.on_load(layer, sae)
        return sae

    def evict(self, layer: int | None = None) -> None:
        """Drop one layer (or all) from the device cache."""
        with self._lock:
            if layer is None:
                self._cache.clear()
            else:
                self._cache.pop(layer, None)

    def __repr__(self) -> str:
        budget = "unbounded" if self.max_bytes is None else f"{self.max_bytes / 2**20:.0f} MiB"
        return (f"SAEBank({self.source.name}, layers={len(self.layers)}, loaded={self.loaded_layers}, "
                f"budget={budget})")
