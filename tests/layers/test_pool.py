"""``masnn.layers.pool.AvgPool2d``: nn.AvgPool2d's results, without keeping its input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from masnn.layers.pool import AvgPool2d


@pytest.mark.parametrize(
    ("shape", "k"), [((6, 5, 8, 8), 2), ((6, 5, 9, 7), 2), ((3, 4, 12, 12), 3), ((5, 7, 7), 2)]
)
def test_forward_and_backward_equal_avg_pool2d_bit_for_bit(shape: tuple[int, ...], k: int) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    y, y_ref = AvgPool2d(k)(x), F.avg_pool2d(x_ref, k)
    grad = torch.randn(y_ref.shape, generator=g)
    y.backward(grad)
    y_ref.backward(grad)
    assert torch.equal(y, y_ref)
    assert x.grad is not None and x_ref.grad is not None
    assert torch.equal(x.grad, x_ref.grad)


def _saved_numels(fn: object, x: torch.Tensor) -> list[int]:
    sizes: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)  # type: ignore[operator]
    return sizes


def test_the_input_is_not_kept_for_backward() -> None:
    x = torch.randn(4, 3, 16, 16, requires_grad=True) * 1.0  # a non-leaf, as a BN output
    assert x.numel() in _saved_numels(nn.AvgPool2d(2), x)  # torch's own op keeps it
    assert x.numel() not in _saved_numels(AvgPool2d(2), x)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3, stride=2),
        dict(kernel_size=2, padding=1),
        dict(kernel_size=2, ceil_mode=True),
        dict(kernel_size=2, divisor_override=3),
    ],
)
def test_other_settings_are_torch_s_op(kwargs: dict) -> None:
    x = torch.randn(2, 3, 9, 9, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    y, y_ref = AvgPool2d(**kwargs)(x), nn.AvgPool2d(**kwargs)(x_ref)
    y.sum().backward()
    y_ref.sum().backward()
    assert torch.equal(y, y_ref)
    assert x.grad is not None and x_ref.grad is not None
    assert torch.equal(x.grad, x_ref.grad)


def test_is_an_nn_avgpool2d() -> None:
    """Code that recognises nn.AvgPool2d (sparse folding, NIR, ONNX) keeps working."""
    assert isinstance(AvgPool2d(2), nn.AvgPool2d)
