"""The fused pooled attention (TA, CA / SA pooled over the window, ReLU) equals the reference.

``MultiDimAttention(backend="auto")`` runs TA, pooled CA and pooled SA (the ``code``
placement; TA at ``conv_post`` in both placements) through :mod:`masnn.attention.pooled`;
``backend="torch"`` runs each gate's own forward. Stated tolerances:

* forward output: float64 ``rtol=1e-12, atol=1e-14``; float32 ``rtol=1e-5, atol=1e-6`` (the
  pools sum in another order than torch, which moves the gates by float rounding; the products
  and the ReLU are the reference's, and a ReLU's mask cannot move: the gates are positive);
* gradients of the input and of every gate weight: float64 ``rtol=1e-9, atol=1e-12``; float32
  ``rtol=1e-4, atol=1e-5``;
* the hand-written backward against finite differences of the fused forward, float64
  ``gradcheck`` (``fast_mode``, ``atol=1e-8, rtol=1e-7``);
* ties in a max pool: the gradient is shared between the tied elements like torch's ``amax``
  (float64, the tolerance above);
* whole ``ma_snn3`` (TCSA, code placement) in float64: outputs and every parameter's gradient
  with the fused gates equal the reference gates (``rtol=1e-9, atol=1e-12``).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import torch
from torch import nn

import masnn.attention.pooled as pooled
from masnn.attention import AttnCfg
from masnn.attention.channel import ChannelAttention, EfficientChannelAttention
from masnn.attention.composite import MultiDimAttention
from masnn.attention.spatial import SpatialAttention
from masnn.attention.temporal import TemporalAttention
from tests._kernel_fallback import assert_warned_once, run_without_compiler

NAMES = ["ta", "ca", "sa", "csa", "tca", "tsa", "tcsa"]
TOL = {
    torch.float64: ({"rtol": 1e-12, "atol": 1e-14}, {"rtol": 1e-9, "atol": 1e-12}),
    torch.float32: ({"rtol": 1e-5, "atol": 1e-6}, {"rtol": 1e-4, "atol": 1e-5}),
}


@pytest.fixture
def kernel_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls of the fused forward."""
    calls: list[int] = []
    real = pooled._Gates.forward

    def spy(self: pooled._Gates, x: torch.Tensor, grad: bool) -> torch.Tensor:
        calls.append(1)
        return real(self, x, grad)

    monkeypatch.setattr(pooled._Gates, "forward", spy)
    return calls


def _pair(
    name: str, c: int, t: int, dtype: torch.dtype, relu: bool = True, k: int = 3
) -> tuple[MultiDimAttention, MultiDimAttention]:
    cfg = AttnCfg(name, placement="code", reduction_c=2, reduction_t=2, kernel_size=k, relu=relu)
    torch.manual_seed(0)
    new = cfg.resolve().build("conv_post", c, t)
    assert isinstance(new, MultiDimAttention) and new.backend == "auto"
    ref = copy.deepcopy(new)
    ref.backend = "torch"
    with torch.no_grad():  # positive first MLP layers: the ReLUs inside the MLPs pass
        for m in (*ref.modules(), *new.modules()):
            if isinstance(m, (ChannelAttention, TemporalAttention)):
                m.mlp[0].weight.abs_()
    return ref.to(dtype), new.to(dtype)


def _inputs(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) + 0.2).to(dtype)


