"""Readouts: time-major per-step outputs ``(T, B, K)`` -> one prediction per sample ``(B, K)``.

* :func:`mean_over_time`: the firing rate of output spikes (MA-SNN DVS nets, read out as the
  output spikes averaged over ``T``) or the mean over ``T`` of logits/features (MS-ResNet).
* :func:`vote`: Fang et al.'s voting layer, the mean over groups of ``group`` output neurons.
* :func:`last_step`, :func:`spike_count`: the other usual choices.

Depends only on torch.
"""

from __future__ import annotations

from torch import Tensor


def _check_seq(x_seq: Tensor) -> None:
    if x_seq.dim() < 2:
        raise ValueError(f"expected a time-major (T, B, ...) tensor, got {tuple(x_seq.shape)}")


def mean_over_time(x_seq: Tensor) -> Tensor:
    """Mean over the leading time axis (the sum over ``T``, then one division by ``T``).

    Written as ``sum / T`` so a streaming running sum divided by ``t`` gives the same numbers.

    Shape:
        x_seq: ``(T, B, ...)``; output: ``(B, ...)``.
    """
    _check_seq(x_seq)
    return x_seq.sum(0) / x_seq.shape[0]


def spike_count(x_seq: Tensor) -> Tensor:
    """Total over the leading time axis.

    Shape:
        x_seq: ``(T, B, ...)``; output: ``(B, ...)``.
    """
    _check_seq(x_seq)
    return x_seq.sum(0)


def last_step(x_seq: Tensor) -> Tensor:
    """The output of the last step.

    Shape:
        x_seq: ``(T, B, ...)``; output: ``(B, ...)``.
    """
    _check_seq(x_seq)
    return x_seq[-1]


def vote(x: Tensor, group: int) -> Tensor:
    """Voting layer: the mean of each consecutive group of ``group`` outputs (Fang et al.).

    Args:
        x: per-class evidence with ``K * group`` features in the last axis.
        group: neurons per class.

    Shape:
        x: ``(..., K * group)``; output: ``(..., K)``.

    Example:
        >>> import torch
        >>> vote(torch.tensor([[1.0, 0.0, 1.0, 1.0]]), 2).tolist()
        [[0.5, 1.0]]
    """
    if group < 1 or x.shape[-1] % group:
        raise ValueError(f"cannot vote over groups of {group} with {x.shape[-1]} outputs")
    return x.unflatten(-1, (x.shape[-1] // group, group)).mean(-1)  # (..., K)
