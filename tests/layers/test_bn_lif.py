"""``fused_bn_lif`` (BatchNorm's affine map inside the fused LIF kernel) equals
``nn.BatchNorm2d`` followed by the reference LIF loop.

Stated tolerances (the fused statistics come from ``torch.var_mean``, BN's own kernel sums in
another order, so the current equals BN's output to rounding, not bit for bit):

* spikes: identical on every neuron whose reference membrane stays >= 1e-3 from threshold at
  every step (and, with these seeds, everywhere);
* gradients of the input, ``gamma``, ``beta`` and a learnable PLIF ``w``: float64 ``rtol=1e-9,
  atol=1e-10``; float32 ``rtol=1e-4, atol=1e-5``;
* running statistics: float64 ``rtol=1e-12``; float32 ``rtol=1e-6, atol=1e-7``;
  ``num_batches_tracked`` equal.
"""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from torch import nn

from masnn.attention import AttnCfg
from masnn.layers import AttnLIF, SpikingConvBlock
from masnn.layers import blocks as blocks_mod
from masnn.layers.bn_lif import fused_bn_lif
from masnn.layout import seq_apply
from masnn.neurons import NeuronSpec, lif_multistep
from masnn.neurons.backends import kernel_build, reference_only
from masnn.neurons.functional import charge
from masnn.neurons.presets import NEURON_PRESETS

MARGIN = 1e-3


def _tol(dtype: torch.dtype) -> dict[str, float]:
    return dict(rtol=1e-9, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)


def _pair(
    C: int, T: int, preset: str = "paper", dtype: torch.dtype = torch.float32, **bn_kw: object
) -> tuple[nn.BatchNorm2d, AttnLIF, nn.BatchNorm2d, AttnLIF]:
    """(bn, neuron) fused-capable (backend auto) and a reference copy (backend torch)."""
    g = torch.Generator().manual_seed(7)
    bn = nn.BatchNorm2d(C, **bn_kw).to(dtype)  # type: ignore[arg-type]
    if bn.affine:
        with torch.no_grad():
            bn.weight.copy_(torch.rand(C, generator=g) + 0.5)
            bn.bias.copy_(torch.rand(C, generator=g) * 0.6 - 0.2)
    if bn.running_mean is not None:
        with torch.no_grad():
            bn.running_mean.copy_(torch.randn(C, generator=g) * 0.3)
            bn.running_var.copy_(torch.rand(C, generator=g) + 0.5)
    neuron = AttnLIF(C, T, neuron=NeuronSpec(preset)).to(dtype)
    if neuron.lif.w is not None:
        with torch.no_grad():
            neuron.lif.w.fill_(0.3)
    ref = AttnLIF(C, T, neuron=NeuronSpec(preset, backend="torch")).to(dtype)
    ref.load_state_dict(neuron.state_dict())
    return bn, neuron, copy.deepcopy(bn), ref


def _inputs(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * 1.5 + 0.4).to(dtype)


def _far(neuron: AttnLIF, x: torch.Tensor) -> torch.Tensor:
    """Per-neuron mask: the reference membrane stays >= MARGIN from v_th at every step."""
    lif = neuron.lif
    p = lif.params()
    v = torch.zeros_like(x[0])
    far = torch.ones_like(x[0], dtype=torch.bool)
    with torch.no_grad():
        for xt in x:
            far &= (charge(xt, v, p) - p.v_th).abs() >= MARGIN
            _, v = lif_multistep(xt[None], v, p, lif.surrogate)
    return far


def _grads(out: torch.Tensor, y: torch.Tensor, bn: nn.Module, neuron: nn.Module,
           g: torch.Tensor) -> list[torch.Tensor]:  # fmt: skip
    params = [p for p in (*bn.parameters(), *neuron.parameters()) if p.requires_grad]
    return list(torch.autograd.grad(out, [y, *params], g))


