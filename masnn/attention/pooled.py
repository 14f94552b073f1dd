r"""Fused pooled attention for CPU tensors: TA, and CA / SA pooled over the window.

The sequence-level gates (:class:`~masnn.attention.composite.MultiDimAttention`: the ``code``
placement's CA / SA, TA at ``conv_post`` in both placements) read and write the whole
``(T, B, C, H, W)`` input current several times in the reference: a mean and a max per gate,
one product per gate, the ReLU, and in the backward the max pools' masks, the products'
gradients and their sums. Here (``pooled_cpu.cpp``, compiled on first use like the fused LIF):

* forward: one pass for the per-``(t, b, c)`` sums and maxima of ``X`` over ``H, W`` (TA's
  pools and CA's pools of ``a * X`` both come from them: ``a > 0`` and rounding is monotone, so
  ``max(a * X) = a * max(X)`` exactly), one pass for SA's pools over ``T, C`` of
  ``g * (a * X)``, and one pass writing ``relu(((X * a) * g) * s)`` in the reference's order;
* backward: a hand-written :class:`torch.autograd.Function` with four passes that recompute
  the products from ``X`` and the output gradient: ``ds``, ``dg``, ``da`` (each with the tie
  count of its max pool) and ``dX``.

The gates' own small layers (the shared MLPs, the ``k x k`` conv, the sigmoids) run in torch on
the pooled tensors, through the gate modules' own submodules, and are differentiated by
autograd between the passes. A max pool's gradient goes to every element equal to the pooled
maximum, divided by their count, as torch's ``amax``; the comparisons are made on the same
products the reference compares.

Covered: :class:`TemporalAttention`, and :class:`ChannelAttention` / :class:`SpatialAttention`
built with ``per_step=False``, alone or chained T -> C -> S, with or without the ReLU, float32
or float64, any strides (the input is made contiguous). Everything else runs the reference
(:func:`fused_pooled_attention` returns ``None``): a CUDA tensor, per-step gates, ECA / SimAM, a
subclass or a replaced sigmoid, hooks on a gate or its submodules, tracing or compiling, a
``torch.func`` transform (``vmap``, ``grad``). A second derivative (``create_graph=True``) is
taken through the reference, recomputed from the saved input.

Numerics: the pools are summed in another order than torch's kernels, so the gates (and through
them the output) can differ from the reference by float rounding; the products are the
reference's, in its order (tests/attention/test_pooled_fused.py).
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from masnn.attention.channel import ChannelAttention
from masnn.attention.spatial import SpatialAttention
from masnn.attention.temporal import TemporalAttention
from masnn.neurons.backends.kernel_build import LOGGED, BuildError, load_shared, log_once
from masnn.neurons.backends.kernel_build import dtype_suffix as _suffix
from masnn.neurons.backends.kernel_build import ptr as _ptr
from masnn.neurons.backends.membrane import has_hooks

SOURCE = Path(__file__).with_name("pooled_cpu.cpp")
_log = logging.getLogger("masnn.attention")


class _Dims(ctypes.Structure):
    _fields_ = [
        ("T", ctypes.c_int64),
        ("B", ctypes.c_int64),
        ("C", ctypes.c_int64),
        ("HW", ctypes.c_int64),
        ("ta", ctypes.c_int32),
        ("ca", ctypes.c_int32),
        ("sa", ctypes.c_int32),
        ("relu", ctypes.c_int32),
    ]


class _Terms(ctypes.Structure):
    """The pools' incoming gradients (``Terms`` in ``pooled_cpu.cpp``)."""

    _fields_ = [
        (name, ctypes.c_void_p)
        for name in ("mxs", "das", "rms", "mxc", "dac", "rmc", "mxt", "dat", "rmt")
    ]


