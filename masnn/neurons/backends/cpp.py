"""The ``"cpp"`` neuron backend: the fused multi-step LIF for CPU tensors.

Forward is one pass over ``T`` that writes the spikes and the last membrane; backward, per
block of neurons, recomputes the pre-reset membranes ``U[t]`` from the input into a buffer that
stays in cache (the forward's own arithmetic: bit for bit the forward's ``U``), then runs one
reverse pass over it (spikes, surrogate, the post-reset ``V[t-1]`` for a learnable leak).
Saved for backward: the input ``X`` only (and ``v0``); nothing of size ``(T, N)`` is allocated
for backward, so the forward pass writes only the spikes. The reference keeps about six tensors
of that size per step.

Supported: every preset and every registered surrogate (``rect``, ``sigmoid``, ``atan``),
float32/float64, any shape ``(T, B, ...)`` and strides, streamed state ``v0`` with its
gradient, a gradient on the returned last membrane, and a learnable scalar leak / input gain
(PLIF). A membrane gate that describes itself (CA / SA / CA -> SA at the ``membrane``
location) runs in the fused gated kernel of :mod:`masnn.neurons.backends.membrane`. Anything
else (another membrane gate, a tensor threshold, a non-CPU tensor, another dtype) raises
:class:`~masnn.neurons.backends.NotSupportedByBackend`.

Numerics: spikes and membranes equal the reference bit for bit (the kernel repeats its
operations in order, without fused multiply-adds); gradients equal it up to summation order.
"""

from __future__ import annotations

import ctypes
from typing import Any, NamedTuple

import torch
from torch import Tensor

from masnn.neurons.backends import NEURON_BACKENDS, NotSupportedByBackend, refuse_double_backward
from masnn.neurons.backends.kernel_build import dtype_suffix as _suffix
from masnn.neurons.backends.kernel_build import load_library
from masnn.neurons.backends.kernel_build import ptr as _ptr
from masnn.neurons.functional import LIFParams, MembraneGate
from masnn.neurons.surrogate import SURROGATES, Surrogate

#: Surrogate name -> kernel code (``surrogate_grad`` in ``lif_cpu.cpp``).
SURROGATE_CODES = {"rect": 0, "sigmoid": 1, "atan": 2}


class CParams(ctypes.Structure):
    _fields_ = [
        ("leak", ctypes.c_double),
        ("v_rest", ctypes.c_double),
        ("gain", ctypes.c_double),
        ("v_th", ctypes.c_double),
        ("decay", ctypes.c_double),
        ("v_reset", ctypes.c_double),
        ("hard", ctypes.c_int32),
        ("detach", ctypes.c_int32),
        ("strict", ctypes.c_int32),
        ("surrogate", ctypes.c_int32),
        ("sg_param", ctypes.c_double),
        ("has_leak", ctypes.c_int32),
        ("has_gain", ctypes.c_int32),
        ("has_decay", ctypes.c_int32),
        ("has_vreset", ctypes.c_int32),
        ("smooth", ctypes.c_int32),  # tests only, membrane kernel: spikes = the primitive
    ]


class Plan(NamedTuple):
    """A validated fused-LIF call: scalar parameters plus the (possibly learnable) leak/gain."""

    scalars: dict[str, Any]
    leak: Tensor | None  # 0-dim tensor (learnable leak) or None
    gain: Tensor | None  # 0-dim tensor (learnable input gain) or None


def _float_param(name: str, value: object) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.requires_grad:
            raise NotSupportedByBackend(f"fused LIF: {name} must be a number, got a tensor")
        return float(value)
    return float(value)  # type: ignore[arg-type]


def _scalar_or_tensor(name: str, value: object) -> tuple[float, Tensor | None]:
    if isinstance(value, Tensor):
        if value.dim() != 0:
            raise NotSupportedByBackend(f"fused LIF: {name} must be a scalar, got {value.shape}")
        return float(value.detach()), value
    return float(value), None  # type: ignore[arg-type]


