"""Average pooling that does not keep its input alive for backward, and BatchNorm + AvgPool
as one op (:func:`fused_bn_avg_pool`: no full-size BN output, no full-size spread gradient).

``nn.AvgPool2d``'s autograd node holds on to its *input* until backward (PyTorch's
``avg_pool2d_backward`` takes it for its shape). In ``Conv -> BN -> AvgPool -> LIF`` that input
is the BatchNorm output, a full-resolution tensor that nothing else needs: BN keeps its own
input, the LIF its own. :class:`AvgPool2d` is ``nn.AvgPool2d`` (same arguments, same results,
``isinstance`` still holds) whose backward, for tiling windows (kernel = stride, no padding,
floor mode, no divisor override), needs only the input's shape: each output gradient divided
by the window size is spread over its window, which is ``avg_pool2d_backward`` operation by
operation (bit for bit). For tiling windows its forward (with or without a gradient) runs in
the CPU kernel library where that is built, with ``avg_pool2d``'s arithmetic (bit for bit);
other settings, non-contiguous inputs and tracing/export use the plain op.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from masnn.neurons.backends.auto import fused_for
from masnn.neurons.backends.bn_lif import (
    avg_pool,
    bn_pool_grad_sums,
    bn_pool_input_grad,
    bn_pool_stats,
)
from masnn.neurons.backends.membrane import has_hooks
from masnn.neurons.backends.saved import consumable


class _TilingAvgPool(torch.autograd.Function):
    """``avg_pool2d`` with kernel = stride ``k``; saves the input's shape only."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, k: int) -> Tensor:
        ctx.in_shape = x.shape
        ctx.k = k
        return _avg_pool(x, k)

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
        if k is not None and input.dim() in (3, 4) and not torch.is_grad_enabled():
            return _avg_pool(input, k)  # inference: the kernel where it is built
        return super().forward(input)


def _avg_pool(x: Tensor, k: int) -> Tensor:
    """``F.avg_pool2d(x, k, k)``, through the CPU kernel (the same arithmetic, bit for bit,
    faster than ATen's here) where :func:`_use_kernel` allows and ``x`` is contiguous."""
    if x.is_contiguous() and x.numel() > 0 and _use_kernel(x):
        return avg_pool(x, k)
    return F.avg_pool2d(x, k, k)


# ---------------------------------------------------------------------------------------------
# BatchNorm (training statistics) followed by a tiling AvgPool, as one op