@lru_cache(maxsize=1)
def load_pooled_library() -> ctypes.CDLL:
    """Compile (first use) or reuse the cached kernel; raises ``BuildError``."""
    lib = load_shared("masnn_pooled", (SOURCE,), "the fused pooled-attention kernel")
    p, i32 = ctypes.c_void_p, ctypes.c_int
    for dt in ("f32", "f64"):
        st = getattr(lib, f"masnn_pooled_stats_{dt}")
        st.restype = None
        st.argtypes = [p] * 5 + [i32]
        ps = getattr(lib, f"masnn_pooled_pass_{dt}")
        ps.restype = None
        ps.argtypes = [i32] + [p] * 10 + [i32]
    return lib


def unsupported(
    x: Tensor, ta: nn.Module | None, ca: nn.Module | None, sa: nn.Module | None
) -> str | None:
    """Why the fused kernel cannot run these gates on ``x`` (``None``: it can)."""
    gates = [g for g in (ta, ca, sa) if g is not None]
    if not gates:
        return "no gate"
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting():
        return "tracing or compiling"
    if getattr(torch._C, "_are_functorch_transforms_active", lambda: False)():
        return "a torch.func transform"
    if x.device.type != "cpu":
        return f"a {x.device.type} tensor"
    if x.dtype not in (torch.float32, torch.float64):
        return f"dtype {x.dtype}"
    if ta is not None and type(ta) is not TemporalAttention:
        return f"temporal gate {type(ta).__name__}"
    if ca is not None and (type(ca) is not ChannelAttention or ca.per_step):
        return f"channel gate {type(ca).__name__}(per_step={getattr(ca, 'per_step', None)})"
    if sa is not None and (type(sa) is not SpatialAttention or sa.per_step):
        return f"spatial gate {type(sa).__name__}(per_step={getattr(sa, 'per_step', None)})"
    if any(type(getattr(g, "gate", None)) is not nn.Sigmoid for g in gates):
        return "a gate's sigmoid was replaced"
    if any(has_hooks(g) for g in gates):
        return "hooks on a gate"
    spatial = ca is not None or sa is not None
    if (spatial and x.dim() != 5) or x.dim() < 3 or x.numel() == 0:
        return f"input shape {tuple(x.shape)}"  # the reference raises its own error
    if ta is not None and x.shape[0] != ta.timesteps:
        return "T differs from TA's"
    if ca is not None and x.shape[2] != ca.channels:
        return "C differs from CA's"
    return None


def _keep(t: Tensor) -> Tensor:
    return t


