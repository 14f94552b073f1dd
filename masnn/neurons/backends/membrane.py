"""The fused CPU LIF with per-step membrane attention (CA / SA / CA -> SA on ``U[t]``).

The ``membrane`` location (paper Eq. 14) gates ``U[t] = charge(V[t-1], X[t])`` inside the
neuron recurrence, so it cannot be batched over ``T``. ``membrane_cpu.cpp`` runs the whole
``T`` loop per sample: charge, the channel gate (avg + max pool over ``H, W``, shared bias-free
MLP ``C -> h -> C`` with a ReLU, sigmoid), the spatial gate (mean + max over ``C``, ``k x k``
conv ``2 -> 1`` with zero padding ``k // 2``, no bias, sigmoid), fire and reset; and a
hand-written backward through ``T`` with the gradients of the input, the streamed state, the
learnable leak / input gain (PLIF) and every gate weight.

A gate takes part by describing itself: a module with a method ``fused_gate()`` returning a
:class:`FusedMembraneGate` (its weight tensors) or raising
:class:`~masnn.neurons.backends.NotSupportedByBackend` with the reason
(:class:`masnn.attention.composite.MembraneAttention` does this for exact CA / SA gates). The
neuron package never imports the attention package.

ECA (average pool, 1-D conv over channels, sigmoid) or SimAM (parameter-free, per element)
may take CA's place. Not fused (``NotSupportedByBackend``, so ``"auto"`` runs the
reference): a gate without a fused form (a plug-in, a subclass), any forward / backward hook on the gate or its
submodules (hooks must see every step), input that is not ``(T, B, C, H, W)``, gate weights
of another dtype, and everything the plain fused LIF does not cover (:mod:`.cpp`).

Numerics: the pools, the MLP and the conv are summed in a different order than torch's
kernels, so the membrane can differ from the reference by float rounding; spikes are identical
wherever the reference membrane stays away from threshold (tests/neurons/test_membrane_fused.py).
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from masnn.neurons.backends import NotSupportedByBackend, refuse_double_backward
from masnn.neurons.backends.cpp import CParams, check_shapes, make_plan
from masnn.neurons.backends.kernel_build import COMMON, load_shared
from masnn.neurons.backends.kernel_build import dtype_suffix as _suffix
from masnn.neurons.backends.kernel_build import ptr as _ptr
from masnn.neurons.backends.saved import consumable
from masnn.neurons.functional import LIFParams, MembraneGate
from masnn.neurons.surrogate import Surrogate

SOURCE = Path(__file__).with_name("membrane_cpu.cpp")


class FusedMembraneGate(NamedTuple):
    """What the fused kernel needs of a membrane gate: CA then SA, either may be absent.

    Attributes:
        ca: ``(W0 (h, C), W1 (C, h))`` of the bias-free MLP ``W1 relu(W0 .)``, or ``None``.
        sa: the ``(1, 2, k, k)`` weight of the bias-free ``k x k`` conv (odd ``k``), or ``None``.
        eca: instead of ``ca``: the ``(1, 1, k)`` weight of ECA's bias-free 1-D conv over
            channels (odd ``k``, zero padding ``k // 2``) on the ``H, W`` average, or ``None``.
        simam: instead of ``ca``: SimAM's ``lambda`` (a parameter-free per-element gate from
            each channel's ``H, W`` mean and variance), or ``None``.
    """

    ca: tuple[Tensor, Tensor] | None
    sa: Tensor | None
    eca: Tensor | None = None
    simam: float | None = None


class KernelDims(ctypes.Structure):
    """The kernel's sizes (``Dims`` in ``membrane_cpu.cpp``; see :func:`kernel_dims`)."""

    _fields_ = [
        ("T", ctypes.c_int64),
        ("B", ctypes.c_int64),
        ("C", ctypes.c_int64),
        ("H", ctypes.c_int64),
        ("W", ctypes.c_int64),
        ("hid", ctypes.c_int64),
        ("k", ctypes.c_int64),
        ("has_ca", ctypes.c_int32),
        ("has_sa", ctypes.c_int32),
        ("lam", ctypes.c_double),
    ]


class _Grads(ctypes.Structure):
    _fields_ = [
        ("grad_x", ctypes.c_void_p),
        ("grad_v0", ctypes.c_void_p),
        ("grad_w0", ctypes.c_void_p),
        ("grad_w1", ctypes.c_void_p),
        ("grad_wsa", ctypes.c_void_p),
        ("grad_leak", ctypes.c_void_p),
        ("grad_gain", ctypes.c_void_p),
    ]


@lru_cache(maxsize=1)
def load_membrane_library() -> ctypes.CDLL:
    """Compile (first use) or reuse the cached kernel; raises ``BuildError``."""
    lib = load_shared("masnn_membrane", (SOURCE, COMMON), "the fused membrane-attention kernel")
    p, i32 = ctypes.c_void_p, ctypes.c_int
    lib.masnn_membrane_stat_size.restype = ctypes.c_int64
    lib.masnn_membrane_stat_size.argtypes = [p]
    for dt in ("f32", "f64"):
        fwd = getattr(lib, f"masnn_membrane_forward_{dt}")
        fwd.restype = None
        fwd.argtypes = [p] * 11 + [i32]
        bwd = getattr(lib, f"masnn_membrane_backward_{dt}")
        bwd.restype = None
        bwd.argtypes = [p] * 12 + [i32]
    return lib


def has_hooks(gate: nn.Module) -> bool:
    """Whether a forward / backward hook (global, or on ``gate`` or a submodule) is set."""
    from torch.nn.modules import module as m

    if m._global_forward_hooks or m._global_forward_pre_hooks or m._global_backward_hooks:
        return True
    if getattr(m, "_global_backward_pre_hooks", None):
        return True
    return any(
        mod._forward_hooks
        or mod._forward_pre_hooks
        or mod._backward_hooks
        or getattr(mod, "_backward_pre_hooks", None)
        for mod in gate.modules()
    )


def describe_gate(gate: MembraneGate, x_seq: Tensor) -> FusedMembraneGate:
    """The gate's :class:`FusedMembraneGate`, checked against ``x_seq``; raises
    :class:`NotSupportedByBackend` (with the reason) when the kernel cannot run it."""
    describe = getattr(gate, "fused_gate", None)
    if describe is None or not isinstance(gate, nn.Module):
        raise NotSupportedByBackend(
            f"fused LIF: the membrane gate {type(gate).__name__} has no fused form "
            "(it runs inside the step loop of the reference)"
        )
    if has_hooks(gate):
        raise NotSupportedByBackend("fused LIF: the membrane gate has hooks (they see every step)")
    spec: FusedMembraneGate = describe()
    if x_seq.dim() != 5:
        raise NotSupportedByBackend("fused membrane gate: input must be (T, B, C, H, W)")
    c = x_seq.shape[2]
    tensors: list[Tensor] = []
    if spec.ca is not None:
        w0, w1 = spec.ca
        h = w0.shape[0]
        if w0.shape != (h, c) or w1.shape != (c, h):
            raise NotSupportedByBackend("fused membrane gate: CA weights do not match C")
        tensors += [w0, w1]
    if spec.simam is not None and (spec.ca is not None or spec.eca is not None):
        raise NotSupportedByBackend("fused membrane gate: one channel gate at a time")
    if spec.eca is not None:
        k = spec.eca.shape[-1]
        if spec.ca is not None or spec.eca.shape != (1, 1, k) or k % 2 == 0:
            raise NotSupportedByBackend("fused membrane gate: ECA weight must be (1, 1, k), odd k")
        tensors.append(spec.eca)
    if spec.sa is not None:
        k = spec.sa.shape[-1]
        if spec.sa.shape != (1, 2, k, k) or k % 2 == 0:
            raise NotSupportedByBackend(
                "fused membrane gate: SA weight must be (1, 2, k, k), odd k"
            )
        tensors.append(spec.sa)
    for t in tensors:
        if t.dtype != x_seq.dtype or t.device != x_seq.device:
            raise NotSupportedByBackend("fused membrane gate: weights must match the input dtype")
    return spec


def kernel_weights(spec: FusedMembraneGate) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """The kernel's ``(w0, w1, wsa)`` arguments: ``w0, w1`` are CA's MLP weights, or ECA's
    conv weight and ``None`` (SimAM and no channel gate: both ``None``)."""
    w0, w1 = (spec.eca, None) if spec.ca is None else spec.ca
    return w0, w1, spec.sa


def kernel_dims(
    shape: tuple[int, ...],
    w0: Tensor | None,
    w1: Tensor | None,
    wsa: Tensor | None,
    simam: float | None,
) -> KernelDims:
    """Kernel sizes for input ``shape`` ``(T, B, C, H, W)``; the channel gate is CA (``w0``,
    ``w1``), ECA (``w0`` only), SimAM (``simam`` = its lambda) or absent."""
    T, B, C, H, W = shape
    kind = 3 if simam is not None else 0 if w0 is None else (1 if w1 is not None else 2)
    hid = 0 if w0 is None else (w0.shape[0] if kind == 1 else w0.shape[-1])
    k = 0 if wsa is None else wsa.shape[-1]
    return KernelDims(T, B, C, H, W, hid, k, kind, int(wsa is not None), simam or 0.0)


def _forward(
    x: Tensor,
    v0: Tensor | None,
    w0: Tensor | None,
    w1: Tensor | None,
    wsa: Tensor | None,
    simam: float | None,
    cp: CParams,
    save: bool,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None, KernelDims]:
    lib = load_membrane_library()
    d = kernel_dims(tuple(x.shape), w0, w1, wsa, simam)
    spikes = torch.empty_like(x)
    v_last = torch.empty(x.shape[1:], dtype=x.dtype)
    a_save = torch.empty_like(x) if save else None
    st = lib.masnn_membrane_stat_size(ctypes.byref(d))
    stats = torch.empty(d.T * d.B * max(st, 1), dtype=x.dtype) if save else None
    fn = getattr(lib, f"masnn_membrane_forward_{_suffix(x.dtype)}")
    fn(_ptr(x), _ptr(v0), _ptr(spikes), _ptr(a_save), _ptr(stats), _ptr(v_last),
       _ptr(w0), _ptr(w1), _ptr(wsa), ctypes.byref(d), ctypes.byref(cp),
       torch.get_num_threads())  # fmt: skip
    return spikes, v_last, a_save, stats, d


def _c(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach().contiguous()


class _FusedMembraneLIF(torch.autograd.Function):
    """``(x (T, B, C, H, W), v0, leak, gain, W0, W1, Wsa) -> (spikes, v_last)``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, v0: Tensor | None, leak: Tensor | None,
                gain: Tensor | None, w0: Tensor | None, w1: Tensor | None,
                wsa: Tensor | None, simam: float | None,
                scalars: dict[str, Any]) -> Any:  # fmt: skip
        cp = CParams(**scalars)
        w0c, w1c, wsac = _c(w0), _c(w1), _c(wsa)
        spikes, v_last, a_save, stats, d = _forward(x, v0, w0c, w1c, wsac, simam, cp, save=True)
        ctx.cp, ctx.d = cp, d
        ctx.has_v0 = v0 is not None
        ctx.save_for_backward(
            a_save,
            stats,
            x if gain is not None and gain.requires_grad else None,
            v0 if leak is not None and leak.requires_grad else None,
            w0c,
            w1c,
            wsac,
        )
        ctx.set_materialize_grads(False)
        return spikes, v_last

    @staticmethod
    def backward(ctx: Any, g_spikes: Tensor | None, g_vlast: Tensor | None) -> Any:
        refuse_double_backward("the fused membrane-attention LIF")
        a_save, stats, x, v0, w0, w1, wsa = ctx.saved_tensors
        need = ctx.needs_input_grad
        dt = a_save.dtype
        # dL/dX[t] may go into A[t]'s own buffer: the kernel reads A[t] (and A[t-1]) before it
        # writes dL/dX[t], and nothing else holds A once backward runs without a retained graph
        inplace = need[0] and consumable(a_save)
        g_x = (a_save if inplace else torch.empty_like(a_save)) if need[0] else None
        g_v0 = torch.empty(a_save.shape[1:], dtype=dt) if need[1] and ctx.has_v0 else None
        g_leak = torch.zeros((), dtype=torch.float64) if need[2] else None
        g_gain = torch.zeros((), dtype=torch.float64) if need[3] else None
        g_w0 = torch.empty_like(w0) if need[4] and w0 is not None else None
        g_w1 = torch.empty_like(w1) if need[5] and w1 is not None else None
        g_wsa = torch.empty_like(wsa) if need[6] and wsa is not None else None
        gs = torch.zeros_like(a_save) if g_spikes is None else g_spikes.contiguous()
        gv = torch.zeros(a_save.shape[1:], dtype=dt) if g_vlast is None else g_vlast.contiguous()
        out = _Grads(_ptr(g_x), _ptr(g_v0), _ptr(g_w0), _ptr(g_w1), _ptr(g_wsa),
                     _ptr(g_leak), _ptr(g_gain))  # fmt: skip
        lib = load_membrane_library()
        fn = getattr(lib, f"masnn_membrane_backward_{_suffix(dt)}")
        fn(_ptr(gs), _ptr(gv), _ptr(a_save), _ptr(stats), _ptr(x), _ptr(v0), _ptr(w0),
           _ptr(w1), _ptr(wsa), ctypes.byref(ctx.d), ctypes.byref(ctx.cp), ctypes.byref(out),
           torch.get_num_threads())  # fmt: skip
        return (
            g_x,
            g_v0,
            None if g_leak is None else g_leak.to(dt),
            None if g_gain is None else g_gain.to(dt),
            g_w0,
            g_w1,
            g_wsa,
            None,
            None,
        )


def lif_membrane_cpp(
    x_seq: Tensor,
    v0: Tensor | None,
    params: LIFParams,
    surrogate: Surrogate,
    gate: MembraneGate,
    *,
    smooth: bool = False,
) -> tuple[Tensor, Tensor]:
    """The fused CPU LIF with a membrane gate; same contract as the reference.

    ``smooth=True`` (tests only) emits the surrogate's smooth primitive instead of the step, so
    that the hand-written backward can be checked by finite differences (``gradcheck``).

    Raises:
        NotSupportedByBackend: a configuration the kernel does not cover (module docstring).
        BuildError: the kernel could not be compiled or loaded.
    """
    if x_seq.device.type != "cpu":
        raise NotSupportedByBackend(f"backend 'cpp' runs on CPU tensors, got {x_seq.device}")
    check_shapes(x_seq, v0)
    spec = describe_gate(gate, x_seq)
    plan = make_plan(x_seq, v0, params, surrogate, None)
    if smooth:
        plan = plan._replace(scalars={**plan.scalars, "smooth": 1})
    load_membrane_library()
    w0, w1, wsa = kernel_weights(spec)
    x = x_seq.contiguous()
    v0c = None if v0 is None else v0.contiguous()
    tensors = [t for t in (x, v0c, plan.leak, plan.gain, w0, w1, wsa) if t is not None]
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        spikes, v_last = _FusedMembraneLIF.apply(
            x, v0c, plan.leak, plan.gain, w0, w1, wsa, spec.simam, plan.scalars
        )
    else:
        cp = CParams(**plan.scalars)
        spikes, v_last, _, _, _ = _forward(
            x, v0c, _c(w0), _c(w1), _c(wsa), spec.simam, cp, save=False
        )
    return spikes, v_last
