"""The ``"triton"`` neuron backend: the fused multi-step LIF as Triton kernels for CUDA tensors.

Same algorithm and contract as the CPU kernel (:mod:`masnn.neurons.backends.cpp`): one
program per block of neurons, one pass over ``T`` forward (spikes, last membrane, and ``U``
only when a gradient is needed), one reverse pass backward; learnable leak / gain gradients
are per-program partial sums added in a fixed order (deterministic). float32 only.

Numerics: the GPU may contract ``a * b + c`` into one fused multiply-add, so membranes can
differ from the reference in the last bit; spikes are identical wherever the reference
membrane stays away from threshold, gradients agree to float32 tolerance (``tests/neurons``,
run on CPU through Triton's interpreter, ``TRITON_INTERPRET=1``, and on a GPU by
``benchmarks/gpu_check``).

A membrane gate (CA / ECA / SimAM, then SA, at the ``membrane`` location) runs in the gated
kernels of :mod:`masnn.neurons.backends.triton_membrane`.

Triton is optional (``pip install triton``); without it this backend raises
:class:`~masnn.neurons.backends.NotSupportedByBackend` and ``"auto"`` uses the reference.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import torch
from torch import Tensor

from masnn.neurons.backends import NEURON_BACKENDS, NotSupportedByBackend, refuse_double_backward
from masnn.neurons.backends.cpp import make_plan, run_plan
from masnn.neurons.functional import LIFParams, MembraneGate
from masnn.neurons.surrogate import Surrogate

BLOCK = 256
_kernels: dict[str, Any] = {}


def interpreting() -> bool:
    """Triton's CPU interpreter is on (``TRITON_INTERPRET=1``): kernels accept CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_available() -> str | None:
    """``None`` when Triton kernels can run here, else the reason."""
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    try:
        _build()
    except Exception as exc:  # a broken install
        return f"triton import failed: {exc}"
    return None


def _build() -> dict[str, Any]:
    if _kernels:
        return _kernels
    import triton

    from masnn.neurons.backends import _triton_kernels as kern

    _kernels.update(fwd=kern.lif_fwd, bwd=kern.lif_bwd, triton=triton)
    return _kernels


def kernel_flags(sc: dict[str, Any]) -> dict[str, bool]:
    """The LIF step's constexpr flags of a plan's scalars (shared with the gated kernels)."""
    return dict(
        HARD=bool(sc["hard"]),
        STRICT=bool(sc["strict"]),
        HAS_LEAK=bool(sc["has_leak"]),
        HAS_GAIN=bool(sc["has_gain"]),
        HAS_DECAY=bool(sc["has_decay"]),
        HAS_VRESET=bool(sc["has_vreset"]),
    )


def kernel_scalars(sc: dict[str, Any]) -> tuple[float, ...]:
    """``(leak, v_rest, gain, v_th, decay, v_reset)`` of a plan's scalars."""
    return (sc["leak"], sc["v_rest"], sc["gain"], sc["v_th"], sc["decay"], sc["v_reset"])


def _forward(x2: Tensor, v0: Tensor | None, sc: dict[str, Any], save_u: bool):  # type: ignore[no-untyped-def]
    k = _build()
    T, N = x2.shape
    spikes = torch.empty_like(x2)
    v_last = torch.empty(N, dtype=x2.dtype, device=x2.device)
    u = torch.empty_like(x2) if save_u else spikes  # dummy pointer when not saved
    grid = (k["triton"].cdiv(N, BLOCK),)
    k["fwd"][grid](x2, x2 if v0 is None else v0, spikes, u, v_last, T, N, *kernel_scalars(sc),
                   HAS_V0=v0 is not None, SAVE_U=save_u, **kernel_flags(sc), BLOCK=BLOCK)  # fmt: skip
    return spikes, v_last, (u if save_u else None)


def _forward_only(x2: Tensor, v0: Tensor | None, sc: dict[str, Any]):  # type: ignore[no-untyped-def]
    spikes, v_last, _ = _forward(x2, v0, sc, save_u=False)
    return spikes, v_last


class _TritonLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x2: Tensor, v0: Tensor | None, leak: Tensor | None,
                gain: Tensor | None, sc: dict[str, Any]) -> Any:  # fmt: skip
        spikes, v_last, u = _forward(x2, v0, sc, save_u=True)
        ctx.sc, ctx.has_v0 = sc, v0 is not None
        ctx.save_for_backward(u, x2, v0)
        ctx.set_materialize_grads(False)
        return spikes, v_last

    @staticmethod
    def backward(ctx: Any, g_spikes: Tensor | None, g_vlast: Tensor | None) -> Any:
        refuse_double_backward("the fused 'triton' LIF")
        u, x2, v0 = ctx.saved_tensors
        need_x, need_v0, need_k, need_g = ctx.needs_input_grad[:4]
        kern = _build()
        T, N = u.shape
        nprog = kern["triton"].cdiv(N, BLOCK)
        g_x = torch.empty_like(u)
        need_v0 = bool(need_v0 and ctx.has_v0)
        g_v0 = torch.empty(N, dtype=u.dtype, device=u.device) if need_v0 else g_x
        pk = torch.empty(nprog, dtype=torch.float32, device=u.device) if need_k else g_x
        pg = torch.empty(nprog, dtype=torch.float32, device=u.device) if need_g else g_x
        gs = g_x if g_spikes is None else g_spikes.contiguous()
        gv = g_x if g_vlast is None else g_vlast.contiguous()
        sc = ctx.sc
        kern["bwd"][(nprog,)](
            gs, gv, u, x2, u if v0 is None else v0, g_x, g_v0, pk, pg,
            T, N, (T - 1) * N, *kernel_scalars(sc), sc["sg_param"],
            HAS_GS=g_spikes is not None, HAS_GVL=g_vlast is not None, HAS_V0=v0 is not None,
            NEED_V0=need_v0, NEED_K=bool(need_k), NEED_G=bool(need_g),
            DETACH=bool(sc["detach"]), SG=int(sc["surrogate"]), **kernel_flags(sc), BLOCK=BLOCK,
        )  # fmt: skip
        g_leak = pk.double().sum().to(u.dtype) if need_k else None
        g_gain = pg.double().sum().to(u.dtype) if need_g else None
        return (g_x if need_x else None), (g_v0 if need_v0 else None), g_leak, g_gain, None


def lif_triton(
    x_seq: Tensor,
    v0: Tensor | None,
    params: LIFParams,
    surrogate: Surrogate,
    gate: MembraneGate = None,
) -> tuple[Tensor, Tensor]:
    """The fused Triton multi-step LIF; same contract as :func:`~masnn.neurons.lif_multistep`.

    Raises:
        NotSupportedByBackend: Triton missing, a non-CUDA tensor (outside the interpreter), or a
            configuration the kernel does not cover.
    """
    if x_seq.device.type != "cuda" and not interpreting():
        raise NotSupportedByBackend(f"backend 'triton' runs on CUDA tensors, got {x_seq.device}")
    reason = triton_available()
    if reason:
        raise NotSupportedByBackend(f"backend 'triton': {reason}")
    if gate is not None:  # per-step membrane attention: the gated kernels
        from masnn.neurons.backends.triton_membrane import lif_membrane_triton

        return lif_membrane_triton(x_seq, v0, params, surrogate, gate)
    plan = make_plan(x_seq, v0, params, surrogate, gate, dtypes=(torch.float32,))
    return run_plan(x_seq, v0, plan, _forward_only, _TritonLIF)


NEURON_BACKENDS.add("triton", lif_triton)