def _run(
    mod: nn.Module, x: torch.Tensor, go: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
    x = x.detach().clone().requires_grad_()
    mod.zero_grad(set_to_none=True)
    y = mod(x)
    (y * go).sum().backward()
    grads = {"x": x.grad} | {n: p.grad for n, p in mod.named_parameters()}
    return y.detach(), grads


def _check(
    ref: nn.Module, new: nn.Module, x: torch.Tensor, go: torch.Tensor, dtype: torch.dtype
) -> None:
    tol_y, tol_g = TOL[dtype]
    y_ref, g_ref = _run(ref, x, go)
    y_new, g_new = _run(new, x, go)
    torch.testing.assert_close(y_new, y_ref, **tol_y)
    assert g_new.keys() == g_ref.keys()
    for n, g in g_ref.items():
        assert g is not None and g.abs().sum() > 0, n  # every path carries a gradient
        torch.testing.assert_close(g_new[n], g, **tol_g, msg=n)


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_pooled_attention_equals_reference(
    name: str, relu: bool, dtype: torch.dtype, kernel_calls: list[int]
) -> None:
    T, B, C, H, W = 6, 3, 8, 5, 4
    ref, new = _pair(name, C, T, dtype, relu)
    x = _inputs((T, B, C, H, W), dtype, seed=1)
    go = _inputs(x.shape, dtype, seed=2)
    _check(ref, new, x, go, dtype)
    assert len(kernel_calls) == 1
    with torch.no_grad():  # the inference path (nothing saved)
        torch.testing.assert_close(new(x), ref(x), **TOL[dtype][0])
    assert len(kernel_calls) == 2


def test_ta_on_fully_connected_input() -> None:
    """TA (with the ReLU) on ``(T, B, F)``, as the official code's FC layers."""
    ref, new = _pair("ta", 4, 5, torch.float64)
    x = _inputs((5, 3, 11), torch.float64, seed=3)
    _check(ref, new, x, _inputs(x.shape, torch.float64, seed=4), torch.float64)


@pytest.mark.parametrize("name", ["tcsa", "ta", "csa"])
def test_odd_sizes_noncontiguous_input_and_grad_one_step(name: str) -> None:
    dt = torch.float64
    T, B, C, H, W = 5, 2, 7, 3, 5
    ref, new = _pair(name, C, T, dt, k=7)  # 7 x 7 conv on a 3 x 5 map
    base = _inputs((C, W, B, T, H), dt, seed=5)
    x = base.permute(3, 2, 0, 4, 1)  # (T, B, C, H, W), non-contiguous
    assert not x.is_contiguous()
    go = _inputs((T, B, C, H, W, 2), dt, seed=6)[..., 0]  # non-contiguous gradient
    assert not go.is_contiguous()
    _check(ref, new, x, go, dt)
    for shape in [(1, 1, C, 1, 1), (1, 2, C, 1, 3), (3, 1, C, 2, 1)]:  # T = 1, one pixel
        r1, n1 = _pair(name, C, shape[0], dt)
        xs = _inputs(shape, dt, seed=7)
        _check(r1, n1, xs, _inputs(shape, dt, seed=8), dt)


def test_ties_in_max_pools_share_the_gradient_like_torch() -> None:
    """Constant regions (conv outputs over empty input) tie every max pool."""
    dt = torch.float64
    ref, new = _pair("tcsa", 4, 3, dt)
    x = torch.full((3, 2, 4, 3, 3), 0.2, dtype=dt)
    x[:, 1, :, 1:, :] = 0.35  # ties inside a channel, across channels and across steps
    x[1, 0, 2] = -0.1
    go = _inputs(x.shape, dt, seed=9)
    _check(ref, new, x, go, dt)


def test_fused_backward_gradcheck() -> None:
    dt = torch.float64
    _, new = _pair("tcsa", 5, 4, dt)
    x = _inputs((4, 2, 5, 3, 4), dt, seed=10).requires_grad_()
    names = [n for n, _ in new.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in new.parameters()]

    def f(xi: torch.Tensor, *ws: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.func.functional_call(new, dict(zip(names, ws)), (xi,))
        return out

    assert f(x, *params).grad_fn.__class__.__name__ == "_FusedPooledBackward"
    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-8, rtol=1e-7, fast_mode=True)


def test_second_derivative_goes_through_the_reference() -> None:
    """``create_graph=True`` (e.g. the isometry probes) is differentiable, like the reference."""
    dt = torch.float64
    ref, new = _pair("tcsa", 4, 3, dt)
    x0 = _inputs((3, 2, 4, 3, 3), dt, seed=11)
    v = _inputs(x0.shape, dt, seed=12)
    res = []
    for mod in (ref, new):
        x = x0.clone().requires_grad_()
        u = torch.zeros_like(x, requires_grad=True)
        (jt_u,) = torch.autograd.grad(mod(x), x, u, create_graph=True)
        (w,) = torch.autograd.grad(jt_u, u, v)  # J v
        (gx,) = torch.autograd.grad((mod(x) ** 2).sum(), x, create_graph=True)
        (hx,) = torch.autograd.grad((gx * v).sum(), x)  # a Hessian-vector product
        res.append((w, hx))
    for a, b in zip(*res):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_torch_func_transforms_run_the_reference(kernel_calls: list[int]) -> None:
    dt = torch.float64
    ref, new = _pair("tcsa", 4, 3, dt)
    x = _inputs((3, 2, 4, 3, 3), dt, seed=18)
    g_new = torch.func.grad(lambda xi: new(xi).pow(2).sum())(x)
    assert not kernel_calls
    g_ref = torch.func.grad(lambda xi: ref(xi).pow(2).sum())(x)
    torch.testing.assert_close(g_new, g_ref, rtol=0, atol=0)


def test_backward_twice_with_retain_graph() -> None:
    dt = torch.float64
    ref, new = _pair("tcsa", 4, 3, dt)
    x = _inputs((3, 2, 4, 3, 3), dt, seed=13)
    grads = []
    for mod in (ref, new):
        xi = x.clone().requires_grad_()
        y = mod(xi).sum()
        y.backward(retain_graph=True)
        y.backward()
        grads.append([xi.grad, *(p.grad for p in mod.parameters())])
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)


