"""``masnn.layers.pool.AvgPool2d``: nn.AvgPool2d's results, without keeping its input."""

from __future__ import annotations

import contextlib

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


def _bn(c: int, momentum: float | None) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c, momentum=momentum)
    nn.init.uniform_(bn.weight, 0.5, 1.5)
    nn.init.uniform_(bn.bias, -0.5, 0.5)
    return bn


@pytest.mark.parametrize(
    ("shape", "k", "momentum"),
    [((12, 5, 8, 8), 2, 0.1), ((6, 3, 12, 6), 3, None), ((4, 7, 4, 4), 2, 0.3)],
)
def test_fused_bn_avg_pool_equals_the_two_modules(
    shape: tuple[int, ...], k: int, momentum: float | None
) -> None:
    """Output, the input's and BN's gradients within fp32 rounding; running statistics and
    the batch counter updated as nn.BatchNorm2d does, step after step."""
    import copy

    from masnn.layers.pool import fused_bn_avg_pool

    torch.manual_seed(0)
    bn = _bn(shape[1], momentum)
    bn_ref = copy.deepcopy(bn)
    pool = AvgPool2d(k)
    for _ in range(3):
        y = (torch.randn(shape) * 2 + 0.7).requires_grad_()
        y_ref = y.detach().clone().requires_grad_()
        out = fused_bn_avg_pool(y, bn, pool)
        assert out is not None
        ref = F.avg_pool2d(bn_ref(y_ref), k)
        grad = torch.randn(ref.shape)
        out.backward(grad)
        ref.backward(grad)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
        assert y.grad is not None and y_ref.grad is not None
        torch.testing.assert_close(y.grad, y_ref.grad, rtol=1e-4, atol=1e-6)
        for p, p_ref in ((bn.weight, bn_ref.weight), (bn.bias, bn_ref.bias)):
            assert p.grad is not None and p_ref.grad is not None
            torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4, atol=1e-5)
        bn.zero_grad()
        bn_ref.zero_grad()
        torch.testing.assert_close(bn.running_mean, bn_ref.running_mean)
        torch.testing.assert_close(bn.running_var, bn_ref.running_var)
        assert int(bn.num_batches_tracked) == int(bn_ref.num_batches_tracked)  # type: ignore[arg-type]


def _kernel_or_torch(kernel: bool) -> contextlib.AbstractContextManager[None]:
    """The fused BN + AvgPool's CPU kernel path (skip where it is not built) or its torch path."""
    from masnn.neurons.backends import reference_only
    from masnn.neurons.backends.auto import fused_backend

    if not kernel:
        return reference_only()
    if fused_backend("cpu") is None:
        pytest.skip("the fused CPU kernel library is not available here")
    return contextlib.nullcontext()


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "torch"])
@pytest.mark.parametrize("k", [2, 3])
def test_fused_bn_avg_pool_gradcheck_float64(kernel: bool, k: int) -> None:
    from masnn.layers.pool import _BNAvgPool, _use_kernel

    y = torch.randn(4, 3, 2 * k, 3 * k, dtype=torch.float64, requires_grad=True)
    w = torch.empty(3, dtype=torch.float64).uniform_(0.5, 1.5).requires_grad_()
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)

    def f(y: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return _BNAvgPool.apply(y, w, b, 1e-5, k)[0]

    with _kernel_or_torch(kernel):
        assert _use_kernel(y) is kernel
        assert torch.autograd.gradcheck(f, (y, w, b))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("shape", "k"), [((16, 64, 32, 32), 2), ((5, 7, 6, 9), 3), ((3, 1, 2, 2), 2)]
)
def test_fused_bn_avg_pool_kernel_equals_its_torch_path(
    shape: tuple[int, ...], k: int, dtype: torch.dtype
) -> None:
    """The CPU kernel's statistics, window means and input gradient equal the torch
    operations' to float rounding (double-summed statistics); same running statistics."""
    import copy

    from masnn.layers.pool import fused_bn_avg_pool

    torch.manual_seed(0)
    bn = _bn(shape[1], 0.1).to(dtype)
    bn_ref = copy.deepcopy(bn)
    pool = AvgPool2d(k)
    y = (torch.randn(shape, dtype=dtype) * 3 + 1.5).requires_grad_()
    y_ref = y.detach().clone().requires_grad_()
    with _kernel_or_torch(True):
        out = fused_bn_avg_pool(y, bn, pool)
    with _kernel_or_torch(False):
        out_ref = fused_bn_avg_pool(y_ref, bn_ref, pool)
    assert out is not None and out_ref is not None
    grad = torch.randn(out.shape, dtype=dtype)
    out.backward(grad)
    out_ref.backward(grad)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(out, out_ref, **tol)
    assert y.grad is not None and y_ref.grad is not None
    torch.testing.assert_close(y.grad, y_ref.grad, **tol)
    for p, p_ref in ((bn.weight, bn_ref.weight), (bn.bias, bn_ref.bias)):
        assert p.grad is not None and p_ref.grad is not None
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(bn.running_mean, bn_ref.running_mean, **tol)
    torch.testing.assert_close(bn.running_var, bn_ref.running_var, **tol)


