"""The lifetime shared by every hook-based counter: install on enter, always remove on exit."""

from __future__ import annotations

import abc
from typing import Any, TypeVar

_H = TypeVar("_H", bound="HookSet")


class HookSet(abc.ABC):
    """Context manager owning a set of forward hooks.

    Subclasses register their hooks in :meth:`_install` (appending to ``self._handles``) and may
    finish pending work in :meth:`_on_close`. Hooks are removed on exit, even after an exception
    and even when installing them failed half-way.
    """

    def __init__(self) -> None:
        self._handles: list[Any] = []
        self._depth = 0

    @abc.abstractmethod
    def _install(self) -> None:
        """Register the hooks (append every handle to ``self._handles``)."""

    def _on_close(self) -> None:  # noqa: B027 - optional override
        """Called after the hooks are removed (default: nothing)."""

    def __enter__(self: _H) -> _H:
        if self._handles:
            raise RuntimeError(f"{type(self).__name__} is already active")
        try:
            self._install()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove every hook (idempotent)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._depth = 0
        self._on_close()