def check_shapes(x_seq: Tensor, v0: Tensor | None) -> None:
    """The reference's argument errors, raised identically by every fused backend."""
    if x_seq.dim() < 2:
        raise ValueError(f"lif_multistep expects (T, B, ...) input, got shape {tuple(x_seq.shape)}")
    if v0 is not None and v0.shape != x_seq.shape[1:]:
        raise ValueError(f"v0 has shape {tuple(v0.shape)}, expected {tuple(x_seq.shape[1:])}")


def make_plan(
    x_seq: Tensor,
    v0: Tensor | None,
    params: LIFParams,
    surrogate: Surrogate,
    gate: MembraneGate,
    dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64),
) -> Plan:
    """Validate a call for a fused kernel; raises :class:`NotSupportedByBackend` otherwise."""
    check_shapes(x_seq, v0)
    if torch.jit.is_tracing():
        raise NotSupportedByBackend("fused LIF: opaque to torch.jit.trace (use the reference)")
    if gate is not None:
        raise NotSupportedByBackend("fused LIF: a membrane gate runs inside the step loop")
    if x_seq.dtype not in dtypes:
        raise NotSupportedByBackend(f"fused LIF: dtype {x_seq.dtype} (supported: {dtypes})")
    if x_seq.numel() == 0:
        raise NotSupportedByBackend("fused LIF: empty input")
    if v0 is not None and (v0.dtype != x_seq.dtype or v0.device != x_seq.device):
        raise NotSupportedByBackend("fused LIF: v0 must match the input's dtype and device")
    code = SURROGATE_CODES.get(surrogate.name)
    if code is None or surrogate.kind is not SURROGATES.get(surrogate.name):
        raise NotSupportedByBackend(f"fused LIF: surrogate {surrogate.name!r} has no kernel")
    leak, leak_t = _scalar_or_tensor("leak", params.leak)
    gain, gain_t = _scalar_or_tensor("input_gain", params.input_gain)
    hard = params.v_reset is not None
    v_reset = _float_param("v_reset", params.v_reset) if hard else 0.0
    decay = _float_param("decay", params.decay)
    scalars = dict(
        leak=leak,
        v_rest=_float_param("v_rest", params.v_rest),
        gain=gain,
        v_th=_float_param("v_th", params.v_th),
        decay=decay,
        v_reset=v_reset,
        hard=int(hard),
        detach=int(bool(params.detach_reset)),
        strict=int(bool(surrogate.strict)),
        surrogate=code,
        sg_param=float(surrogate.param),  # type: ignore[arg-type]
        # the reference skips these terms for the neutral python numbers (not for tensors)
        has_leak=int(leak_t is not None or leak != 0),
        has_gain=int(gain_t is not None or gain != 1),
        has_decay=int(decay != 1),
        has_vreset=int(hard and v_reset != 0),
        smooth=0,
    )
    return Plan(scalars, leak_t, gain_t)


def forward_kernel(
    x2: Tensor, v0: Tensor | None, cp: CParams, save_u: bool
) -> tuple[Tensor, Tensor, Tensor | None]:
    lib = load_library()
    T, N = x2.shape
    spikes = torch.empty_like(x2)
    v_last = torch.empty(N, dtype=x2.dtype)
    u = torch.empty_like(x2) if save_u else None
    fn = getattr(lib, f"masnn_lif_forward_{_suffix(x2.dtype)}")
    fn(_ptr(x2), _ptr(v0), _ptr(spikes), _ptr(u), _ptr(v_last), T, N, ctypes.byref(cp),
       torch.get_num_threads())  # fmt: skip
    return spikes, v_last, u


