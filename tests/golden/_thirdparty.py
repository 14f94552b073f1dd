"""Import the *real* SpikingJelly / Tonic functions used for parity, without their unrelated extras.

``spikingjelly.datasets.utils`` imports loguru, matplotlib and torchvision at module level, and
``tonic`` imports scipy, h5py, librosa, importRosbag and expelliarmus, none of which the
functions we compare against use (``load_aedat_v3``,
``integrate_events_by_fixed_frames_number``, ``tonic.functional.to_frame_numpy``). When such a
package is not installed we register an inert placeholder module for it, so that the real
library code can be imported and executed unchanged. Installed packages are never replaced.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any

_OPTIONAL = (
    "loguru",
    "matplotlib",
    "torchvision",
    "torchaudio",
    "requests",
    "pbr",
    "tqdm_placeholder",
    "scipy",
    "h5py",
    "librosa",
    "importRosbag",
    "expelliarmus",
)


class _Inert(types.ModuleType):
    """A placeholder module: any attribute is another inert object; calling it returns one."""

    __path__: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _InertObj()


class _InertObj:
    def __getattr__(self, name: str) -> Any:
        return _InertObj()

    def __call__(self, *a: Any, **k: Any) -> Any:
        return _InertObj()

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type, ...]:
        return (object,)


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, missing: set[str]) -> None:
        self.missing = missing

    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        if fullname.split(".")[0] in self.missing:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        return _Inert(spec.name)

    def exec_module(self, module):  # type: ignore[no-untyped-def]
        return None


def _install_placeholders() -> None:
    if any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    missing = {name for name in _OPTIONAL if importlib.util.find_spec(name) is None}
    if missing:
        sys.meta_path.append(_Finder(missing))


def spikingjelly_utils() -> types.ModuleType | None:
    """Return the real ``spikingjelly.datasets.utils`` module, or ``None`` if not installed."""
    if importlib.util.find_spec("spikingjelly") is None:
        return None
    _install_placeholders()
    try:
        return importlib.import_module("spikingjelly.datasets.utils")
    except Exception:  # a broken install: treat as absent
        return None


def tonic_to_frame() -> Any:
    """Return the real ``tonic.functional.to_frame_numpy``, or ``None`` if not installed."""
    if importlib.util.find_spec("tonic") is None:
        return None
    _install_placeholders()
    try:
        return importlib.import_module("tonic.functional.to_frame").to_frame_numpy
    except Exception:
        return None
