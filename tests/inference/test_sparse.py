"""``masnn.inference.sparse(model)``: the event-driven kernels equal the dense references.

* kernel level: the gather-accumulate conv / linear (BN and average pool folded) equals
  ``F.conv2d`` -> pool / ``F.linear`` on odd sizes, strides, paddings and kernels;
* layer level: for every layer of ``ma_snn3_tiny`` (vanilla and attention variants), the sparse
  route's spikes equal the dense fast path's for every neuron whose membrane stays >= 1e-3
  from the threshold at every step (differences elsewhere are summation-order rounding);
* model level: same predictions, streaming, the density routing and the stored calibration.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from masnn import create_model
from masnn.attention import AttnCfg
from masnn.inference import fast, sparse
from masnn.inference.sparse import (
    DEFAULT_THRESHOLD,
    SparseLayer,
    Spikes,
    calibrate,
    crossover,
    fold_avg_pool,
    load_thresholds,
    machine_key,
    random_spikes,
)
from masnn.layers import SpikingConvBlock, SpikingLinearBlock
from masnn.neurons.functional import lif_multistep

MARGIN = 1e-3


def _trained_bn(model: nn.Module, x: torch.Tensor, seed: int = 3) -> nn.Module:
    """Non-trivial BN statistics (one training forward) so that the layers spike."""
    g = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(1.5 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
        model(x)
    return model.eval()


def _input(T: int, B: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, 2, 32, 32, generator=g) < 0.3).float() * 2


def _folded_block(block: nn.Module) -> nn.Module:
    """A random, BN-folded copy of a block (via the fast path)."""

    class _Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.b = block

    return fast(_Wrap().eval()).model.b


# -- kernel level ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cin,cout,h,w,k,stride,pad,pool",
    [
        (3, 5, 7, 9, 3, 1, 1, None),  # odd everything
        (3, 5, 7, 9, 3, 1, 1, 2),  # avg pool folded, odd size drops the last row/col
        (4, 17, 11, 6, 5, 2, 2, None),  # stride 2, kernel 5
        (2, 16, 9, 9, 3, 2, 0, 2),  # stride 2 + pool: folded stride 4
        (16, 32, 32, 32, 3, 1, 1, 2),  # ma_snn3_tiny's second layer
        (1, 3, 5, 5, 3, 1, 2, 3),  # padding > k/2, pool 3
    ],
)
def test_sparse_conv_equals_dense_conv(
    cin: int, cout: int, h: int, w: int, k: int, stride: int, pad: int, pool: int | None
) -> None:
    torch.manual_seed(0)
    block = SpikingConvBlock(
        cin, cout, 3, conv_kernel=k, stride=stride, padding=pad,
        pool=None if pool is None else "avg", pool_size=pool or 2,
    )  # fmt: skip
    block = _folded_block(block)
    layer = SparseLayer(block, (cin, h, w))
    s = random_spikes((cin, h, w), 3, 2, 0.2, seed=1)
    ref = F.conv2d(s.dense.flatten(0, 1).double(), block.conv.weight.double(),
                   block.conv.bias.double(), stride, pad)  # fmt: skip
    if pool is not None:
        ref = F.avg_pool2d(ref, pool)
    out = layer._sparse_current(s)
    assert out.shape == (3, 2, *ref.shape[1:]) == (3, 2, *layer.lif_shape)
    torch.testing.assert_close(out.flatten(0, 1).double(), ref, atol=2e-5, rtol=1e-5)
    dense = layer._dense_current(s)  # the fast path's own route
    torch.testing.assert_close(dense.flatten(0, 1).double(), ref, atol=2e-5, rtol=1e-5)


def test_fold_avg_pool_is_exact_in_float64() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    x = torch.rand(2, 3, 13, 10, generator=g, dtype=torch.float64)
    for stride, pool in [(1, 2), (2, 2), (1, 3)]:
        ref = F.avg_pool2d(F.conv2d(x, w, stride=stride, padding=1), pool)
        out = F.conv2d(x, fold_avg_pool(w, stride, pool), stride=stride * pool, padding=1)
        torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)


def test_sparse_linear_from_conv_features_equals_dense() -> None:
    torch.manual_seed(0)
    block = _folded_block(SpikingLinearBlock(5 * 3 * 7, 13, 4))
    layer = SparseLayer(block, (5, 3, 7))  # a flattened (C, H, W) conv output
    s = random_spikes((5, 3, 7), 4, 3, 0.1, seed=2)
    ref = F.linear(s.dense.flatten(2), block.fc.weight, block.fc.bias)  # torch's CHW flatten
    torch.testing.assert_close(layer._sparse_current(s), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer._dense_current(s), ref, atol=1e-5, rtol=1e-5)


def test_spikes_index_round_trip() -> None:
    s = random_spikes((3, 5, 4), 2, 3, 0.3, seed=4)
    dense = s.dense.clone()
    s.to_index()
    assert s.cnt is not None and int(s.cnt.sum()) == int(dense.sum())
    s.dense = None
    assert torch.equal(s.to_dense(), dense)
    assert abs(s.density() - float(dense.double().mean())) < 1e-12


# -- layer level: identical spikes away from threshold --------------------------------------------


def _reference(layer: SparseLayer, s: Spikes) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference spikes and the per-neuron minimum distance of ``U[t]`` to the threshold."""
    cur = layer._dense_current(s)
    if layer.post_attn is not None:
        cur = layer.post_attn(cur)
    us: list[torch.Tensor] = []
    gate = layer.lif.membrane_gate

    def record(u: torch.Tensor) -> torch.Tensor:
        u = u if gate is None else gate(u)
        us.append(u)
        return u

    params = layer.lif.params()
    spikes, _ = lif_multistep(cur, None, params, layer.lif.surrogate, record)
    margin = (torch.stack(us) - float(params.v_th)).abs().amin(0)  # (B, *shape)
    return spikes.float(), margin


