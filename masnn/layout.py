"""The tensor-layout contract: every sequence inside masnn is time-major, ``(T, B, C, H, W)``.

==========  =====================  ====================================================
stage       layout                 notes
==========  =====================  ====================================================
batch       ``(T, B, C, H, W)``    what every model's ``forward`` takes
logits      ``(T, B, K)``          per-step outputs, before the readout
readout     ``(B, K)``             :mod:`masnn.readout` pools over ``T``
==========  =====================  ====================================================

This module is the bottom of the package (it imports only torch): the one conversion site
from other layouts (e.g. the official code's batch-first ``(B, T, C, H, W)``), the one encoder
for static images (:func:`repeat_over_time`) and the one fold site (:func:`fold_time`,
:func:`unfold_time`, :func:`seq_apply`): conv, BatchNorm and pooling layers have no time
dynamics, so a sequence ``(T, B, ...)`` is folded to ``(T*B, ...)``, passed through once and
unfolded. BatchNorm statistics are therefore shared over time, as in the official code
(``BatchNorm2d`` on ``[B*T, C, H, W]``). ``masnn.layers.SeqToBatch`` is the module form.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

#: The layout of every sequence tensor in masnn.
TIME_MAJOR = "TBCHW"

_LAYOUTS = ("TBCHW", "BTCHW")


def _check_layout(layout: str, x: Tensor) -> None:
    if layout not in _LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; allowed: {list(_LAYOUTS)}")
    if x.dim() < 2:
        raise ValueError(f"a {layout} sequence needs >= 2 dims, got shape {tuple(x.shape)}")


def to_time_major(x: Tensor, layout: str = "BTCHW") -> Tensor:
    """Convert a sequence from ``layout`` to :data:`TIME_MAJOR` (a view, no copy).

    Args:
        x: the sequence; only the two leading axes are moved, trailing axes are free.
        layout: ``"BTCHW"`` (batch-first, the official code's order) or ``"TBCHW"``.

    Shape:
        x: ``(B, T, ...)`` for ``"BTCHW"``; output: ``(T, B, ...)``.
    """
    _check_layout(layout, x)
    return x if layout == TIME_MAJOR else x.transpose(0, 1)  # (T, B, ...)


def from_time_major(x_seq: Tensor, layout: str = "BTCHW") -> Tensor:
    """Inverse of :func:`to_time_major` (a view, no copy).

    Shape:
        x_seq: ``(T, B, ...)``; output: ``(B, T, ...)`` for ``"BTCHW"``.
    """
    _check_layout(layout, x_seq)
    return x_seq if layout == TIME_MAJOR else x_seq.transpose(0, 1)  # (B, T, ...)


def repeat_over_time(img: Tensor, timesteps: int) -> Tensor:
    """Direct encoding of a static image batch: the same frame at every step (a view).

    The result is an ``expand`` view; do not modify it in place.

    Args:
        img: a batch of images.
        timesteps: ``T >= 1``.

    Shape:
        img: ``(B, C, H, W)``; output: ``(T, B, C, H, W)``.

    Example:
        >>> import torch
        >>> repeat_over_time(torch.zeros(2, 3, 4, 5), 3).shape
        torch.Size([3, 2, 3, 4, 5])
    """
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise ValueError(f"timesteps must be an int >= 1, got {timesteps!r}")
    return img.unsqueeze(0).expand(timesteps, *img.shape)  # (T, B, C, H, W)


def fold_time(x_seq: Tensor) -> Tensor:
    """Merge the time and batch axes (a view when possible).

    Shape:
        x_seq: ``(T, B, ...)``; output: ``(T*B, ...)``.

    Example:
        >>> import torch
        >>> fold_time(torch.zeros(4, 3, 2)).shape
        torch.Size([12, 2])
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

    Example:
        >>> import torch
        >>> seq_apply(lambda x: x.sum(-1), torch.ones(4, 3, 2))[0]
        tensor([2., 2., 2.])
    """
    return unfold_time(fn(fold_time(x_seq)), x_seq.shape[0])  # (T, B, ...)
