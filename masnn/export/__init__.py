"""Export masnn models to other runtimes and toolchains: ONNX and NIR.

Each format is one module here plus one registration in :data:`EXPORTERS`; ``masnn export
FORMAT CHECKPOINT -o FILE`` dispatches through that registry, so a new exporter is one file and
one ``EXPORTERS.add`` (and one line in ``_EXPORTER_MODULES``).

* :func:`to_onnx` (``onnx``): the full-window inference graph ``(T, B, C, H, W) -> (B, K)``
  with a dynamic batch, and, for causal models, a per-step cell with explicit state.
* :func:`to_nir` (``nir``): the Neuromorphic Intermediate Representation of a vanilla
  (attention-free) ``ma_snn3*`` chain or ``ms_resnet*`` graph, BatchNorm folded.

Model-internal assumptions (module types, block structure, how a checkpoint rebuilds its
model) live in :mod:`masnn.export._model` only. Optional dependencies (``onnx``,
``onnxruntime``, ``onnxscript``, ``nir``; the ``export`` extra) are imported lazily, so
importing this package needs only torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from masnn._registry import Registry
from masnn.errors import MasnnError


class ExportError(MasnnError, ValueError):
    """A model that cannot be exported to a format; the message says which part and why."""


@dataclass(frozen=True)
class Exporter:
    """A registered export format.

    Attributes:
        name: the format name (``masnn export NAME``).
        help: one line for the CLI.
        suffix: the usual file suffix.
        write: ``write(model, path, **options) -> list[Path]`` writes the file(s) and returns
            them; options are the CLI's ``timesteps`` and ``step``.
        options: the options of ``write`` this format takes (others are refused).
    """

    name: str
    help: str
    suffix: str
    write: Callable[..., list[Path]]
    options: tuple[str, ...] = ()


EXPORTERS: Registry[Exporter] = Registry("export format")

#: Modules that register an exporter, imported on first use of :func:`get_exporter`.
_EXPORTER_MODULES: tuple[str, ...] = ("masnn.export.onnx", "masnn.export.nir")


def get_exporter(name: str) -> Exporter:
    """The registered :class:`Exporter` ``name`` (unknown names list the formats)."""
    for mod in _EXPORTER_MODULES:
        importlib.import_module(mod)
    return EXPORTERS.get(name)


def model_from_checkpoint(path: str | Path, overrides: list[str] | None = None) -> nn.Module:
    """The trained model of a ``masnn train`` checkpoint, in eval mode (as ``masnn eval``
    rebuilds it; ``overrides`` are ``data.*`` keys, e.g. ``["data.root=/new/place"]``)."""
    from masnn.export._model import model_from_checkpoint as _load

    return _load(path, overrides)


def to_onnx(model: nn.Module, path: str | Path, *, timesteps: int | None = None, **kw: Any) -> Path:
    """Export ``model`` to ONNX; see :func:`masnn.export.onnx.to_onnx`."""
    from masnn.export.onnx import to_onnx as _to_onnx

    return _to_onnx(model, path, timesteps=timesteps, **kw)


def to_onnx_step(model: nn.Module, path: str | Path, **kw: Any) -> Path:
    """Export a causal model's per-step cell; see :func:`masnn.export.onnx.to_onnx_step`."""
    from masnn.export.onnx import to_onnx_step as _to_onnx_step

    return _to_onnx_step(model, path, **kw)


def to_nir(model: nn.Module, **kw: Any) -> Any:
    """Convert a vanilla model to a ``nir.NIRGraph``; see :func:`masnn.export.nir.to_nir`."""
    from masnn.export.nir import to_nir as _to_nir

    return _to_nir(model, **kw)


__all__ = [
    "EXPORTERS",
    "ExportError",
    "Exporter",
    "get_exporter",
    "model_from_checkpoint",
    "to_nir",
    "to_onnx",
    "to_onnx_step",
]
