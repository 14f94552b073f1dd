"""BPTT gradients of every preset equal an independent float64 autograd computation.

The independent version writes each preset's recurrence directly from the paper / official
code equations and builds the spike as a straight-through estimator,
``heaviside(x) + primitive(x) - primitive(x).detach()``, whose autograd derivative is the
primitive's derivative: it shares no code with ``masnn.neurons.functional``.
"""

from __future__ import annotations

import math

import pytest
import torch

from masnn.neurons import LIF

T, B, N = 7, 3, 5


def ste(x: torch.Tensor, primitive, strict: bool = False) -> torch.Tensor:  # type: ignore[no-untyped-def]
    step = (x > 0).double() if strict else (x >= 0).double()
    p = primitive(x)
    return step + (p - p.detach())


def rect(width: float):  # type: ignore[no-untyped-def]
    return lambda x: torch.clamp(x / width + 0.5, 0, 1)


def atan(alpha: float):  # type: ignore[no-untyped-def]
    return lambda x: torch.atan(math.pi / 2 * alpha * x) / math.pi + 0.5


def sigmoid(alpha: float):  # type: ignore[no-untyped-def]
    return lambda x: torch.sigmoid(alpha * x)


def paper_ref(x):  # type: ignore[no-untyped-def]
    h, out = torch.zeros_like(x[0]), []
    for xt in x:
        u = h + xt
        s = ste(u - 0.3, rect(0.5))
        h = 0.0 * s + 0.3 * u * (1 - s)
        out.append(s)
    return torch.stack(out)


def biclab_ref(x):  # type: ignore[no-untyped-def]
    h, out = torch.zeros_like(x[0]), []
    for xt in x:
        u = h + xt
        s = ste(u - 0.3, rect(0.5))
        h = 0.3 * (s * 0.3 + (1 - s) * u)
        out.append(s)
    return torch.stack(out)


def msresnet_ref(x):  # type: ignore[no-untyped-def]
    mem, s, out = None, None, []
    for t, xt in enumerate(x):
        mem = xt if t == 0 else 0.25 * mem * (1 - s.detach()) + xt
        s = ste(mem - 0.5, rect(1.0), strict=True)
        out.append(s)
    return torch.stack(out)


def sj_ref(x, k=None, detach=False, primitive=None):  # type: ignore[no-untyped-def]
    v, out = torch.zeros_like(x[0]), []
    k = 0.5 if k is None else k
    primitive = primitive or sigmoid(4.0)
    for xt in x:
        h = v + (xt - v) * k
        s = ste(h - 1.0, primitive)
        sr = s.detach() if detach else s
        v = h * (1 - sr)
        out.append(s)
    return torch.stack(out)


CASES = {
    "paper": (paper_ref, 0.25),
    "biclab": (biclab_ref, 0.25),
    "msresnet": (msresnet_ref, 0.45),
    "spikingjelly": (sj_ref, 0.9),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bptt_matches_independent_float64(name: str) -> None:
    ref, scale = CASES[name]
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(T, B, N, generator=g, dtype=torch.float64) * 2 * scale).requires_grad_(True)
    w_out = torch.randn(T, B, N, generator=g, dtype=torch.float64)
    ours = LIF(name)(x)
    (gx,) = torch.autograd.grad((ours * w_out).sum(), x)
    x2 = x.detach().clone().requires_grad_(True)
    theirs = ref(x2)
    (gx2,) = torch.autograd.grad((theirs * w_out).sum(), x2)
    assert torch.equal(ours, theirs.detach())
    assert 0 < ours.mean() < 1  # the trajectory exercises both firing and silence
    assert gx.abs().sum() > 0
    torch.testing.assert_close(gx, gx2, rtol=1e-10, atol=1e-12)


def test_plif_gradients_match_including_tau() -> None:
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(T, B, N, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    w_out = torch.randn(T, B, N, generator=g, dtype=torch.float64)
    lif = LIF("plif", init_tau=3.0).double()
    ours = lif(x)
    gx, gw = torch.autograd.grad((ours * w_out).sum(), [x, lif.w])
    x2 = x.detach().clone().requires_grad_(True)
    w2 = lif.w.detach().clone().requires_grad_(True)  # sigmoid(w) = 1/3
    assert torch.sigmoid(w2).item() == pytest.approx(1 / 3)
    theirs = sj_ref(x2, k=torch.sigmoid(w2), detach=True, primitive=atan(2.0))
    gx2, gw2 = torch.autograd.grad((theirs * w_out).sum(), [x2, w2])
    assert torch.equal(ours, theirs.detach())
    assert gw.abs() > 0
    torch.testing.assert_close(gx, gx2, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gw, gw2, rtol=1e-10, atol=1e-12)


def test_half_precision_input_keeps_fp32_state() -> None:
    x = torch.rand(4, 2, 3).bfloat16()
    assert LIF("paper")(x).dtype == torch.float32
