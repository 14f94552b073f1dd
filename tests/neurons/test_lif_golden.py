"""Hand-derived trajectories for every neuron preset (spikes and post-reset membranes)."""

from __future__ import annotations

import pytest
import torch

from masnn.neurons import LIF


def run(neuron: str, xs: list[float], **kw: object) -> tuple[list[float], list[float]]:
    """Feed a 1-neuron sequence step by step; return spikes and post-reset membranes."""
    lif = LIF(neuron, **kw)
    x_seq = torch.tensor(xs, dtype=torch.float64).reshape(-1, 1, 1)
    spikes, vs, v = [], [], None
    for x in x_seq:  # stream one step at a time so every post-reset V is visible
        s, v = lif(x[None], state=v, return_state=True)
        spikes.append(s.item())
        vs.append(v.item())
    # the full-sequence call must agree with streaming
    full = lif(x_seq.float()).flatten().tolist()
    assert full == spikes
    return spikes, vs


def test_paper_constant_fires_every_other_step() -> None:
    # U0 = .25 < .3 -> H0 = .3*.25 = .075; U1 = .325 >= .3 -> fire, H1 = V_reset = 0; repeat
    s, v = run("paper", [0.25] * 6)
    assert s == [0, 1, 0, 1, 0, 1]
    assert v == pytest.approx([0.075, 0.0] * 3, abs=1e-7)


def test_paper_constant_never_fires_below_fixed_point() -> None:
    # H* = .3 (H* + .2) -> H* = .06/.7, U* = .2857 < .3: the membrane converges, never fires
    s, v = run("paper", [0.2] * 40)
    assert s == [0] * 40
    assert v[-1] == pytest.approx(0.06 / 0.7, abs=1e-7)
    h = 0.0
    for t in range(40):
        h = 0.3 * (h + 0.2)
        assert v[t] == pytest.approx(h, abs=1e-7)


def test_paper_stepped_input_fires_at_equality() -> None:
    # U = .1 (H=.03), U = .53 fire (H=0), U = 0 (H=0), U = .3 >= .3 fire (H=0), U = .1 (H=.03)
    s, v = run("paper", [0.1, 0.5, 0.0, 0.3, 0.1])
    assert s == [0, 1, 0, 1, 0]
    assert v == pytest.approx([0.03, 0.0, 0.0, 0.0, 0.03], abs=1e-7)


def test_paper_v_reset_is_not_decayed() -> None:
    s, v = run("paper", [0.5, 0.0], v_reset=-0.1)
    # fire -> H = V_reset = -0.1 exactly; then U = -0.1 -> H = .3 * -.1
    assert s == [1, 0]
    assert v == pytest.approx([-0.1, -0.03], abs=1e-7)


def test_biclab_resets_to_threshold_then_decays() -> None:
    # U0 = .25 -> h = .3*.25 = .075; U1 = .325 fire -> h = .3*.3 = .09; U2 = .34 fire -> .09 ...
    s, v = run("biclab", [0.25] * 5)
    assert s == [0, 1, 1, 1, 1]
    assert v == pytest.approx([0.075, 0.09, 0.09, 0.09, 0.09], abs=1e-7)
    # the paper's hard reset on the same input alternates: the presets differ
    assert run("paper", [0.25] * 5)[0] == [0, 1, 0, 1, 0]


def test_msresnet_is_strict_and_decays_previous_membrane() -> None:
    # U0 = .5 is not > .5 -> no spike, H0 = .125; U1 = .625 fire -> 0; U2 = .5 no ...
    s, v = run("msresnet", [0.5] * 6)
    assert s == [0, 1, 0, 1, 0, 1]
    assert v == [0.125, 0.0] * 3  # exact in binary floating point
    s, _ = run("msresnet", [0.75, 0.25])
    assert s == [1, 0]  # hard reset to 0, so .25 alone does not fire


def test_spikingjelly_lif_golden() -> None:
    # tau = 2, decay_input: H = V + (X - V)/2. X = 1.5: .75, 1.125 -> fire -> 0, repeat
    s, v = run("spikingjelly", [1.5] * 6)
    assert s == [0, 1, 0, 1, 0, 1]
    assert v == pytest.approx([0.75, 0.0] * 3)
    # X = 1 never reaches v_th = 1: V_t = 1 - 2^-(t+1)
    s, v = run("spikingjelly", [1.0] * 10)
    assert s == [0] * 10
    assert v == pytest.approx([1 - 0.5 ** (t + 1) for t in range(10)])


