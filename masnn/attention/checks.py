"""Argument checks shared by the attention modules (user input: raise, never assert), and the
squeeze-excite MLP their bottleneck sizes go into."""

from __future__ import annotations

from torch import Tensor, nn


def positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int >= 1, else raise naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def odd_kernel(value: object) -> int:
    """Return ``value`` if it is an odd int >= 1 ("same" padding needs an odd kernel)."""
    k = positive_int("kernel_size", value)
    if k % 2 == 0:
        raise ValueError(f"kernel_size must be odd (same padding), got {k}")
    return k


def hidden_size(n: int, reduction: int) -> int:
    """The MLP bottleneck ``max(1, n // r)`` (the official code uses ``n // r``, which is 0 for
    ``r > n``; we keep at least one unit instead of failing)."""
    return max(1, n // reduction)


def bottleneck_mlp(n: int, reduction: int) -> nn.Sequential:
    """The shared MLP of TA and CA: ``Linear(n, h) -> ReLU -> Linear(h, n)``, no biases,
    ``h = hidden_size(n, reduction)`` (state-dict keys ``0.weight`` and ``2.weight``)."""
    hidden = hidden_size(n, reduction)
    return nn.Sequential(
        nn.Linear(n, hidden, bias=False),
        nn.ReLU(),
        nn.Linear(hidden, n, bias=False),
    )


def check_channels(who: str, x: Tensor, channels: int, ranks: tuple[int, ...]) -> None:
    """Raise unless ``x`` has one of ``ranks`` and ``channels`` at axis ``-3``."""
    if x.dim() not in ranks:
        raise ValueError(
            f"{who} expects a tensor of rank {' or '.join(map(str, ranks))} "
            f"((T, B, C, H, W) sequence or (B, C, H, W) step), got shape {tuple(x.shape)}"
        )
    if x.shape[-3] != channels:
        raise ValueError(
            f"{who} was built for C={channels} channels, got C={x.shape[-3]} "
            f"(input shape {tuple(x.shape)})"
        )
