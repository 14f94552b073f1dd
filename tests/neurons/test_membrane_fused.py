"""The fused CPU LIF with per-step membrane attention equals the reference loop.

``backend="auto"`` / ``"cpp"`` run CA / ECA / SimAM, SA, CA -> SA at ``membrane`` in one
kernel (:mod:`masnn.neurons.backends.membrane`); ``"torch"`` runs the reference
``charge -> gate -> fire -> reset`` loop. Stated tolerances:

* spikes: identical wherever the reference's gated membrane stays >= 1e-3 from threshold. The
  gates couple every neuron of a sample (pools over ``H, W`` and ``C``), so a spike that flips
  at a near-threshold neuron may move the whole sample afterwards: each sample is compared up
  to and including its first step with a near-threshold neuron;
* gradients (input, streamed state ``v0``, every gate weight, TA weights before the loop, PLIF
  ``w``), on inputs whose spikes agree everywhere: float64 ``rtol=1e-9, atol=1e-12``;
  float32 ``rtol=1e-4, atol=1e-5`` (the pools, MLP and conv sum in another order than torch);
* the hand-written backward against finite differences of the fused forward itself, float64
  ``gradcheck`` with the surrogate's smooth primitive in place of the step (reset kept in the
  graph, since a detached reset is deliberately not the derivative); ``fast_mode`` with
  ``atol=1e-8, rtol=1e-7`` (it catches a 1 % error in any one path, checked by mutation).
"""

from __future__ import annotations

import logging

import pytest
import torch

import masnn.neurons.backends.membrane as membrane
from masnn.attention import AttnCfg
from masnn.attention.channel import ChannelAttention
from masnn.attention.composite import MembraneAttention
from masnn.attention.spatial import SpatialAttention
from masnn.layers import AttnLIF
from masnn.neurons import LIF, NeuronSpec
from masnn.neurons.backends import NotSupportedByBackend
from masnn.neurons.functional import charge, fire, reset
from masnn.neurons.presets import NEURON_PRESETS

PRESETS = NEURON_PRESETS.names()
NAMES = ["ca", "sa", "csa", "tcsa", "eca", "simam"]
MARGIN = 1e-3


@pytest.fixture
def kernel_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls of the fused kernel's forward."""
    calls: list[int] = []
    real = membrane._forward

    def spy(*args: object, **kw: object):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(membrane, "_forward", spy)
    return calls


def _pair(
    preset: str,
    name: str,
    c: int,
    t: int,
    dtype: torch.dtype,
    k: int = 3,
    backend: str = "auto",
    **kw: object,
) -> tuple[AttnLIF, AttnLIF]:
    """The reference (``torch``) gated neuron and the same weights on ``backend``."""
    cfg = AttnCfg(name, reduction_c=2, kernel_size=k)
    torch.manual_seed(0)
    ref = AttnLIF(c, t, attn=cfg, neuron=NeuronSpec(preset, backend="torch", kwargs=kw))
    new = AttnLIF(c, t, attn=cfg, neuron=NeuronSpec(preset, backend=backend, kwargs=kw))
    _activate(ref)
    new.load_state_dict(ref.state_dict())
    if ref.lif.w is not None:  # a learnable tau away from its init
        with torch.no_grad():
            ref.lif.w.fill_(0.3)
            new.lif.w.fill_(0.3)
    return ref.to(dtype), new.to(dtype)


