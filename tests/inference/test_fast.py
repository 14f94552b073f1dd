"""``masnn.inference.fast(model)`` equals the model's eval forward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from masnn import create_model
from masnn.inference import fast, fold_bn


def _trained_bn(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Give every BN non-trivial running statistics and affine parameters."""
    g = torch.Generator().manual_seed(3)
    model.train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
        model(x)  # one training forward: running statistics move
    return model.eval()


def _input(T: int, B: int, hw: int = 32, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(T, B, 2, hw, hw, generator=g) < 0.3).to(dtype) * 2


@pytest.mark.parametrize("attn", ["none", "tcsa", "ca"])
def test_fast_equals_eval_forward_float64(attn: str) -> None:
    torch.manual_seed(0)
    model = create_model("ma_snn3_tiny", attn=attn, timesteps=6).double()
    x = _input(6, 3, dtype=torch.float64)
    model = _trained_bn(model, x)
    fm = fast(model)
    assert fm.folded == 5  # 3 conv blocks + 2 linear blocks
    with torch.no_grad():
        ref = model(x)
    out = fm(x)
    assert out.shape == ref.shape and torch.equal(out, ref)
    assert not any(p.requires_grad for p in fm.parameters())
    assert all(p.requires_grad for p in model.parameters())  # the original is untouched
    assert model.features[0].bn.__class__ is nn.BatchNorm2d


def test_fast_float32_close_and_inference_only() -> None:
    torch.manual_seed(1)
    model = create_model("ma_snn3_tiny", attn="none", timesteps=8)
    x = _input(8, 4)
    model = _trained_bn(model, x)
    with torch.no_grad():
        ref = model(x)
    out = fast(model)(x)
    # folded weights round differently: a spike may flip exactly at threshold (1/T per flip)
    assert (out - ref).abs().max() <= 1 / 8 + 1e-6
    assert (out != ref).float().mean() < 0.05
    with pytest.raises(RuntimeError, match="inference only"):
        fast(model).train()


def test_fast_ma_snn5_folds_every_block() -> None:
    torch.manual_seed(0)
    m5 = create_model(
        "ma_snn5", attn="none", timesteps=2, channels=(4,) * 5, hidden=8, input_size=(2, 32, 32)
    )
    m5 = m5.double()
    x = _input(2, 2, hw=32, dtype=torch.float64)
    m5 = _trained_bn(m5, x)
    fm = fast(m5)
    assert fm.folded == 5
    with torch.no_grad():
        assert torch.equal(fm(x), m5(x))


def test_fold_bn_matches_conv_then_bn() -> None:
    g = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, bias=False).double()
    bn = nn.BatchNorm2d(5).double().eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(5, generator=g))
        bn.running_var.copy_(torch.rand(5, generator=g) + 0.5)
        bn.weight.copy_(torch.randn(5, generator=g))
        bn.bias.copy_(torch.randn(5, generator=g))
    x = torch.randn(2, 3, 6, 6, generator=g, dtype=torch.float64)
    with torch.no_grad():
        ref = bn(conv(x))
        fold_bn(conv, bn)
        torch.testing.assert_close(conv(x), ref, rtol=1e-12, atol=1e-12)


def test_fast_ms_resnet_folds_block_and_shortcut_bns() -> None:
    torch.manual_seed(0)
    m = create_model(
        "ms_resnet18", attn="none", timesteps=2, num_classes=5, widths=(4, 4, 8, 8),
        input_size=(3, 32, 32),
    ).double()  # fmt: skip
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 2, 3, 32, 32, generator=g, dtype=torch.float64)
    m = _trained_bn(m, x)
    n_bn = sum(isinstance(b, nn.modules.batchnorm._BatchNorm) for b in m.modules())
    fm = fast(m)
    left = sum(isinstance(b, nn.modules.batchnorm._BatchNorm) for b in fm.modules())
    assert fm.folded >= n_bn - 2 and left == n_bn - fm.folded
    with torch.no_grad():
        torch.testing.assert_close(fm(x), m(x), rtol=0, atol=1e-12)