def test_fused_bn_avg_pool_declines_what_it_does_not_cover() -> None:
    """Eval mode, a pool that does not tile or divide the map, a hooked module: ``None``
    (the block then runs the two modules)."""
    from masnn.layers.pool import fused_bn_avg_pool

    y = torch.randn(2, 3, 8, 8, requires_grad=True)
    bn, pool = _bn(3, 0.1), AvgPool2d(2)
    assert fused_bn_avg_pool(y, bn.eval(), pool) is None
    bn.train()
    assert fused_bn_avg_pool(y, bn, AvgPool2d(3, stride=2)) is None
    assert fused_bn_avg_pool(torch.randn(2, 3, 7, 8), bn, pool) is None
    assert fused_bn_avg_pool(y, bn, nn.AvgPool2d(2)) is None  # torch's module: not ours
    handle = bn.register_forward_hook(lambda *a: None)
    assert fused_bn_avg_pool(y, bn, pool) is None
    handle.remove()
    assert fused_bn_avg_pool(y, bn, pool) is not None


def test_block_trains_the_same_with_the_fused_bn_pool() -> None:
    """A conv block with BN -> AvgPool (the MA-SNN layer): the fused op and the two modules
    (a forward hook forces the latter) give the same spikes and gradients."""
    import copy

    from masnn.layers import SpikingConvBlock

    torch.manual_seed(0)
    block = SpikingConvBlock(2, 6, 4, pool="avg")
    ref = copy.deepcopy(block)
    ref.bn.register_forward_hook(lambda *a: None)
    x = (torch.rand(4, 3, 2, 8, 8) < 0.3).float()
    out, out_ref = block(x), ref(x)
    assert torch.equal(out, out_ref)
    g = torch.rand_like(out)
    out.backward(g)
    out_ref.backward(g)
    for (name, p), p_ref in zip(block.named_parameters(), ref.parameters()):
        assert p.grad is not None and p_ref.grad is not None, name
        torch.testing.assert_close(
            p.grad, p_ref.grad, rtol=1e-4, atol=1e-4, msg=name
        )  # conv.bias ~ 0


def test_fused_bn_avg_pool_writes_its_input_gradient_into_y_only_when_nothing_else_sees_y(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The CPU kernel's backward overwrites the saved conv output with its gradient only when
    the graph is not retained and nothing else holds it (a hook's reference, a view); the
    gradients equal those of the path that writes a new tensor."""
    import copy

    import masnn.layers.pool as pool_mod
    from masnn.layers import SpikingConvBlock

    with _kernel_or_torch(True):
        calls: list[bool] = []
        real = pool_mod.bn_pool_input_grad

        def spy(*args: object, **kwargs: object) -> torch.Tensor:
            calls.append(bool(kwargs.get("inplace")))
            return real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(pool_mod, "bn_pool_input_grad", spy)
        torch.manual_seed(0)
        block = SpikingConvBlock(2, 6, 4, pool="avg")
        ref = copy.deepcopy(block)
        x = (torch.rand(4, 3, 2, 8, 8) < 0.3).float()

        block(x).sum().backward()
        assert calls == [True]
        monkeypatch.setattr(pool_mod, "consumable", lambda t: False)
        ref(x).sum().backward()
        for (name, p), p_ref in zip(block.named_parameters(), ref.parameters()):
            assert p.grad is not None and p_ref.grad is not None, name
            assert torch.equal(p.grad, p_ref.grad), name
        monkeypatch.undo()
        monkeypatch.setattr(pool_mod, "bn_pool_input_grad", spy)

        calls.clear()
        loss = block(x).sum()
        loss.backward(retain_graph=True)  # a second backward reads y again
        loss.backward()
        assert calls == [False, True]

        for keep in (lambda o: o, lambda o: o[:, :2]):  # the tensor itself, or a view of it
            held: list[torch.Tensor] = []
            hook = lambda m, i, o, held=held, keep=keep: held.append(keep(o))  # noqa: E731
            handle = block.conv.register_forward_hook(hook)
            calls.clear()
            out = block(x)
            before = held[0].clone()
            out.sum().backward()
            handle.remove()
            assert calls == [False]
            assert torch.equal(held[0], before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("shape", "k"), [((6, 5, 8, 8), 2), ((6, 5, 9, 7), 2), ((3, 4, 12, 13), 3), ((5, 7, 7), 2)]
)
def test_inference_pool_runs_the_kernel_and_equals_avg_pool2d_bit_for_bit(
    shape: tuple[int, ...], k: int, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    import masnn.layers.pool as pool_mod

    calls: list[int] = []
    real = pool_mod.avg_pool

    def spy(x: torch.Tensor, kk: int) -> torch.Tensor:
        calls.append(1)
        return real(x, kk)

    monkeypatch.setattr(pool_mod, "avg_pool", spy)
    x = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    with _kernel_or_torch(True), torch.no_grad():
        out = AvgPool2d(k)(x)
        out_nc = AvgPool2d(k)(x.transpose(-1, -2))  # not contiguous: torch's op
    assert calls == [1]
    assert torch.equal(out, F.avg_pool2d(x, k))
    assert torch.equal(out_nc, F.avg_pool2d(x.transpose(-1, -2), k))
