"""Registry-wide contract: shape, finiteness, gradients, determinism, batch-size changes.

The full attention x placement x neuron product runs on a narrow ``ma_snn3`` at T = 4 and
16 x 16; every registered model runs once at a minimal shape.
"""

from __future__ import annotations

import pytest
import torch

from masnn.attention import ATTENTION, PLACEMENTS
from masnn.models import count_neurons, create_model, list_models
from masnn.neurons import NEURON_PRESETS
from tests.models._model_helpers import event_counts, n_params


def _check_contract(model, x_seq, num_classes, x_other=None):
    """Train-mode forward/backward, then eval-mode determinism and batch-size change."""
    model.train()
    out = model(x_seq)
    assert out.shape == (x_seq.shape[1], num_classes)
    assert torch.isfinite(out).all()
    # a loss that reaches every output and every step's feature
    (out.square().sum() + out.sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    bad = [
        n for n, p in model.named_parameters() if p.grad is not None and not p.grad.isfinite().all()
    ]
    assert not bad, f"non-finite gradients: {bad}"
    model.eval()
    with torch.no_grad():
        a = model(x_seq)
        if x_other is not None:
            b = model(x_other)  # a different batch size in between: no state may leak
            assert b.shape == (x_other.shape[1], num_classes)
            assert torch.isfinite(b).all()
        c = model(x_seq)
    assert torch.equal(a, c)


PRODUCT = [
    (attn, placement, neuron)
    for attn in ATTENTION.names()
    for placement in PLACEMENTS.names()
    for neuron in NEURON_PRESETS.names()
]


@pytest.mark.parametrize(("attn", "placement", "neuron"), PRODUCT)
def test_ma_snn3_product(attn, placement, neuron):
    torch.manual_seed(0)
    t = 3
    m = create_model(
        "ma_snn3",
        timesteps=t,
        attn=attn,
        placement=placement,
        neuron=neuron,
        input_size=(2, 16, 12),  # non-square
        channels=(4, 8, 8),
        hidden=16,
        num_classes=5,
    )
    x = event_counts((t, 2, 2, 16, 12), rate=0.5)
    _check_contract(m, x, 5, x_other=event_counts((t, 3, 2, 16, 12), seed=1))


# (name, kwargs, x shape, other batch)
MINIMAL = {
    "ma_snn3": (dict(timesteps=2), (2, 2, 2, 32, 32), 3),
    "ma_snn3_tiny": (dict(timesteps=2), (2, 2, 2, 32, 32), 3),
    "ma_snn5": (dict(timesteps=2), (2, 1, 2, 128, 128), 2),
    "ms_resnet18": (dict(timesteps=1, num_classes=10), (1, 2, 3, 32, 32), 3),
    "ms_resnet34": (dict(timesteps=2, num_classes=10), (2, 2, 3, 32, 32), 3),
}


def test_minimal_covers_registry():
    assert set(MINIMAL) | {"ms_resnet104"} == set(list_models())


@pytest.mark.parametrize("name", sorted(MINIMAL))
def test_every_model_minimal(name):
    torch.manual_seed(0)
    kwargs, shape, other = MINIMAL[name]
    m = create_model(name, **kwargs)
    x = event_counts(shape, rate=0.5)
    x2 = event_counts((shape[0], other, *shape[2:]), rate=0.5, seed=1)
    _check_contract(m, x, m.num_classes, x_other=x2)


@pytest.mark.parametrize(("placement", "att_res"), [("code", 1), ("paper", 2), ("code", 2)])
def test_ms_resnet18_attention_variants(placement, att_res):
    torch.manual_seed(0)
    m = create_model(
        "ms_resnet18",
        timesteps=1,
        num_classes=4,
        placement=placement,
        att_res=att_res,
        widths=(16, 16, 32, 32),
    )
    _check_contract(m, torch.randn(1, 2, 3, 16, 16), 4)


def test_ms_resnet104_builds_and_counts():
    m = create_model("ms_resnet104", attn="csa", placement="code", timesteps=1, num_classes=1000)
    assert n_params(m) == 78_369_598
    assert len(m.stages) == 4 and [len(s) for s in m.stages] == [3, 8, 32, 8]
    with torch.no_grad():
        n = sum(count_neurons(m, (1, 1, 3, 32, 32)).values())
    assert n > 0


@pytest.mark.slow
def test_ms_resnet104_backward():
    torch.manual_seed(0)
    m = create_model("ms_resnet104", timesteps=1, num_classes=10)
    _check_contract(m, torch.randn(1, 2, 3, 32, 32), 10, x_other=torch.randn(1, 3, 3, 32, 32))


def test_wrong_input_rank_or_channels():
    m = create_model("ma_snn3_tiny", timesteps=2)
    with pytest.raises(ValueError, match=r"expects \(T, B, 2, H, W\)"):
        m(torch.zeros(2, 2, 3, 32, 32))
    with pytest.raises(ValueError, match="time-major"):
        m(torch.zeros(2, 2, 32, 32))


def test_ta_conv_pre_reaches_every_layer_of_the_table4_row():
    # configs/table4_ta_conv_pre.yaml: TA at Conv-PRE in the conv layers *and* the FC layers
    from pathlib import Path

    from masnn.attention import TemporalAttention
    from masnn.train.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "table4_ta_conv_pre.yaml")
    assert cfg.model.attn.locations == {"t": "conv_pre"}
    m = create_model("ma_snn3", attn=cfg.model.attn, timesteps=4, channels=(4, 8, 8), hidden=16)
    where = {n for n, mod in m.named_modules() if isinstance(mod, TemporalAttention)}
    layers = [f"features.{i}" for i in range(3)] + ["fc1", "fc2"]
    assert where == {f"{layer}.pre_attn.ta" for layer in layers}
    out = m(event_counts((4, 2, 2, 32, 32)))
    assert out.shape == (2, 11) and torch.isfinite(out).all()
