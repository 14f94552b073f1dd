"""Where a gate acts changes the dynamics: hand-derived trajectories, causality, monotonicity.

Paper: `Attention Spiking Neural Networks` Eq. 3-5 and 14; spec §8.2 (testable properties).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from masnn.attention import AttnCfg
from masnn.layers import AttnLIF, SpikingConvBlock
from masnn.neurons import NeuronSpec, lif_multistep, resolve_neuron

V_TH, BETA = 0.3, 0.3  # the paper preset's constants


def _half_gate(layer: AttnLIF) -> None:
    """Zero the last layer of every gate so that every gate is sigmoid(0) = 0.5 exactly."""
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.endswith("mlp.2.weight") or name.endswith("conv.weight"):
                p.zero_()


def _record(module: nn.Module) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    module.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone()))
    return seen


def _expected(x: float, steps: int, g: float, where: str) -> tuple[list[float], list[float]]:
    """Paper Eq. 3-5 with a constant gate ``g`` on U (membrane) or on X (conv_post)."""
    h, us, spikes = 0.0, [], []
    for _ in range(steps):
        u = g * (h + x) if where == "membrane" else h + g * x
        s = 1.0 if u >= V_TH else 0.0
        h = BETA * u * (1.0 - s)  # H[t] = beta * U[t] * (1 - S[t]); V_reset = 0
        us.append(u)
        spikes.append(s)
    return us, spikes


@pytest.mark.parametrize("attn", ["ca", "sa", "csa"])
def test_constant_gate_trajectory_distinguishes_membrane_from_current(attn: str) -> None:
    steps, x = 8, 0.5
    g = 0.5 if attn != "csa" else 0.25  # two half gates in series
    x_seq = torch.full((steps, 1, 4, 2, 3), x, dtype=torch.float64)
    spikes = {}
    for where in ("membrane", "conv_post"):
        layer = AttnLIF(4, steps, attn=AttnCfg(attn, locations={"c": where, "s": where})).double()
        _half_gate(layer)
        gated = _record(layer.lif.membrane_gate if where == "membrane" else layer.post_attn)
        out = layer(x_seq)
        us, s_exp = _expected(x, steps, g, where)
        torch.testing.assert_close(out[:, 0, 0, 0, 0], torch.tensor(s_exp, dtype=out.dtype))
        assert (out == out[:, :1, :1, :1, :1]).all()  # the same at every neuron
        if where == "membrane":  # the hook sees the gated U[t] of every step
            got = torch.stack([u[0, 0, 0, 0] for u in gated])
            torch.testing.assert_close(got, torch.tensor(us, dtype=torch.float64))
        spikes[where] = out[:, 0, 0, 0, 0].tolist()
    if attn != "csa":
        # by hand, g = 0.5, X = 0.5:
        # membrane:  U = 0.5 (H + 0.5): 0.25, 0.2875, 0.293125, ... -> 0.2941 < 0.3, never fires
        # conv_post: U = H + 0.25:      0.25, 0.325 (fire), 0.25, 0.325 (fire), ...
        assert spikes["membrane"] == [0.0] * steps
        assert spikes["conv_post"] == [0.0, 1.0] * (steps // 2)
    else:
        assert spikes["membrane"] == [0.0] * steps and spikes["conv_post"] == [0.0] * steps


def _perturb_last(x: torch.Tensor, amount: float = 50.0) -> torch.Tensor:
    y = x.clone()
    y[-1] += amount
    return y


@pytest.mark.parametrize(
    "attn,locations",
    [
        ("none", None),
        ("csa", None),  # paper: CA, SA on the membrane
        ("ca", None),
        ("sa", None),
        ("csa", {"c": "conv_post", "s": "conv_post"}),  # paper pooling per step on X
        ("csa", {"c": "conv_pre", "s": "conv_pre"}),
    ],
)
def test_per_step_gates_are_causal(attn: str, locations: dict[str, str] | None) -> None:
    torch.manual_seed(0)
    steps = 6
    block = SpikingConvBlock(
        2, 8, steps, pool="avg", attn=AttnCfg(attn, locations=locations)
    ).eval()
    lif = block.neuron.lif
    x = (torch.rand(steps, 3, 2, 8, 10) < 0.4).float()
    with torch.no_grad():
        block.bn.weight.fill_(4.0)  # enough current that the layer fires
    watched = lif.membrane_gate or block.neuron.post_attn or lif
    seen = _record(watched)
    with torch.no_grad():
        a, b = block(x), block(_perturb_last(x))
    assert a[:-1].sum() > 0
    torch.testing.assert_close(a[:-1], b[:-1], rtol=0, atol=0)
    assert not torch.equal(a[-1], b[-1])  # the perturbation is visible at its own step
    if lif.membrane_gate is not None:  # continuous gated membrane, per step
        u_a, u_b = seen[:steps], seen[steps:]
        for t in range(steps - 1):
            torch.testing.assert_close(u_a[t], u_b[t], rtol=0, atol=0)
        assert not torch.equal(u_a[-1], u_b[-1])
    elif block.neuron.post_attn is not None:  # continuous gated current
        torch.testing.assert_close(seen[0][:-1], seen[1][:-1], rtol=0, atol=0)


def _negative_feedback(layer: nn.Module) -> None:
    """Gates that shrink as the pooled input grows (so a huge last frame closes step 0)."""
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.endswith("mlp.0.weight"):
                p.fill_(1.0)
            elif name.endswith("mlp.2.weight"):
                p.fill_(-0.1)
            elif name.endswith("conv.weight"):
                p.fill_(-0.01)


@pytest.mark.parametrize(
    "attn,placement",
    [("ta", "paper"), ("ta", "code"), ("ca", "code"), ("sa", "code"), ("tcsa", "code")],
)
def test_whole_window_gates_are_not_causal(attn: str, placement: str) -> None:
    steps = 4
    layer = AttnLIF(4, steps, attn=AttnCfg(attn, placement=placement)).eval()
    _negative_feedback(layer)
    seen = _record(layer.post_attn)
    x = torch.full((steps, 2, 4, 5, 6), 1.5)
    with torch.no_grad():
        a, b = layer(x), layer(_perturb_last(x))
    # the continuous gated current at step 0 moves when only the last frame changed
    assert (seen[0][0] - seen[1][0]).abs().max() > 0.05
    if attn != "tcsa":  # one gate: step 0 fires before and falls silent after
        assert a[0].min() == 1.0 and b[0].max() == 0.0


def _run(x: torch.Tensor, g: torch.Tensor, where: str, neuron: str) -> torch.Tensor:
    spec = resolve_neuron(neuron)
    if where == "current":
        return lif_multistep(g * x, None, spec.params, spec.surrogate)[0]
    step = iter(range(x.shape[0]))
    return lif_multistep(x, None, spec.params, spec.surrogate, lambda u: g[next(step)] * u)[0]


unit = st.floats(0.0, 1.0, allow_nan=False, width=32)


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    steps=st.integers(1, 10),
    n=st.integers(1, 5),
    where=st.sampled_from(["current", "membrane"]),
)
def test_biclab_gate_never_increases_spikes(data, steps: int, n: int, where: str) -> None:
    """Induction on h = alpha (S V_th + (1 - S) U): 0 <= X' <= X gives U' <= U, S' <= S."""
    x = torch.tensor(data.draw(st.lists(unit, min_size=steps * n, max_size=steps * n)))
    g = torch.tensor(data.draw(st.lists(unit, min_size=steps * n, max_size=steps * n)))
    x, g = x.reshape(steps, n), g.reshape(steps, n)
    s_ref = _run(x, torch.ones_like(g), where, "biclab")
    s_gated = _run(x, g, where, "biclab")
    assert (s_gated <= s_ref).all()  # element-wise per step, hence per-neuron counts too


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), attn=st.sampled_from(["ca", "sa", "csa", "eca", "simam"]))
def test_biclab_real_membrane_gates_never_increase_spikes(seed: int, attn: str) -> None:
    torch.manual_seed(seed)
    steps = 5
    x = torch.rand(steps, 2, 4, 3, 5) * 0.6
    gated = AttnLIF(4, steps, attn=AttnCfg(attn), neuron=NeuronSpec("biclab"))
    plain = AttnLIF(4, steps, attn=AttnCfg("none"), neuron=NeuronSpec("biclab"))
    with torch.no_grad():
        assert (gated(x) <= plain(x)).all()