@pytest.mark.parametrize("attn", ["none", "tcsa", "csa"])
def test_every_layer_spikes_equal_away_from_threshold(attn: str) -> None:
    torch.manual_seed(0)
    T, B = 6, 3
    x = _input(T, B)
    model = create_model("ma_snn3_tiny", attn=attn, timesteps=T).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # currents of a few units for 15 % input spikes, gated or not
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_var.fill_(0.04)
                m.weight.copy_(3 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.3 + 0.2 * torch.randn(m.bias.shape, generator=g))
    eng = sparse(model)
    checked = 0
    with torch.inference_mode():
        for i, layer in enumerate(eng.layers):
            # the real layer geometry; inputs: the events, then random spikes at 15 %
            s = Spikes((2, 32, 32), T, B, dense=x) if i == 0 else (
                random_spikes(layer.in_shape, T, B, 0.15, seed=i)
            )  # fmt: skip
            dense_out, _ = layer(Spikes(s.shape, T, B, dense=s.to_dense()), None, "dense", True)
            if i:
                sparse_out, _ = layer(
                    Spikes(s.shape, T, B, dense=s.to_dense()).to_index(), None, "sparse", True
                )
            else:
                sparse_out = dense_out  # the encoder is dense
            ref, margin = _reference(layer, s)
            safe = (margin >= MARGIN).unsqueeze(0).expand_as(ref)
            assert safe.float().mean() > 0.9, "test too weak: most membranes near threshold"
            d, sp = dense_out.to_dense(), sparse_out.to_dense()
            assert torch.equal(d[safe], ref[safe]), f"layer {i}: dense route vs reference"
            assert torch.equal(sp[safe], ref[safe]), f"layer {i}: sparse route vs reference"
            rate = float(ref.mean())
            assert 0.005 < rate < 0.9, f"layer {i} fires at {rate}: the test would not bite"
            checked += int(safe.sum())
    assert checked > 10_000


# -- the fused output side: TA on the current, membrane gates, LIF in one kernel ----------------

GATES = ["ca", "sa", "csa", "eca", "simam", "ta", "tcsa"]