class _Gates:
    """The gate modules of one call, the kernel's sizes, and the small graphs (gate values
    from leaf pools) that the backward differentiates."""

    def __init__(
        self,
        x: Tensor,
        ta: TemporalAttention | None,
        ca: ChannelAttention | None,
        sa: SpatialAttention | None,
        relu: bool,
    ) -> None:
        self.ta, self.ca, self.sa, self.relu = ta, ca, sa, relu
        t, b = x.shape[:2]
        spatial = ca is not None or sa is not None
        c = x.shape[2] if spatial else 1
        hw = x.numel() // (t * b * c)
        self.shape = (t, b, c, hw)
        self.d = _Dims(t, b, c, hw, ta is not None, ca is not None, sa is not None, relu)
        self.hw2 = tuple(x.shape[3:]) if spatial else ()
        self.a: Tensor | None = None  # (T, B) TA gate
        self.g: Tensor | None = None  # (B, C) CA gate
        self.s: Tensor | None = None  # (B, HW) SA gate
        # per gate: (pooled leaves (avg, max), gate output with its small graph, max values)
        self.small: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
        self.cnt_t: Tensor | None = None

        # each gate's weights as they are now (under torch.func.functional_call, the
        # substituted tensors), in the order the Function receives them
        self.weights = {
            k: [] if g is None else list(g.parameters())
            for k, g in (("t", ta), ("c", ca), ("s", sa))
        }

    def params(self) -> list[Tensor]:
        return [p for k in ("t", "c", "s") for p in self.weights[k]]

    def _small(self, key: str, avg: Tensor, mx: Tensor, grad: bool) -> Tensor:
        """The gate values from the pools, in torch (the reference's small layers)."""
        # identity saved-tensor hooks: the small graph keeps its own tensors even under an
        # outer hook (activation checkpointing must not recompute it from inside our backward)
        with torch.set_grad_enabled(grad), torch.autograd.graph.saved_tensors_hooks(_keep, _keep):
            if grad:
                avg, mx = avg.requires_grad_(), mx.requires_grad_()
            if key == "t":
                assert self.ta is not None
                out = self.ta.frame_weights(avg, mx)  # (T, B): the reference's own code
            elif key == "c":
                assert self.ca is not None
                out = self.ca.gate(self.ca.mlp(avg) + self.ca.mlp(mx))  # (B, C)
            else:
                assert self.sa is not None
                b, hw = avg.shape
                pooled = torch.cat([avg, mx], dim=1).view(b, 2, *self.hw2)  # (B, 2, H, W)
                out = self.sa.gate(self.sa.conv(pooled)).reshape(b, hw)
        if grad:
            self.small[key] = (avg, mx, out)
        return out.detach().contiguous()

    def forward(self, x: Tensor, grad: bool) -> Tensor:
        """The fused forward on contiguous ``x``; with ``grad``, keep what backward needs."""
        lib = load_pooled_library()
        sfx, nth = _suffix(x.dtype), torch.get_num_threads()
        t, b, c, hw = self.shape
        if self.ta is not None or self.ca is not None:
            sx = x.new_empty((t, b, c))
            mx = x.new_empty((t, b, c))
            kx = x.new_empty((t, b, c)) if grad and self.ta is not None else None
            getattr(lib, f"masnn_pooled_stats_{sfx}")(
                _ptr(x), _ptr(sx), _ptr(mx), _ptr(kx), ctypes.byref(self.d), nth
            )
            if self.ta is not None:
                mx_t = mx.amax(dim=2)  # (T, B)
                self.a = self._small("t", sx.sum(dim=2) / (c * hw), mx_t, grad)
                self.mx_t = mx_t
                if kx is not None:
                    self.cnt_t = (kx * (mx == mx_t[:, :, None])).sum(dim=2)
            if self.ca is not None:
                a3 = None if self.a is None else self.a[:, :, None]
                s1 = sx if a3 is None else a3 * sx  # sums of a * X over H, W
                m1 = mx if a3 is None else a3 * mx  # exactly max(a * X) over H, W
                self.mx_c = m1.amax(dim=0)  # (B, C)
                self.g = self._small("c", s1.sum(dim=0) / (t * hw), self.mx_c, grad)
        if self.sa is not None:
            psum = x.new_empty((t, b, hw))
            pmax = x.new_empty((t, b, hw))
            self._pass(lib, sfx, 5, x, None, out1=psum, out2=pmax)
            self.mx_s = pmax.amax(dim=0)  # (B, HW)
            self.s = self._small("s", psum.sum(dim=0) / (t * c), self.mx_s, grad)
        out = torch.empty_like(x)
        self._pass(lib, sfx, 0, x, None, out=out)
        return out

    def _pass(self, lib: ctypes.CDLL, sfx: str, stage: int, x: Tensor, go: Tensor | None,
              terms: _Terms | None = None, out: Tensor | None = None,
              out1: Tensor | None = None, out2: Tensor | None = None) -> None:  # fmt: skip
        getattr(lib, f"masnn_pooled_pass_{sfx}")(
            stage, _ptr(x), _ptr(go), _ptr(self.a), _ptr(self.g), _ptr(self.s),
            None if terms is None else ctypes.byref(terms), _ptr(out), _ptr(out1), _ptr(out2),
            ctypes.byref(self.d), torch.get_num_threads(),
        )  # fmt: skip

    def _pool_grads(self, key: str, dgate: Tensor, need: dict[str, list[bool]],
                    grads: dict[str, list[Tensor | None]]) -> tuple[Tensor, Tensor]:  # fmt: skip
        """Through gate ``key``'s small layers: the pools' gradients; sets its weights'."""
        avg, mx, out = self.small[key]
        want = [p for p, n in zip(self.weights[key], need[key]) if n]
        # retain_graph: the outer graph may be run again (retain_graph=True there)
        res = torch.autograd.grad(
            out, [avg, mx, *want], dgate, retain_graph=True, allow_unused=True
        )
        it = iter(res[2:])
        grads[key] = [next(it) if n else None for n in need[key]]
        d_avg = torch.zeros_like(avg) if res[0] is None else res[0]
        d_mx = torch.zeros_like(mx) if res[1] is None else res[1]
        return d_avg, d_mx

    def backward(
        self, x: Tensor, go: Tensor, need_x: bool, need_w: list[bool]
    ) -> tuple[Tensor | None, list[Tensor | None]]:
        """``dX`` (if ``need_x``) and the gradients of the weights whose ``need_w`` is set (in
        :meth:`params` order; a saved tensor may not be the weight object itself, e.g. under
        activation checkpointing, so weights are matched by position) for ``dOut = go``."""
        lib = load_pooled_library()
        sfx = _suffix(x.dtype)
        t, b, c, hw = self.shape
        flags = iter(need_w)
        need = {k: [next(flags) for _ in self.weights[k]] for k in ("t", "c", "s")}
        grads: dict[str, list[Tensor | None]] = {k: [None] * len(v) for k, v in need.items()}

        def wants(key: str) -> bool:
            return any(need[key])

        # the deepest stage needed: 4 dX, 3 TA weights, 2 CA weights, 1 SA weights
        last = 4 if need_x else 3 if wants("t") else 2 if wants("c") else 1
        tm = _Terms()
        keep: list[Tensor] = []  # the tensors tm points into
        if self.sa is not None:
            ds_p, cs_p = x.new_empty((t, b, hw)), x.new_empty((t, b, hw))
            tm.mxs = self.mx_s.data_ptr()
            self._pass(lib, sfx, 1, x, go, tm, out1=ds_p, out2=cs_p)
            if last >= 2 or wants("s"):
                d_avg, d_mx = self._pool_grads("s", ds_p.sum(dim=0), need, grads)
                das = (d_avg / (t * c)).contiguous()
                rms = (d_mx / cs_p.sum(dim=0)).contiguous()
                keep += [das, rms]
                tm.das, tm.rms = das.data_ptr(), rms.data_ptr()
        if self.ca is not None and last >= 2:
            dg_p, cc_p = x.new_empty((t, b, c)), x.new_empty((t, b, c))
            mxc = self.mx_c.contiguous()
            tm.mxc = mxc.data_ptr()
            self._pass(lib, sfx, 2, x, go, tm, out1=dg_p, out2=cc_p)
            d_avg, d_mx = self._pool_grads("c", dg_p.sum(dim=0), need, grads)
            dac = (d_avg / (t * hw)).contiguous()
            rmc = (d_mx / cc_p.sum(dim=0)).contiguous()
            keep += [dac, rmc, mxc]
            tm.dac, tm.rmc = dac.data_ptr(), rmc.data_ptr()
        if self.ta is not None and last >= 3:
            da_p = x.new_empty((t, b, c))
            self._pass(lib, sfx, 3, x, go, tm, out1=da_p)
            d_avg, d_mx = self._pool_grads("t", da_p.sum(dim=2), need, grads)
            assert self.cnt_t is not None
            dat = (d_avg / (c * hw)).contiguous()
            rmt = (d_mx / self.cnt_t).contiguous()
            mxt = self.mx_t.contiguous()
            keep += [dat, rmt, mxt]
            tm.mxt, tm.dat, tm.rmt = mxt.data_ptr(), dat.data_ptr(), rmt.data_ptr()
        dx = None
        if need_x:
            dx = torch.empty_like(x)
            self._pass(lib, sfx, 4, x, go, tm, out1=dx)
        del keep
        return dx, [gp for k in ("t", "c", "s") for gp in grads[k]]


