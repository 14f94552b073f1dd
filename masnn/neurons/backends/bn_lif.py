"""BatchNorm's affine map read inside the fused CPU LIF kernel: ``LIF(BN(y))`` without the
normalised tensor.

``SpikingConvBlock`` runs ``Conv2d -> BatchNorm2d -> LIF`` when no pool sits between BN and the
neuron; unfused, BN writes a full-size tensor that the LIF kernel reads again, and in backward
the LIF's input gradient is written, then read twice more by BN's backward (its two
per-channel reductions, then its input gradient). Here the LIF kernel (``lif_cpu.cpp``, the
``masnn_bnlif_*`` entries) reads the conv output ``y`` and forms its input current
``X = y * scale[c] + shift[c]`` itself (``scale = gamma / sqrt(var + eps)``, ``shift = beta -
mean * scale``: batch statistics in training, running statistics in eval, as
``nn.BatchNorm2d``). Its backward, per block of neurons, also sums ``dL/dX`` and ``dL/dX * (y -
mean)`` per channel, so BN's backward is a per-channel formula plus one elementwise pass (in
place) over the LIF's gradient buffer.

Saved for backward: ``y`` (which BN saves anyway) and the per-channel vectors; the normalised
tensor is never allocated. The caller (:func:`masnn.layers.bn_lif.fused_bn_lif`) decides when
this is exact (no hooks, no gate between BN and the neuron, ...) and updates BN's running
statistics from the returned batch statistics.

Numerics: the batch statistics are summed in double per ``H x W`` plane by the kernel
(:func:`batch_stats`; BN's own kernel accumulates in another order), so the current ``X``
equals BN's output to float rounding, not bit for bit; spikes are identical away from
threshold, gradients equal up to rounding and summation order.

The same library's BatchNorm + AvgPool passes (:func:`bn_pool_stats`, :func:`bn_pool_grad_sums`,
:func:`bn_pool_input_grad`) and tiling average pool (:func:`avg_pool`) are wrapped here too, for
:mod:`masnn.layers.pool`.
"""

from __future__ import annotations

import ctypes
from typing import Any, NamedTuple

import torch
from torch import Tensor

from masnn.neurons.backends import NotSupportedByBackend, reference_forced, refuse_double_backward
from masnn.neurons.backends.auto import fused_backend
from masnn.neurons.backends.cpp import CParams, make_plan
from masnn.neurons.backends.kernel_build import dtype_suffix as _suffix
from masnn.neurons.backends.kernel_build import load_library
from masnn.neurons.backends.kernel_build import ptr as _ptr
from masnn.neurons.functional import LIFParams
from masnn.neurons.surrogate import Surrogate


class BNArgs(NamedTuple):
    """The BatchNorm of a fused call (``nn.BatchNorm2d``'s parameters and buffers).

    ``batch_stats``: normalise with the batch's statistics (training, or no running statistics);
    else with ``running_mean`` / ``running_var``.
    """

    weight: Tensor | None
    bias: Tensor | None
    eps: float
    batch_stats: bool
    running_mean: Tensor | None
    running_var: Tensor | None


