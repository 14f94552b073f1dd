""":class:`SeqToBatch`: the module form of the one fold site, :func:`masnn.layout.seq_apply`.

Conv, BatchNorm and pooling layers have no time dynamics, so a sequence ``(T, B, ...)`` is
folded to ``(T*B, ...)``, passed through once and unfolded (see :mod:`masnn.layout`).
"""

from __future__ import annotations

from torch import Tensor, nn

from masnn.layout import fold_time, seq_apply, unfold_time

__all__ = ["SeqToBatch", "fold_time", "seq_apply", "unfold_time"]


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
