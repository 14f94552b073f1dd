"""Triton kernels of the fused LIF (imported only when Triton is installed; see ``triton.py``).

``@triton.jit`` helpers must be module globals (the compiler and the interpreter look them up
there), hence this separate module. The step helpers (``charge``, ``fire``, ``reset``,
``surrogate_grad``) are shared with the gated kernels of ``_triton_membrane_kernels.py``.
"""

# ruff: noqa: N803
import triton
import triton.language as tl


@triton.jit
def charge(v, x, k, vr, g, HAS_LEAK: tl.constexpr, HAS_GAIN: tl.constexpr):
    if HAS_LEAK:
        v = v + k * (vr - v)
    if HAS_GAIN:
        x = g * x
    return v + x


@triton.jit
def fire(u, th, STRICT: tl.constexpr):
    if STRICT:
        s = (u - th) > 0
    else:
        s = (u - th) >= 0
    return s.to(u.dtype)


@triton.jit
def reset(u, s, th, dec, vres, HARD: tl.constexpr, HAS_DECAY: tl.constexpr,
           HAS_VRESET: tl.constexpr):  # fmt: skip
    if HARD:
        kept = u
        if HAS_DECAY:
            kept = dec * u
        v = kept * (1.0 - s)
        if HAS_VRESET:
            v = v + s * vres
    else:
        v = u - s * th
        if HAS_DECAY:
            v = dec * v
    return v


@triton.jit
def surrogate_grad(h, a, SG: tl.constexpr):
    if SG == 0:
        r = tl.where(tl.abs(h) < a / 2, 1.0 / a, 0.0)
    elif SG == 1:
        s = 1.0 / (1.0 + tl.exp(-(a * h)))
        r = a * s * (1.0 - s)
    else:
        z = 1.5707963267948966 * a * h
        r = (a / 2) / (1.0 + z * z)
    return r


@triton.jit
def grad_u(u, gs, gv, th, dec1, vres, sgp, HARD: tl.constexpr, DETACH: tl.constexpr,
           STRICT: tl.constexpr, SG: tl.constexpr):  # fmt: skip
    """``dL/dU`` of fire + reset from ``dL/dS[t]`` (``gs``) and ``dL/dV[t]`` (``gv``)."""
    s = fire(u, th, STRICT)
    sg = surrogate_grad(u - th, sgp, SG)
    if HARD:
        if not DETACH:
            gs = gs + gv * (vres - dec1 * u)
        gu = sg * gs + gv * dec1 * (1.0 - s)
    else:
        if not DETACH:
            gs = gs - gv * dec1 * th
        gu = sg * gs + gv * dec1
    return gu


@triton.jit
def lif_fwd(x_ptr, v0_ptr, s_ptr, u_ptr, vl_ptr, T, N, k, vr, g, th, dec, vres,
            HAS_V0: tl.constexpr, SAVE_U: tl.constexpr, HARD: tl.constexpr,
            STRICT: tl.constexpr, HAS_LEAK: tl.constexpr, HAS_GAIN: tl.constexpr,
            HAS_DECAY: tl.constexpr, HAS_VRESET: tl.constexpr,
            BLOCK: tl.constexpr):  # fmt: skip
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < N
    if HAS_V0:
        v = tl.load(v0_ptr + offs, mask=m, other=0.0)
    else:
        v = tl.zeros([BLOCK], dtype=tl.float32)
    xp, sp, up = x_ptr + offs, s_ptr + offs, u_ptr + offs
    for _ in range(T):
        u = charge(v, tl.load(xp, mask=m, other=0.0), k, vr, g, HAS_LEAK, HAS_GAIN)
        s = fire(u, th, STRICT)
        tl.store(sp, s, mask=m)
        if SAVE_U:
            tl.store(up, u, mask=m)
        v = reset(u, s, th, dec, vres, HARD, HAS_DECAY, HAS_VRESET)
        xp += N
        sp += N
        up += N
    tl.store(vl_ptr + offs, v, mask=m)


@triton.jit
def lif_bwd(gs_ptr, gvl_ptr, u_ptr, x_ptr, v0_ptr, gx_ptr, gv0_ptr, pk_ptr, pg_ptr,
            T, N, last, k, vr, g, th, dec, vres, sgp,
            HAS_GS: tl.constexpr, HAS_GVL: tl.constexpr, HAS_V0: tl.constexpr,
            NEED_V0: tl.constexpr, NEED_K: tl.constexpr, NEED_G: tl.constexpr,
            HARD: tl.constexpr, DETACH: tl.constexpr, STRICT: tl.constexpr, SG: tl.constexpr,
            HAS_LEAK: tl.constexpr, HAS_GAIN: tl.constexpr, HAS_DECAY: tl.constexpr,
            HAS_VRESET: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < N
    if HAS_GVL:
        gv = tl.load(gvl_ptr + offs, mask=m, other=0.0)
    else:
        gv = tl.zeros([BLOCK], dtype=tl.float32)
    if HAS_V0:
        v0 = tl.load(v0_ptr + offs, mask=m, other=0.0)
    else:
        v0 = tl.zeros([BLOCK], dtype=tl.float32)
    acc_k = tl.zeros([BLOCK], dtype=tl.float32)
    acc_g = tl.zeros([BLOCK], dtype=tl.float32)
    dec1 = 1.0
    if HAS_DECAY:
        dec1 = dec
    one_minus_k = 1.0
    if HAS_LEAK:
        one_minus_k = 1.0 - k
    up, gsp = u_ptr + last + offs, gs_ptr + last + offs
    gxp, xp = gx_ptr + last + offs, x_ptr + last + offs
    for i in range(T):
        u = tl.load(up, mask=m, other=0.0)
        gs = tl.zeros([BLOCK], dtype=tl.float32)
        if HAS_GS:
            gs = tl.load(gsp, mask=m, other=0.0)
        gu = grad_u(u, gs, gv, th, dec1, vres, sgp, HARD, DETACH, STRICT, SG)
        if HAS_GAIN:
            tl.store(gxp, g * gu, mask=m)
        else:
            tl.store(gxp, gu, mask=m)
        gv = one_minus_k * gu
        if NEED_K:
            has_prev = tl.full([BLOCK], T - 1 - i, tl.int32) > 0
            up_prev = tl.load(up - N, mask=m & has_prev, other=0.0)
            s_prev = fire(up_prev, th, STRICT)
            v_prev = reset(up_prev, s_prev, th, dec, vres, HARD, HAS_DECAY, HAS_VRESET)
            v_prev = tl.where(has_prev, v_prev, v0)
            acc_k += gu * (vr - v_prev)
        if NEED_G:
            acc_g += gu * tl.load(xp, mask=m, other=0.0)
        up -= N
        gsp -= N
        gxp -= N
        xp -= N
    if NEED_V0:
        tl.store(gv0_ptr + offs, gv, mask=m)
    if NEED_K:
        tl.store(pk_ptr + pid, tl.sum(tl.where(m, acc_k, 0.0), axis=0))
    if NEED_G:
        tl.store(pg_ptr + pid, tl.sum(tl.where(m, acc_g, 0.0), axis=0))