def test_frozen_input_or_frozen_weights() -> None:
    """Only the gradients asked for are computed, each equal to the reference's."""
    dt = torch.float64
    ref, new = _pair("tcsa", 4, 3, dt)
    x = _inputs((3, 2, 4, 3, 3), dt, seed=14)
    for mod in (ref, new):  # the input needs no gradient (a first layer)
        mod.zero_grad(set_to_none=True)
        mod(x).sum().backward()
    for p, q in zip(ref.parameters(), new.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-9, atol=1e-12)
    for mod in (ref, new):  # SA's conv and TA's MLP frozen: CA's MLP only
        assert mod.sa is not None and mod.ta is not None
        mod.sa.requires_grad_(False)
        mod.ta.requires_grad_(False)
        mod.zero_grad(set_to_none=True)
        mod(x).sum().backward()
        assert mod.sa.conv.weight.grad is None
    assert ref.ca is not None and new.ca is not None
    for p, q in zip(ref.ca.parameters(), new.ca.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-9, atol=1e-12)


def test_result_does_not_depend_on_thread_count() -> None:
    _, new = _pair("tcsa", 5, 4, torch.float32)
    x = _inputs((4, 5, 5, 6, 6), torch.float32, seed=15)
    go = _inputs(x.shape, torch.float32, seed=16)
    results = []
    old = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(_run(new, x, go))
    finally:
        torch.set_num_threads(old)
    for y, g in results[1:]:  # the kernel's passes: bit for bit
        assert torch.equal(y, results[0][0])
        assert torch.equal(g["x"], results[0][1]["x"])
        for n in g:  # the weights' gradients also go through torch's own conv / linear backward
            torch.testing.assert_close(g[n], results[0][1][n], rtol=1e-6, atol=0, msg=n)


class _MyCA(ChannelAttention):
    """A subclass (e.g. a user's variant): the kernel cannot know what it changed."""


