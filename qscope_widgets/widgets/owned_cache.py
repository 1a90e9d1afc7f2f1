"""Small least-recently-used caches owned by an object (a scope, an index) and dropped with it.

Panels recompute from cached results (a contrast, a second prompt's trace, a feature card, a try-your-own run) so a
view-only change never repeats model work. Keying the cache weakly by its owner means closing a Scope frees what was
cached for it, and ``id()`` reuse can never hand one scope another's results.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any, Callable, Hashable


class OwnedLRU:
    """``get(owner, key, make)``: the cached value for ``key`` under ``owner``, else ``make()`` stored there; each owner
    keeps at most ``size`` values, least recently used dropped first."""

    def __init__(self, size: int):
        self.size = size
        self._stores: "weakref.WeakKeyDictionary[Any, OrderedDict]" = weakref.WeakKeyDictionary()

    def get(self, owner: Any, key: Hashable, make: Callable[[], Any]) -> Any:
        cache = self._stores.setdefault(owner, OrderedDict())
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        value = make()
        cache[key] = value
        while len(cache) > self.size:
            cache.popitem(last=False)
        return value

    def clear(self, owner: Any | None = None) -> None:
        """Forget one owner's values, or every owner's."""
        if owner is None:
            self._stores.clear()
        else:
            self._stores.pop(owner, None)
