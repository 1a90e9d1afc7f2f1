"""The panels' owned LRU caches: least recently used dropped first, and nothing outlives its owner."""

import gc

from qscope_widgets.widgets.owned_cache import OwnedLRU


class Owner:
    pass


def test_the_least_recently_used_value_is_dropped_first_per_owner():
    cache, a, b, made = OwnedLRU(2), Owner(), Owner(), []

    def make(v):
        return lambda: made.append(v) or v

    assert cache.get(a, 1, make("a1")) == "a1"
    cache.get(a, 2, make("a2"))
    assert cache.get(a, 1, make("again")) == "a1"  # a hit: not rebuilt, now the most recent
    cache.get(a, 3, make("a3"))                    # evicts key 2, the least recently used
    cache.get(b, 2, make("b2"))                    # another owner has its own room
    assert cache.get(a, 2, make("a2 rebuilt")) == "a2 rebuilt"
    assert made == ["a1", "a2", "a3", "b2", "a2 rebuilt"]


def test_an_owner_that_is_gone_takes_its_values_with_it():
    cache, a = OwnedLRU(4), Owner()
    cache.get(a, "k", lambda: object())
    assert len(cache._stores) == 1
    del a
    gc.collect()
    assert len(cache._stores) == 0
