"""The Triton LIF with per-step membrane attention: the CUDA counterpart of :mod:`.membrane`.

Backend ``"triton"`` (and ``"auto"`` for a CUDA tensor) runs a membrane gate that describes
itself (:func:`~masnn.neurons.backends.membrane.describe_gate`: CA, ECA or SimAM, then SA; the
TA of ``tca`` / ``tsa`` / ``tcsa`` acts on the current before the neuron) here. Per step ``t``
(a Python loop over ``T``; the gates couple the whole sample, so steps cannot be batched):

* one row kernel per ``(b, c)`` finishes step ``t - 1`` (channel gate, SA gate, fire, reset)
  and charges step ``t`` (``A = charge(V, X[t])``), with the row's ``H, W`` mean and max (SimAM:
  mean and unbiased variance) in the same pass;
* CA: the bias-free MLP ``W1 relu(W0 .)`` on both pools and the sigmoid, ECA: the 1-D conv
  over channels and the sigmoid (torch ops on ``(B, C)``, the reference's own layers' ops);
* SA: one kernel for the channel mean and max of the channel-gated membrane, then the
  ``k x k`` conv ``2 -> 1`` and the sigmoid (torch ops on ``(B, 2, H, W)``).

Backward is hand-written, step by step in reverse: a pixel kernel (fire / reset backward,
``dL/dU``, SA gate and channel-max ties), torch's explicit conv input / weight gradients for
SA's conv, a row kernel (SA pools backward; SimAM's whole backward; the CA / ECA row sums),
the MLP / 1-D conv backward as torch matrix ops, a row kernel for ``dL/dA`` and the charge
backward. Gradients: input, ``v0``, a learnable leak / input gain (PLIF, per-row partial sums
reduced in a fixed order in float64), CA ``W0, W1``, the ECA conv, the SA conv. Max-pool
gradients are shared evenly between tied maxima, as torch's ``amax``.

Memory: saved for backward are the pre-gate membrane ``A`` (``T x B x C x H x W``, one tensor
the size of the input; the input itself only for a learnable input gain) and per step the gate
statistics (CA: ``2C`` pools, ``2h`` MLP pre-activations, ``C`` gate; ECA: ``2C``; SimAM:
``2C``; SA: ``2HW`` pools, ``HW`` gate): ``T B (3C + 2h + 3HW)`` values. The backward pass
allocates ``dL/dX`` (where it also keeps its per-step intermediates), one ``B x C x H x W``
state gradient and per-step vectors of the same small sizes; gated membranes, spikes and the
post-reset state are recomputed. Without a gradient only one ``B x C x H x W`` membrane
buffer is used.

Numerics: float32. Kernels run without contracted multiply-adds, the MLP and conv are torch's
ops on the same shapes as the reference's layers; the pools sum in another order, so membranes
can differ from the reference by float rounding: spikes are identical wherever the reference
membrane stays away from threshold, gradients agree to float32 tolerance
(``tests/neurons/test_triton_membrane.py``: Triton's CPU interpreter, or a GPU; the GPU run is
part of ``benchmarks/gpu_check``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.grad import conv1d_input, conv1d_weight, conv2d_input, conv2d_weight

from masnn.neurons.backends import NotSupportedByBackend, refuse_double_backward
from masnn.neurons.backends.cpp import check_shapes, make_plan
from masnn.neurons.backends.membrane import describe_gate, kernel_weights
from masnn.neurons.functional import LIFParams, MembraneGate
from masnn.neurons.surrogate import Surrogate

ROW_BLOCK = 1024  # most H*W values a row kernel handles per loop iteration
PIX_BLOCK = 256  # most pixels per program of the SA kernels
MIN_PIX_PROGRAMS = 512  # the SA kernels loop over C: smaller pixel blocks until this many
_kernels: dict[str, Any] = {}


def _k() -> Any:
    """The kernels module (imports Triton on first use)."""
    if not _kernels:
        from masnn.neurons.backends import _triton_membrane_kernels as kern

        _kernels["kern"] = kern
    return _kernels["kern"]


class Dims(NamedTuple):
    """Sizes of one call: ``ca`` 0 none, 1 CA, 2 ECA, 3 SimAM; ``sa`` the SA kernel size or 0."""

    T: int
    B: int
    C: int
    H: int
    W: int
    ca: int
    sa: int
    lam: float

    @property
    def hw(self) -> int:
        return self.H * self.W

    @property
    def bc(self) -> int:
        return self.B * self.C


def _pow2(n: int, cap: int) -> int:
    return min(cap, 1 << max(0, (n - 1).bit_length()))


class _Launch:
    """Kernel launches of one call: sizes, LIF scalars and flags, block sizes."""

    def __init__(self, d: Dims, sc: dict[str, Any]) -> None:
        from masnn.neurons.backends.triton import kernel_flags, kernel_scalars

        self.d, self.sc = d, sc
        self.k, self.vr, self.g, self.th, self.dec, self.vres = kernel_scalars(sc)
        self.flags = kernel_flags(sc)
        self.rb = _pow2(d.hw, ROW_BLOCK)
        pb = _pow2(d.hw, PIX_BLOCK)
        while pb > 32 and d.B * -(-d.hw // pb) < MIN_PIX_PROGRAMS:  # more, smaller programs
            pb //= 2
        self.pb = pb
        self.pgrid = (d.B, -(-d.hw // pb))
        # launch options (the interpreter ignores them): no contracted multiply-adds; warps
        # sized to the blocks
        self.opts = dict(enable_fp_fusion=False)
        self.row_opts = dict(self.opts, num_warps=min(4, max(1, self.rb // 256)))
        self.pix_opts = dict(self.opts, num_warps=min(4, max(1, pb // 64)))

    def lif(self) -> dict[str, Any]:
        """The LIF step's flags (``HARD``, ``STRICT``, ``HAS_LEAK`` ...), as the plain kernel's."""
        return dict(self.flags)

    def bwd(self) -> dict[str, Any]:
        sc = self.sc
        return dict(DETACH=bool(sc["detach"]), SG=int(sc["surrogate"]))


class _Saved(NamedTuple):
    """Per-step gate statistics, stacked over ``T`` (empty tensors for absent gates)."""

    st: Tensor  # (T, 2, B, C): [mean, max] (CA / ECA) or [mean, var] (SimAM)
    gc: Tensor  # (T, B, C): the channel gate (CA / ECA)
    za: Tensor  # (T, B, h): W0 mean (CA)
    zm: Tensor  # (T, B, h): W0 max (CA)
    pool: Tensor  # (T, B, 2, H, W): SA's channel mean and max
    gs: Tensor  # (T, B, H, W): the SA gate


def _forward(
    x: Tensor,
    v0: Tensor | None,
    w0: Tensor | None,
    w1: Tensor | None,
    wsa: Tensor | None,
    d: Dims,
    ln: _Launch,
    save: bool,
) -> tuple[Tensor, Tensor, Tensor, _Saved]:
    kern = _k()
    T, B, C, hw, bc = d.T, d.B, d.C, d.hw, d.bc
    dev, dt = x.device, x.dtype
    spikes = torch.empty_like(x)
    v_last = torch.empty(x.shape[1:], dtype=dt, device=dev)
    a_all = torch.empty_like(x) if save else torch.empty(x.shape[1:], dtype=dt, device=dev)
    hid = 0 if w0 is None or d.ca != 1 else w0.shape[0]
    st = torch.zeros(T, 2, B, C, dtype=dt, device=dev)
    sv = _Saved(
        st,
        torch.zeros(T, B, C, dtype=dt, device=dev) if d.ca in (1, 2) else st,
        torch.empty(T, B, hid, dtype=dt, device=dev),
        torch.empty(T, B, hid, dtype=dt, device=dev),
        torch.empty(T, B, 2, d.H, d.W, dtype=dt, device=dev) if d.sa else st,
        torch.empty(T, B, d.H, d.W, dtype=dt, device=dev) if d.sa else st,
    )
    r_eca = 0 if w0 is None else w0.shape[-1] // 2
    for t in range(T + 1):
        prev, cur = max(t - 1, 0), min(t, T - 1)
        a_in = a_all[prev] if save else a_all
        a_out = a_all[cur] if save else a_all
        kern.row_forward[(bc,)](
            a_in, a_out, x[cur], x if v0 is None else v0, spikes[prev], v_last, sv.gc[prev],
            st[prev], sv.gs[prev], st[cur], C, hw, bc, ln.k, ln.vr, ln.g, ln.th, ln.dec,
            ln.vres, d.lam, APPLY=t > 0, CHARGE=t < T, HAS_V0=v0 is not None, CA=d.ca,
            HAS_SA=bool(d.sa), **ln.lif(), BLOCK=ln.rb, **ln.row_opts,
        )  # fmt: skip
        if t == T:
            break
        if d.ca == 1:
            assert w0 is not None and w1 is not None
            za, zm = F.linear(st[t, 0], w0), F.linear(st[t, 1], w0)
            sv.za[t], sv.zm[t] = za, zm
            sv.gc[t] = torch.sigmoid(F.linear(F.relu(za), w1) + F.linear(F.relu(zm), w1))
        elif d.ca == 2:
            assert w0 is not None
            sv.gc[t] = torch.sigmoid(F.conv1d(st[t, 0, :, None], w0, padding=r_eca))[:, 0]
        if d.sa:
            assert wsa is not None
            kern.sa_pool[ln.pgrid](
                a_out, sv.gc[t], st[t], sv.pool[t], C, hw, bc, d.lam, CA=d.ca, BLOCK=ln.pb,
                **ln.pix_opts,
            )  # fmt: skip
            sv.gs[t] = torch.sigmoid(F.conv2d(sv.pool[t], wsa, padding=d.sa // 2))[:, 0]
    return spikes, v_last, a_all, sv


class _TritonMembraneLIF(torch.autograd.Function):
    """``(x (T, B, C, H, W), v0, leak, gain, W0, W1, Wsa) -> (spikes, v_last)``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, v0: Tensor | None, leak: Tensor | None,
                gain: Tensor | None, w0: Tensor | None, w1: Tensor | None,
                wsa: Tensor | None, d: Dims, sc: dict[str, Any]) -> Any:  # fmt: skip
        w0c, w1c, wsac = _c(w0), _c(w1), _c(wsa)
        ln = _Launch(d, sc)
        spikes, v_last, a_all, sv = _forward(x, v0, w0c, w1c, wsac, d, ln, save=True)
        ctx.d, ctx.sc, ctx.sv = d, sc, sv
        ctx.has_v0 = v0 is not None
        ctx.save_for_backward(
            a_all,
            x if gain is not None and gain.requires_grad else None,
            v0,
            w0c,
            w1c,
            wsac,
        )
        ctx.set_materialize_grads(False)
        return spikes, v_last

    @staticmethod
    def backward(ctx: Any, g_spikes: Tensor | None, g_vlast: Tensor | None) -> Any:
        refuse_double_backward("the fused 'triton' membrane-attention LIF")
        a_all, x, v0, w0, w1, wsa = ctx.saved_tensors
        d: Dims = ctx.d
        sv: _Saved = ctx.sv
        need = ctx.needs_input_grad
        grads = _backward(a_all, x, v0, w0, w1, wsa, sv, d, _Launch(d, ctx.sc),
                          g_spikes, g_vlast, need)  # fmt: skip
        g_x, g_v0, g_k, g_g, g_w0, g_w1, g_wsa = grads
        return (
            g_x if need[0] else None,
            g_v0 if need[1] and ctx.has_v0 else None,
            g_k if need[2] else None,
            g_g if need[3] else None,
            g_w0 if need[4] else None,
            g_w1 if need[5] else None,
            g_wsa if need[6] else None,
            None,
            None,
        )