def reference_chain(x: Tensor, gates: Sequence[nn.Module | None], relu: nn.Module | None) -> Tensor:
    """The reference: each gate's own forward in T -> C -> S order, then the optional ReLU."""
    for gate in gates:
        if gate is not None:
            x = gate(x)
    return x if relu is None else relu(x)


class _FusedPooled(torch.autograd.Function):
    """``(gates, x, *weights) -> out``; the weights are the gate modules' parameters."""

    @staticmethod
    def forward(ctx: Any, gates: _Gates, x: Tensor, *params: Tensor) -> Tensor:
        xc = x.contiguous()
        out = gates.forward(xc, grad=True)
        ctx.gates = gates
        ctx.save_for_backward(x, *params)
        return out

    @staticmethod
    def backward(ctx: Any, go: Tensor) -> Any:
        x, *params = ctx.saved_tensors
        gates: _Gates = ctx.gates
        need_x, need = ctx.needs_input_grad[1], list(ctx.needs_input_grad[2:])
        if torch.is_grad_enabled():  # create_graph=True: a differentiable backward
            return (None, *_reference_backward(gates, x, params, go, need_x, need))
        dx, grads = gates.backward(x.detach().contiguous(), go.contiguous(), need_x, need)
        return (
            None,
            dx,
            *grads,
        )


