"""The lifetime shared by every hook-based counter: install on enter, always remove on exit.

Example:
    >>> import torch
    >>> class Shapes(HookSet):
    ...     def __init__(self, model: torch.nn.Module) -> None:
    ...         super().__init__()
    ...         self.model, self.seen = model, []
    ...     def _install(self) -> None:
    ...         self.hook_each([("fc", self.model)], lambda name: self._record)
    ...     def _record(self, module, args, out) -> None:
    ...         self.seen.append(tuple(out.shape))
    >>> fc = torch.nn.Linear(3, 2)
    >>> with Shapes(fc) as s:
    ...     _ = fc(torch.zeros(4, 3))
    >>> s.seen, len(fc._forward_hooks)
    ([(4, 2)], 0)
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from torch import nn

_H = TypeVar("_H", bound="HookSet")


class HookSet(abc.ABC):
    """Context manager owning a set of forward hooks.

    Subclasses register their hooks in :meth:`_install` (with :meth:`hook_each`, or appending
    every handle to ``self._handles``) and may finish pending work in :meth:`_on_close`. Hooks
    are removed on exit, even after an exception and even when installing them failed half-way.
    """

    def __init__(self) -> None:
        self._handles: list[Any] = []
        self._depth = 0

    @abc.abstractmethod
    def _install(self) -> None:
        """Register the hooks (append every handle to ``self._handles``)."""

    def _on_close(self) -> None:  # noqa: B027 - optional override
        """Called after the hooks are removed (default: nothing)."""

    def hook_each(
        self,
        named: Iterable[tuple[str, nn.Module]],
        make_hook: Callable[[str], Callable[..., Any]],
    ) -> None:
        """Register ``make_hook(name)`` as the forward hook of every ``(name, module)``."""
        for name, module in named:
            self._handles.append(module.register_forward_hook(make_hook(name)))

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