def _compare(
    y: torch.Tensor,
    bn: nn.BatchNorm2d,
    neuron: AttnLIF,
    bn_ref: nn.BatchNorm2d,
    ref: AttnLIF,
    dtype: torch.dtype,
) -> None:
    y = y.detach().requires_grad_()
    out = fused_bn_lif(y, bn, neuron)
    assert out is not None
    x_ref = seq_apply(bn_ref, y)
    out_ref = ref(x_ref)
    far = _far(ref, x_ref.detach())
    assert far.float().mean() > 0.5
    assert torch.equal(out[:, far], out_ref[:, far])
    assert torch.equal(out, out_ref)  # these seeds: no neuron near threshold flips
    g = _inputs(y.shape, dtype, seed=3)
    for a, b in zip(_grads(out, y, bn, neuron, g), _grads(out_ref, y, bn_ref, ref, g)):
        torch.testing.assert_close(a, b, **_tol(dtype))
    st = dict(rtol=1e-12, atol=1e-14) if dtype == torch.float64 else dict(rtol=1e-6, atol=1e-7)
    for name in ("running_mean", "running_var"):
        if getattr(bn_ref, name) is not None:
            torch.testing.assert_close(getattr(bn, name), getattr(bn_ref, name), **st)
    if bn_ref.num_batches_tracked is not None:
        assert torch.equal(bn.num_batches_tracked, bn_ref.num_batches_tracked)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("preset", NEURON_PRESETS.names())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_equals_batchnorm_then_reference(preset: str, dtype: torch.dtype, train: bool) -> None:
    T, C = 5, 7
    bn, neuron, bn_ref, ref = _pair(C, T, preset, dtype)
    bn.train(train), bn_ref.train(train)
    _compare(_inputs((T, 3, C, 9, 11), dtype, seed=1), bn, neuron, bn_ref, ref, dtype)


@pytest.mark.parametrize(
    "shape",
    [(4, 2, 3, 23, 29), (3, 1, 5, 1, 1), (2, 3, 2, 32, 33)],  # planes of 667, 1, 1056 neurons
    ids=["667", "1", "1056"],
)
def test_odd_plane_sizes(shape: tuple[int, ...]) -> None:
    bn, neuron, bn_ref, ref = _pair(shape[2], shape[0], "plif", torch.float64)
    _compare(_inputs(shape, torch.float64, seed=2), bn, neuron, bn_ref, ref, torch.float64)


@pytest.mark.parametrize(
    "bn_kw",
    [dict(momentum=None), dict(affine=False), dict(track_running_stats=False)],
    ids=["cumulative", "no-affine", "no-running-stats"],
)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_batchnorm_options(bn_kw: dict[str, object], train: bool) -> None:
    """Momentum ``None`` (cumulative average), no affine, no running statistics (batch
    statistics in eval too), over two calls (the running statistics build up)."""
    bn, neuron, bn_ref, ref = _pair(4, 3, "paper", torch.float64, **bn_kw)
    bn.train(train), bn_ref.train(train)
    for seed in (1, 2):
        y = _inputs((3, 2, 4, 6, 5), torch.float64, seed)
        _compare(y, bn, neuron, bn_ref, ref, torch.float64)