def _attn_layer(attn: str, kind: str, T: int, seed: int) -> SparseLayer:
    """A BN-folded conv (odd sizes, stride 2, avg pool folded) or linear layer with ``attn``."""
    torch.manual_seed(seed)
    block: nn.Module
    if kind == "conv":
        block = SpikingConvBlock(
            5, 19, T, conv_kernel=3, stride=2, padding=1, pool="avg", pool_size=2,
            attn=AttnCfg(attn),
        )  # fmt: skip
        in_shape: tuple[int, ...] = (5, 27, 23)
    else:
        block = SpikingLinearBlock(37, 23, T, attn=AttnCfg(attn))
        in_shape = (37,)
    block = _folded_block(block)
    weight = block.conv.weight if kind == "conv" else block.fc.weight
    with torch.no_grad():  # 20 % input spikes fire 5 - 50 % of the neurons, gated or not
        weight.mul_(8.0 if kind == "conv" else 3.0)
    return SparseLayer(block, in_shape)


def _reference_state(
    layer: SparseLayer, s: Spikes
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reference spikes, last membrane and each neuron's minimum distance to the threshold
    (torch's conv, the model's own attention modules, the reference LIF loop)."""
    cur = layer._dense_current(s)
    if layer.post_attn is not None:
        cur = layer.post_attn(cur)
    us: list[torch.Tensor] = []
    gate = layer.lif.membrane_gate

    def record(u: torch.Tensor) -> torch.Tensor:
        u = u if gate is None else gate(u)
        us.append(u)
        return u

    params = layer.lif.params()
    spikes, v = lif_multistep(cur, None, params, layer.lif.surrogate, record)
    margin = (torch.stack(us) - float(params.v_th)).abs().amin(0)
    return spikes.float(), v, margin


@pytest.mark.parametrize(
    "attn,kind", [(a, "conv") for a in GATES] + [("ta", "linear"), ("tcsa", "linear")]
)
def test_fused_output_side_equals_the_reference(attn: str, kind: str) -> None:
    """Spikes away from threshold and the last membrane, both routes, ``B`` below and above
    the thread count (currents first over frames, or one pass per sample)."""
    T = 5
    layer = _attn_layer(attn, kind, T, seed=GATES.index(attn))
    assert layer.fused, layer.why_unfused
    assert (layer.frame_gate is not None) == ("t" in attn)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for B in (1, 3):
            s = random_spikes(layer.in_shape, T, B, 0.2, seed=B)
            with torch.inference_mode():
                ref, v_ref, margin = _reference_state(layer, s)
                safe = margin >= MARGIN  # (B, *shape): never near threshold
                assert safe.float().mean() > 0.8, "test too weak"
                rate = float(ref.mean())
                assert 0.02 < rate < 0.7, f"fires at {rate}: the test would not bite"
                for mode in ("sparse", "dense"):
                    inp = Spikes(s.shape, T, B, dense=s.to_dense())
                    out, v = layer(inp.to_index() if mode == "sparse" else inp, None, mode, True)
                    got = out.to_dense()
                    assert out.cnt is not None and out.idx is not None
                    assert torch.equal(out.cnt, got.flatten(2).sum(2).long())  # lists match
                    exp = safe.unsqueeze(0).expand_as(ref)
                    assert torch.equal(got[exp], ref[exp]), (mode, B)
                    assert v.shape == v_ref.shape
                    torch.testing.assert_close(v[safe], v_ref[safe], atol=1e-4, rtol=1e-4)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("attn", ["none", "ca", "csa", "eca", "simam"])
def test_dense_route_runs_the_membrane_kernels_arithmetic(attn: str) -> None:
    """Same currents in: the engine's output side equals the fused membrane kernel (the dense
    fast path's ``auto`` backend) bit for bit; one arithmetic, shared by both kernels."""
    T, B = 4, 3
    layer = _attn_layer(attn, "conv", T, seed=11)
    s = random_spikes(layer.in_shape, T, B, 0.2, seed=5)
    v0 = 0.1 * torch.randn(B, *layer.lif_shape)
    with torch.inference_mode():
        out, v = layer(s, v0, "dense", True)
        cur = layer._dense_current(s)
        spikes, v_ref = layer.lif(cur, state=v0, return_state=True)  # backend "auto"
    assert torch.equal(out.to_dense(), spikes) and torch.equal(v, v_ref)
    assert float(spikes.mean()) > 0.02


def test_hooked_gates_run_in_torch_with_the_same_result() -> None:
    """A hook on an attention module must see its tensors: the layer then runs in torch."""
    T, B = 4, 3
    layer = _attn_layer("tcsa", "conv", T, seed=2)
    s = random_spikes(layer.in_shape, T, B, 0.2, seed=6)
    with torch.inference_mode():
        fused, _ = layer(Spikes(s.shape, T, B, dense=s.to_dense()), None, "dense", True)
        seen: list[int] = []
        gate = layer.lif.membrane_gate
        assert isinstance(gate, nn.Module)
        h = gate.register_forward_hook(lambda m, i, o: seen.append(1))
        try:
            hooked, _ = layer(Spikes(s.shape, T, B, dense=s.to_dense()), None, "dense", True)
        finally:
            h.remove()
    assert len(seen) == T  # one call per step: the torch path ran
    d = (fused.to_dense() != hooked.to_dense()).float().mean()
    assert d < 0.01  # the same spikes up to near-threshold rounding (pools' summation order)


# -- model level ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attn,locations,placement",
    [
        ("none", None, "paper"),
        ("ca", None, "paper"),  # the main job's model: gated layers fused
        ("tcsa", None, "paper"),  # TA on the current fused too
        ("tcsa", None, "code"),  # C/S gates and ReLU on the current: torch output side
        ("tca", {"t": "conv_pre"}, "paper"),
    ],
)
def test_same_predictions_as_fast_path(
    attn: str, locations: dict[str, str] | None, placement: str
) -> None:
    torch.manual_seed(1)
    T, B = 6, 16
    x = _input(T, B, seed=5)
    model = create_model(
        "ma_snn3_tiny", attn=attn, timesteps=T, locations=locations, placement=placement
    )
    model = _trained_bn(model, x)
    with torch.inference_mode():
        ref = fast(model)(x)
    eng = sparse(model)
    for mode in ("sparse", "dense", "auto"):
        out = eng(x, mode=mode)
        assert out.shape == ref.shape == (B, 11)
        assert torch.equal(out.argmax(1), ref.argmax(1)), mode
        # a flipped spike moves a rate by 1/T; at most a few near-threshold flips
        assert (out - ref).abs().max() <= 2 / T + 1e-6
        assert (out != ref).float().mean() < 0.05
    routes = eng.last_routes
    assert routes[0][0] == "dense" and len(routes) == 5
    assert all(la.fused for la in eng.layers) == (placement == "paper")
    if locations:  # conv_pre gates make the inputs non-binary: those layers run dense
        assert [r for r, _ in routes] == ["dense"] * 5
        assert all("conv_pre" in (la.why_dense or "") for la in eng.layers[1:])
    with pytest.raises(RuntimeError, match="inference only"):
        eng.train()
    with pytest.raises(ValueError, match="mode"):
        eng(x, mode="fast")


