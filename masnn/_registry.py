"""A small generic name -> object registry used by every extension point.

Instances: ``MODELS`` (models), ``ATTENTION`` (attention gates), ``NEURON_BACKENDS``
(multi-step LIF implementations), ``SURROGATES``, ``NEURON_PRESETS`` and ``COMMANDS``
(``masnn`` subcommands). Duplicate registration raises; unknown names raise ``KeyError``
listing the allowed names and the closest match.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """An unknown registry name. Both a ``KeyError`` and a ``ValueError``, so callers that
    validate arguments (``except ValueError``) and mapping-style callers both catch it."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def suggest(name: str, allowed: list[str] | tuple[str, ...]) -> str:
    """Return a ``" (did you mean 'x'?)"`` hint for ``name`` among ``allowed``, or ``""``."""
    close = difflib.get_close_matches(str(name), list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Registry(Generic[T]):
    """Name -> object mapping with decorator registration.

    Example:
        >>> reg: Registry[int] = Registry("numbers")
        >>> reg.add("one", 1)
        >>> reg.get("one")
        1
        >>> reg.names()
        ['one']
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, obj: T) -> None:
        """Register ``obj`` under ``name``; a duplicate name raises ``KeyError``."""
        if name in self._items:
            raise KeyError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj

    def remove(self, name: str) -> T:
        """Unregister ``name`` and return its object (unknown names raise like :meth:`get`)."""
        obj = self.get(name)
        del self._items[name]
        return obj

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator form of :meth:`add`; the default name is the object's ``__name__``."""

        def deco(obj: T) -> T:
            self.add(name or obj.__name__, obj)  # type: ignore[attr-defined]
            return obj

        return deco

    def get(self, name: str) -> T:
        """Look ``name`` up; unknown names raise :class:`UnknownNameError` naming the allowed values."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            allowed = self.names()
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{suggest(str(name), allowed)}; allowed: {allowed}"
            ) from None

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching the fnmatch ``pattern``."""
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
