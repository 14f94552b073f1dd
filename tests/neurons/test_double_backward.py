"""Second derivatives: the fused kernels refuse them loudly; ``reference_only`` gives them.

Their backward passes are hand-written (differentiable once). Before this check, a J J^T v
product through a fused LIF silently missed the LIF path (``block_isometry``'s varphi was
wrong, even negative, under the default backend).
"""

from __future__ import annotations

import pytest
import torch

from masnn import create_model
from masnn.analysis import block_isometry
from masnn.neurons import LIF
from masnn.neurons.backends import reference_forced, reference_only


def _double_grad(lif: LIF) -> torch.Tensor:
    x = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(0), requires_grad=True)
    (g,) = torch.autograd.grad((lif(x) * x).sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x)
    return gg


def test_fused_lif_refuses_create_graph() -> None:
    with pytest.raises(RuntimeError, match="differentiable once.*reference_only"):
        _double_grad(LIF("paper", backend="cpp"))


def test_reference_only_gives_the_reference_second_derivative() -> None:
    ref = _double_grad(LIF("paper", backend="torch"))
    with reference_only():
        assert reference_forced()
        got = _double_grad(LIF("paper"))  # "auto"
    assert not reference_forced()
    assert torch.equal(got, ref)


def test_block_isometry_is_the_same_under_the_default_backend() -> None:
    out = []
    for backend in ("torch", "auto"):
        torch.manual_seed(0)
        model = create_model("ms_resnet18", num_classes=10, timesteps=1,
                             input_size=(3, 16, 16), widths=(4, 8, 8, 8), backend=backend)  # fmt: skip
        model.train()
        x = torch.randn(1, 2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        out.append([(r.phi, r.varphi) for r in block_isometry(model, x, probes=2)])
    for (phi, varphi), (phi_ref, varphi_ref) in zip(out[1], out[0]):
        assert phi == pytest.approx(phi_ref, rel=1e-5)
        assert varphi == pytest.approx(varphi_ref, rel=1e-4, abs=1e-6)