def _reference_backward(
    gates: _Gates, x: Tensor, params: list[Tensor], go: Tensor, need_x: bool, need: list[bool]
) -> list[Tensor | None]:
    """The reference's gradients, recomputed with a graph (for double backward)."""
    relu = nn.ReLU() if gates.relu else None
    with torch.enable_grad():
        xi = x if x.requires_grad else x.detach().requires_grad_()
        y = reference_chain(xi, (gates.ta, gates.ca, gates.sa), relu)
        inputs = [xi] + [p for p, n in zip(params, need) if n]
        res = list(torch.autograd.grad(y, inputs, go, create_graph=True, allow_unused=True))
    dx = res.pop(0) if need_x else None
    return [dx] + [res.pop(0) if n else None for n in need]


def fused_pooled(
    x: Tensor,
    ta: nn.Module | None,
    ca: nn.Module | None,
    sa: nn.Module | None,
    relu: bool,
) -> Tensor:
    """The fused chain ``relu?(SA(CA(TA(x))))``; the caller checked :func:`unsupported`.

    Raises:
        BuildError: the kernel could not be compiled or loaded.
    """
    assert ta is None or isinstance(ta, TemporalAttention)
    assert ca is None or isinstance(ca, ChannelAttention)
    assert sa is None or isinstance(sa, SpatialAttention)
    load_pooled_library()
    gates = _Gates(x, ta, ca, sa, relu)
    params = gates.params()
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)):
        out: Tensor = _FusedPooled.apply(gates, x, *params)
        return out
    return gates.forward(x.contiguous(), grad=False)


_said = LOGGED  # the messages logged once (shared with the other fused kernels)
_build_failed = False


def fused_pooled_attention(
    x: Tensor,
    ta: nn.Module | None,
    ca: nn.Module | None,
    sa: nn.Module | None,
    relu: bool,
) -> Tensor | None:
    """The fused chain if it can run here, else ``None`` (the caller runs the reference).

    The reason a gate chain stays on the reference is logged once per reason (INFO; a kernel
    that fails to build: a WARNING, and the reference from then on).
    """
    global _build_failed
    reason = unsupported(x, ta, ca, sa)
    if reason is None:
        if _build_failed:
            return None
        try:
            return fused_pooled(x, ta, ca, sa, relu)
        except BuildError as exc:
            _build_failed = True  # not retried in this process
            _once(logging.WARNING, f"fused pooled-attention kernel unavailable ({exc}); "
                  "reference used")  # fmt: skip
            return None
    if reason != "no gate":
        _once(logging.INFO, f"pooled attention on the reference: {reason}")
    return None


def _once(level: int, msg: str) -> None:
    log_once(_log, level, msg)


__all__ = ["fused_pooled", "fused_pooled_attention", "load_pooled_library", "unsupported"]