def test_routing_follows_the_threshold() -> None:
    T, B = 4, 2
    x = _input(T, B)
    model = _trained_bn(create_model("ma_snn3_tiny", attn="none", timesteps=T), x)
    eng = sparse(model, thresholds={})
    assert all(la.threshold == DEFAULT_THRESHOLD for la in eng.layers)
    # vanilla: every LIF fused (the copied model's surrogate is still the registered one)
    assert all(la.fused for la in eng.layers)
    eng.set_thresholds({la.signature(): 0.0 for la in eng.layers})
    eng(x)
    assert [r for r, _ in eng.last_routes] == ["dense"] * 5
    eng.set_thresholds({la.signature(): 1.0 for la in eng.layers})
    eng(x)
    assert [r for r, _ in eng.last_routes] == ["dense"] + ["sparse"] * 4


@pytest.mark.parametrize("B", [1, 2])  # below / at the thread count of the small-batch check
@pytest.mark.parametrize("attn", ["none", "csa"])  # fused LIF everywhere / gated conv layers
def test_streaming_equals_the_sequence_and_refuses_ta(attn: str, B: int) -> None:
    torch.manual_seed(2)
    T = 5
    x = _input(T, B, seed=7)
    model = _trained_bn(create_model("ma_snn3_tiny", attn=attn, timesteps=T), x)
    eng = sparse(model)
    full = eng(x, mode="sparse")
    state = eng.init_state(B)
    for frame in x:
        out, state = eng.step(frame, state, mode="sparse")
    assert state.t == T and torch.equal(out, full)
    state = eng.init_state(B)  # chunks of frames
    out, state = eng.step(x[:2], state, mode="sparse")
    out, state = eng.step(x[2:], state, mode="sparse")
    assert torch.equal(out, full)
    assert float(full.sum()) > 0  # the readout layer spiked
    ta = sparse(create_model("ma_snn3_tiny", attn="tcsa", timesteps=T).eval())
    with pytest.raises(ValueError, match="non-causal"):
        ta.init_state(1)


