r"""Channel attention (CA, "what") and its two Table-5 variants, ECA and SimAM.

Paper: `Attention Spiking Neural Networks` (Eq. 9-11, Table 5) - https://arxiv.org/abs/2209.13929

CBAM channel gate (the default), per time step (paper) or pooled over the window (code):

.. math::

    g_c(U) = \sigma\big(W_1\,\mathrm{ReLU}(W_0\,\mathrm{AvgPool}(U))
             + W_1\,\mathrm{ReLU}(W_0\,\mathrm{MaxPool}(U))\big) \in (0, 1)^{C},
    \qquad U_{CA} = g_c(U) \odot U

with ``W_0 \in R^{h \times C}``, ``W_1 \in R^{C \times h}``, ``h = max(1, C // r_c)``, no
biases, shared over time. ``per_step=True`` pools over ``(H, W)`` of each frame (paper: causal,
one weight vector per step); ``per_step=False`` pools over ``(T, H, W)`` jointly (official code
and SpikingJelly: one weight vector per sample, shared by all steps, not causal).

Variants (same interface, same ``per_step`` semantics):

* :class:`EfficientChannelAttention` (ECA-Net, Wang et al. CVPR 2020): average pool, then a
  bias-free 1-D convolution over the channel axis, ``g = \sigma(\mathrm{conv1d}_k(\mathrm{GAP}(U)))``;
  ``k`` from ECA's rule ``|log2(C)/2 + 1/2|`` rounded up to odd.
* :class:`SimAM` (Yang et al. ICML 2021): parameter-free, per element,
  ``g = \sigma\big((U - \mu)^2 / (4(\hat\sigma^2 + \lambda)) + 1/2\big)`` with ``\mu`` and
  ``\hat\sigma^2 = \sum (U - \mu)^2 / (n - 1)`` over the pooled axes, ``\lambda = 10^{-4}``.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from masnn.attention.checks import bottleneck_mlp, check_channels, positive_int
from masnn.attention.gates import GateKind, mlp_hidden, pooled_counts, register_gate


def _pool_axes(x: Tensor, per_step: bool, who: str) -> tuple[int, ...]:
    """The axes a channel gate pools over: ``(H, W)`` per frame, or ``(T, H, W)`` jointly."""
    if x.dim() == 4 and not per_step:
        raise ValueError(
            f"{who}(per_step=False) pools over the whole sequence and needs (T, B, C, H, W) "
            f"input, got one step of shape {tuple(x.shape)}"
        )
    return (-2, -1) if per_step else (0, 3, 4)


class ChannelAttention(nn.Module):
    """CBAM-style channel gate (equations in the module docstring).

    Args:
        channels: ``C``.
        reduction: ``r_c``; the hidden size is ``max(1, C // r_c)``.
        per_step: pool each frame's ``(H, W)`` (paper) or the whole ``(T, H, W)`` (code).

    The gate is the output of the submodule ``gate`` (a sigmoid), shaped ``(T, B, C, 1, 1)``
    (per step), ``(1, B, C, 1, 1)`` (pooled) or ``(B, C, 1, 1)`` (one step).

    Shape:
        x: a sequence ``(T, B, C, H, W)`` or, with ``per_step``, one step ``(B, C, H, W)``
        (the ``membrane`` location calls it once per step); output: same shape and dtype.
    """

    def __init__(self, channels: int, reduction: int = 16, per_step: bool = True) -> None:
        super().__init__()
        self.channels = positive_int("channels", channels)
        self.reduction = positive_int("reduction_c", reduction)
        self.per_step = bool(per_step)
        self.mlp = bottleneck_mlp(self.channels, self.reduction)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        """Scale every channel by its gate (see the class docstring)."""
        check_channels("ChannelAttention", x, self.channels, (4, 5))
        axes = _pool_axes(x, self.per_step, "ChannelAttention")
        avg = x.mean(dim=axes, keepdim=True)  # (T|1, B, C, 1, 1) or (B, C, 1, 1)
        mx = x.amax(dim=axes, keepdim=True)
        logits = self.mlp(avg.squeeze(-1).squeeze(-1)) + self.mlp(mx.squeeze(-1).squeeze(-1))
        g = self.gate(logits[..., None, None])  # (T|1, B, C, 1, 1) or (B, C, 1, 1)
        return g * x

    def extra_repr(self) -> str:
        return f"channels={self.channels}, reduction={self.reduction}, per_step={self.per_step}"


def eca_kernel_size(channels: int, gamma: float = 2.0, b: float = 1.0) -> int:
    """ECA-Net's adaptive kernel: ``|log2(C)/gamma + b/gamma|``, rounded up to the next odd int.

    Example:
        >>> [eca_kernel_size(c) for c in (64, 128, 256)]
        [3, 5, 5]
    """
    t = int(abs(math.log2(channels) / gamma + b / gamma))
    return t if t % 2 else t + 1


class EfficientChannelAttention(nn.Module):
    """ECA channel gate: average pool, 1-D conv over channels, sigmoid (no MLP, no bias).

    Args:
        channels: ``C``.
        per_step: pool each frame's ``(H, W)`` (paper) or the whole ``(T, H, W)`` (code).
        eca_kernel: the 1-D kernel size; ``None`` = :func:`eca_kernel_size` of ``channels``.

    Shape:
        x: ``(T, B, C, H, W)`` or, with ``per_step``, ``(B, C, H, W)``; output: same.
    """

    def __init__(self, channels: int, per_step: bool = True, eca_kernel: int | None = None) -> None:
        super().__init__()
        self.channels = positive_int("channels", channels)
        self.per_step = bool(per_step)
        k = eca_kernel_size(self.channels) if eca_kernel is None else eca_kernel
        k = positive_int("eca_kernel", k)
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        """Scale every channel by its ECA gate (see the class docstring)."""
        check_channels("EfficientChannelAttention", x, self.channels, (4, 5))
        axes = _pool_axes(x, self.per_step, "EfficientChannelAttention")
        avg = x.mean(dim=axes, keepdim=True)  # (..., C, 1, 1)
        lead = avg.shape[:-3]
        y = self.conv(avg.reshape(-1, 1, self.channels))  # (N, 1, C)
        g = self.gate(y.reshape(*lead, self.channels, 1, 1))  # (..., C, 1, 1)
        return g * x

    def extra_repr(self) -> str:
        return f"channels={self.channels}, per_step={self.per_step}"


class SimAM(nn.Module):
    """SimAM: a parameter-free, per-element energy gate (equation in the module docstring).

    Args:
        channels: ``C`` (checked against the input; SimAM has no weights).
        per_step: statistics over each frame's ``(H, W)`` (paper) or over ``(T, H, W)`` (code).
        lam: the energy regulariser ``lambda``.

    Shape:
        x: ``(T, B, C, H, W)`` or, with ``per_step``, ``(B, C, H, W)``; output: same.
    """

    def __init__(self, channels: int, per_step: bool = True, lam: float = 1e-4) -> None:
        super().__init__()
        self.channels = positive_int("channels", channels)
        self.per_step = bool(per_step)
        if not lam > 0:
            raise ValueError(f"SimAM lam must be > 0, got {lam!r}")
        self.lam = float(lam)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        """Scale every element by its SimAM gate (see the class docstring)."""
        check_channels("SimAM", x, self.channels, (4, 5))
        axes = _pool_axes(x, self.per_step, "SimAM")
        n = math.prod(x.shape[a] for a in axes)
        d = (x - x.mean(dim=axes, keepdim=True)).pow(2)
        var = d.sum(dim=axes, keepdim=True) / max(n - 1, 1)
        g = self.gate(d / (4 * (var + self.lam)) + 0.5)
        return g * x

    def extra_repr(self) -> str:
        return f"channels={self.channels}, per_step={self.per_step}, lam={self.lam:g}"


def _ca_macs(module: ChannelAttention, x: Tensor) -> dict[str, float]:
    steps, b, c, hw, gates, pool = pooled_counts(module, x)
    h = mlp_hidden(module)
    paper = gates * 2 * c * h
    full = gates * (2 * c * pool + 2 * (2 * c * h) + 2 * c) + steps * c * hw
    return {"paper_table5": b * paper, "full": b * full}


def _eca_macs(module: EfficientChannelAttention, x: Tensor) -> dict[str, float]:
    steps, b, c, hw, gates, pool = pooled_counts(module, x)
    k = int(module.conv.kernel_size[0])
    paper = gates * c * k
    full = gates * (c * pool + c * k + c) + steps * c * hw
    return {"paper_table5": b * paper, "full": b * full}


def _simam_macs(module: nn.Module, x: Tensor) -> dict[str, float]:
    steps, b, c, hw, _, _ = pooled_counts(module, x)
    n = steps * c * hw  # per element, pooled or not
    return {"paper_table5": b * 4 * n, "full": b * 7 * n}


register_gate(
    GateKind(
        "ca",
        "c",
        ChannelAttention,
        lambda c, t, hp, ps: ChannelAttention(c, hp.reduction_c, per_step=ps),
        _ca_macs,
    )
)
register_gate(
    GateKind(
        "eca",
        "c",
        EfficientChannelAttention,
        lambda c, t, hp, ps: EfficientChannelAttention(c, per_step=ps),
        _eca_macs,
    )
)
register_gate(
    GateKind(
        "simam",
        "c",
        SimAM,
        lambda c, t, hp, ps: SimAM(c, per_step=ps),
        _simam_macs,
        per_forward={"paper_table5": 1.0, "full": 0.0},  # paper Table 5's "+3" (docs/energy.md)
    )
)

__all__ = ["ChannelAttention", "EfficientChannelAttention", "SimAM", "eca_kernel_size"]