def _activate(module: torch.nn.Module) -> None:
    """A positive first CA layer: on mostly positive membranes its ReLUs pass (at the default
    init, with a hidden width of 2, both may be dead and the MLP gradients trivially zero)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, ChannelAttention):
                m.mlp[0].weight.abs_()


def _inputs(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * 0.6 + 0.3).to(dtype)


def _scale(layer: AttnLIF) -> float:
    """Input scale that makes the gated membrane reach threshold (each gate is about 1/2)."""
    p = layer.lif.params()
    gain = float(torch.as_tensor(p.input_gain).detach()) if layer.lif.spec.decay_input else 1.0
    return float(p.v_th) / 0.3 * 2.0 ** len(layer.attn.kinds) / gain


def _run(layer: AttnLIF, x: torch.Tensor, v0: torch.Tensor, gs: torch.Tensor, gv: torch.Tensor):  # type: ignore[no-untyped-def]
    x = x.detach().clone().requires_grad_()
    v0 = v0.detach().clone().requires_grad_()
    layer.zero_grad(set_to_none=True)
    cur = x if layer.post_attn is None else layer.post_attn(x)
    s, v = layer.lif(cur, state=v0, return_state=True)
    ((s * gs).sum() + (v * gv).sum()).backward()
    grads = {"x": x.grad, "v0": v0.grad}
    grads |= {n: p.grad for n, p in layer.named_parameters()}
    return s, v, grads


def _compared(layer: AttnLIF, x: torch.Tensor, v0: torch.Tensor) -> torch.Tensor:
    """Mask (T, B, ...) of the spikes the contract compares (module docstring)."""
    lif = layer.lif
    p, gate = lif.params(), lif.membrane_gate
    with torch.no_grad():
        cur = x if layer.post_attn is None else layer.post_attn(x)
        v, far = v0, []
        for xt in cur:
            u = gate(charge(xt, v, p))
            far.append((u - p.v_th).abs() >= MARGIN)
            v = reset(u, fire(u, p, lif.surrogate), p)
        far_t = torch.stack(far)  # (T, B, C, H, W)
        sample_ok = far_t.flatten(2).all(-1)  # (T, B): no near-threshold neuron at step t
        # compare steps 0..t_first_near of each sample (inclusive), on far neurons only
        before = torch.cumprod(sample_ok.to(torch.int64), 0).bool()
        upto = torch.cat([torch.ones_like(before[:1]), before[:-1]], 0)
    return far_t & upto[..., None, None, None]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_membrane_attention_equals_reference(
    preset: str, name: str, dtype: torch.dtype, kernel_calls: list[int]
) -> None:
    T, B, C, H, W = 6, 6, 4, 3, 5
    C = 8 if name == "eca" else C  # ECA's adaptive 1-D kernel: 3 at C = 8 (1 at C = 4)
    ref, new = _pair(preset, name, C, T, dtype)
    x = _inputs((T, B, C, H, W), dtype, seed=1) * _scale(ref)
    v0 = _inputs((B, C, H, W), dtype, seed=2) * 0.3 * _scale(ref)
    gs, gv = _inputs(x.shape, dtype, seed=3), _inputs(v0.shape, dtype, seed=4)
    s_ref, v_ref, g_ref = _run(ref, x, v0, gs, gv)
    assert not kernel_calls  # backend="torch" stays the reference
    s_new, v_new, g_new = _run(new, x, v0, gs, gv)
    assert kernel_calls == [1]  # and "auto" runs the fused kernel
    mask = _compared(ref, x, v0)
    assert mask.float().mean() > 0.3
    assert 0.03 < s_ref.mean() < 0.6  # the neurons fire: resets and surrogates are exercised
    assert torch.equal(s_ref[mask], s_new[mask])
    assert s_new.dtype == dtype and s_new.shape == x.shape and v_new.shape == v0.shape
    # these inputs land no membrane within rounding of threshold: all spikes agree, so the
    # gradients are comparable
    assert torch.equal(s_ref, s_new)
    tol = dict(rtol=1e-9, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(v_new, v_ref, **tol)
    assert set(g_new) == set(g_ref) and len(g_ref) >= (2 if name == "simam" else 3)
    for n, g in g_ref.items():
        assert g is not None and g_new[n] is not None, n
        torch.testing.assert_close(g_new[n], g, **tol, msg=lambda m, n=n: f"d{n}: {m}")


@pytest.mark.parametrize(
    ("preset", "name"),
    [("paper", "ca"), ("paper", "sa"), ("paper", "eca"), ("plif", "eca"), ("paper", "simam")]
    + [("biclab", "simam")]
    + [(p, "csa") for p in PRESETS],
)
def test_fused_backward_gradcheck_with_smooth_primitive(preset: str, name: str) -> None:
    torch.manual_seed(0)
    plan = AttnCfg(name, reduction_c=2, kernel_size=3).resolve()
    c = 8 if name == "eca" else 4
    gate = plan.build("membrane", c, 3).double()
    _activate(gate)
    lif = LIF(preset, surrogate="sigmoid:4").double()
    params = lif.params()._replace(detach_reset=False)  # see the module docstring
    x = _inputs((3, 2, c, 3, 4), torch.float64, seed=5).requires_grad_()
    v0 = (_inputs((2, c, 3, 4), torch.float64, seed=6) * 0.3).requires_grad_()
    weights = list(gate.parameters()) + ([lif.w] if lif.w is not None else [])

    def f(x: torch.Tensor, v0: torch.Tensor, *_: torch.Tensor) -> tuple[torch.Tensor, ...]:
        p = params if lif.w is None else lif.params()._replace(detach_reset=False)
        return membrane.lif_membrane_cpp(x, v0, p, lif.surrogate, gate, smooth=True)

    assert torch.autograd.gradcheck(
        f, (x, v0, *weights), eps=1e-6, atol=1e-8, rtol=1e-7, fast_mode=True
    )


def test_odd_sizes_large_kernel_and_noncontiguous_input(kernel_calls: list[int]) -> None:
    T, B, C, H, W = 5, 2, 7, 3, 5
    ref, new = _pair("paper", "csa", C, T, torch.float64, k=7)  # 7 x 7 conv on a 3 x 5 map
    base = _inputs((C, W, B, T, H), torch.float64, seed=7)
    x = base.permute(3, 2, 0, 4, 1)  # (T, B, C, H, W), non-contiguous
    assert not x.is_contiguous()
    gs = _inputs((T, B, C, H, W, 2), torch.float64, seed=8)[..., 0]  # non-contiguous grad
    v0 = torch.zeros(B, C, H, W, dtype=torch.float64)
    s_ref, _, g_ref = _run(ref, x, v0, gs, v0)
    s_new, _, g_new = _run(new, x, v0, gs, v0)
    assert kernel_calls and torch.equal(s_ref, s_new)
    for n, g in g_ref.items():
        torch.testing.assert_close(g_new[n], g, rtol=1e-9, atol=1e-12)
    with torch.no_grad():  # the inference path (nothing saved) gives the same spikes
        assert torch.equal(new(x), s_ref)
    for shape in [(1, 1, C, 1, 1), (3, 1, C, 1, 2)]:  # one pixel, one step
        xs = _inputs(shape, torch.float64, seed=9)
        r1, n1 = _pair("biclab", "csa", C, shape[0], torch.float64)
        assert torch.equal(r1(xs), n1(xs))


def test_ties_in_max_pools_share_the_gradient_like_torch() -> None:
    """Constant regions (e.g. conv outputs over empty input) tie the max pools."""
    ref, new = _pair("paper", "csa", 4, 3, torch.float64)
    x = torch.full((3, 2, 4, 3, 3), 0.2, dtype=torch.float64)
    x[:, 1, :, 1:, :] = 0.35  # ties inside a channel and across channels
    v0 = torch.zeros(2, 4, 3, 3, dtype=torch.float64)
    gs = _inputs(x.shape, torch.float64, seed=10)
    s_ref, _, g_ref = _run(ref, x, v0, gs, v0)
    s_new, _, g_new = _run(new, x, v0, gs, v0)
    assert torch.equal(s_ref, s_new)
    for n, g in g_ref.items():
        torch.testing.assert_close(g_new[n], g, rtol=1e-9, atol=1e-12)


def test_result_does_not_depend_on_thread_count() -> None:
    _, new = _pair("plif", "csa", 5, 4, torch.float32)
    x = _inputs((4, 5, 5, 6, 6), torch.float32, seed=11)
    gs = _inputs(x.shape, torch.float32, seed=12)
    v0 = torch.zeros(x.shape[1:])
    results = []
    old = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(_run(new, x, v0, gs, v0))
    finally:
        torch.set_num_threads(old)
    for s, v, g in results[1:]:
        assert torch.equal(s, results[0][0]) and torch.equal(v, results[0][1])
        for n in g:
            assert torch.equal(g[n], results[0][2][n]), n


class _MyCA(ChannelAttention):
    """A subclass (e.g. a user's variant): the kernel cannot know what it changed."""


@pytest.mark.parametrize("case", ["subclass", "sa_bias"])
def test_other_gates_run_the_reference_and_say_so(
    case: str, kernel_calls: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    torch.manual_seed(0)
    if case == "subclass":
        gate = MembraneAttention(ca=_MyCA(8, 2))
    else:
        sa = SpatialAttention(3)
        sa.conv = torch.nn.Conv2d(2, 1, 3, padding=1, bias=True)
        gate = MembraneAttention(sa=sa)
    ref = LIF("paper", backend="torch", membrane_gate=gate)
    new = LIF("paper", backend="auto", membrane_gate=gate)
    x = _inputs((4, 2, 8, 3, 3), torch.float32, seed=13)
    with caplog.at_level(logging.INFO, logger="masnn.neurons.backends"):
        assert torch.equal(new(x), ref(x))
    assert not kernel_calls
    with pytest.raises(NotSupportedByBackend, match="no fused kernel"):
        LIF("paper", backend="cpp", membrane_gate=gate)(x)
    # logged once per process: this test may not be the first to meet the gate
    from masnn.neurons.backends import auto

    assert any("no fused kernel" in m for m in auto._said)


def test_hooks_on_a_membrane_gate_see_every_step(kernel_calls: list[int]) -> None:
    ref, new = _pair("paper", "csa", 4, 5, torch.float32)
    x = _inputs((5, 2, 4, 3, 3), torch.float32, seed=14)
    seen: list[tuple[int, ...]] = []
    h = new.lif.membrane_gate.sa.gate.register_forward_hook(
        lambda m, a, out: seen.append(tuple(out.shape))
    )
    try:
        out = new(x)
    finally:
        h.remove()
    assert len(seen) == 5 and not kernel_calls  # the reference ran, one call per step
    assert torch.equal(out, ref(x))
    new(x)
    assert kernel_calls  # hook removed: fused again


def test_nasar_and_streaming_equal_under_both_backends(kernel_calls: list[int]) -> None:
    from masnn import create_model
    from masnn.analysis import SpikeMonitor
    from masnn.models.streaming import StreamingModel

    x = (torch.rand(4, 2, 2, 32, 32, generator=torch.Generator().manual_seed(0)) < 0.2).float()
    stats, outs = {}, {}
    for backend in ("torch", "auto"):
        torch.manual_seed(0)
        model = create_model("ma_snn3_tiny", attn="csa", timesteps=4, backend=backend).eval()
        with torch.no_grad():  # untrained BN statistics leave the gated layers silent
            for m in model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.weight.fill_(6.0)
        with torch.no_grad(), SpikeMonitor(model) as mon:
            outs[backend] = model(x)
        stats[backend] = mon.stats()
        if backend == "auto":
            assert kernel_calls  # the monitor (hooks on LIF layers) keeps the fused path
            streamed = StreamingModel(model).run(x)[-1]
            torch.testing.assert_close(streamed, outs["auto"], rtol=0, atol=1e-6)
    torch.testing.assert_close(outs["auto"], outs["torch"], rtol=0, atol=1e-6)
    ref, new = stats["torch"], stats["auto"]
    assert ref.nasar > 0 and new.nasar == ref.nasar
    assert new.layers.keys() == ref.layers.keys()
    for k, layer in ref.layers.items():
        assert torch.equal(new.layers[k].steps, layer.steps), k


def test_main_job_model_uses_the_fused_kernel(kernel_calls: list[int]) -> None:
    from masnn import create_model

    torch.manual_seed(0)
    model = create_model("ma_snn3_tiny", timesteps=4)  # the default: TCSA, paper placement
    gates = [m.membrane_gate for m in model.modules() if isinstance(m, LIF)]
    assert any(g is not None for g in gates)
    x = (torch.rand(4, 2, 2, 32, 32, generator=torch.Generator().manual_seed(1)) < 0.2).float()
    model(x).sum().backward()
    assert len(kernel_calls) == sum(g is not None for g in gates)


def test_backward_writes_dx_into_its_saved_membrane_only_without_a_retained_graph(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kernel's dL/dX goes into the saved A buffer when no second backward can read it;
    both ways give the same gradients, and a retained graph backpropagates twice unchanged."""
    import masnn.neurons.backends.saved as saved

    answers: list[bool] = []
    real = saved._holders

    def spy(t: torch.Tensor) -> tuple[int, int, int]:  # what consumable() will answer
        refs, uses, storage = real(t)
        counts = (refs - 1, uses, storage)  # this wrapper's own reference
        keep = torch._C._autograd._get_current_graph_task_keep_graph()
        answers.append(not keep and all(c <= b for c, b in zip(counts, saved._BASELINE)))
        return counts

    monkeypatch.setattr(saved, "_holders", spy)
    _, new = _pair("paper", "csa", 4, 5, torch.float32)
    x = _inputs((5, 3, 4, 6, 5), torch.float32, 1) * _scale(new)
    v0 = torch.zeros(3, 4, 6, 5)
    gs, gv = torch.randn(5, 3, 4, 6, 5), torch.randn(3, 4, 6, 5)
    _, _, g_in = _run(new, x, v0, gs, gv)
    assert answers == [True]
    with monkeypatch.context() as m:
        m.setattr(membrane, "consumable", lambda t: False)
        _, _, g_new = _run(new, x, v0, gs, gv)
    for k, g in g_in.items():
        assert torch.equal(g, g_new[k]), k
    answers.clear()
    xr = x.detach().clone().requires_grad_()
    s = new.lif(xr)
    loss = (s * gs).sum()
    loss.backward(retain_graph=True)
    first = xr.grad.clone()  # type: ignore[union-attr]
    xr.grad = None
    loss.backward()
    assert answers == [False, True]
    assert torch.equal(xr.grad, first)  # type: ignore[arg-type]
