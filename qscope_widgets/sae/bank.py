"""A lazily filled, byte-bounded bank of per-layer SAEs.

One layer of the Qwen3.5-27B release is 3.4 GB in fp32; all 64 would be 215 GB. The bank therefore loads a layer
the first time it is asked for and keeps at most ``max_bytes`` of SAEs on the device, evicting the least recently
used layer first (the official app keeps an LRU of 8 layers). Loading is thread-safe so a widget can prefetch a
layer in the background while the kernel answers other requests.

The budget holds on every path, not only for one layer at a time:

* room is made *before* a layer is read (from the layer's known size), so the bank never holds budget + one layer;
* :meth:`SAEBank.map` runs a function over many layers one at a time (resident layers first, then load, use,
  release, next), which is how ``Scope.run`` with every layer, the index and evaluation stay within the budget;
* :meth:`SAEBank.layers_that_fit` says how many layers the budget holds, for callers that must refuse up front;
* :attr:`SAEBank.peak_live_bytes` tracks, through weak references, the bytes of every SAE this bank loaded that
  is still alive anywhere (resident, or evicted but still referenced by a caller), at its highest: the figure the
  memory tests pin.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any, Callable, Iterable, TypeVar

import torch

from ..errors import QScopeError, UnknownLayerError
from .model import SparseAutoencoder
from .sources import SAESource, resolve_source

T = TypeVar("T")


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
        self._live: dict[int, int] = {}  # id -> nbytes of loaded SAEs still alive (weakref.finalize removes them)
        self._live_lock = threading.Lock()
        self.peak_live_bytes = 0
        self._layer_bytes: int | None = None  # size of a loaded layer: releases use one shape for every layer

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

    def live_bytes(self) -> int:
        """Bytes of SAEs this bank loaded that are still alive: resident ones and evicted ones a caller still holds."""
        with self._live_lock:
            return sum(self._live.values())

    def reset_peak(self) -> None:
        self.peak_live_bytes = self.live_bytes()

    def layer_nbytes(self, layer: int | None = None) -> int | None:
        """Bytes one layer takes in this bank's dtype, when known without loading it (a loaded layer's size, or the
        shape the source declares); ``None`` when unknown."""
        if layer is not None and layer in self._cache:
            return self._cache[layer].nbytes()
        if self._layer_bytes is not None:
            return self._layer_bytes
        shape = getattr(self.source, "shape", None)
        dims = shape(layer if layer is not None else self.layers[0]) if callable(shape) and self.layers else None
        if dims is None:
            return None
        d_model, d_sae = dims
        item = torch.empty((), dtype=self.dtype or torch.float32).element_size()
        return item * (2 * d_model * d_sae + d_sae + d_model)

    def layers_that_fit(self) -> int:
        """How many layers the budget holds at once (all of them when unbounded; 0 if one layer is too big).

        Raises :class:`QScopeError` when the size of a layer cannot be known without loading one and the budget
        is bounded: call :meth:`get` on one layer first.
        """
        if self.max_bytes is None:
            return len(self.layers)
        per = self.layer_nbytes()
        if per is None:
            raise QScopeError(f"the size of a layer of {self.source.name} is unknown until one is loaded")
        return min(len(self.layers), self.max_bytes // per)

    def map(self, layers: Iterable[int], fn: Callable[[int, SparseAutoencoder], T]) -> dict[int, T]:
        """``{layer: fn(layer, sae)}``, one layer at a time within the budget: resident layers first (no reload),
        then each other layer loaded, used and released before the next. ``fn`` must not keep the SAE (keep what
        it computes from it)."""
        wanted = list(dict.fromkeys(layers))
        for n in wanted:
            if n not in self.source.layers:
                raise UnknownLayerError(f"no SAE for layer {n}; layers with SAEs: {self.layers}")
        with self._lock:
            resident = [n for n in wanted if n in self._cache]
        order = resident + [n for n in wanted if n not in resident]
        out = {n: fn(n, self.get(n)) for n in order}  # no name holds an SAE between iterations
        return {n: out[n] for n in wanted}

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
            expected = self.layer_nbytes(layer)
            if self.max_bytes is not None and expected is not None:
                self._make_room(expected, layer)
            # Loaded outside inference mode even when first asked for inside a Scope.run: weights created there
            # would be inference tensors, unusable in ordinary autograd-tracked maths later (W_U @ W_dec[:, f]).
            with torch.inference_mode(False):
                sae = self.source.load(layer, d_model=self.d_model, device=self.device, dtype=self.dtype)
            sae.requires_grad_(False)
            self.loads += 1
            size = sae.nbytes()
            self._track(sae, size)
            if self.max_bytes is not None:
                self._make_room(size, layer)
            self._layer_bytes = size
            self._cache[layer] = sae
        if self.on_load is not None:
            self.on_load(layer, sae)
        return sae

    def _make_room(self, size: int, layer: int) -> None:
        if size > self.max_bytes:  # type: ignore[operator]
            raise QScopeError(f"the SAE of layer {layer} needs {size / 2**20:.1f} MiB, more than the bank's "
                              f"whole budget of {self.max_bytes / 2**20:.1f} MiB; raise sae_cache_bytes")
        while self._cache and self.bytes_loaded() + size > self.max_bytes:  # type: ignore[operator]
            self._cache.popitem(last=False)

    def _track(self, sae: SparseAutoencoder, size: int) -> None:
        key = id(sae)
        live, lock = self._live, self._live_lock
        with lock:
            if key in live:
                return
            live[key] = size

        def gone(key: int = key) -> None:
            with lock:
                live.pop(key, None)

        weakref.finalize(sae, gone)
        self.peak_live_bytes = max(self.peak_live_bytes, self.live_bytes())

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
