"""Triton kernels of the LIF with per-step membrane attention (see ``triton_membrane.py``).

Imported only when Triton is installed. Layout: the membrane of one step is ``(B, C, HW)``
contiguous; a *row* is one ``(b, c)`` (``HW`` values), a *pixel* one ``(b, p)`` (``C`` values
``HW`` apart). ``CA`` (constexpr) is the channel gate: 0 none, 1 CA (CBAM MLP: ``gc``), 2 ECA
(``gc``), 3 SimAM (per element, from the row's mean and variance in ``st``). Channel
statistics ``st`` of one step are ``(2, B, C)``: ``[mean, max]`` (CA, ECA: max unused) or
``[mean, var]`` (SimAM).

The gated membrane is recomputed in the backward pass with the forward's own helper
(``gate_c``: products and one sigmoid, no sums), so its spikes and max-pool ties are the
forward's; the wrappers launch every kernel with ``enable_fp_fusion=False`` (no contracted
multiply-adds: the elementwise arithmetic is the reference's, operation by operation).
"""

# ruff: noqa: N803
import triton
import triton.language as tl

from masnn.neurons.backends._triton_kernels import charge, fire, grad_u, reset


@triton.jit
def row_stats(gc_ptr, st_ptr, row, BC, CA: tl.constexpr):
    """The channel gate's per-row values: ``gc`` (CA, ECA) or SimAM's ``mu, var``."""
    gc = 1.0
    mu = 0.0
    var = 1.0
    if CA == 1 or CA == 2:
        gc = tl.load(gc_ptr + row)
    if CA == 3:
        mu = tl.load(st_ptr + row)
        var = tl.load(st_ptr + BC + row)
    return gc, mu, var


@triton.jit
def gate_c(a, gc, mu, var, lam, CA: tl.constexpr):
    """``B = g_c(A) * A``: the channel-gated membrane (the identity without a channel gate)."""
    if CA == 3:
        d = a - mu
        dv = d * d
        y = dv / (4.0 * (var + lam)) + 0.5
        b = (1.0 / (1.0 + tl.exp(-y))) * a
    elif CA != 0:
        b = gc * a
    else:
        b = a
    return b


@triton.jit
def row_forward(ain_ptr, aout_ptr, x_ptr, v0_ptr, s_ptr, vl_ptr, gc_ptr, stin_ptr, gs_ptr,
                stout_ptr, C, HW, BC, k, vr, g, th, dec, vres, lam,
                APPLY: tl.constexpr, CHARGE: tl.constexpr, HAS_V0: tl.constexpr,
                CA: tl.constexpr, HAS_SA: tl.constexpr, HARD: tl.constexpr,
                STRICT: tl.constexpr, HAS_LEAK: tl.constexpr, HAS_GAIN: tl.constexpr,
                HAS_DECAY: tl.constexpr, HAS_VRESET: tl.constexpr,
                BLOCK: tl.constexpr):  # fmt: skip
    """One row, between two charges: ``APPLY`` finishes step ``t - 1`` (gates from
    ``gc / stin / gs``, fire into ``s``, reset), ``CHARGE`` starts step ``t``
    (``A = charge(V, X)`` into ``aout``, the row's statistics into ``stout``); without
    ``CHARGE`` the membrane goes to ``vl`` (the last step)."""
    row = tl.program_id(0)
    b = row // C
    base = row.to(tl.int64) * HW
    gc, mu, var = row_stats(gc_ptr, stin_ptr, row, BC, CA)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    mx = tl.full([BLOCK], float("-inf"), tl.float32)
    for p0 in range(0, HW, BLOCK):
        offs = p0 + tl.arange(0, BLOCK)
        m = offs < HW
        if APPLY:
            u = gate_c(tl.load(ain_ptr + base + offs, mask=m, other=0.0), gc, mu, var, lam, CA)
            if HAS_SA:
                u = tl.load(gs_ptr + b * HW + offs, mask=m, other=0.0) * u
            s = fire(u, th, STRICT)
            tl.store(s_ptr + base + offs, s, mask=m)
            v = reset(u, s, th, dec, vres, HARD, HAS_DECAY, HAS_VRESET)
        elif HAS_V0:
            v = tl.load(v0_ptr + base + offs, mask=m, other=0.0)
        else:
            v = tl.zeros([BLOCK], dtype=tl.float32)
        if CHARGE:
            a = charge(v, tl.load(x_ptr + base + offs, mask=m, other=0.0), k, vr, g, HAS_LEAK,
                       HAS_GAIN)  # fmt: skip
            tl.store(aout_ptr + base + offs, a, mask=m)
            acc += tl.where(m, a, 0.0)
            mx = tl.maximum(mx, tl.where(m, a, float("-inf")))
        else:
            tl.store(vl_ptr + base + offs, v, mask=m)
    if CHARGE and CA != 0:
        mean = tl.sum(acc, axis=0) / HW
        tl.store(stout_ptr + row, mean)
        if CA == 1:
            tl.store(stout_ptr + BC + row, tl.max(mx, axis=0))
        if CA == 3:  # SimAM: the unbiased variance, a second pass over the stored row
            tl.debug_barrier()
            ss = tl.zeros([BLOCK], dtype=tl.float32)
            for p0 in range(0, HW, BLOCK):
                offs = p0 + tl.arange(0, BLOCK)
                m = offs < HW
                d = tl.load(aout_ptr + base + offs, mask=m, other=0.0) - mean
                ss += tl.where(m, d * d, 0.0)
            tl.store(stout_ptr + BC + row, tl.sum(ss, axis=0) / tl.maximum(HW - 1, 1))


