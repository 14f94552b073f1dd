"""Bad input raises ValueError / TypeError naming the allowed values."""

from __future__ import annotations

import pytest
import torch

from masnn.neurons import LIF, NEURON_PRESETS, lif_multistep, resolve_neuron


def test_wrong_rank() -> None:
    with pytest.raises(ValueError, match=r"\(T, B, \.\.\.\)"):
        LIF("paper")(torch.zeros(5))


def test_state_shape_mismatch() -> None:
    spec = resolve_neuron("paper")
    with pytest.raises(ValueError, match="v0 has shape"):
        lif_multistep(torch.zeros(3, 2, 4), torch.zeros(2, 5), spec.params, spec.surrogate)


def test_unknown_preset_lists_allowed() -> None:
    with pytest.raises(ValueError) as e:
        LIF("papr")
    msg = str(e.value)
    assert "did you mean 'paper'" in msg
    for name in NEURON_PRESETS.names():
        assert name in msg


def test_unknown_surrogate() -> None:
    with pytest.raises(ValueError, match="allowed: \\['atan', 'rect', 'sigmoid'\\]"):
        LIF("paper", surrogate="erf")


@pytest.mark.parametrize(
    ("neuron", "kw", "match"),
    [
        ("spikingjelly", {"tau": -2.0}, "tau must be > 0"),
        ("spikingjelly", {"tau": 0.5}, "tau must be >= 1"),
        ("plif", {"init_tau": 1.0}, "init_tau must be > 1"),
        ("paper", {"beta": 1.5}, r"beta must be in \[0, 1\]"),
        ("paper", {"v_th": 0.0}, "v_th must be > 0"),
        ("biclab", {"alpha": -0.1}, r"alpha must be in \[0, 1\]"),
    ],
)
def test_bad_values(neuron: str, kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LIF(neuron, **kw)


def test_unknown_kwarg_lists_accepted() -> None:
    with pytest.raises(TypeError, match=r"accepted: \['v_th', 'alpha', 'surrogate'\]"):
        LIF("biclab", tau=2.0)


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="allowed: \\['auto', 'cpp', 'torch', 'triton'\\]"):
        LIF("paper", backend="cuda-magic")
