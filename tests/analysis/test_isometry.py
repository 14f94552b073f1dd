"""Block dynamical isometry (paper §7.1 Theorem 1, SPEC §8.1): estimators and the stated band.

Band (stated in docs/report/README.md): at initialisation every identity-shortcut block of
Att-Res-SNN-1 has a gradient-norm ratio and phi(JJ^T) in [0.95, 1.10] and varphi < 0.05, and the
product of the ratios over all identity blocks stays in [0.8, 1.25] (no exponential drift);
Att-Res-SNN-2's CSA after the add scales phi by about (1/2)^2 (1/2)^2 = 1/16 (T = 1).
"""

from __future__ import annotations

import math

import pytest
import torch

from masnn.analysis import block_isometry
from masnn.analysis.isometry import isometry_sweep, jacobian_moments, residual_blocks
from masnn.models import create_model

BAND = (0.95, 1.10)


def _net(depth: int = 18, att_res: int = 1, t: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    m = create_model(
        f"ms_resnet{depth}", num_classes=10, timesteps=t, input_size=(3, 32, 32),
        att_res=att_res, widths=(8, 16, 16, 16),
    )  # fmt: skip
    return m.train()


def _x(t: int = 1, b: int = 2) -> torch.Tensor:
    img = torch.randn(b, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return img.unsqueeze(0).expand(t, *img.shape).contiguous()


def test_probe_estimates_match_a_known_jacobian() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(12, 9, generator=gen, dtype=torch.float64) / 3
    phi, varphi, se = jacobian_moments(lambda x: x @ a.T, torch.zeros(9, dtype=torch.float64),
                                       probes=3000)  # fmt: skip
    m = a @ a.T
    exact_phi = float(torch.trace(m)) / 12
    exact_var = float(torch.trace(m @ m)) / 12 - exact_phi**2
    assert phi == pytest.approx(exact_phi, abs=4 * se + 1e-9)
    assert varphi == pytest.approx(exact_var, rel=0.1)
    # an orthogonal map scaled by g: phi = g^2, varphi = 0 exactly (any probe)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=gen, dtype=torch.float64))
    phi, varphi, _ = jacobian_moments(lambda x: 0.5 * x @ q.T, torch.ones(8, dtype=torch.float64),
                                      probes=3)  # fmt: skip
    assert phi == pytest.approx(0.25, abs=1e-12) and varphi == pytest.approx(0.0, abs=1e-12)


def test_zero_bn2_makes_identity_blocks_exact_identities() -> None:
    net = _net()
    for _, blk in residual_blocks(net):
        torch.nn.init.zeros_(blk.bn2.module.weight)
    res = block_isometry(net, _x(), probes=2)
    ident = [r for r in res if not r.downsample]
    assert len(ident) == 4
    for r in ident:
        assert r.phi == pytest.approx(1.0, abs=1e-9)
        assert r.varphi == pytest.approx(0.0, abs=1e-9)
        assert r.grad_ratio == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("t", [1, 2])
def test_att_res_snn_1_stays_in_the_band_and_2_is_scaled(t: int) -> None:
    net = _net(att_res=1, t=t)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    res = block_isometry(net, _x(t), probes=3)
    # the call leaves the model as it was (BN running statistics included, no .grad)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())
    assert [r.index for r in res] == list(range(8))
    ident = [r for r in res if not r.downsample]
    for r in ident:
        assert BAND[0] <= r.grad_ratio <= BAND[1], r
        assert BAND[0] <= r.phi <= BAND[1], r
        assert r.varphi < 0.05, r
    if t == 1:  # Att-Res-SNN-2 at T = 1: the CSA after the add scales phi by about 1/16
        two = [r for r in block_isometry(_net(att_res=2), _x(), probes=3) if not r.downsample]
        for r in two:
            assert 1 / 32 <= r.phi <= 1 / 8, r  # two sigmoid gates at ~1/2: (1/2)^2 (1/2)^2


def test_no_drift_over_depth_34() -> None:
    rows = isometry_sweep(depths=(34,), timesteps=(1,), att_res=(1,), widths=(8, 16, 16, 16),
                          batch=2, probes=2)  # fmt: skip
    ident = [r for r in rows if not r["downsample"]]
    assert len(ident) == 12
    assert all(BAND[0] <= r["grad_ratio"] <= BAND[1] for r in ident)
    assert 0.8 <= math.prod(r["grad_ratio"] for r in ident) <= 1.25


@pytest.mark.slow
def test_no_drift_over_depth_104() -> None:
    rows = isometry_sweep(depths=(104,), timesteps=(1, 4), att_res=(1,), batch=2, probes=2)
    for t in (1, 4):
        ident = [r for r in rows if not r["downsample"] and r["timesteps"] == t]
        assert len(ident) == 47
        assert all(BAND[0] <= r["grad_ratio"] <= BAND[1] for r in ident)
        assert 0.8 <= math.prod(r["grad_ratio"] for r in ident) <= 1.25