@pytest.mark.parametrize("case", ["per_step", "eca", "subclass", "sigmoid", "hook", "torch"])
def test_other_configurations_run_the_reference(
    case: str, kernel_calls: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    torch.manual_seed(0)
    ta: nn.Module | None = TemporalAttention(4, 2)
    ca: nn.Module = ChannelAttention(6, 2, per_step=False)
    sa: nn.Module = SpatialAttention(3, per_step=False)
    backend, seen = "auto", []
    if case == "per_step":
        ca, sa = ChannelAttention(6, 2), SpatialAttention(3)
    elif case == "eca":
        ca = EfficientChannelAttention(6, per_step=False)
    elif case == "subclass":
        ca = _MyCA(6, 2, per_step=False)
    elif case == "sigmoid":
        sa.gate = nn.Hardsigmoid()
    elif case == "hook":
        assert ta is not None
        ta.gate.register_forward_hook(lambda m, a, out: seen.append(out.shape))
    else:
        backend = "torch"
    new = MultiDimAttention(ta, ca, sa, relu=True, backend=backend)
    ref = copy.deepcopy(new)
    ref.backend = "torch"
    x = _inputs((4, 2, 6, 3, 3), torch.float32, seed=17)
    with caplog.at_level(logging.INFO, logger="masnn.attention"):
        assert torch.equal(new(x), ref(x))
    assert not kernel_calls
    if case == "hook":
        assert seen == [(4, 2, 1, 1, 1)] * 2  # the hook saw the gate, as the reference
    if case != "torch":  # logged once per process and reason
        assert any("pooled attention on the reference" in m for m in pooled._said)


def test_code_placement_ma_snn3_equals_reference_gates(kernel_calls: list[int]) -> None:
    """Whole model, float64: the fused gates vs the reference gates, same neuron backend."""
    from masnn import create_model

    new, ref = (
        create_model("ma_snn3_tiny", attn="tcsa", placement="code", timesteps=4).double()
        for _ in range(2)
    )
    ref.load_state_dict(new.state_dict())
    gates = [m for m in ref.modules() if isinstance(m, MultiDimAttention)]
    assert len(gates) >= 3
    for m in gates:
        m.backend = "torch"
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(4, 2, 2, 32, 32, generator=gen) < 0.3).double()
    outs, grads = [], []
    for model in (ref, new):
        model.zero_grad(set_to_none=True)
        y = model(x)
        (y * torch.arange(y.shape[-1], dtype=y.dtype)).sum().backward()
        outs.append(y.detach())
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert len(kernel_calls) == len(gates)
    assert outs[0].abs().sum() > 0
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-9, atol=1e-12)
    for n, g in grads[0].items():
        assert g is not None and grads[1][n] is not None, n
        torch.testing.assert_close(grads[1][n], g, rtol=1e-9, atol=1e-12, msg=n)


def test_model_backend_torch_keeps_the_reference_gates(kernel_calls: list[int]) -> None:
    from masnn import create_model

    model = create_model("ma_snn3_tiny", attn="tcsa", placement="code", timesteps=4,
                         backend="torch")  # fmt: skip
    gates = [m for m in model.modules() if isinstance(m, MultiDimAttention)]
    assert gates and all(m.backend == "torch" for m in gates)
    model(torch.zeros(4, 1, 2, 32, 32))
    assert not kernel_calls
    paper = create_model("ma_snn3_tiny", timesteps=4)  # TCSA, paper placement: TA fused
    paper(torch.zeros(4, 1, 2, 32, 32))
    assert kernel_calls


_FALLBACK = """
import logging, torch
from masnn.attention import AttnCfg
from masnn.neurons.backends.kernel_build import BuildError
import masnn.attention.pooled as pooled
logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
torch.manual_seed(0)
m = AttnCfg("tcsa", placement="code").resolve().build("conv_post", 6, 4)
x = torch.randn(4, 2, 6, 5, 5, requires_grad=True)
y = m(x)
y.sum().backward()
m.backend = "torch"
assert torch.equal(y, m(x))
m.backend = "auto"
m(x)
try:
    pooled.fused_pooled(x, m.ta, m.ca, m.sa, True)
except BuildError as exc:
    print("fused raised:", exc)
"""


def test_failed_build_falls_back_to_the_reference_with_a_warning(tmp_path: Path) -> None:
    res = run_without_compiler(tmp_path, _FALLBACK)
    assert_warned_once(res, "fused pooled-attention kernel unavailable")
    assert "fused raised: C++ compiler" in res.stdout