def _backward(
    a_all: Tensor,
    x: Tensor | None,
    v0: Tensor | None,
    w0: Tensor | None,
    w1: Tensor | None,
    wsa: Tensor | None,
    sv: _Saved,
    d: Dims,
    ln: _Launch,
    g_spikes: Tensor | None,
    g_vlast: Tensor | None,
    need: tuple[bool, ...],
) -> tuple[Tensor | None, ...]:
    kern = _k()
    T, B, C, H, W, hw, bc = d.T, d.B, d.C, d.H, d.W, d.hw, d.bc
    dev, dt = a_all.device, a_all.dtype
    need_k, need_g = bool(need[2]), bool(need[3])
    gx = torch.empty_like(a_all)  # per step: dL/dU, then dL/dB, then dL/dX
    gv = (
        torch.zeros(a_all.shape[1:], dtype=dt, device=dev)
        if g_vlast is None
        else g_vlast.contiguous().clone()
    )
    gsp = gx if g_spikes is None else g_spikes.contiguous()
    pk = torch.zeros(T, bc, dtype=dt, device=dev)
    pg = torch.zeros(T, bc, dtype=dt, device=dev)
    g_w0 = None if w0 is None else torch.zeros_like(w0)
    g_w1 = None if w1 is None else torch.zeros_like(w1)
    g_wsa = None if wsa is None else torch.zeros_like(wsa)
    cg = torch.empty(B, C, dtype=dt, device=dev)
    tie_c = torch.ones(B, C, dtype=dt, device=dev)
    go = torch.empty(B, 1, H, W, dtype=dt, device=dev)
    tie_p = torch.empty(B, H, W, dtype=dt, device=dev)
    dummy = gx
    dec1 = ln.dec if ln.flags["HAS_DECAY"] else 1.0
    vres, sgp = ln.vres, float(ln.sc["sg_param"])
    r_eca = 0 if w0 is None else w0.shape[-1] // 2
    for t in range(T - 1, -1, -1):
        p = max(t - 1, 0)
        gpa = gpm = dummy
        if d.sa:  # dL/dU, the SA gate's logit, then the conv and pools backward
            assert wsa is not None and g_wsa is not None
            kern.sa_backward[ln.pgrid](
                a_all[t], sv.gc[t], sv.st[t], sv.gs[t], sv.pool[t], gsp[t], gv, gx[t], go,
                tie_p, C, hw, bc, d.lam, ln.th, dec1, vres, sgp, HAS_GS=g_spikes is not None,
                CA=d.ca, **ln.bwd(), HARD=ln.flags["HARD"], STRICT=ln.flags["STRICT"],
                BLOCK=ln.pb, **ln.pix_opts,
            )  # fmt: skip
            pad = d.sa // 2
            g_pool = conv2d_input(sv.pool[t].shape, wsa, go, padding=pad)
            g_wsa += conv2d_weight(sv.pool[t], wsa.shape, go, padding=pad)
            gpa = (g_pool[:, 0] / C).contiguous()
            gpm = (g_pool[:, 1] / tie_p).contiguous()
        # the previous step's gates (a learnable leak recomputes V[t-1]) and the charge inputs
        tail = (x[t] if x is not None else dummy, a_all[p], dummy if v0 is None else v0,
                sv.gc[p], sv.st[p], sv.gs[p])  # fmt: skip
        flags = dict(
            FIRST=t == 0, HAS_V0=v0 is not None, CA=d.ca, HAS_SA=bool(d.sa), NEED_K=need_k,
            NEED_G=need_g, **ln.lif(), BLOCK=ln.rb,
        )  # fmt: skip
        scal = (C, hw, bc, ln.k, ln.vr, ln.g, ln.th, ln.dec, vres, d.lam)
        kern.row_backward[(bc,)](
            a_all[t], sv.gc[t], sv.st[t], sv.gs[t], sv.pool[t], gpa, gpm, gsp[t], gv, gx[t],
            *tail, cg, tie_c, pk[t], pg[t], *scal, dec1, sgp, HAS_GS=g_spikes is not None,
            **flags, **ln.bwd(), **ln.row_opts,
        )  # fmt: skip
        if d.ca not in (1, 2):
            continue
        gc = sv.gc[t]
        gl = cg * (gc * (1.0 - gc))  # dL/d logit of the channel gate, (B, C)
        g_max = dummy
        if d.ca == 1:
            assert w0 is not None and w1 is not None and g_w0 is not None and g_w1 is not None
            za, zm = sv.za[t], sv.zm[t]
            g_w1 += gl.t() @ F.relu(za) + gl.t() @ F.relu(zm)
            g_r = gl @ w1  # (B, h)
            gza, gzm = g_r * (za > 0), g_r * (zm > 0)
            g_w0 += gza.t() @ sv.st[t, 0] + gzm.t() @ sv.st[t, 1]
            g_avg = (gza @ w0) / hw
            g_max = ((gzm @ w0) / tie_c).contiguous()
        else:
            assert w0 is not None and g_w0 is not None
            avg = sv.st[t, 0, :, None]  # (B, 1, C)
            g_avg = conv1d_input(avg.shape, w0, gl[:, None], padding=r_eca)
            g_w0 += conv1d_weight(avg, w0.shape, gl[:, None], padding=r_eca)
            g_avg = g_avg[:, 0] / hw
        kern.row_finish[(bc,)](
            a_all[t], gc, g_avg.contiguous(), g_max, sv.st[t], gx[t], gv, *tail, pk[t], pg[t],
            *scal, **flags, **ln.row_opts,
        )  # fmt: skip
    g_k = pk.double().sum().to(dt) if need_k else None
    g_g = pg.double().sum().to(dt) if need_g else None
    return gx, gv, g_k, g_g, g_w0, g_w1, g_wsa


