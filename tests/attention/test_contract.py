"""Contract of every attention name x location x placement: shape, dtype, gates, gradients."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from masnn.attention import (
    ATTENTION,
    GATES,
    AttnCfg,
    MembraneAttention,
    MultiDimAttention,
    PlacedAttention,
    create_attn,
)
from masnn.layers import AttnLIF

T, B, C, H, W = 4, 2, 6, 5, 7  # H != W on purpose
NAMES = [n for n in ATTENTION.names() if n != "none"]


def _valid_locations(name: str) -> list[str]:
    has_t = any(GATES.get(k).slot == "t" for k in ATTENTION.get(name).kinds)
    return ["conv_pre", "conv_post"] + ([] if has_t else ["membrane", "residual"])


CASES = [(n, loc, pl) for n in NAMES for loc in _valid_locations(n) for pl in ("paper", "code")]


def _gate_outputs(module: nn.Module) -> tuple[list[torch.Tensor], list]:
    seen: list[torch.Tensor] = []
    handles = [
        m.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
        for name, m in module.named_modules()
        if name.split(".")[-1] == "gate"
    ]
    return seen, handles


def _randomise(module: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            w = torch.randn(p.shape, generator=g, dtype=p.dtype)
            # a positive first MLP layer keeps the hidden ReLU alive on the (positive) max pool,
            # so an all-zero gradient below means a dead branch, not an unlucky draw
            p.copy_(w.abs() if "mlp.0" in name else w)


@pytest.mark.parametrize("name,location,placement", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_contract(name: str, location: str, placement: str, dtype: torch.dtype) -> None:
    m = create_attn(name, C, T, placement, location=location)
    assert m is not None
    m = m.to(dtype)
    _randomise(m, 0)
    n_gates = len([1 for n, _ in m.named_modules() if n.endswith("gate")])
    assert n_gates == len(ATTENTION.get(name).kinds)
    g = torch.Generator().manual_seed(1)
    if location == "membrane":
        assert isinstance(m, MembraneAttention)
        x = torch.randn(B, C, H, W, generator=g, dtype=dtype, requires_grad=True)
    else:
        assert isinstance(m, MultiDimAttention)
        x = torch.randn(T, B, C, H, W, generator=g, dtype=dtype, requires_grad=True)
    seen, handles = _gate_outputs(m)
    out = m(x)
    for h in handles:
        h.remove()
    assert out.shape == x.shape and out.dtype == dtype
    assert len(seen) == n_gates
    for gate in seen:
        assert gate.min() >= 0 and gate.max() <= 1
    assert (out.abs() <= x.abs() + 1e-12).all()
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for pname, p in m.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    grads = [p.grad.abs().sum() for p in m.parameters()]
    assert all(gr > 0 for gr in grads), "a gate branch received an all-zero gradient"


@pytest.mark.parametrize("name", ATTENTION.names())
@pytest.mark.parametrize("placement", ["paper", "code"])
def test_attn_lif_every_parameter_gets_a_gradient(name: str, placement: str) -> None:
    layer = AttnLIF(C, T, attn=AttnCfg(name, placement=placement))
    x = torch.randn(T, B, C, H, W, generator=torch.Generator().manual_seed(2))
    x = (x + 0.5).requires_grad_(True)
    seen_u: list[torch.Tensor] = []
    if layer.lif.membrane_gate is not None:
        layer.lif.membrane_gate.register_forward_hook(lambda _m, i, o: seen_u.append((i[0], o)))
    spikes = layer(x)
    assert spikes.shape == x.shape and set(spikes.unique().tolist()) <= {0.0, 1.0}
    for u_in, u_out in seen_u:  # membrane gates shrink U too
        assert (u_out.abs() <= u_in.abs() + 1e-7).all()
    assert len(seen_u) == (T if layer.lif.membrane_gate is not None else 0)
    spikes.sum().backward()
    for pname, p in layer.named_parameters():
        assert p.grad is not None, pname


@pytest.mark.parametrize("name", ["ta", "tca", "tsa", "tcsa"])
@pytest.mark.parametrize("location", ["conv_pre", "conv_post"])
def test_wrong_timesteps_for_ta_names_expected_and_actual(name: str, location: str) -> None:
    m = create_attn(name, C, T, "code", location=location)
    with pytest.raises(ValueError, match=rf"T={T}\b.*T={T + 1}\b"):
        m(torch.randn(T + 1, B, C, H, W))
    layer = AttnLIF(C, T, attn=AttnCfg(name))
    with pytest.raises(ValueError, match=rf"T={T}\b.*T={T + 1}\b"):
        layer(torch.randn(T + 1, B, C, H, W))


def test_non_ta_gates_accept_any_timesteps() -> None:
    for name in ("ca", "sa", "csa", "eca", "simam"):
        for pl in ("paper", "code"):
            m = create_attn(name, C, T, pl, location="conv_post")
            assert m(torch.randn(T + 3, B, C, H, W)).shape == (T + 3, B, C, H, W)


def test_wrong_channels_raise_naming_both() -> None:
    for name in ("ca", "eca", "simam"):
        m = create_attn(name, C, T, location="conv_post")
        with pytest.raises(ValueError, match=rf"C={C}\b.*C={C + 1}\b"):
            m(torch.randn(T, B, C + 1, H, W))
    with pytest.raises(ValueError, match=rf"C={C}"):
        AttnLIF(C, T)(torch.randn(T, B, C + 1, H, W))


def test_unknown_values_list_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"allowed: .*'tcsa'"):
        create_attn("tcas", C, T)
    with pytest.raises(ValueError, match=r"allowed: \['code', 'paper'\]"):
        create_attn("ca", C, T, "papr")
    with pytest.raises(ValueError, match=r"allowed: \['conv_pre', 'conv_post', 'membrane'"):
        create_attn("ca", C, T, location="conv")
    with pytest.raises(ValueError, match=r"cannot gate an integrated membrane"):
        create_attn("tca", C, T, location="membrane")
    with pytest.raises(ValueError, match=r"residual"):
        create_attn("tcsa", C, T, location="residual")
    with pytest.raises(ValueError, match=r"allowed: \['t', 'c', 's'\]"):
        AttnLIF(C, T, attn=AttnCfg("ca", locations={"x": "membrane"}))
    with pytest.raises(ValueError, match=r"allowed: \['conv_pre', 'conv_post'\]"):
        AttnLIF(C, T, attn=AttnCfg("ta", locations={"t": "membrane"}))


@pytest.mark.parametrize("name", ATTENTION.names())
def test_every_name_accepts_and_validates_every_kwarg(name: str) -> None:
    kw = {"reduction_t": 2, "reduction_c": 3, "kernel_size": 5, "attn_relu": True}
    create_attn(name, C, T, "paper", location="conv_post", **kw)
    create_attn(name, C, T, "code", **kw)
    for bad in ({"reduction_t": 0}, {"reduction_c": -1}, {"kernel_size": 4}, {"reduction_t": 1.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            create_attn(name, C, T, **bad)
    with pytest.raises(TypeError, match="attn_relu"):
        create_attn(name, C, T, attn_relu="yes")


def test_create_attn_return_kinds() -> None:
    assert create_attn("none", C, T) is None
    assert create_attn(None, C, T, "code") is None  # the code adds its ReLU only with a gate
    relu_only = create_attn("none", C, T, attn_relu=True)
    assert isinstance(relu_only, MultiDimAttention) and relu_only.relu is not None
    x = torch.randn(T, B, C, H, W)
    torch.testing.assert_close(relu_only(x), x.relu())
    assert isinstance(create_attn("ta", C, T), MultiDimAttention)
    assert isinstance(create_attn("csa", C, T), MembraneAttention)  # paper: CA/SA on U
    placed = create_attn("tcsa", C, T)
    assert isinstance(placed, PlacedAttention)
    assert placed.conv_pre is None and placed.conv_post.ta is not None
    assert placed.membrane.ca is not None and placed.membrane.sa is not None
    with pytest.raises(TypeError, match="AttnLIF"):
        placed(x)
    code = create_attn("tcsa", C, T, "code")
    assert isinstance(code, MultiDimAttention) and code.relu is not None
    assert not code.ca.per_step and not code.sa.per_step and code.sa.kernel_size == 3
    assert create_attn("sa", C, T).sa.kernel_size == 7


def test_residual_location_presets() -> None:
    paper = create_attn("csa", C, T, "paper", location="residual")
    code = create_attn("csa", C, T, "code", location="residual")
    assert paper.ca.per_step and paper.sa.per_step and paper.sa.kernel_size == 7
    assert paper.relu is None
    assert not code.ca.per_step and not code.sa.per_step and code.sa.kernel_size == 3
    assert code.relu is not None and code.ca.reduction == 8
    x = torch.randn(T, B, C, H, W)
    assert (code(x) >= 0).all()
    assert create_attn("ca", C, T, "code", location="residual").sa is None


def _params(m: nn.Module | None) -> int:
    return 0 if m is None else sum(p.numel() for p in m.parameters())


def test_parameter_overheads_match_paper_section_2_5() -> None:
    # layer level: TA at T = 60, r_t = 5 -> 2 * 60 * 12; CA r_c = 16 on 64 ch -> 2 * 64 * 4
    assert _params(create_attn("ta", 64, 60, reduction_t=5)) == 1440
    assert _params(create_attn("ca", 64, 60, reduction_c=16)) == 512
    assert _params(create_attn("ca", 64, 60, "code")) == 1024  # code r_c = 8
    assert _params(create_attn("sa", 64, 60, "code")) == 18  # 2 * 3 * 3
    assert _params(create_attn("sa", 64, 60, "paper")) == 98  # 2 * 7 * 7
    assert _params(create_attn("simam", 64, 60)) == 0
    # Gesture 3-layer net (conv 64, 128, 128; 2 FC layers), T = 60, code r_t = 5
    convs = (64, 128, 128)

    def net(name: str, **kw: int) -> int:
        conv = sum(_params(create_attn(name, c, 60, "code", **kw)) for c in convs)
        fc = 2 * _params(create_attn("ta", 1, 60, "code")) if "t" in name else 0
        return conv + fc

    expected = {"ta": 7200, "ca": 9216, "sa": 54, "tca": 16416, "tsa": 7254}
    expected |= {"csa": 9270, "tcsa": 16470}
    assert {n: net(n) for n in expected} == expected
    r16 = {"ca": 4608, "tca": 11808, "csa": 4662, "tcsa": 11862}
    assert {n: net(n, reduction_c=16) for n in r16} == r16


def test_hidden_size_never_zero() -> None:
    ta = create_attn("ta", C, 2, reduction_t=5)  # the official T // r would be 0
    assert ta.ta.mlp[0].out_features == 1
    ca = create_attn("ca", 3, T, location="conv_post", reduction_c=16)
    assert ca.ca.mlp[0].out_features == 1


@pytest.mark.parametrize(
    "name,placement", list(itertools.product(["ta", "none"], ["paper", "code"]))
)
def test_fc_temporal_attention(name: str, placement: str) -> None:
    layer = AttnLIF(10, T, fc=True, attn=AttnCfg(name, placement=placement))
    out = layer(torch.rand(T, B, 10))
    assert out.shape == (T, B, 10)
    with pytest.raises(ValueError, match="allowed: \\['none', 'ta'\\]"):
        AttnLIF(10, T, fc=True, attn=AttnCfg("tca"))


def test_gates_and_neuron_state_stay_fp32_under_bf16_autocast() -> None:
    """Autocast runs convs in bf16, but every gate (sequence and membrane) computes in fp32."""
    from masnn.models import create_model

    for placement in ("paper", "code"):
        model = create_model(
            "ma_snn3_tiny", attn="tcsa", placement=placement, timesteps=4, input_size=(2, 16, 16)
        )
        seen: dict[str, torch.dtype] = {}

        def record(name: str, seen: dict = seen):  # type: ignore[no-untyped-def]
            def hook(mod, args, output) -> None:  # type: ignore[no-untyped-def]
                seen[name] = output.dtype

            return hook

        hooks = [
            m.register_forward_hook(record(n))
            for n, m in model.named_modules()
            if n.endswith(".gate")
        ]
        x = torch.poisson(torch.full((4, 2, 2, 16, 16), 1.0))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        for h in hooks:
            h.remove()
        assert len(seen) >= 3, placement
        assert set(seen.values()) == {torch.float32}, (placement, seen)
        assert out.dtype == torch.float32
