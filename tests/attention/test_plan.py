"""AttnCfg -> AttnPlan (resolved once), NeuronSpec, and how models inherit unset fields."""

from __future__ import annotations

import dataclasses

import pytest

from masnn.attention import PLACEMENTS, AttnCfg, AttnPlan, MembraneAttention, MultiDimAttention
from masnn.layers import AttnLIF, SpikingConvBlock
from masnn.models import create_model, model_cfg
from masnn.neurons import LIF, NeuronSpec


def test_resolve_fills_the_placement_defaults_once() -> None:
    for placement in PLACEMENTS.names():
        pl = PLACEMENTS.get(placement)
        plan = AttnCfg("tcsa", placement).resolve()
        assert isinstance(plan, AttnPlan) and plan.kinds == ("ta", "ca", "sa")
        assert plan.hp == (pl.reduction_t, pl.reduction_c, pl.kernel_size)
        assert plan.relu is pl.relu and plan.per_step is pl.per_step
        assert dict(plan.where) == {
            "ta": "conv_post",
            "ca": pl.locations["c"],
            "sa": pl.locations["s"],
        }
    plan = AttnCfg("tcsa", locations={"t": "conv_pre", "s": "conv_post"}, kernel_size=3).resolve()
    assert (plan.at("conv_pre"), plan.at("conv_post"), plan.at("membrane")) == (
        ("ta",),
        ("sa",),
        ("ca",),
    )
    assert plan.hp.kernel_size == 3
    assert AttnCfg("none").resolve().relu is False  # the code's ReLU comes only with a gate
    assert AttnCfg("none", "code").resolve().relu is False
    assert AttnCfg("none", relu=True).resolve().relu is True  # the ReLU-only control


def test_plan_builds_each_location_and_restricts() -> None:
    plan = AttnCfg("tcsa", locations={"c": "conv_pre"}).resolve()
    pre = plan.build("conv_pre", 3, 4)
    assert isinstance(pre, MultiDimAttention) and pre.ca.channels == 3 and pre.ta is None
    post = plan.build("conv_post", 8, 4)
    assert post.ta is not None and post.ca is None and post.relu is None
    mem = plan.build("membrane", 8, 4)
    assert isinstance(mem, MembraneAttention) and mem.sa.per_step and mem.ca is None
    assert plan.only("t").kinds == ("ta",) and plan.drop("conv_pre").kinds == ("ta", "sa")
    code = AttnCfg("csa", "code").resolve()
    assert code.only("t").kinds == () and code.only("t").relu is False  # official CA/SA FC
    assert AttnCfg("ta", "code").resolve().only("t").relu is True
    with pytest.raises(ValueError, match="residual"):
        plan.build("residual", 8, 4)
    with pytest.raises(ValueError, match=r"allowed: \['conv_pre', 'conv_post', 'membrane', 'resid"):
        plan.build("conv", 8, 4)


def test_cfg_is_frozen_data_and_validates() -> None:
    cfg = AttnCfg("TCSA", locations={"c": "conv_post"})
    assert cfg.name == "tcsa" and cfg.to_dict()["locations"] == {"c": "conv_post"}
    assert AttnCfg(**cfg.to_dict()) == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "ca"  # type: ignore[misc]
    assert dataclasses.replace(cfg, placement="code").resolve().per_step is False
    with pytest.raises(ValueError, match=r"unknown attention 'tcsaa' \(did you mean 'tcsa'\?\)"):
        AttnCfg("tcsaa")
    with pytest.raises(ValueError, match="reduction_c must be an int >= 1"):
        AttnCfg("ca", reduction_c=0)
    with pytest.raises(TypeError, match="AttnCfg"):
        AttnLIF(4, 2, attn="ca")  # type: ignore[arg-type]


def test_neuron_spec_validates_at_construction_and_builds() -> None:
    spec = NeuronSpec("paper", kwargs={"v_th": 0.5})
    lif = spec.build()
    assert isinstance(lif, LIF) and lif.spec.params.v_th == 0.5 and lif.backend == "torch"
    with pytest.raises(ValueError, match="unknown neuron preset 'papr'"):
        NeuronSpec("papr")
    with pytest.raises(ValueError, match="unknown neuron backend 'cuda9'"):
        NeuronSpec("paper", backend="cuda9")
    with pytest.raises(TypeError, match="accepted"):
        NeuronSpec("paper", kwargs={"tau": 2.0})
    with pytest.raises(TypeError, match="NeuronSpec"):
        SpikingConvBlock(2, 4, 2, neuron="plif")  # type: ignore[arg-type]


def test_models_inherit_the_variants_unset_fields() -> None:
    # ma_snn3_tiny states r_c = 8; an AttnCfg that leaves it None (a YAML without the key)
    # builds the same model as the name alone (the main job's model did not change)
    a = create_model("ma_snn3_tiny", attn=AttnCfg("ca"))
    b = create_model("ma_snn3_tiny", attn="ca")
    assert a.model_args == b.model_args and a.model_args["reduction_c"] == 8
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())
    assert a.args.attn == dataclasses.replace(model_cfg("ma_snn3_tiny").args.attn, name="ca")
    # an explicit value wins; convenience kwargs set single fields on top of an AttnCfg
    c = create_model("ma_snn3_tiny", attn=AttnCfg("ca", reduction_c=4), kernel_size=3)
    assert (c.model_args["reduction_c"], c.model_args["kernel_size"]) == (4, 3)
    d = create_model("ma_snn3", timesteps=4, neuron=NeuronSpec("paper", kwargs={"v_th": 0.2}))
    assert d.features[0].neuron.lif.spec.params.v_th == 0.2
    assert d.model_args["neuron_kwargs"] == {"v_th": 0.2}
