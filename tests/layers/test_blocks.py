"""Spiking blocks: data flow, submodule names, placements, the ReLU control, FC rules, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from masnn.attention import AttnCfg, MembraneAttention, MultiDimAttention
from masnn.layers import AttnLIF, SeqToBatch, SpikingConvBlock, SpikingLinearBlock
from masnn.neurons import LIF, NeuronSpec

T, B = 4, 2


def test_seq_to_batch_folds_time_into_batch() -> None:
    conv = nn.Conv2d(2, 3, 3, padding=1)
    x = torch.randn(T, B, 2, 5, 7)
    out = SeqToBatch(conv)(x)
    assert out.shape == (T, B, 3, 5, 7)
    torch.testing.assert_close(out[2, 1], conv(x[2, 1:2])[0])
    with pytest.raises(TypeError):
        SeqToBatch(lambda x: x)  # type: ignore[arg-type]


def test_three_layer_net_order_conv_bn_avgpool_attention_lif() -> None:
    blk = SpikingConvBlock(2, 8, T, pool="avg", attn=AttnCfg("tcsa"))
    assert [n for n, _ in blk.named_children()] == ["conv", "bn", "pool", "neuron"]
    assert blk.pre_attn is None and isinstance(blk.pool, nn.AvgPool2d)
    assert isinstance(blk.neuron.lif, LIF)
    assert [m for m in blk.modules() if isinstance(m, LIF)] == [blk.neuron.lif]
    assert isinstance(blk.neuron.post_attn, MultiDimAttention)  # TA on X
    assert isinstance(blk.neuron.lif.membrane_gate, MembraneAttention)  # CA, SA on U
    calls: list[str] = []
    for name in ("conv", "bn", "pool", "neuron.post_attn", "neuron.lif"):
        blk.get_submodule(name).register_forward_hook(lambda *_a, n=name: calls.append(n))
    out = blk(torch.rand(T, B, 2, 8, 12))
    assert out.shape == (T, B, 8, 4, 6)
    assert calls == ["conv", "bn", "pool", "neuron.post_attn", "neuron.lif"]


def test_five_layer_net_pools_spikes_after_the_neuron() -> None:
    blk = SpikingConvBlock(
        2, 4, T, bias=False, pool="max", pool_after_neuron=True, neuron=NeuronSpec("plif")
    )
    assert blk.conv.bias is None
    out = blk(torch.rand(T, B, 2, 8, 12))
    assert out.shape == (T, B, 4, 4, 6)
    assert set(out.unique().tolist()) <= {0.0, 1.0}  # max-pooled spikes stay binary


def test_bn_statistics_are_shared_over_time() -> None:
    # frames with very different currents: one BN over all T*B frames, not one per step
    torch.manual_seed(0)
    blk = SpikingConvBlock(1, 2, T)
    with torch.no_grad():  # a local average (+/-): the current keeps the input's ramp over t
        blk.conv.weight.copy_(torch.tensor([1.0, -1.0])[:, None, None, None] / 9)
        blk.conv.bias.zero_()
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    blk.bn.register_forward_hook(lambda _m, a, out: seen.append((a[0].detach(), out.detach())))
    x = torch.rand(T, B, 1, 3, 5) + torch.arange(T, dtype=torch.float32)[:, None, None, None, None]
    blk(x)
    ((cur, out),) = seen  # one call: time folded into the batch
    assert cur.shape == (T * B, 2, 3, 5)
    mean = cur.mean(dim=(0, 2, 3))  # over every frame of every step
    var = cur.var(dim=(0, 2, 3), unbiased=False)
    ref = (cur - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + blk.bn.eps)
    torch.testing.assert_close(out, ref * blk.bn.weight[None, :, None, None])
    torch.testing.assert_close(blk.bn.running_mean, 0.1 * mean)
    # per-step statistics would centre every step; shared ones keep the step-to-step ramp
    per_step = out.unflatten(0, (T, B)).mean(dim=(1, 3, 4))  # (T, C)
    assert (per_step[-1] - per_step[0]).abs().min() > 1.0


def test_conv_pre_location_gates_the_input_spikes() -> None:
    blk = SpikingConvBlock(
        3, 8, T, attn=AttnCfg("tcsa", locations={"t": "conv_pre", "c": "conv_pre"})
    )
    assert isinstance(blk.pre_attn, MultiDimAttention)
    assert blk.pre_attn.ta is not None and blk.pre_attn.ca.channels == 3  # conv input channels
    assert blk.pre_attn.relu is None
    assert blk.neuron.post_attn is None  # nothing left on X
    assert blk.neuron.lif.membrane_gate.sa is not None and blk.neuron.lif.membrane_gate.ca is None
    seen = []
    blk.pre_attn.register_forward_hook(lambda _m, i, o: seen.append((i[0], o)))
    blk(torch.rand(T, B, 3, 6, 6))
    assert seen[0][0].shape == (T, B, 3, 6, 6) and (seen[0][1] <= seen[0][0]).all()
    with pytest.raises(ValueError, match="SpikingConvBlock"):
        AttnLIF(8, T, attn=AttnCfg("ca", locations={"c": "conv_pre"}))


def test_code_placement_block_matches_the_official_data_flow() -> None:
    blk = SpikingConvBlock(
        2, 8, T, pool="avg", attn=AttnCfg("tcsa", placement="code"), neuron=NeuronSpec("biclab")
    )
    post = blk.neuron.post_attn
    assert blk.neuron.lif.membrane_gate is None
    assert post.relu is not None and not post.ca.per_step and post.sa.kernel_size == 3
    assert post.ca.reduction == 8 and post.ta.reduction == 5


def test_relu_only_control() -> None:
    x = torch.randn(T, B, 4, 3, 5)
    ctrl = AttnLIF(4, T, attn=AttnCfg("none", relu=True))
    plain = AttnLIF(4, T, attn=AttnCfg("none"))
    assert plain.post_attn is None and ctrl.post_attn.relu is not None
    ref = LIF("paper")
    torch.testing.assert_close(ctrl(x), ref(x.relu()))
    torch.testing.assert_close(plain(x), ref(x))
    # the code adds its ReLU only with attention on; the control isolates that confound
    assert AttnLIF(4, T, attn=AttnCfg("none", placement="code")).post_attn is None
    assert AttnLIF(4, T, attn=AttnCfg("ca", placement="code")).post_attn.relu is not None


@pytest.mark.parametrize(
    "attn,placement,has_ta,has_relu",
    [
        ("tcsa", "code", True, True),
        ("tcsa", "paper", True, False),
        ("csa", "code", False, False),  # official FC layers: no attention, no ReLU
        ("ca", "paper", False, False),
        ("none", "code", False, False),
    ],
)
def test_linear_block_takes_only_temporal_attention(attn, placement, has_ta, has_relu) -> None:
    blk = SpikingLinearBlock(10, 6, T, attn=AttnCfg(attn, placement=placement))
    post = blk.neuron.post_attn
    assert (post is not None and post.ta is not None) == has_ta
    assert (post is not None and post.relu is not None) == has_relu
    assert blk(torch.randn(T, B, 10)).shape == (T, B, 6)


def test_linear_block_takes_ta_at_conv_pre() -> None:
    # paper Table 4's TA Conv-PRE row: TA on the FC layer's input spikes, before the linear map
    blk = SpikingLinearBlock(10, 6, T, attn=AttnCfg("ta", locations={"t": "conv_pre"}))
    assert isinstance(blk.pre_attn, MultiDimAttention) and blk.pre_attn.ta is not None
    assert blk.neuron.post_attn is None
    seen: list[torch.Tensor] = []
    blk.fc.register_forward_hook(lambda _m, a, _o: seen.append(a[0].detach()))
    x = (torch.rand(T, B, 10) < 0.5).float()
    blk(x)
    torch.testing.assert_close(seen[0], blk.pre_attn(x).flatten(0, 1))  # gated spikes
    code = SpikingLinearBlock(10, 6, T, attn=AttnCfg("ta", "code", locations={"t": "conv_pre"}))
    assert code.pre_attn.relu is None and code.neuron.post_attn.relu is not None  # ReLU on X


def test_linear_block_relu_control_and_no_bn() -> None:
    blk = SpikingLinearBlock(10, 6, T, bn=False, attn=AttnCfg("none", relu=True))
    assert blk.bn is None and blk.neuron.post_attn.relu is not None
    x = torch.randn(T, B, 10)
    torch.testing.assert_close(blk(x), LIF("paper")(blk.fc(x).relu()))


def test_neuron_kwargs_reach_the_lif() -> None:
    blk = SpikingConvBlock(2, 4, T, neuron=NeuronSpec("paper", kwargs={"v_th": 0.5, "beta": 0.2}))
    assert blk.neuron.lif.spec.params.v_th == 0.5 and blk.neuron.lif.spec.params.decay == 0.2
    with pytest.raises(TypeError, match="accepted"):
        SpikingConvBlock(2, 4, T, neuron=NeuronSpec("paper", kwargs={"tau": 2.0}))


def test_block_input_validation() -> None:
    blk = SpikingConvBlock(2, 4, T, attn=AttnCfg("ta"))
    with pytest.raises(ValueError, match="C=2"):
        blk(torch.rand(T, B, 3, 4, 4))
    with pytest.raises(ValueError, match=r"T=4\b.*T=5\b"):
        blk(torch.rand(T + 1, B, 2, 4, 4))
    with pytest.raises(ValueError, match="F=10"):
        SpikingLinearBlock(10, 4, T)(torch.rand(T, B, 11))
    with pytest.raises(ValueError, match="allowed"):
        SpikingConvBlock(2, 4, T, pool="min")
    with pytest.raises(ValueError, match="allowed"):
        SpikingConvBlock(2, 4, T, attn=AttnCfg("tcsa", placement="official"))


def test_no_state_across_calls() -> None:
    blk = SpikingConvBlock(2, 4, T, attn=AttnCfg("tcsa")).eval()
    x = torch.rand(T, B, 2, 6, 5)
    with torch.no_grad():
        a = blk(x)
        blk(torch.rand(T, 3, 2, 6, 5))  # another batch size in between
        torch.testing.assert_close(blk(x), a)


def test_hooks_see_ta_weights_and_membrane_maps() -> None:
    blk = SpikingConvBlock(2, 8, T, attn=AttnCfg("tcsa"))
    got: dict[str, list[torch.Size]] = {}
    for name, m in blk.named_modules():
        if name.endswith("gate") and not name.endswith("membrane_gate"):
            m.register_forward_hook(lambda _m, _i, o, n=name: got.setdefault(n, []).append(o.shape))
    blk(torch.rand(T, B, 2, 6, 10))
    assert got["neuron.post_attn.ta.gate"] == [torch.Size([T, B, 1, 1, 1])]
    assert got["neuron.lif.membrane_gate.ca.gate"] == [torch.Size([B, 8, 1, 1])] * T
    assert got["neuron.lif.membrane_gate.sa.gate"] == [torch.Size([B, 1, 6, 10])] * T
