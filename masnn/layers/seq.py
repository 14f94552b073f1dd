"""The one fold site: run stateless per-frame layers over a time-major sequence.

Conv, BatchNorm and pooling layers have no time dynamics, so a sequence ``(T, B, ...)`` is
folded to ``(T*B, ...)``, passed through once and unfolded. BatchNorm statistics are therefore
shared over time, as in the official code (``BatchNorm2d`` on ``[B*T, C, H, W]``).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn


def fold_time(x_seq: Tensor) -> Tensor:
    """Merge the time and batch axes (a view when possible).

    Shape:
        x_seq: ``(T, B, ...)``; output: ``(T*B, ...)``.
    """
    if x_seq.dim() < 2:
        raise ValueError(
            f"expected a time-major (T, B, ...) tensor, got shape {tuple(x_seq.shape)}"
        )
    return x_seq.flatten(0, 1)  # (T*B, ...)


def unfold_time(x: Tensor, timesteps: int) -> Tensor:
    """Inverse of :func:`fold_time`.

    Shape:
        x: ``(T*B, ...)``; output: ``(T, B, ...)``.
    """
    if x.shape[0] % timesteps:
        raise ValueError(f"leading size {x.shape[0]} is not a multiple of T={timesteps}")
    return x.unflatten(0, (timesteps, x.shape[0] // timesteps))  # (T, B, ...)


def seq_apply(fn: Callable[[Tensor], Tensor], x_seq: Tensor) -> Tensor:
    """Apply a stateless per-frame function ``fn`` to every frame of ``x_seq`` in one call.

    Shape:
        x_seq: ``(T, B, ...)``; output: ``(T, B, ...)`` (trailing axes as ``fn`` returns them).
    """
    return unfold_time(fn(fold_time(x_seq)), x_seq.shape[0])  # (T, B, ...)


class SeqToBatch(nn.Module):
    """Wrap a stateless module so that it runs on time-major sequences.

    Args:
        module: a module acting on ``(N, ...)`` batches (conv, norm, pool, linear).

    Shape:
        x_seq: ``(T, B, ...)``; output: ``(T, B, ...)``.

    Example:
        >>> import torch
        >>> SeqToBatch(nn.Conv2d(2, 4, 3, padding=1))(torch.zeros(5, 3, 2, 8, 6)).shape
        torch.Size([5, 3, 4, 8, 6])
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"SeqToBatch wraps an nn.Module, got {type(module).__name__}")
        self.module = module

    def forward(self, x_seq: Tensor) -> Tensor:
        """Fold ``(T, B)``, run the module, unfold (see the class docstring)."""
        return seq_apply(self.module, x_seq)