def test_calibration_is_stored_per_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "th.json"
    monkeypatch.setenv("MASNN_SPARSE_THRESHOLDS", str(path))
    model = create_model("ma_snn3_tiny", attn="none", timesteps=2, channels=(4, 8, 8), hidden=8)
    eng = sparse(model.eval())
    got = calibrate(eng, batch=1, densities=(0.01, 0.3), repeats=1)
    assert set(got) == {la.signature() for la in eng.layers[1:]}
    assert all(0.0 <= v <= 0.3 for v in got.values())
    stored = json.loads(path.read_text())
    assert stored[machine_key()] == got and load_thresholds() == got
    assert sparse(model).layers[1].threshold == got[eng.layers[1].signature()]
    path.write_text("not json")
    with pytest.raises(ValueError, match="th.json"):
        load_thresholds()


def test_crossover_fits_the_sparse_line_against_the_dense_level() -> None:
    d = [0.01, 0.1, 0.3]
    assert crossover(d, [1.1, 2.0, 4.0], [3.0, 3.0, 3.0]) == pytest.approx(0.2)  # 1 + 10 d
    assert crossover(d, [1.1, 2.0, 4.0], [2.5, 3.5, 3.0]) == pytest.approx(0.2)  # noisy dense
    assert crossover(d, [1, 1, 1], [2, 2, 2]) == 0.3  # sparse always wins: no extrapolation
    assert crossover(d, [3, 4, 5], [2, 2, 2]) == 0.0  # never
    with pytest.raises(ValueError, match="2 densities"):
        crossover([0.1], [1], [2])


def test_unsupported_models_are_refused() -> None:
    model = create_model("ms_resnet18", num_classes=10, timesteps=2)
    with pytest.raises(ValueError, match="fast"):
        sparse(model)


def test_ma_snn5_max_pool_after_the_neuron() -> None:
    """Five-layer PLIF net: bias-free convs, max pool on the spikes, voting readout."""
    torch.manual_seed(0)
    model = create_model(
        "ma_snn5", attn="none", timesteps=3, input_size=(2, 64, 64), channels=(8,) * 5, hidden=16
    ).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_var.fill_(0.05)
                m.weight.fill_(2.0)
                m.bias.fill_(0.3)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(3, 2, 2, 64, 64, generator=g) < 0.2).float()
    with torch.inference_mode():
        ref = fast(model)(x)
    eng = sparse(model)
    assert [la.kind for la in eng.layers] == ["conv"] * 5 + ["linear"] * 2
    assert eng.layers[1].pool_after is not None and not eng.layers[1].fused
    for mode in ("sparse", "dense"):
        out = eng(x, mode=mode)
        assert out.shape == (2, 11)
        assert (out - ref).abs().max() <= 1 / 30 + 1e-6  # one vote of one step at most
        assert all(d > 0 for _, d in eng.last_routes[1:5])  # the conv layers did get spikes


@pytest.mark.parametrize("attn", ["none", "csa"])
def test_small_batches_split_over_neurons_with_the_same_result(attn: str) -> None:
    """``B`` below the thread count: currents over frames first (then a plain LIF over neurons),
    not one pass per sample; the same spikes."""
    T = 4
    x = _input(T, 4, seed=9)
    model = _trained_bn(create_model("ma_snn3_tiny", attn=attn, timesteps=T), x)
    eng = sparse(model)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        full = eng(x, mode="sparse")  # B = 4 >= 2 threads: fused per sample
        one = torch.cat([eng(x[:, i : i + 1], mode="sparse") for i in range(4)])  # B = 1 < 2
        dense_one = torch.cat([eng(x[:, i : i + 1], mode="dense") for i in range(4)])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(full, one)
    # (the dense route's torch conv may round differently per batch size: a flip at most)
    assert (eng(x, mode="dense") - dense_one).abs().max() <= 1 / T + 1e-6
    assert float(full.sum()) > 0
