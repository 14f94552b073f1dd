r"""Spatial attention (SA, "where"): one weight per pixel, from channel-pooled maps.

Paper: `Attention Spiking Neural Networks` (Eq. 12-13) - https://arxiv.org/abs/2209.13929

.. math::

    g_s(U) = \sigma\big(f^{k \times k}([\mathrm{AvgPool}_c(U);\ \mathrm{MaxPool}_c(U)])\big)
             \in (0, 1)^{H \times W}, \qquad U_{SA} = g_s(U) \odot U

``f`` is a bias-free ``Conv2d(2 -> 1, k, padding=k // 2)`` shared over time. The paper uses
``k = 7`` (CBAM's default) and pools each frame's channels (``per_step=True``, causal); the
official code and SpikingJelly use ``k = 3`` and pool all ``T*C`` maps of a sample jointly
(``per_step=False``): one map shared by every step and channel.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from masnn.attention._check import odd_kernel
from masnn.attention.gates import GateKind, pooled_counts, register_gate
from masnn.layers.seq import seq_apply


class SpatialAttention(nn.Module):
    """CBAM-style spatial gate (equations in the module docstring).

    Args:
        kernel_size: odd ``k`` of the 2 -> 1 conv (paper 7, code 3).
        per_step: pool each frame's channels (paper) or all ``T*C`` maps (code).

    The gate is the output of the submodule ``gate`` (a sigmoid), shaped ``(T, B, 1, H, W)``
    (per step), ``(1, B, 1, H, W)`` (pooled) or ``(B, 1, H, W)`` (one step).

    Shape:
        x: a sequence ``(T, B, C, H, W)`` or, with ``per_step``, one step ``(B, C, H, W)``;
        output: same shape and dtype.
    """

    def __init__(self, kernel_size: int = 7, per_step: bool = True) -> None:
        super().__init__()
        self.kernel_size = odd_kernel(kernel_size)
        self.per_step = bool(per_step)
        k = self.kernel_size
        self.conv = nn.Conv2d(2, 1, k, padding=k // 2, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        """Scale every pixel by its gate (see the class docstring)."""
        if x.dim() not in (4, 5):
            raise ValueError(
                "SpatialAttention expects (T, B, C, H, W) or one step (B, C, H, W), "
                f"got shape {tuple(x.shape)}"
            )
        if x.dim() == 4 and not self.per_step:
            raise ValueError(
                "SpatialAttention(per_step=False) pools over the whole sequence and needs "
                f"(T, B, C, H, W) input, got one step of shape {tuple(x.shape)}"
            )
        if self.per_step:
            pooled = torch.cat(
                [x.mean(dim=-3, keepdim=True), x.amax(dim=-3, keepdim=True)], dim=-3
            )  # (T, B, 2, H, W) or (B, 2, H, W)
            logits = seq_apply(self.conv, pooled) if x.dim() == 5 else self.conv(pooled)
        else:
            avg = x.mean(dim=(0, 2)).unsqueeze(1)  # (B, 1, H, W): over all T*C maps
            mx = x.amax(dim=(0, 2)).unsqueeze(1)  # (B, 1, H, W)
            pooled = torch.cat([avg, mx], dim=1)  # (B, 2, H, W)
            logits = self.conv(pooled).unsqueeze(0)  # (1, B, 1, H, W)
        return self.gate(logits) * x

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, per_step={self.per_step}"


def _sa_macs(module: SpatialAttention, x: Tensor) -> dict[str, float]:
    steps, b, c, hw, gates, _ = pooled_counts(module, x)
    k2 = math.prod(module.conv.kernel_size)
    cpool = c if module.per_step else steps * c
    paper = gates * 2 * k2 * hw
    full = gates * (2 * cpool * hw + 2 * k2 * hw + hw) + steps * c * hw
    return {"paper_table5": b * paper, "full": b * full}


register_gate(
    GateKind(
        "sa",
        "s",
        SpatialAttention,
        lambda c, t, hp, ps: SpatialAttention(hp.kernel_size, per_step=ps),
        _sa_macs,
    )
)