def test_paper_hard_reset_counterexample() -> None:
    """With the paper's hard reset, a gate can move a spike *later* (step-wise monotonicity fails).

    X = (0.31, 0.28, 0.31), V_th = beta = 0.3, V_reset = 0. Ungated: U0 = 0.31 fires and the
    reset throws the excess away; U1 = 0.28 stays silent; U2 = 0.31 + 0.084 fires: (1, 0, 1).
    Gate 0.95 at t = 0 only: U0 = 0.2945 stays under threshold and leaks on (H0 = 0.08835),
    U1 = 0.36835 fires, U2 = 0.31 fires: (0, 1, 1). So S'[1] = 1 > S[1] = 0, which the biclab
    induction (spec §8.2) forbids; biclab gives (1, 1, 1) -> (0, 1, 1) on the same input.

    The *count* does not rise here, and cannot with non-negative input (see
    :func:`test_paper_hard_reset_count_is_monotone_for_nonnegative_input`); it can with signed
    input, which the paper placement allows (no ReLU after BN): see
    :func:`test_signed_input_gate_can_add_spikes`.
    """
    x = torch.tensor([[0.31], [0.28], [0.31]])
    g = torch.tensor([[0.95], [1.0], [1.0]])
    for where in ("current", "membrane"):
        plain = _run(x, torch.ones_like(g), where, "paper")
        gated = _run(x, g, where, "paper")
        assert plain.squeeze(1).tolist() == [1.0, 0.0, 1.0]
        assert gated.squeeze(1).tolist() == [0.0, 1.0, 1.0]
        assert not (gated <= plain).all()
        b_plain = _run(x, torch.ones_like(g), where, "biclab")
        b_gated = _run(x, g, where, "biclab")
        assert b_plain.squeeze(1).tolist() == [1.0, 1.0, 1.0]
        assert (b_gated <= b_plain).all()


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    steps=st.integers(1, 10),
    where=st.sampled_from(["current", "membrane"]),
    beta=st.sampled_from([0.3, 0.9, 1.0]),
)
def test_paper_hard_reset_count_is_monotone_for_nonnegative_input(data, steps, where, beta):
    """Counts still cannot rise with hard reset to 0 and X >= 0.

    Invariant: N_ungated >= N_gated, and when equal the ungated neuron's last reset is no later
    than the gated one's, so since that reset it has integrated a superset of larger inputs
    from a state >= 0 and fires whenever the gated one does.
    """
    x = torch.tensor(data.draw(st.lists(unit, min_size=steps, max_size=steps)))[:, None]
    g = torch.tensor(data.draw(st.lists(unit, min_size=steps, max_size=steps)))[:, None]
    spec = resolve_neuron("paper", beta=beta)
    step = iter(range(steps))
    gate = (lambda u: g[next(step)] * u) if where == "membrane" else None
    x_in = x if where == "membrane" else g * x
    gated = lif_multistep(x_in, None, spec.params, spec.surrogate, gate)[0]
    plain = lif_multistep(x, None, spec.params, spec.surrogate)[0]
    assert gated.sum() <= plain.sum()


def test_signed_input_gate_can_add_spikes() -> None:
    """Gating an inhibitory (negative) current adds spikes, for any neuron: X = (-1, 0.35)."""
    x = torch.tensor([[-1.0], [0.35]])
    g = torch.tensor([[0.1], [1.0]])
    for neuron in ("paper", "biclab"):
        assert _run(x, torch.ones_like(g), "current", neuron).sum() == 0
        assert _run(x, g, "current", neuron).sum() == 1
