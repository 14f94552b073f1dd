"""Checkpoints: atomic, versioned, readable with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors and primitive values::

    schema_version, masnn_version, epoch (completed epochs), step, config (nested dict),
    model, optimizer, scheduler, scaler (state dicts), rng (torch CPU [+ CUDA] states),
    best (model-selection record), history (per-epoch metrics)

Writes go to a temporary file in the same directory, are flushed and fsync'ed, then renamed
over the target, so a process killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from masnn.errors import MasnnError
from masnn.version import __version__

SCHEMA_VERSION = 1
#: Schema versions this release can read.
READABLE_SCHEMAS = (1,)


class CheckpointError(MasnnError):
    """A checkpoint cannot be read (corrupt, wrong schema); the message names the file."""


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to ``path`` atomically (temp file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def rng_state() -> dict[str, Any]:
    """The torch RNG states (CPU, and CUDA when available)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike[str], **parts: Any) -> None:
    """Write a checkpoint dict made of ``parts`` plus the schema header, atomically."""
    ckpt = {"schema_version": SCHEMA_VERSION, "masnn_version": __version__, **parts}
    atomic_torch_save(ckpt, path)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` and check its schema.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable or of an unknown schema version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise CheckpointError(
            f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(ckpt, dict) or "schema_version" not in ckpt:
        raise CheckpointError(f"{path}: not a masnn checkpoint (no schema_version)")
    if ckpt["schema_version"] not in READABLE_SCHEMAS:
        raise CheckpointError(
            f"{path}: checkpoint schema {ckpt['schema_version']} is not readable by masnn "
            f"{__version__} (reads {READABLE_SCHEMAS})"
        )
    return ckpt