def batch_stats(y: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and biased variance of contiguous ``y (T, B, C, H, W)`` over all but
    ``C``: each ``H x W`` plane's mean and squared deviations in double (the kernel), combined
    per channel by Chan et al.'s formula (planes in a fixed order: deterministic)."""
    lib = load_library()
    T, B, C = y.shape[:3]
    hw = y[0, 0, 0].numel()
    mean_p = torch.empty(T * B * C, dtype=torch.float64)
    m2_p = torch.empty(T * B * C, dtype=torch.float64)
    getattr(lib, f"masnn_bn_plane_stats_{_suffix(y.dtype)}")(
        _ptr(y), _ptr(mean_p), _ptr(m2_p), T * B * C, hw, torch.get_num_threads()
    )
    return _combine_planes(mean_p.view(T * B, C), m2_p.view(T * B, C), hw, y.dtype)


def _combine_planes(
    mean_p: Tensor, m2_p: Tensor, hw: int, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Per-channel mean and biased variance from ``(planes, C)`` plane means and squared
    deviations of ``hw`` values each (Chan et al.; planes summed in a fixed order)."""
    mean = mean_p.mean(0)
    m2 = m2_p.sum(0) + ((mean_p - mean) ** 2).sum(0) * hw
    return mean.to(dtype), (m2 / (mean_p.shape[0] * hw)).to(dtype)


def bn_pool_stats(y: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(avg_pool2d(y, k), mean, var)`` of contiguous ``y (N, C, H, W)`` (``H``, ``W``
    multiples of ``k``) in one read (the kernel): the window means and BatchNorm's per-channel
    batch mean and biased variance (as :func:`batch_stats`)."""
    lib = load_library()
    n, c, h, w = y.shape
    pooled = torch.empty(n, c, h // k, w // k, dtype=y.dtype)
    mean_p = torch.empty(n * c, dtype=torch.float64)
    m2_p = torch.empty(n * c, dtype=torch.float64)
    getattr(lib, f"masnn_bn_pool_stats_{_suffix(y.dtype)}")(
        _ptr(y), _ptr(pooled), _ptr(mean_p), _ptr(m2_p), n * c, h, w, k, torch.get_num_threads()
    )
    mean, var = _combine_planes(mean_p.view(n, c), m2_p.view(n, c), h * w, y.dtype)
    return pooled, mean, var


def avg_pool(y: Tensor, k: int) -> Tensor:
    """``avg_pool2d(y, k)`` (kernel = stride ``k``, no padding, floor mode) of contiguous ``y
    (..., H, W)`` in the kernel: the same arithmetic, bit for bit, in one read."""
    lib = load_library()
    h, w = y.shape[-2:]
    pooled = torch.empty(*y.shape[:-2], h // k, w // k, dtype=y.dtype)
    getattr(lib, f"masnn_avg_pool_{_suffix(y.dtype)}")(
        _ptr(y), _ptr(pooled), y.numel() // (h * w), h, w, k, torch.get_num_threads()
    )
    return pooled


def bn_pool_grad_sums(g: Tensor, y: Tensor, mean: Tensor, k: int) -> Tensor:
    """Per channel, in double: the sum over ``(N, H/k, W/k)`` of ``g * (avg_pool2d(y, k) -
    mean)`` (the kernel; the window means recomputed from contiguous ``y (N, C, H, W)`` as
    :func:`bn_pool_stats` computed them; planes summed in a fixed order)."""
    lib = load_library()
    n, c, h, w = y.shape
    part = torch.empty(n * c, dtype=torch.float64)
    g, mean = g.contiguous(), mean.contiguous()  # alive during the call
    getattr(lib, f"masnn_bn_pool_grad_sums_{_suffix(y.dtype)}")(
        _ptr(g), _ptr(y), _ptr(mean), _ptr(part), n * c, c, h, w, k, torch.get_num_threads()
    )
    return part.view(n, c).sum(0)


def bn_pool_input_grad(
    g: Tensor, y: Tensor, ak: Tensor, c0: Tensor, nb: Tensor, k: int, inplace: bool = False
) -> Tensor:
    """The fused BN + AvgPool's input gradient ``(c0 + spread(g) * ak) + y * nb`` per channel
    (the kernel; ``g`` the pooled gradient, ``y (N, C, H, W)`` contiguous). ``inplace``: write
    it into ``y`` (which the caller gives up) instead of a new tensor."""
    lib = load_library()
    n, c, h, w = y.shape
    g_y = y if inplace else torch.empty_like(y)
    g, ak, c0, nb = g.contiguous(), ak.contiguous(), c0.contiguous(), nb.contiguous()  # alive
    getattr(lib, f"masnn_bn_pool_input_grad_{_suffix(y.dtype)}")(
        _ptr(g), _ptr(y), _ptr(g_y), _ptr(ak), _ptr(c0), _ptr(nb), n * c, c, h, w, k,
        torch.get_num_threads(),
    )  # fmt: skip
    return g_y


def _affine(y: Tensor, bn: BNArgs) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """``(scale, shift, mean, invstd, var)`` per channel (``var``: biased batch variance, or
    ``None`` with running statistics), computed without recording a graph."""
    with torch.no_grad():
        if bn.batch_stats:
            mean, var = batch_stats(y)
            stat_var: Tensor | None = var
        else:
            assert bn.running_mean is not None and bn.running_var is not None
            mean, var, stat_var = bn.running_mean.to(y.dtype), bn.running_var.to(y.dtype), None
        invstd = torch.rsqrt(var + bn.eps)
        # ATen's CPU batch_norm: alpha = invstd * weight, beta = bias - mean * alpha
        scale = invstd if bn.weight is None else invstd * bn.weight.detach()
        shift = -(mean * scale) if bn.bias is None else bn.bias.detach() - mean * scale
    return scale.contiguous(), shift.contiguous(), mean.contiguous(), invstd, stat_var


def _forward(y: Tensor, v0: Tensor | None, scale: Tensor, shift: Tensor,
             scalars: dict[str, Any]) -> tuple[Tensor, Tensor]:  # fmt: skip
    lib = load_library()
    T, B, C = y.shape[:3]
    hw = y[0, 0, 0].numel()
    N = B * C * hw
    spikes = torch.empty_like(y)
    v_last = torch.empty(y.shape[1:], dtype=y.dtype)
    fn = getattr(lib, f"masnn_bnlif_forward_{_suffix(y.dtype)}")
    fn(_ptr(y), _ptr(scale), _ptr(shift), C, hw, _ptr(v0), _ptr(spikes), _ptr(v_last), T, N,
       ctypes.byref(CParams(**scalars)), torch.get_num_threads())  # fmt: skip
    return spikes, v_last


class _FusedBNLIF(torch.autograd.Function):
    """``(y (T, B, C, H, W), weight, bias, v0, leak, gain) -> (spikes, v_last, mean, var)``."""

    @staticmethod
    def forward(ctx: Any, y: Tensor, weight: Tensor | None, bias: Tensor | None,
                v0: Tensor | None, leak: Tensor | None, gain: Tensor | None,
                scalars: dict[str, Any], bn: BNArgs) -> Any:  # fmt: skip
        scale, shift, mean, invstd, var = _affine(y, bn)
        spikes, v_last = _forward(y, v0, scale, shift, scalars)
        ctx.scalars = scalars
        ctx.batch_stats = bn.batch_stats
        ctx.has_v0 = v0 is not None
        ctx.save_for_backward(y, v0, scale, shift, mean, invstd)
        ctx.set_materialize_grads(False)
        if var is None:
            return spikes, v_last, None, None
        ctx.mark_non_differentiable(mean, var)
        return spikes, v_last, mean, var

    @staticmethod
    def backward(ctx: Any, g_spikes: Tensor | None, g_vlast: Tensor | None, *_stats: Any) -> Any:
        refuse_double_backward("the fused BatchNorm + LIF kernel")
        y, v0, scale, shift, mean, invstd = ctx.saved_tensors
        need_y, need_w, need_b, need_v0, need_leak, need_gain = ctx.needs_input_grad[:6]
        T, B, C = y.shape[:3]
        hw = y[0, 0, 0].numel()
        N = B * C * hw
        lib = load_library()
        nblocks = lib.masnn_lif_blocks(N, hw)
        g_x = torch.empty_like(y)
        g_v0 = torch.empty(y.shape[1:], dtype=y.dtype) if need_v0 and ctx.has_v0 else None
        p_leak = torch.empty(nblocks, dtype=torch.float64) if need_leak else None
        p_gain = torch.empty(nblocks, dtype=torch.float64) if need_gain else None
        p_g = torch.empty(nblocks, dtype=torch.float64)
        p_gy = torch.empty(nblocks, dtype=torch.float64)
        gs = torch.zeros_like(y) if g_spikes is None else g_spikes.contiguous()
        gv = torch.zeros(y.shape[1:], dtype=y.dtype) if g_vlast is None else g_vlast.contiguous()
        sfx = _suffix(y.dtype)
        threads = torch.get_num_threads()
        getattr(lib, f"masnn_bnlif_backward_{sfx}")(
            _ptr(gs), _ptr(gv), _ptr(y), _ptr(scale), _ptr(shift), _ptr(mean), C, hw, _ptr(v0),
            _ptr(g_x), _ptr(g_v0), _ptr(p_leak), _ptr(p_gain), _ptr(p_g), _ptr(p_gy), T, N,
            ctypes.byref(CParams(**ctx.scalars)), threads,
        )  # fmt: skip
        # per-channel sums, blocks in a fixed order (deterministic): blocks are plane-major
        sum_g = p_g.view(B, C, -1).sum((0, 2))
        sum_gxhat = p_gy.view(B, C, -1).sum((0, 2)) * invstd.double()  # sum dL/dX * x_hat
        g_y = None
        if need_y:
            m = T * B * hw
            a = scale
            if ctx.batch_stats:  # dL/dy = a (g - sum_g / m - x_hat sum_gxhat / m)
                d = (a.double() * sum_g / m).to(y.dtype)
                b = (a.double() * invstd.double() * sum_gxhat / m).to(y.dtype)
            else:  # running statistics are constants: dL/dy = a g
                d = b = torch.zeros_like(a)
            getattr(lib, f"masnn_bn_input_grad_{sfx}")(
                _ptr(g_x), _ptr(y), _ptr(a), _ptr(d), _ptr(b), _ptr(mean), T * B * C, C, hw,
                threads,
            )  # fmt: skip
            g_y = g_x
        g_w = sum_gxhat.to(y.dtype) if need_w else None
        g_b = sum_g.to(y.dtype) if need_b else None
        g_leak = None if p_leak is None else p_leak.sum().to(y.dtype)
        g_gain = None if p_gain is None else p_gain.sum().to(y.dtype)
        return g_y, g_w, g_b, g_v0, g_leak, g_gain, None, None


def lif_bn_cpp(
    y_seq: Tensor,
    v0: Tensor | None,
    params: LIFParams,
    surrogate: Surrogate,
    bn: BNArgs,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """``lif_multistep(BN(y_seq), v0, params, surrogate)`` in the fused CPU kernel.

    Args:
        y_seq: ``(T, B, C, H, W)`` float32/float64 CPU tensor (BN's input).
        v0: ``(B, C, H, W)`` initial membrane or ``None``.
        params: the neuron's :class:`~masnn.neurons.functional.LIFParams`.
        surrogate: its surrogate.
        bn: the BatchNorm (:class:`BNArgs`).

    Returns:
        ``(spikes, v_last, mean, var)``: the LIF's outputs and, with batch statistics, the
        batch's per-channel mean and biased variance (for the running-statistics update; else
        ``None``).

    Raises:
        NotSupportedByBackend: a configuration the kernel does not cover.
        BuildError: the kernel could not be compiled or loaded.
    """
    if y_seq.device.type != "cpu" or y_seq.dim() != 5:
        raise NotSupportedByBackend("fused BN + LIF: a (T, B, C, H, W) CPU tensor only")
    plan = make_plan(y_seq, v0, params, surrogate, None)
    load_library()
    y = y_seq.contiguous()
    v0c = None if v0 is None else v0.contiguous()
    tensors = [t for t in (y, bn.weight, bn.bias, v0c, plan.leak, plan.gain) if t is not None]
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        spikes, v_last, mean, var = _FusedBNLIF.apply(
            y, bn.weight, bn.bias, v0c, plan.leak, plan.gain, plan.scalars, bn
        )
        return spikes, v_last, mean, var
    scale, shift, mean, _, var = _affine(y, bn)
    spikes, v_last = _forward(y, v0c, scale, shift, plan.scalars)
    return spikes, v_last, (mean if var is not None else None), var


#: Backends whose CPU kernel runs BN + LIF fused: ``"cpp"``, and ``"auto"`` where it would pick it.
FUSED_BN_BACKENDS = ("auto", "cpp")


def bn_lif_unsupported(backend: str, y_seq: Tensor) -> str | None:
    """Why the neuron backend ``backend`` cannot take ``y_seq`` fused with BN (``None``: it can).

    ``"auto"`` fuses where it would run the ``"cpp"`` kernel itself (a CPU tensor, the kernel
    built, not tracing or compiling, outside :func:`~masnn.neurons.backends.reference_only`).
    """
    if backend not in FUSED_BN_BACKENDS:
        return f"neuron backend {backend!r} has no fused BatchNorm form"
    if y_seq.device.type != "cpu":
        return f"the fused BatchNorm + LIF kernel runs on CPU tensors, got {y_seq.device}"
    if backend == "auto":
        if torch.compiler.is_compiling() or torch.jit.is_tracing() or reference_forced():
            return "the reference is forced (tracing, compiling or reference_only())"
        if fused_backend("cpu") is None:
            return "the fused LIF kernel is unavailable"
    return None