def test_spikingjelly_soft_reset_and_no_decay_input() -> None:
    # soft reset: .75, 1.125 -> fire -> .125, then .8125, 1.15625 -> fire -> .15625
    s, v = run("spikingjelly", [1.5] * 4, v_reset=None)
    assert s == [0, 1, 0, 1]
    assert v == pytest.approx([0.75, 0.125, 0.8125, 0.15625])
    # decay_input=False: H = V - V/2 + X; X = .6: .6, .9, 1.05 -> fire -> 0
    s, v = run("spikingjelly", [0.6] * 3, decay_input=False)
    assert s == [0, 0, 1]
    assert v == pytest.approx([0.6, 0.9, 0.0])


def test_plif_initial_dynamics_equal_lif_tau2_and_tau_learns() -> None:
    s, v = run("plif", [1.5] * 4)
    assert s == [0, 1, 0, 1]
    assert v == pytest.approx([0.75, 0.0, 0.75, 0.0])
    lif = LIF("plif", init_tau=4.0)
    assert torch.sigmoid(lif.w).item() == pytest.approx(0.25)
    x = torch.full((5, 2, 3), 2.0, requires_grad=True)
    lif(x).sum().backward()
    assert lif.w.grad is not None and lif.w.grad.abs().item() > 0


def test_every_call_starts_from_zero_state() -> None:
    lif = LIF("paper")
    x = torch.rand(8, 3, 4, 5, 6)
    a = lif(x)
    b = lif(x)
    assert torch.equal(a, b)
    assert list(lif.buffers()) == []


def test_streaming_equals_full_sequence() -> None:
    torch.manual_seed(0)
    x = torch.randn(12, 2, 7) * 0.4
    for name in ["paper", "biclab", "msresnet", "spikingjelly", "plif"]:
        lif = LIF(name)
        full = lif(x)
        s1, v = lif(x[:5], return_state=True)
        s2 = lif(x[5:], state=v)
        assert torch.equal(full, torch.cat([s1, s2])), name


def test_biclab_stepped_and_non_firing() -> None:
    # U = .1 (h = .03), U = .53 fire (h = .09), U = .09 (h = .027), U = .327 fire (h = .09)
    s, v = run("biclab", [0.1, 0.5, 0.0, 0.3])
    assert s == [0, 1, 0, 1]
    assert v == pytest.approx([0.03, 0.09, 0.027, 0.09], abs=1e-7)
    # constant .2: fixed point h* = .3 (h* + .2) -> U* = .2857 < .3, never fires
    s, v = run("biclab", [0.2] * 30)
    assert s == [0] * 30
    assert v[-1] == pytest.approx(0.06 / 0.7, abs=1e-7)


def test_msresnet_stepped_and_non_firing() -> None:
    # .375 forever: U_t = .375 (1 + .25 + ... ) -> .5 from below, never > .5
    s, v = run("msresnet", [0.375] * 20)
    assert s == [0] * 20
    assert v[0] == 0.09375 and v[1] == 0.1171875  # .25 * .375, .25 * (.09375 + .375)
    # stepped: .25 (H .0625), 1.0 fire -> 0, .5 not > .5 (H .125), .5 -> .625 fire -> 0
    s, v = run("msresnet", [0.25, 1.0, 0.5, 0.5])
    assert s == [0, 1, 0, 1]
    assert v == [0.0625, 0.0, 0.125, 0.0]


def test_plif_stepped_and_non_firing() -> None:
    # init_tau 2: H = V + (X - V) / 2. X = .8 forever -> V -> .8 < 1, never fires
    s, v = run("plif", [0.8] * 12)
    assert s == [0] * 12
    assert v == pytest.approx([0.8 * (1 - 0.5 ** (t + 1)) for t in range(12)])
    # stepped: 1.0 (.5), 3.0 (1.75 fire -> 0), 0.0 (0), 2.0 (1.0 >= 1 fire -> 0)
    s, v = run("plif", [1.0, 3.0, 0.0, 2.0])
    assert s == [0, 1, 0, 1]
    assert v == pytest.approx([0.5, 0.0, 0.0, 0.0])