def _c(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach().contiguous()


def lif_membrane_triton(
    x_seq: Tensor,
    v0: Tensor | None,
    params: LIFParams,
    surrogate: Surrogate,
    gate: MembraneGate,
) -> tuple[Tensor, Tensor]:
    """The Triton LIF with a membrane gate; same contract as the reference.

    Called by the ``"triton"`` backend (:func:`~masnn.neurons.backends.triton.lif_triton`) for
    a call with a membrane gate; the caller has checked the device and Triton.

    Raises:
        NotSupportedByBackend: a gate without a fused form, hooks on it, a dtype other than
            float32, or anything the plain Triton LIF does not cover.
    """
    check_shapes(x_seq, v0)
    spec = describe_gate(gate, x_seq)
    plan = make_plan(x_seq, v0, params, surrogate, None, dtypes=(torch.float32,))
    w0, w1, wsa = kernel_weights(spec)
    T, B, C, H, W = x_seq.shape
    ca = 3 if spec.simam is not None else 0 if w0 is None else (1 if w1 is not None else 2)
    d = Dims(T, B, C, H, W, ca, 0 if wsa is None else wsa.shape[-1], float(spec.simam or 0.0))
    if d.ca == 0 and not d.sa:
        raise NotSupportedByBackend("fused membrane gate: the gate has neither C nor S part")
    x = x_seq.contiguous()
    v0c = None if v0 is None else v0.contiguous()
    tensors = [t for t in (x, v0c, plan.leak, plan.gain, w0, w1, wsa) if t is not None]
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        spikes, v_last = _TritonMembraneLIF.apply(
            x, v0c, plan.leak, plan.gain, w0, w1, wsa, d, plan.scalars
        )
    else:
        ln = _Launch(d, plan.scalars)
        spikes, v_last, _, _ = _forward(x, v0c, _c(w0), _c(w1), _c(wsa), d, ln, save=False)
    return spikes, v_last
