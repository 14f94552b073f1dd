"""Batch collation: the ONE place where the batch becomes time-major ``[T, B, C, H, W]``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def collate_time_major(batch: Sequence[tuple[Any, int]]) -> tuple[Any, Any]:
    """Stack ``(frames (T, C, H, W), label)`` pairs into ``(x_seq [T, B, C, H, W], labels [B])``.

    Test samples with ``k`` clips, ``(k, T, C, H, W)``, become ``(k, T, B, C, H, W)``.

    Frames may be numpy arrays or tensors; all must share one shape. Use as a
    ``DataLoader(collate_fn=collate_time_major)``.

    Returns:
        ``x_seq`` float32 tensor ``(T, B, C, H, W)`` and int64 tensor ``labels`` ``(B,)``.
    """
    import torch

    if len(batch) == 0:
        raise ValueError("collate_time_major: empty batch")
    frames = [
        torch.as_tensor(np.asarray(f) if not isinstance(f, torch.Tensor) else f) for f, _ in batch
    ]
    shapes = {tuple(f.shape) for f in frames}
    if len(shapes) != 1:
        raise ValueError(f"collate_time_major: frames of different shapes {sorted(shapes)}")
    (shape,) = shapes
    if len(shape) not in (4, 5):
        raise ValueError(
            f"collate_time_major: frames must be (T, C, H, W) or (clips, T, C, H, W), got {shape}"
        )
    # the batch axis goes right after T: (T, B, C, H, W), or (k, T, B, C, H, W) for k clips
    x_seq = torch.stack(frames, dim=len(shape) - 3).to(torch.float32)
    labels = torch.as_tensor([int(lab) for _, lab in batch], dtype=torch.int64)
    return x_seq, labels
