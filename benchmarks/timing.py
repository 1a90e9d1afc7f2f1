"""The timing loop the benchmark scripts share: interleaved repeats, device sync around each call, medians.

Cases are timed round-robin (case A, B, C, then A, B, C again ...) rather than one after the other, so a burst of
load from another process on a shared machine lands on every case alike and the ratios between cases stay fair;
that is why the scripts quote ratios to a baseline measured in the same run.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable


def no_sync() -> None:
    """The sync for CPU runs (CUDA runs pass ``torch.cuda.synchronize``)."""


def timed(fn: Callable[[], object], repeats: int, sync: Callable[[], None] = no_sync) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn``, each between two syncs."""
    out = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return out


def time_cases(cases: dict[str, Callable[[], object]], repeats: int, sync: Callable[[], None] = no_sync,
               warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each case, the cases interleaved, after ``warmup`` untimed calls of each."""
    for f in cases.values():
        for _ in range(warmup):
            f()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for k, f in cases.items():
            times[k] += timed(f, 1, sync)
    return times


def median_ms(seconds: list[float]) -> float:
    return 1e3 * statistics.median(seconds)
