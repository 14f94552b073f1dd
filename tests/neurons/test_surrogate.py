"""Each surrogate's hand-written backward equals the derivative of its smooth primitive."""

from __future__ import annotations

import pytest
import torch

from masnn.neurons import SURROGATES, Surrogate, make_surrogate


@pytest.mark.parametrize("name", SURROGATES.names())
@pytest.mark.parametrize("param", [None, 0.7, 3.0])
def test_backward_is_derivative_of_primitive(name: str, param: float | None) -> None:
    sg = Surrogate(name, param)
    x = torch.linspace(-3, 3, 6001, dtype=torch.float64)
    if name == "rect":  # the derivative of the clamp is undefined exactly at the corners
        x = x[(x.abs() - sg.param / 2).abs() > 1e-6]
    xs = x.clone().requires_grad_(True)
    sg(xs).sum().backward()
    xp = x.clone().requires_grad_(True)
    sg.primitive(xp).sum().backward()
    torch.testing.assert_close(xs.grad, xp.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sg.grad(x), xp.grad, rtol=1e-12, atol=1e-12)
    assert xs.grad.abs().sum() > 0


@pytest.mark.parametrize("name", SURROGATES.names())
def test_forward_is_heaviside(name: str) -> None:
    x = torch.tensor([-1.0, -1e-7, 0.0, 1e-7, 2.0])
    assert Surrogate(name)(x).tolist() == [0, 0, 1, 1, 1]
    assert Surrogate(name, strict=True)(x).tolist() == [0, 0, 0, 1, 1]


def test_primitive_approximates_step() -> None:
    for name in SURROGATES.names():
        sg = Surrogate(name)
        p = sg.primitive(torch.tensor([-50.0, 50.0]))
        assert p.tolist() == pytest.approx([0.0, 1.0], abs=1e-2)


def test_rect_matches_official_window() -> None:
    # official DVS cell: grad 1/a on |u - v_th| < a/2 with a = 0.5 -> height 2 on +-0.25
    g = Surrogate("rect", 0.5).grad(torch.tensor([-0.3, -0.24, 0.0, 0.24, 0.26]))
    assert g.tolist() == [0.0, 2.0, 2.0, 2.0, 0.0]


def test_make_surrogate_parsing_and_errors() -> None:
    assert make_surrogate("atan:3").param == 3.0
    assert make_surrogate("sigmoid").param == 4.0
    with pytest.raises(ValueError, match="allowed: \\['atan', 'rect', 'sigmoid'\\]"):
        make_surrogate("tanh")
    with pytest.raises(ValueError, match="width must be > 0"):
        make_surrogate("rect:-1")
    with pytest.raises(TypeError):
        make_surrogate(3)  # type: ignore[arg-type]