@triton.jit
def sa_pool(a_ptr, gc_ptr, st_ptr, p_ptr, C, HW, BC, lam, CA: tl.constexpr,
            BLOCK: tl.constexpr):  # fmt: skip
    """SA's pools of one step: ``P[b] = [mean_C B, max_C B]`` (``(B, 2, HW)``), ``B`` the
    channel-gated membrane."""
    b = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = offs < HW
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    mx = tl.full([BLOCK], float("-inf"), tl.float32)
    for c in range(C):
        row = b * C + c
        gc, mu, var = row_stats(gc_ptr, st_ptr, row, BC, CA)
        bv = gate_c(tl.load(a_ptr + row.to(tl.int64) * HW + offs, mask=m, other=0.0),
                    gc, mu, var, lam, CA)  # fmt: skip
        acc += bv
        mx = tl.maximum(mx, bv)
    pb = p_ptr + b.to(tl.int64) * 2 * HW + offs
    tl.store(pb, acc / C, mask=m)
    tl.store(pb + HW, mx, mask=m)


@triton.jit
def sa_backward(a_ptr, gc_ptr, st_ptr, gsa_ptr, p_ptr, gsp_ptr, gv_ptr, gu_ptr, go_ptr, tie_ptr,
                C, HW, BC, lam, th, dec1, vres, sgp, HAS_GS: tl.constexpr, CA: tl.constexpr,
                HARD: tl.constexpr, DETACH: tl.constexpr, STRICT: tl.constexpr,
                SG: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """Backward of fire / reset and of ``U = gs[p] B`` for one pixel block: ``dL/dU`` into
    ``gu``; ``dL/d logit`` of the SA gate into ``go`` and the ties of the channel max into
    ``tie`` (both ``(B, HW)``)."""
    b = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = offs < HW
    pix = b.to(tl.int64) * HW + offs
    gsa = tl.load(gsa_ptr + pix, mask=m, other=0.0)
    pmax = tl.load(p_ptr + b.to(tl.int64) * 2 * HW + HW + offs, mask=m, other=0.0)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    ties = tl.zeros([BLOCK], dtype=tl.float32)
    for c in range(C):
        row = b * C + c
        gc, mu, var = row_stats(gc_ptr, st_ptr, row, BC, CA)
        i = row.to(tl.int64) * HW + offs
        bv = gate_c(tl.load(a_ptr + i, mask=m, other=0.0), gc, mu, var, lam, CA)
        gsv = tl.zeros([BLOCK], dtype=tl.float32)
        if HAS_GS:
            gsv = tl.load(gsp_ptr + i, mask=m, other=0.0)
        gu = grad_u(gsa * bv, gsv, tl.load(gv_ptr + i, mask=m, other=0.0), th, dec1, vres, sgp,
                    HARD, DETACH, STRICT, SG)  # fmt: skip
        tl.store(gu_ptr + i, gu, mask=m)
        acc += gu * bv
        ties += tl.where(bv == pmax, 1.0, 0.0)
    tl.store(go_ptr + pix, acc * (gsa * (1.0 - gsa)), mask=m)
    tl.store(tie_ptr + pix, ties, mask=m)


@triton.jit
def charge_backward(ga, row, b, offs, m, base, HW, gx_ptr, gv_ptr, x_ptr, aprev_ptr, v0_ptr,
                    gcp_ptr, stp_ptr, gsap_ptr, BC, k, vr, g, th, dec, vres, lam,
                    FIRST: tl.constexpr, HAS_V0: tl.constexpr, CA: tl.constexpr,
                    HAS_SA: tl.constexpr, NEED_K: tl.constexpr, NEED_G: tl.constexpr,
                    HARD: tl.constexpr, STRICT: tl.constexpr, HAS_LEAK: tl.constexpr,
                    HAS_GAIN: tl.constexpr, HAS_DECAY: tl.constexpr,
                    HAS_VRESET: tl.constexpr):  # fmt: skip
    """``A = V[t-1] + k (v_rest - V[t-1]) + g X``: stores ``dL/dX`` and ``dL/dV[t-1]``;
    returns this chunk's terms of ``dL/dk`` and ``dL/dg``."""
    if HAS_GAIN:
        tl.store(gx_ptr + base + offs, g * ga, mask=m)
    else:
        tl.store(gx_ptr + base + offs, ga, mask=m)
    if HAS_LEAK:
        tl.store(gv_ptr + base + offs, (1.0 - k) * ga, mask=m)
    else:
        tl.store(gv_ptr + base + offs, ga, mask=m)
    pk = tl.zeros_like(ga)
    pg = tl.zeros_like(ga)
    if NEED_K:  # the post-reset membrane this step leaked from, recomputed
        if FIRST:
            if HAS_V0:
                vp = tl.load(v0_ptr + base + offs, mask=m, other=0.0)
            else:
                vp = tl.zeros_like(ga)
        else:
            gc, mu, var = row_stats(gcp_ptr, stp_ptr, row, BC, CA)
            up = gate_c(tl.load(aprev_ptr + base + offs, mask=m, other=0.0), gc, mu, var, lam, CA)
            if HAS_SA:
                up = tl.load(gsap_ptr + b * HW + offs, mask=m, other=0.0) * up
            vp = reset(up, fire(up, th, STRICT), th, dec, vres, HARD, HAS_DECAY, HAS_VRESET)
        pk = tl.where(m, ga * (vr - vp), 0.0)
    if NEED_G:
        pg = tl.where(m, ga * tl.load(x_ptr + base + offs, mask=m, other=0.0), 0.0)
    return pk, pg


@triton.jit
def row_backward(a_ptr, gc_ptr, st_ptr, gsa_ptr, p_ptr, gpa_ptr, gpm_ptr, gsp_ptr, gv_ptr,
                 gx_ptr, x_ptr, aprev_ptr, v0_ptr, gcp_ptr, stp_ptr, gsap_ptr, cg_ptr, tie_ptr,
                 pk_ptr, pg_ptr, C, HW, BC, k, vr, g, th, dec, vres, lam, dec1, sgp,
                 HAS_GS: tl.constexpr, FIRST: tl.constexpr, HAS_V0: tl.constexpr,
                 CA: tl.constexpr, HAS_SA: tl.constexpr, NEED_K: tl.constexpr,
                 NEED_G: tl.constexpr, HARD: tl.constexpr, DETACH: tl.constexpr,
                 STRICT: tl.constexpr, SG: tl.constexpr, HAS_LEAK: tl.constexpr,
                 HAS_GAIN: tl.constexpr, HAS_DECAY: tl.constexpr, HAS_VRESET: tl.constexpr,
                 BLOCK: tl.constexpr):  # fmt: skip
    """One row of one step backward, down to ``dL/dB`` (the channel-gated membrane).

    With SA, ``dL/dU`` comes from :func:`sa_backward` (in ``gx``) and the pools' gradients
    from ``gpa`` (``dL/dP_avg / C``) and ``gpm`` (``dL/dP_max / ties``); else it is computed
    here. Then: CA / ECA store ``dL/dB`` in ``gx`` and the row's ``sum(dL/dB * A)`` in ``cg``
    (CA: the ties of its max in ``tie``) for the MLP / conv backward and
    :func:`row_finish`; SimAM and no channel gate finish the row (``dL/dA``, charge backward).
    """
    row = tl.program_id(0)
    b = row // C
    base = row.to(tl.int64) * HW
    gc, mu, var = row_stats(gc_ptr, st_ptr, row, BC, CA)
    den = 4.0 * (var + lam)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    ties = tl.zeros([BLOCK], dtype=tl.float32)
    acc_k = tl.zeros([BLOCK], dtype=tl.float32)
    acc_g = tl.zeros([BLOCK], dtype=tl.float32)
    mx = 0.0
    if CA == 1:
        mx = tl.load(st_ptr + BC + row)
    for p0 in range(0, HW, BLOCK):
        offs = p0 + tl.arange(0, BLOCK)
        m = offs < HW
        a = tl.load(a_ptr + base + offs, mask=m, other=0.0)
        bv = gate_c(a, gc, mu, var, lam, CA)
        if HAS_SA:
            pix = b.to(tl.int64) * HW + offs
            pmax = tl.load(p_ptr + b.to(tl.int64) * 2 * HW + HW + offs, mask=m, other=0.0)
            gb = tl.load(gx_ptr + base + offs, mask=m, other=0.0) * tl.load(
                gsa_ptr + pix, mask=m, other=0.0
            )
            gb = gb + tl.load(gpa_ptr + pix, mask=m, other=0.0)
            gb = gb + tl.where(bv == pmax, tl.load(gpm_ptr + pix, mask=m, other=0.0), 0.0)
        else:
            gsv = tl.zeros([BLOCK], dtype=tl.float32)
            if HAS_GS:
                gsv = tl.load(gsp_ptr + base + offs, mask=m, other=0.0)
            gb = grad_u(bv, gsv, tl.load(gv_ptr + base + offs, mask=m, other=0.0), th, dec1,
                        vres, sgp, HARD, DETACH, STRICT, SG)  # fmt: skip
        if CA == 0:
            pk, pg = charge_backward(gb, row, b, offs, m, base, HW, gx_ptr, gv_ptr, x_ptr,
                                     aprev_ptr, v0_ptr, gcp_ptr, stp_ptr, gsap_ptr, BC, k, vr, g,
                                     th, dec, vres, lam, FIRST, HAS_V0, CA, HAS_SA, NEED_K,
                                     NEED_G, HARD, STRICT, HAS_LEAK, HAS_GAIN, HAS_DECAY,
                                     HAS_VRESET)  # fmt: skip
            acc_k += pk
            acc_g += pg
        else:
            tl.store(gx_ptr + base + offs, gb, mask=m)
            if CA == 3:  # SimAM pass 1: dL/d den, den = 4 (var + lam)
                d = a - mu
                dv = d * d
                sig = 1.0 / (1.0 + tl.exp(-(dv / den + 0.5)))
                gy = gb * a * (sig * (1.0 - sig))
                acc += tl.where(m, gy * dv / (den * den), 0.0)
            else:
                acc += tl.where(m, gb * a, 0.0)
                if CA == 1:
                    ties += tl.where(m & (a == mx), 1.0, 0.0)
    if CA == 1 or CA == 2:
        tl.store(cg_ptr + row, tl.sum(acc, axis=0))
        if CA == 1:
            tl.store(tie_ptr + row, tl.sum(ties, axis=0))
    if CA == 3:
        tl.debug_barrier()
        g_var = -4.0 * tl.sum(acc, axis=0)
        nm1 = tl.maximum(HW - 1, 1).to(tl.float32)
        gmu = tl.zeros([BLOCK], dtype=tl.float32)
        for p0 in range(0, HW, BLOCK):  # pass 2: dL/dA without the mean's term
            offs = p0 + tl.arange(0, BLOCK)
            m = offs < HW
            a = tl.load(a_ptr + base + offs, mask=m, other=0.0)
            gb = tl.load(gx_ptr + base + offs, mask=m, other=0.0)
            d = a - mu
            dv = d * d
            sig = 1.0 / (1.0 + tl.exp(-(dv / den + 0.5)))
            gy = gb * a * (sig * (1.0 - sig))
            t2 = 2.0 * d * (gy / den + g_var / nm1)
            gmu += tl.where(m, t2, 0.0)
            tl.store(gx_ptr + base + offs, gb * sig + t2, mask=m)
        tl.debug_barrier()
        g_mean = -tl.sum(gmu, axis=0) / HW
        for p0 in range(0, HW, BLOCK):  # pass 3: + dL/dmu / HW, charge backward
            offs = p0 + tl.arange(0, BLOCK)
            m = offs < HW
            ga = tl.load(gx_ptr + base + offs, mask=m, other=0.0) + g_mean
            pk, pg = charge_backward(ga, row, b, offs, m, base, HW, gx_ptr, gv_ptr, x_ptr,
                                     aprev_ptr, v0_ptr, gcp_ptr, stp_ptr, gsap_ptr, BC, k, vr, g,
                                     th, dec, vres, lam, FIRST, HAS_V0, CA, HAS_SA, NEED_K,
                                     NEED_G, HARD, STRICT, HAS_LEAK, HAS_GAIN, HAS_DECAY,
                                     HAS_VRESET)  # fmt: skip
            acc_k += pk
            acc_g += pg
    if CA == 0 or CA == 3:
        if NEED_K:
            tl.store(pk_ptr + row, tl.sum(acc_k, axis=0))
        if NEED_G:
            tl.store(pg_ptr + row, tl.sum(acc_g, axis=0))


@triton.jit
def row_finish(a_ptr, gc_ptr, gavg_ptr, gmax_ptr, st_ptr, gx_ptr, gv_ptr, x_ptr, aprev_ptr,
               v0_ptr, gcp_ptr, stp_ptr, gsap_ptr, pk_ptr, pg_ptr, C, HW, BC, k, vr, g, th,
               dec, vres, lam, FIRST: tl.constexpr, HAS_V0: tl.constexpr, CA: tl.constexpr,
               HAS_SA: tl.constexpr, NEED_K: tl.constexpr, NEED_G: tl.constexpr,
               HARD: tl.constexpr, STRICT: tl.constexpr, HAS_LEAK: tl.constexpr,
               HAS_GAIN: tl.constexpr, HAS_DECAY: tl.constexpr, HAS_VRESET: tl.constexpr,
               BLOCK: tl.constexpr):  # fmt: skip
    """CA / ECA rows after the MLP / conv backward: ``dL/dA = dL/dB gc + dL/d mean / HW
    (+ dL/d max / ties where A is the row's max)``, then the charge backward."""
    row = tl.program_id(0)
    b = row // C
    base = row.to(tl.int64) * HW
    gc = tl.load(gc_ptr + row)
    gavg = tl.load(gavg_ptr + row)
    gmax = 0.0
    mx = 0.0
    if CA == 1:
        gmax = tl.load(gmax_ptr + row)
        mx = tl.load(st_ptr + BC + row)
    acc_k = tl.zeros([BLOCK], dtype=tl.float32)
    acc_g = tl.zeros([BLOCK], dtype=tl.float32)
    for p0 in range(0, HW, BLOCK):
        offs = p0 + tl.arange(0, BLOCK)
        m = offs < HW
        ga = tl.load(gx_ptr + base + offs, mask=m, other=0.0) * gc + gavg
        if CA == 1:
            a = tl.load(a_ptr + base + offs, mask=m, other=0.0)
            ga = ga + tl.where(a == mx, gmax, 0.0)
        pk, pg = charge_backward(ga, row, b, offs, m, base, HW, gx_ptr, gv_ptr, x_ptr, aprev_ptr,
                                 v0_ptr, gcp_ptr, stp_ptr, gsap_ptr, BC, k, vr, g, th, dec, vres,
                                 lam, FIRST, HAS_V0, CA, HAS_SA, NEED_K, NEED_G, HARD, STRICT,
                                 HAS_LEAK, HAS_GAIN, HAS_DECAY, HAS_VRESET)  # fmt: skip
        acc_k += pk
        acc_g += pg
    if NEED_K:
        tl.store(pk_ptr + row, tl.sum(acc_k, axis=0))
    if NEED_G:
        tl.store(pg_ptr + row, tl.sum(acc_g, axis=0))
