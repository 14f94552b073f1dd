"""Average pooling that does not keep its input alive for backward.

``nn.AvgPool2d``'s autograd node holds on to its *input* until backward (PyTorch's
``avg_pool2d_backward`` takes it for its shape). In ``Conv -> BN -> AvgPool -> LIF`` that input
is the BatchNorm output, a full-resolution tensor that nothing else needs: BN keeps its own
input, the LIF its own. :class:`AvgPool2d` is ``nn.AvgPool2d`` (same arguments, same results,
``isinstance`` still holds) whose backward, for tiling windows (kernel = stride, no padding,
floor mode, no divisor override), needs only the input's shape: each output gradient divided
by the window size is spread over its window, which is ``avg_pool2d_backward`` operation by
operation (bit for bit). Other settings, tracing/export and no-grad calls use the plain op.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _TilingAvgPool(torch.autograd.Function):
    """``avg_pool2d`` with kernel = stride ``k``; saves the input's shape only."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, k: int) -> Tensor:
        ctx.in_shape = x.shape
        ctx.k = k
        return F.avg_pool2d(x, k, k)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g: Tensor) -> Any:
        k = ctx.k
        *lead, h, w = ctx.in_shape
        ho, wo = g.shape[-2:]
        gk = (g / (k * k)).unsqueeze(-1).unsqueeze(-3)  # (..., Ho, 1, Wo, 1)
        spread = gk.expand(*g.shape[:-2], ho, k, wo, k).reshape(*g.shape[:-2], ho * k, wo * k)
        if (ho * k, wo * k) == (h, w):
            return spread, None
        gx = g.new_zeros(ctx.in_shape)  # rows / columns outside every window get no gradient
        gx[..., : ho * k, : wo * k] = spread
        return gx, None


class AvgPool2d(nn.AvgPool2d):
    """``nn.AvgPool2d`` that, for tiling windows, does not keep its input for backward."""

    def _tiling(self) -> int | None:
        ks, st, pd = self.kernel_size, self.stride, self.padding
        k = ks if isinstance(ks, int) else (ks[0] if ks[0] == ks[1] else None)
        s = st if isinstance(st, int) else (st[0] if st[0] == st[1] else None)
        p = pd if isinstance(pd, int) else (pd[0] if pd[0] == pd[1] else None)
        if k is None or s != k or p != 0 or self.ceil_mode or self.divisor_override is not None:
            return None
        return k

    def forward(self, input: Tensor) -> Tensor:
        k = self._tiling()
        lean = (
            k is not None
            and input.dim() in (3, 4)
            and torch.is_grad_enabled()
            and input.requires_grad
            and not torch.jit.is_tracing()
            and not torch.jit.is_scripting()
            and not torch.onnx.is_in_onnx_export()
        )
        if lean:
            assert k is not None
            return _TilingAvgPool.apply(input, k)
        return super().forward(input)
