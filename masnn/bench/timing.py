"""Wall-clock timing of a callable: one helper for ``masnn bench`` and ``benchmarks/*.py``."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any


def times(
    fn: Callable[[], Any], repeat: int, warmup: int = 0, *, collect: bool = False
) -> list[float]:
    """Seconds of each of ``repeat`` calls of ``fn``, after ``warmup`` untimed calls.

    Args:
        fn: the work (its result is discarded).
        repeat: timed calls (>= 1).
        warmup: untimed calls first (lazy initialisation, caches, kernel builds).
        collect: run the garbage collector before every timed call (outside the timing).

    Raises:
        ValueError: ``repeat < 1`` or ``warmup < 0``.
    """
    if repeat < 1 or warmup < 0:
        raise ValueError(f"times: repeat must be >= 1 and warmup >= 0, got {repeat}, {warmup}")
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        if collect:
            gc.collect()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def best_of(fn: Callable[[], Any], repeat: int, warmup: int = 0) -> float:
    """The fastest of ``repeat`` timed calls (seconds; see :func:`times`)."""
    return min(times(fn, repeat, warmup))


__all__ = ["best_of", "times"]
