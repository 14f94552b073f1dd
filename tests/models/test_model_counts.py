"""Parameter, neuron and FLOP counts against the paper-derived targets (exact integers)."""

from __future__ import annotations

import pytest

from masnn.models import count_neurons, create_model, layer_flops
from tests.models._model_helpers import n_params


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("ma_snn3", dict(attn="none", num_classes=11), 2_324_065),
        ("ms_resnet18", dict(attn="none"), 11_693_736),
        ("ms_resnet34", dict(attn="none"), 21_801_896),
        ("ms_resnet104", dict(attn="none"), 77_284_264),
        ("ms_resnet18", dict(attn="csa", placement="code"), 11_867_960),
        ("ms_resnet34", dict(attn="csa", placement="code"), 22_116_552),
        ("ms_resnet104", dict(attn="csa", placement="code"), 78_369_598),
        # same with the r_c / kernel given explicitly
        ("ms_resnet34", dict(attn="csa", reduction_c=8, kernel_size=3), 22_116_552),
    ],
)
def test_param_counts(name, kwargs, expected):
    assert n_params(create_model(name, **kwargs)) == expected


@pytest.mark.parametrize(
    ("attn", "placement", "overhead"),
    # paper spec §2.5, T = 60: code (r_c = 8, k = 3) and r_c = 16 columns
    [
        ("ta", "code", 7_200),
        ("ca", "code", 9_216),
        ("sa", "code", 54),
        ("tcsa", "code", 16_470),
        ("ca", "paper", 4_608),  # paper Table 5 (CBAM-CA)
        ("tcsa", "paper", 11_862 + 3 * 2 * (49 - 9)),  # 7x7 SA instead of 3x3
    ],
)
def test_ma_snn3_attention_overhead(attn, placement, overhead):
    base = n_params(create_model("ma_snn3", attn="none"))
    assert n_params(create_model("ma_snn3", attn=attn, placement=placement)) - base == overhead


@pytest.mark.parametrize(("num_classes", "expected"), [(11, 106_763), (20, 106_772)])
def test_ma_snn3_neurons(num_classes, expected):
    m = create_model("ma_snn3", attn="none", num_classes=num_classes, timesteps=1)
    counts = count_neurons(m, (1, 1, 2, 32, 32))
    assert list(counts.values()) == [65_536, 32_768, 8_192, 256, num_classes]
    assert sum(counts.values()) == expected


def test_ma_snn5_conv_neurons():
    m = create_model("ma_snn5", attn="none", timesteps=1)
    assert sum(count_neurons(m, (1, 1, 2, 128, 128)).values()) == 2_793_472
    assert sum(count_neurons(m, (1, 1, 2, 128, 128), "all_lif").values()) == 2_793_472 + 512 + 110


def test_ma_snn3_layer_flops():
    m = create_model("ma_snn3", attn="tcsa", timesteps=2)  # attention MACs are not counted
    flops = layer_flops(m, (2, 1, 2, 32, 32))
    assert list(flops.values()) == [1_179_648, 75_497_472, 37_748_736, 2_097_152, 2_816]


def test_count_convention_validated():
    m = create_model("ma_snn3_tiny", timesteps=1)
    with pytest.raises(ValueError, match="unknown convention"):
        count_neurons(m, (1, 1, 2, 32, 32), "conv")
