"""Checkpoints: atomic, versioned, readable with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors and primitive values::

    schema_version, masnn_version, epoch (completed epochs), step, config (nested dict),
    model, optimizer, scheduler, scaler (state dicts), rng (torch CPU [+ CUDA] states),
    best (model-selection record), history (per-epoch metrics)

Writes go through :func:`masnn.fsutil.atomic_write` (temporary file, fsync, rename), so a
process killed mid-write, or a full disk, leaves the previous checkpoint intact. Since schema 2
a checkpoint carries ``checksum``, the SHA-256 of its content (:func:`masnn.fsutil.tree_checksum`
of every other entry), verified on load: a flipped byte is reported, never used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from masnn.errors import MasnnError
from masnn.fsutil import atomic_write, tree_checksum
from masnn.version import __version__

SCHEMA_VERSION = 2
#: Schema versions this release can read (1: without checksum).
READABLE_SCHEMAS = (1, 2)


class CheckpointError(MasnnError):
    """A checkpoint cannot be read (corrupt, wrong schema); the message names the file."""


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to ``path`` atomically (:func:`masnn.fsutil.atomic_write`).

    Raises:
        FileSystemError: the write failed (e.g. disk full); the previous file is intact.
    """
    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


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
    ckpt["checksum"] = tree_checksum(ckpt)
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
    if ckpt["schema_version"] >= 2:
        stored = ckpt.pop("checksum", None)
        if stored != tree_checksum(ckpt):
            raise CheckpointError(
                f"{path}: checkpoint content does not match its checksum (damaged file); "
                "use another checkpoint (best.pt / checkpoint.pt) or retrain"
            )
    return ckpt
