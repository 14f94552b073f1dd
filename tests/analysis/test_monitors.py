"""SpikeMonitor: hand-counted spikes on forced patterns, conventions, Table 1 goldens, no side effects."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from masnn.analysis import SpikeMonitor, measure
from masnn.neurons import LIF

T, B, C, H, W = 5, 3, 4, 3, 5  # non-square


class Forced(nn.Module):
    """Two LIF layers whose spikes are forced: +10 always fires, -10 never fires.

    ``conv`` layer: spikes = ``x > 0`` for ``x`` in {-10, +10}, shape ``(T, B, C, H, W)``.
    ``fc`` layer: spikes = the first 6 features of the conv spikes, ``(T, B, 6)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv_lif = LIF("paper")
        self.fc_lif = LIF("paper")

    def forward(self, x_seq: Tensor) -> Tensor:
        s = self.conv_lif(x_seq)
        return self.fc_lif(20 * s.flatten(2)[..., :6] - 10)


def _pattern(seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    bits = torch.rand(T, B, C, H, W, generator=g) < 0.3
    bits[:, :, 1] = False  # channel 1 silent everywhere
    bits[:, 0, 2] = False  # channel 2 silent in sample 0 only
    return bits


def test_forced_spikes_are_counted_exactly() -> None:
    bits = _pattern()
    net = Forced()
    with SpikeMonitor(net) as mon:
        out = net(torch.where(bits, 10.0, -10.0))
    assert torch.equal(out, bits.flatten(2)[..., :6].float())  # the forcing works
    s = mon.stats()
    conv, fc = s.layers["conv_lif"], s.layers["fc_lif"]
    assert conv.neurons == C * H * W and fc.neurons == 6
    assert conv.steps.tolist() == bits.sum(dim=(1, 2, 3, 4)).double().tolist()
    fc_bits = bits.flatten(2)[..., :6]
    assert fc.steps.tolist() == fc_bits.sum(dim=(1, 2)).double().tolist()
    n = C * H * W + 6
    nsar = (bits.sum(dim=(1, 2, 3, 4)) + fc_bits.sum(dim=(1, 2))).double() / (n * B)
    assert s.nsar == pytest.approx(nsar.tolist(), abs=0, rel=1e-15)
    assert s.nasar == pytest.approx(float(nsar.mean()), rel=1e-15)
    total = float(bits.sum() + fc_bits.sum())
    assert s.spikes_per_sample == pytest.approx(total / B)
    assert s.spikes_per_sample == pytest.approx(s.nasar * s.neurons * s.timesteps)
    assert conv.lasar == pytest.approx(float(bits.sum()) / (B * T * C * H * W))
    # silent channels: channel 1 always; per sample: ch1 in all 3, ch2 in sample 0 (+ chance)
    per_sample = (bits.sum(dim=(0, 3, 4)) == 0).sum()  # (B, C) -> count
    assert conv.silent_channels == int((bits.sum(dim=(0, 1, 3, 4)) == 0).sum()) >= 1
    assert conv.mean_silent_channels_per_sample == pytest.approx(float(per_sample) / B)
    # variances: across time of NSAR(t); across inputs of per-sample NASAR
    assert s.nsar_var_time == pytest.approx(float(nsar.var(unbiased=False)))
    per = (bits.sum(dim=(0, 2, 3, 4)) + fc_bits.sum(dim=(0, 2))).double() / (n * T)
    assert s.nasar_per_sample == pytest.approx(per.tolist())
    assert s.nsar_var_inputs == pytest.approx(float(per.var(unbiased=False)))


def test_accumulates_over_batches_and_conventions() -> None:
    net = Forced()
    b1, b2 = _pattern(1), _pattern(2)
    with SpikeMonitor(net, neuron_layers="conv_only") as mon:
        for bits in (b1, b2):
            net(torch.where(bits, 10.0, -10.0))
    s = mon.stats()
    assert s.counted == ["conv_lif"] and s.samples == 2 * B
    assert s.neurons == C * H * W
    assert s.spikes_per_sample == pytest.approx(float(b1.sum() + b2.sum()) / (2 * B))
    assert len(s.nasar_per_sample) == 2 * B
    with SpikeMonitor(net, neuron_layers=["fc_lif"]) as mon:
        net(torch.where(b1, 10.0, -10.0))
    assert mon.stats().neurons == 6
    with pytest.raises(ValueError, match="not LIF layers"):
        SpikeMonitor(net, neuron_layers=["nope"])
    with pytest.raises(ValueError, match="allowed"):
        SpikeMonitor(net, neuron_layers="everything")


def test_state_tuple_output_is_handled() -> None:
    lif = LIF("paper")
    with SpikeMonitor(lif) as mon:
        spikes, v = lif(torch.full((4, 2, 3), 0.25), return_state=True)
    assert mon.stats().nsar == [0.0, 1.0, 0.0, 1.0]
    assert spikes.shape == (4, 2, 3) and v.shape == (2, 3)


def test_model_convention_and_table1_neurons() -> None:
    masnn_models = pytest.importorskip("masnn.models")
    for name, k, want, conv in [
        ("ma_snn3", 11, 106_763, "all_lif"),
        ("ma_snn3", 20, 106_772, "all_lif"),
        ("ma_snn5", 11, 2_793_472, "conv_only"),
    ]:
        m = masnn_models.create_model(name, attn="none", num_classes=k, timesteps=1).eval()
        size = m.default_cfg.input_size
        with torch.no_grad(), SpikeMonitor(m) as mon:
            m(torch.rand(1, 1, *size))
        s = mon.stats()
        assert s.neurons == want, name
        assert m.default_cfg.neuron_count == conv


# paper Table 1, MA-SNN rows: (neurons, T, NASAR, spikes in millions per sample)
TABLE1 = [
    (106_763, 60, 0.173, 1.108),  # Gesture 3-layer vanilla
    (106_763, 60, 0.026, 0.167),  # + TCSA
    (2_793_472, 20, 0.074, 4.134),  # Gesture 5-layer vanilla
    (2_793_472, 20, 0.011, 0.615),  # + TCSA
    (106_772, 60, 0.245, 1.570),  # Gait 3-layer vanilla
    (106_772, 60, 0.045, 0.288),  # + TCSA
    (2_793_472, 20, 0.051, 2.849),  # Gait 5-layer vanilla
    (2_793_472, 20, 0.013, 0.726),  # + TCSA
]


class Driven(nn.Module):
    """The LIF layers of a registered model (same output shapes), driven by fixed currents.

    In sample ``b``, the first ``firing[b]`` neurons of the counted layers (filled in layer
    order) get +1 and fire at every step (the paper neuron, ``u_th = 0.3``); the others get 0
    and never fire. Uncounted layers (``counted[i]`` false) fire everywhere. The monitor's
    hooks see real LIF dynamics on the real layer shapes.
    """

    def __init__(
        self, shapes: list[tuple[int, ...]], counted: list[bool], firing: list[int], conv: str
    ) -> None:
        super().__init__()
        self.shapes, self.counted, self.firing = shapes, counted, firing
        self.lifs = nn.ModuleList(LIF("paper") for _ in shapes)
        self.default_cfg = type("Cfg", (), {"neuron_count": conv})()

    def forward(self, x_seq: Tensor) -> Tensor:
        t, b = x_seq.shape[:2]
        left = list(self.firing)  # spikes per step still to place, per sample
        for lif, shape, counted in zip(self.lifs, self.shapes, self.counted):
            n = math.prod(shape)
            cur = torch.ones(t, b, n)
            if counted:
                for i in range(b):
                    k = min(n, left[i])
                    cur[:, i, k:] = 0.0
                    left[i] -= k
            lif(cur.view(t, b, *shape))
        return x_seq


def _lif_shapes(name: str, k: int) -> tuple[list[tuple[int, ...]], str]:
    """Per-step output shape of every LIF layer of a registered model (one T = 1 pass)."""
    masnn_models = pytest.importorskip("masnn.models")
    m = masnn_models.create_model(name, attn="none", num_classes=k, timesteps=1).eval()
    shapes: list[tuple[int, ...]] = []
    hooks = [
        mod.register_forward_hook(lambda _m, _a, out: shapes.append(tuple(out.shape[2:])))
        for mod in m.modules()
        if isinstance(mod, LIF)
    ]
    with torch.no_grad():
        m(torch.zeros(1, 1, *m.default_cfg.input_size))
    for h in hooks:
        h.remove()
    return shapes, m.default_cfg.neuron_count


#: the model of each Table 1 neuron count (Gesture 3-layer, Gait 3-layer, 5-layer)
_MODELS = {106_763: ("ma_snn3", 11), 106_772: ("ma_snn3", 20), 2_793_472: ("ma_snn5", 11)}


@pytest.mark.golden
@pytest.mark.parametrize("neurons", sorted(_MODELS))
def test_table1_spikes_from_a_monitored_run(neurons: int) -> None:
    # one sample per Table 1 row of this network, each at the row's NASAR; the FC layers of
    # ma_snn5 lie outside its neuron-count convention, fire at rate 1 and must not count
    rows = [r for r in TABLE1 if r[0] == neurons]
    (t,) = {r[1] for r in rows}
    shapes, conv = _lif_shapes(*_MODELS[neurons])
    counted = [conv == "all_lif" or len(s) == 3 for s in shapes]
    net = Driven(shapes, counted, [round(r[2] * neurons) for r in rows], conv)
    with torch.no_grad(), SpikeMonitor(net) as mon:
        net(torch.zeros(t, len(rows), 1))
    s = mon.stats()
    assert s.neurons == neurons and s.timesteps == t and s.samples == len(rows)
    assert s.spikes_per_sample_all > s.spikes_per_sample or conv == "all_lif"
    for (_, _, nasar, spikes_m), got in zip(rows, s.nasar_per_sample):
        assert got == pytest.approx(nasar, abs=0.5 / neurons)  # whole spikes per step
        # e.g. 0.173 x 106,763 x 60 = 1.108 M spikes per sample
        assert round(got * neurons * t / 1e6, 3) == spikes_m
    assert s.nasar == pytest.approx(sum(r[2] for r in rows) / len(rows), abs=0.5 / neurons)


def test_hooks_removed_even_on_exception_and_no_state_added() -> None:
    net = Forced()
    keys = list(net.state_dict())
    mods = [n for n, _ in net.named_modules()]
    attrs = {n: set(vars(m)) for n, m in net.named_modules()}
    with pytest.raises(RuntimeError, match="boom"), SpikeMonitor(net):
        net(torch.zeros(2, 1, C, H, W))
        raise RuntimeError("boom")
    for m in net.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    assert list(net.state_dict()) == keys
    assert [n for n, _ in net.named_modules()] == mods
    assert {n: set(vars(m)) for n, m in net.named_modules()} == attrs


def test_failed_forward_is_not_counted() -> None:
    net = nn.Sequential(LIF("paper"), nn.Linear(3, 2))
    with SpikeMonitor(net) as mon:
        with pytest.raises(RuntimeError):
            net(torch.full((2, 1, 4), 10.0))  # Linear(3) on 4 features fails after the LIF
        net(torch.full((2, 1, 3), 10.0))
    assert mon.stats().samples == 1


def test_outputs_bit_identical_with_and_without_monitoring() -> None:
    masnn_models = pytest.importorskip("masnn.models")
    torch.manual_seed(0)
    m = masnn_models.create_model(
        "ma_snn3_tiny", attn="tcsa", timesteps=8, input_size=(2, 16, 16)
    ).eval()
    x = torch.rand(8, 2, 2, 16, 16) * 30
    keys = list(m.state_dict())
    with torch.no_grad():
        ref = m(x)
        rep = measure(m, [x])
        again = m(x)
    assert torch.equal(ref, again)
    assert list(m.state_dict()) == keys
    assert all(not mod._forward_hooks and not mod._forward_pre_hooks for mod in m.modules())
    assert rep.samples == 2 and rep.timesteps == 8
    assert rep.spikes.spikes_per_sample > 0  # the input drives spikes
    # with monitors active, the output is the same too
    from masnn.analysis import OpsCounter

    with torch.no_grad(), SpikeMonitor(m), OpsCounter(m):
        inside = m(x)
    assert torch.equal(ref, inside)