def test_non_contiguous_input_and_gradient() -> None:
    bn, neuron, bn_ref, ref = _pair(3, 5, "spikingjelly", torch.float32)
    base = _inputs((3, 7, 5, 2, 4), torch.float32, seed=5)
    y = base.permute(2, 3, 0, 1, 4).requires_grad_()  # (5, 2, 3, 7, 4): non-contiguous
    assert not y.is_contiguous()
    out = fused_bn_lif(y, bn, neuron)
    out_ref = ref(seq_apply(bn_ref, y))
    assert out is not None and torch.equal(out, out_ref)
    g = _inputs((*y.shape, 2), torch.float32, seed=6)[..., 0]
    assert not g.is_contiguous()
    for a, b in zip(_grads(out, y, bn, neuron, g), _grads(out_ref, y, bn_ref, ref, g)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_no_grad_updates_running_stats() -> None:
    bn, neuron, bn_ref, ref = _pair(4, 3)
    y = _inputs((3, 2, 4, 5, 5), torch.float32, seed=8)
    with torch.no_grad():
        out = fused_bn_lif(y, bn, neuron)
        assert out is not None and torch.equal(out, ref(seq_apply(bn_ref, y)))
    torch.testing.assert_close(bn.running_mean, bn_ref.running_mean, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(bn.running_var, bn_ref.running_var, rtol=1e-6, atol=1e-7)


def test_double_backward_is_refused() -> None:
    bn, neuron, _, _ = _pair(2, 3)
    y = _inputs((3, 2, 2, 4, 4), torch.float32, seed=9).requires_grad_()
    out = fused_bn_lif(y, bn, neuron)
    assert out is not None
    with pytest.raises(RuntimeError, match="differentiable once"):
        torch.autograd.grad(out.sum(), y, create_graph=True)


def test_hooks_and_uncovered_configurations_fall_back(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kernel_build, "LOGGED", set())  # this process's earlier messages
    y = _inputs((3, 2, 4, 5, 5), torch.float32, seed=10)
    bn, neuron, _, _ = _pair(4, 3)
    seen = []
    handle = bn.register_forward_hook(lambda m, i, o: seen.append(o))
    with caplog.at_level(logging.INFO, logger="masnn.layers"):
        assert fused_bn_lif(y, bn, neuron) is None
        assert fused_bn_lif(y, bn, neuron) is None
    handle.remove()
    msgs = [r.getMessage() for r in caplog.records if "not fused" in r.getMessage()]
    assert len(msgs) == 1 and "hook" in msgs[0]  # logged once
    handle = neuron.lif.register_forward_hook(lambda m, i, o: None)
    assert fused_bn_lif(y, bn, neuron) is None
    handle.remove()
    assert fused_bn_lif(y, bn, neuron) is not None
    with reference_only():
        assert fused_bn_lif(y, bn, neuron) is None
    assert fused_bn_lif(y.half(), bn.half(), neuron) is None
    bn.float()
    for attn in (AttnCfg("tcsa", placement="code"), AttnCfg("csa", placement="paper")):
        gated = AttnLIF(4, 3, attn=attn)  # conv_post gates / membrane gates: not covered
        assert fused_bn_lif(y, bn, gated) is None
    torch_lif = AttnLIF(4, 3, neuron=NeuronSpec(backend="torch"))
    assert fused_bn_lif(y, bn, torch_lif) is None
    bn.train()
    assert fused_bn_lif(y[:1, :1, :, :1, :1], bn, neuron) is None  # one value per channel


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(bias=False, pool="max", pool_after_neuron=True, neuron=NeuronSpec("plif")),
        dict(attn=AttnCfg("ta", locations={"t": "conv_pre"})),  # TA on the input: fused
    ],
    ids=["ma_snn3-first", "ma_snn5", "ta-conv_pre"],
)
def test_block_runs_fused_and_equals_the_plain_modules(
    kw: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    block = SpikingConvBlock(2, 6, 4, **kw).double()  # type: ignore[arg-type]
    if "ta" in str(kw.get("attn", "")):
        assert block.pre_attn is not None and block.neuron.post_attn is None
    plain = copy.deepcopy(block)
    x = (torch.rand(4, 3, 2, 10, 10) < 0.4).double()
    calls = []

    def spy(y: torch.Tensor, bn: nn.BatchNorm2d, neuron: AttnLIF) -> torch.Tensor | None:
        out = fused_bn_lif(y, bn, neuron)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(blocks_mod, "fused_bn_lif", spy)
    out = block(x)
    assert calls == [True]
    monkeypatch.setattr(blocks_mod, "fused_bn_lif", lambda *a: None)
    out_ref = plain(x)
    assert torch.equal(out, out_ref)
    out.sum().backward()
    out_ref.sum().backward()
    for (name, p), q in zip(block.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, **_tol(torch.float64), msg=name)
    for name, buf in block.bn.named_buffers():
        torch.testing.assert_close(buf, plain.bn.get_buffer(name), rtol=1e-12, atol=1e-14)