class _FusedLIF(torch.autograd.Function):
    """``(x (T, N), v0 (N) | None, leak 0-dim | None, gain 0-dim | None) -> (spikes, v_last)``."""

    @staticmethod
    def forward(ctx: Any, x2: Tensor, v0: Tensor | None, leak: Tensor | None,
                gain: Tensor | None, scalars: dict[str, Any]) -> Any:  # fmt: skip
        cp = CParams(**scalars)
        spikes, v_last, _ = forward_kernel(x2, v0, cp, save_u=False)
        ctx.cp = cp
        ctx.has_v0 = v0 is not None
        ctx.save_for_backward(x2, v0)  # backward recomputes U from them
        ctx.set_materialize_grads(False)
        return spikes, v_last

    @staticmethod
    def backward(ctx: Any, g_spikes: Tensor | None, g_vlast: Tensor | None) -> Any:
        refuse_double_backward("the fused 'cpp' LIF")
        x2, v0 = ctx.saved_tensors
        need_x, need_v0, need_leak, need_gain = ctx.needs_input_grad[:4]
        T, N = x2.shape
        lib = load_library()
        chunk = lib.masnn_lif_chunk()
        nchunks = (N + chunk - 1) // chunk
        g_x = torch.empty_like(x2)
        g_v0 = torch.empty(N, dtype=x2.dtype) if need_v0 and ctx.has_v0 else None
        p_leak = torch.empty(nchunks, dtype=torch.float64) if need_leak else None
        p_gain = torch.empty(nchunks, dtype=torch.float64) if need_gain else None
        # the kernel reads both gradients (no branches in its loop): zeros for an unused output
        gs = torch.zeros_like(x2) if g_spikes is None else g_spikes.contiguous()
        gv = torch.zeros(N, dtype=x2.dtype) if g_vlast is None else g_vlast.contiguous()
        fn = getattr(lib, f"masnn_lif_backward_{_suffix(x2.dtype)}")
        fn(_ptr(gs), _ptr(gv), _ptr(x2), _ptr(v0), _ptr(g_x), _ptr(g_v0),
           _ptr(p_leak), _ptr(p_gain), T, N, ctypes.byref(ctx.cp),
           torch.get_num_threads())  # fmt: skip
        g_leak = None if p_leak is None else p_leak.sum().to(x2.dtype)
        g_gain = None if p_gain is None else p_gain.sum().to(x2.dtype)
        return (g_x if need_x else None), g_v0, g_leak, g_gain, None


def run_plan(
    x_seq: Tensor, v0: Tensor | None, plan: Plan, forward_only: Any, autograd_fn: Any
) -> tuple[Tensor, Tensor]:
    """Flatten to ``(T, N)``, run the kernel (through autograd only when a gradient is needed),
    restore the shape. Shared by the CPU and the Triton backend."""
    shape = x_seq.shape
    x2 = x_seq.contiguous().view(shape[0], -1)
    v02 = None if v0 is None else v0.contiguous().view(-1)
    leak, gain = plan.leak, plan.gain
    tensors = [t for t in (x2, v02, leak, gain) if t is not None]
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        spikes, v_last = autograd_fn.apply(x2, v02, leak, gain, plan.scalars)
    else:
        spikes, v_last = forward_only(x2, v02, plan.scalars)
    return spikes.view(shape), v_last.view(shape[1:])


def _cpu_forward_only(x2: Tensor, v0: Tensor | None, scalars: dict[str, Any]):  # type: ignore[no-untyped-def]
    spikes, v_last, _ = forward_kernel(x2, v0, CParams(**scalars), save_u=False)
    return spikes, v_last


def lif_cpp(
    x_seq: Tensor,
    v0: Tensor | None,
    params: LIFParams,
    surrogate: Surrogate,
    gate: MembraneGate = None,
) -> tuple[Tensor, Tensor]:
    """The fused CPU multi-step LIF; same contract as :func:`~masnn.neurons.lif_multistep`.

    Raises:
        NotSupportedByBackend: a configuration the kernel does not cover (see the module).
        BuildError: the kernel could not be compiled or loaded.
    """
    if x_seq.device.type != "cpu":
        raise NotSupportedByBackend(f"backend 'cpp' runs on CPU tensors, got {x_seq.device}")
    if gate is not None:  # per-step membrane attention: the fused gated kernel
        from masnn.neurons.backends.membrane import lif_membrane_cpp

        return lif_membrane_cpp(x_seq, v0, params, surrogate, gate)
    plan = make_plan(x_seq, v0, params, surrogate, gate)
    load_library()
    return run_plan(x_seq, v0, plan, _cpu_forward_only, _FusedLIF)


NEURON_BACKENDS.add("cpp", lif_cpp)
