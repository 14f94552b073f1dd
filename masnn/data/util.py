"""Helpers shared by the dataset readers: ordered parallel decoding and an optional progress bar."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol


def ordered_map(fn: Callable[[Any], Any], items: Sequence[Any], workers: int) -> Iterator[Any]:
    """``map`` over a thread pool, in order, with at most ``2 * workers`` results pending.

    Example:
        >>> list(ordered_map(abs, [-2, 3, -4], workers=2))
        [2, 3, 4]
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: list[Future[Any]] = []
        it = iter(items)
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()


class Progress(Protocol):
    """What the readers call on a progress bar."""

    def update(self, n: int = 1) -> Any: ...

    def close(self) -> Any: ...


class _NullBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, enabled: bool) -> Progress:
    """A ``tqdm`` bar over ``total`` files, or a no-op bar when disabled (or tqdm is absent)."""
    if not enabled:
        return _NullBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return _NullBar()
    return tqdm(total=total, desc=desc, unit="file")
