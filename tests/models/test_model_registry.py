"""Registry and factory: names, strict kwargs, None = default, metadata, placement defaults."""

from __future__ import annotations

import dataclasses

import pytest

import masnn
from masnn.models import MODELS, ModelCfg, create_model, list_models, model_cfg

EXPECTED = ["ma_snn3", "ma_snn3_tiny", "ma_snn5", "ms_resnet104", "ms_resnet18", "ms_resnet34"]
COMMON = [
    "num_classes",
    "timesteps",
    "attn",
    "placement",
    "neuron",
    "reduction_t",
    "reduction_c",
    "kernel_size",
    "attn_relu",
]


def test_public_surface():
    assert masnn.create_model is create_model
    assert masnn.list_models is list_models
    assert {"create_model", "list_models", "register_model"} <= set(masnn.__all__)
    assert list_models() == EXPECTED
    assert list_models("ms_*") == ["ms_resnet104", "ms_resnet18", "ms_resnet34"]


@pytest.mark.parametrize("name", EXPECTED)
def test_every_model_accepts_the_common_kwargs(name):
    accepted = MODELS.get(name).accepted
    assert set(COMMON) <= set(accepted)


def test_unknown_kwarg_raises_with_suggestion():
    with pytest.raises(TypeError, match=r"'num_clases' \(did you mean 'num_classes'\?\)"):
        create_model("ma_snn3", num_clases=10)
    with pytest.raises(TypeError, match="accepted: .*'timesteps'"):
        create_model("ms_resnet18", foo=1)


def test_unknown_model_raises_listing_models():
    with pytest.raises(ValueError, match="did you mean 'ma_snn3'"):
        create_model("ma_snn33")


def test_none_means_registered_default():
    a = create_model("ma_snn3_tiny", attn=None, num_classes=None, reduction_c=None)
    b = create_model("ma_snn3_tiny")
    assert a.model_args == b.model_args
    assert a.model_args["attn"] == "tcsa" and a.num_classes == 11


def test_placement_dependent_defaults():
    paper = create_model("ma_snn3", timesteps=4).model_args
    code = create_model("ma_snn3", timesteps=4, placement="code").model_args
    assert (paper["reduction_c"], paper["kernel_size"], paper["attn_relu"]) == (16, 7, False)
    assert paper["neuron"] == "paper"
    assert (code["reduction_c"], code["kernel_size"], code["attn_relu"]) == (8, 3, True)
    assert code["neuron"] == "biclab"
    # an explicit kwarg wins over the placement default
    assert (
        create_model("ma_snn3", timesteps=4, placement="code", neuron="paper").model_args["neuron"]
        == "paper"
    )
    with pytest.raises(ValueError, match="unknown placement 'cod'; allowed"):
        create_model("ma_snn3", placement="cod")


def test_msresnet_relu_rule():
    assert create_model("ms_resnet18", placement="code").model_args["attn_relu"] is True
    assert create_model("ms_resnet18", placement="code", att_res=2).model_args["attn_relu"] is False
    assert create_model("ms_resnet18").model_args["attn_relu"] is False
    with pytest.raises(ValueError, match="att_res must be one of"):
        create_model("ms_resnet18", att_res=3)
    with pytest.raises(ValueError, match="reduction_t must be None"):
        create_model("ms_resnet18", reduction_t=4)


@pytest.mark.parametrize("name", EXPECTED)
def test_cfg_matches_built_model(name):
    cfg = model_cfg(name)
    m = create_model(name, timesteps=2) if name == "ms_resnet104" else create_model(name)
    assert m.default_cfg is cfg
    assert tuple(m.input_size) == cfg.input_size
    assert m.num_classes == cfg.num_classes
    if name != "ms_resnet104":
        assert m.timesteps == cfg.timesteps
    assert cfg.neuron_count in ("all_lif", "conv_only")
    assert cfg.paper
    # every registered default carries a provenance tag
    assert set(cfg.defaults) - {"backend"} <= set(cfg.sources)


def test_assumptions_are_recorded():
    cfg = model_cfg("ma_snn5")
    assert cfg.neuron_count == "conv_only"
    assert {"neuron", "placement", "kernel_size", "reduction_c"} <= set(cfg.assumptions)
    assert "reduction_t" in model_cfg("ma_snn3").rules
    assert model_cfg("ms_resnet34").sources["paper.reduction_c"] == "assumption"


def test_model_cfg_validation():
    args = model_cfg("ma_snn3").args
    with pytest.raises(ValueError, match="neuron_count must be one of"):
        ModelCfg("x", "f", "p", "some", args)
    with pytest.raises(ValueError, match="unknown source tags"):
        ModelCfg("x", "f", "p", "all_lif", args, sources={"a": "guess"})
    with pytest.raises(ValueError, match="input_size"):
        ModelCfg("x", "f", "p", "all_lif", dataclasses.replace(args, input_size=(2, 0, 8)))
    cfg = ModelCfg("x", "f", "p", "all_lif", args)
    assert cfg.defaults["hidden"] == 256
    with pytest.raises(TypeError):
        cfg.defaults["hidden"] = 2  # frozen
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.args.hidden = 2  # type: ignore[misc]


def test_bad_architecture_values():
    with pytest.raises(ValueError, match="channels must be 3 positive ints"):
        create_model("ma_snn3", channels=(8, 16))
    with pytest.raises(ValueError, match="too small"):
        create_model("ma_snn3", input_size=(2, 2, 2))
    with pytest.raises(ValueError, match="unknown attention"):
        create_model("ma_snn3_tiny", attn="tcsaa")
