"""Att-Res-SNN blocks (paper §8.1, Theorem 1): with BN2 gamma = beta = 0, Att-Res-SNN-1 is an
exact identity forward and backward, and Att-Res-SNN-2 equals CSA(x)."""

from __future__ import annotations

import pytest
import torch

from masnn.models import create_model
from masnn.models.ms_resnet import BN2_INIT, BN_INIT


def _block(att_res: int, placement: str, attn: str = "csa"):
    m = create_model(
        "ms_resnet18",
        timesteps=2,
        num_classes=3,
        attn=attn,
        placement=placement,
        att_res=att_res,
        widths=(16, 16, 16, 16),
    ).double()
    block = m.stages[0][1]  # stride 1, identity shortcut
    assert block.shortcut is None
    bn2 = block.bn2.module
    with torch.no_grad():
        bn2.weight.zero_()
        bn2.bias.zero_()
    return m, block


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("placement", ["paper", "code"])
@pytest.mark.parametrize("attn", ["csa", "ca", "none"])
def test_att_res_1_is_identity(attn, placement, train):
    torch.manual_seed(0)
    _, block = _block(1, placement, attn)
    block.train(train)
    x = torch.randn(2, 3, 16, 6, 5, dtype=torch.float64, requires_grad=True)
    out = block(x)
    assert torch.equal(out, x)
    grad = torch.randn_like(out)
    out.backward(grad)
    assert torch.equal(x.grad, grad)


@pytest.mark.parametrize("placement", ["paper", "code"])
def test_att_res_2_equals_csa(placement):
    torch.manual_seed(0)
    _, block = _block(2, placement)
    block.eval()
    assert block.attn is not None
    x = torch.randn(2, 3, 16, 6, 5, dtype=torch.float64)
    assert torch.equal(block(x), block.attn(x))
    assert not torch.equal(block.attn(x), x)  # the gate does something
    # Att-Res-SNN-2 has no ReLU: negative membrane survives the gate
    assert (block(x) < 0).any()


def test_bn_init_and_structure():
    m = create_model("ms_resnet34", attn="none", num_classes=10)
    for stage in m.stages:
        first = stage[0]
        assert first.conv1.module.stride == (2, 2)  # every stage's first block has stride 2
        assert first.shortcut is not None
        assert torch.all(first.bn1.module.weight == BN_INIT)
        assert torch.all(first.bn2.module.weight == BN2_INIT)
        assert torch.all(first.bn2.module.bias == 0)
    x = torch.zeros(1, 1, 3, 64, 96)
    assert m.forward_features(x).shape == (1, 1, 512, 2, 3)  # overall stride 32