class _BNAvgPool(torch.autograd.Function):
    """``avg_pool2d(batch_norm(y), k)`` with batch statistics, without the full-size BN output.

    Forward: the per-channel statistics of ``y``, the pooled ``y`` and the per-channel affine
    map on the pooled tensor (pooling is linear, so ``pool(y * a + b) = pool(y) * a + b``).
    Backward: BatchNorm's gradient through the pool from the pooled gradient and the saved
    ``y`` (which BatchNorm saves anyway; nothing else full-size is kept): the window means
    again for BN's second reduction, then the input gradient in one pass; the spread gradient
    ``g / k^2`` and the normalised input are never materialised. Requires ``H`` and ``W``
    divisible by ``k``.

    On CPU, where the fused LIF kernel library is built, the full-size passes run in it
    (:func:`~masnn.neurons.backends.bn_lif.bn_pool_stats`: statistics and window means from
    one read of ``y``; :func:`~masnn.neurons.backends.bn_lif.bn_pool_grad_sums`: the
    reduction from one read; :func:`~masnn.neurons.backends.bn_lif.bn_pool_input_grad`: one
    read of ``y``, one write of its gradient, into ``y``'s own buffer when the graph is not
    retained and nothing else holds ``y``:
    :func:`~masnn.neurons.backends.saved.consumable`); elsewhere (and under
    :func:`~masnn.neurons.backends.reference_only`, tracing or compiling) the same formulas
    run as torch operations. The two differ by float rounding only (the kernel sums the
    statistics in double).
    """

    @staticmethod
    def forward(ctx: Any, y: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float,
                k: int) -> Any:  # fmt: skip
        ctx.kernel = _use_kernel(y)
        if ctx.kernel:
            y = y.contiguous()
            pooled, mean, var = bn_pool_stats(y, k)
        else:
            var, mean = torch.var_mean(y, dim=(0, 2, 3), unbiased=False)
            pooled = F.avg_pool2d(y, k, k)
        invstd = torch.rsqrt(var + eps)
        scale = invstd if weight is None else weight * invstd
        shift = -mean * scale if bias is None else bias - mean * scale
        c = y.shape[1]
        out = torch.addcmul(shift.view(1, c, 1, 1), pooled, scale.view(1, c, 1, 1))
        ctx.save_for_backward(y, weight, mean, invstd)
        ctx.k = k
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g: Tensor, _gm: Any, _gv: Any) -> Any:
        y, weight, mean, invstd = ctx.saved_tensors
        k = ctx.k
        n, c, h, w = y.shape
        ho, wo = h // k, w // k
        m = n * h * w
        g = g.contiguous()
        c4 = (1, c, 1, 1)
        # BN's two reductions over the full-size gradient g_x = spread(g) / k^2, on the pooled
        # tensors: sum(g_x) = sum(g); sum(g_x * xhat) = sum(g * (pool(y) - mean)) * invstd
        sum_g = g.sum((0, 2, 3))
        if ctx.kernel:  # the window means recomputed in the kernel's read of y
            sum_gxhat = bn_pool_grad_sums(g, y, mean, k).to(y.dtype) * invstd
        else:
            sum_gxhat = (g * (F.avg_pool2d(y, k, k) - mean.view(c4))).sum((0, 2, 3)) * invstd
        a = invstd if weight is None else weight * invstd
        b = a * invstd * sum_gxhat / m
        c0 = b * mean - a * sum_g / m
        # g_y = a * g_x - a * sum_g / m - a * invstd * (y - mean) * sum_gxhat / m, in one pass
        if ctx.kernel:  # written into y's own buffer when nothing else can see y
            inplace = consumable(y)  # (its own statement: a pending call's arguments hold y)
            g_y = bn_pool_input_grad(g, y, a / (k * k), c0, -b, k, inplace=inplace)
        else:
            term = torch.addcmul(c0.view(c4), g, (a / (k * k)).view(c4)).view(n, c, ho, 1, wo, 1)
            g_y = torch.addcmul(term, y.view(n, c, ho, k, wo, k), (-b).view(1, c, 1, 1, 1, 1))
        g_w = sum_gxhat if weight is not None and ctx.needs_input_grad[1] else None
        g_b = sum_g if ctx.needs_input_grad[2] else None
        return g_y.view(n, c, h, w), g_w, g_b, None, None


def _use_kernel(y: Tensor) -> bool:
    """Whether the fused BN + AvgPool runs its full-size passes in the CPU kernel library."""
    cpu = y.device.type == "cpu" and y.dtype in (torch.float32, torch.float64)
    return cpu and fused_for(y) is not None  # where "auto" would run the CPU LIF kernel


def fused_bn_avg_pool(y: Tensor, bn: nn.BatchNorm2d, pool: nn.Module) -> Tensor | None:
    """``pool(bn(y))`` as one op (:class:`_BNAvgPool`) when that is exact to rounding; else
    ``None`` (the caller runs the two modules).

    Fused: ``bn`` in training mode (batch statistics; its running statistics are updated as
    ``nn.BatchNorm2d`` does), ``pool`` a tiling :class:`AvgPool2d` whose ``k`` divides ``H``
    and ``W``, a gradient being recorded, no hook on either module (hooks see the modules'
    outputs), not tracing or exporting.
    """
    if not isinstance(pool, AvgPool2d) or not bn.training or type(bn) is not nn.BatchNorm2d:
        return None
    k = pool._tiling()
    if k is None or y.dim() != 4 or y.shape[2] % k or y.shape[3] % k:
        return None
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export():
        return None
    if has_hooks(bn) or has_hooks(pool):
        return None
    out, mean, var = _BNAvgPool.apply(y, bn.weight, bn.bias, bn.eps, k)
    update_running_stats(bn, mean, var, y.numel() // y.shape[1])
    return out


def update_running_stats(bn: nn.BatchNorm2d, mean: Tensor, var: Tensor, m: int) -> None:
    """Update ``bn``'s running statistics from one training batch as ``nn.BatchNorm2d`` does
    (momentum, or the cumulative average when ``momentum`` is ``None``; the unbiased variance
    of ``m`` values per channel from the biased ``var``). No-op without running statistics."""
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        return
    assert bn.num_batches_tracked is not None
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative moving average
            factor = 1.0 / float(bn.num_batches_tracked)
        else:
            factor = bn.momentum
        bn.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        bn.running_var.mul_(1 - factor).add_(var * (m / max(m - 1, 1)), alpha=factor)
