"""Streaming inference equals the full-sequence forward in eval mode (spikes and logits)."""

from __future__ import annotations

import pytest
import torch

from masnn.models import StreamingModel, count_neurons, create_model
from tests.models._model_helpers import calibrate, event_counts, record_spikes

T, B = 4, 2

CASES = {
    "ma_snn3-none": ("ma_snn3", dict(attn="none"), (2, 16, 12)),
    "ma_snn3-ca": ("ma_snn3", dict(attn="ca"), (2, 16, 12)),
    "ma_snn3-sa": ("ma_snn3", dict(attn="sa"), (2, 16, 12)),
    "ma_snn3-csa": ("ma_snn3", dict(attn="csa"), (2, 16, 12)),
    # every per-step gate streams, whatever its kind or location (decided from the modules)
    "ma_snn3-eca": ("ma_snn3", dict(attn="eca"), (2, 16, 12)),
    "ma_snn3-simam": ("ma_snn3", dict(attn="simam"), (2, 16, 12)),
    "ma_snn3-csa-conv_post": (
        "ma_snn3",
        dict(attn="csa", locations={"c": "conv_post", "s": "membrane"}),
        (2, 16, 12),
    ),
    "ma_snn3-csa-conv_pre": ("ma_snn3", dict(attn="csa", locations={"c": "conv_pre"}), (2, 16, 12)),
    "ma_snn5-csa": ("ma_snn5", dict(attn="csa", neuron_kwargs={"v_th": 0.3}), (2, 32, 32)),
    "ms_resnet18-csa-1": ("ms_resnet18", dict(attn="csa", num_classes=10), (3, 16, 16)),
    "ms_resnet18-csa-2": ("ms_resnet18", dict(attn="csa", att_res=2, num_classes=10), (3, 16, 16)),
}
NARROW = {
    "ma_snn3": dict(channels=(8, 16, 16), hidden=32),
    "ma_snn5": dict(channels=(8,) * 5, hidden=32),
    "ms_resnet18": dict(widths=(16, 16, 32, 32)),
}


def _model(key: str, dtype: torch.dtype):
    name, kw, size = CASES[key]
    torch.manual_seed(0)
    m = create_model(name, timesteps=T, input_size=size, **kw, **NARROW[name]).to(dtype)
    x = event_counts((T, B, *size), rate=1.0).to(dtype)
    return calibrate(m, x), x


def _stream_with_spikes(s: StreamingModel, x: torch.Tensor):
    spikes, handles = record_spikes(s.model)
    state = s.init_state(x.shape[1], tuple(x.shape[2:]))
    spikes.clear()  # drop the probe step
    outs = []
    for frame in x:
        out, state = s.step(frame, state)
        outs.append(out)
    for h in handles:
        h.remove()
    n = len(s.lifs)
    per_layer = [torch.cat(spikes[i::n]) for i in range(n)]  # (T, B, ...) per LIF
    return torch.stack(outs), per_layer, state


@pytest.mark.parametrize(
    ("key", "dtype"),
    [
        (k, d)
        for k in sorted(CASES)
        for d in (torch.float32, torch.float64)
        if not (k == "ms_resnet18-csa-2" and d == torch.float32)
    ],
)
def test_streaming_equals_full_forward(key, dtype):
    model, x = _model(key, dtype)
    spikes, handles = record_spikes(model)
    with torch.no_grad():
        full = model(x)
    for h in handles:
        h.remove()
    assert sum(s.sum().item() for s in spikes) > 0, "test input must make the model spike"
    with torch.no_grad():
        outs, stream_spikes, state = _stream_with_spikes(StreamingModel(model), x)
    assert state.t == T
    for a, b in zip(spikes, stream_spikes):
        assert torch.equal(a, b)  # identical spikes, layer by layer, step by step
    if dtype == torch.float64:
        assert torch.equal(outs[-1], full)  # bitwise
    else:
        torch.testing.assert_close(outs[-1], full, rtol=0, atol=1e-6)


def test_streaming_is_causal_prefix_readout():
    model, x = _model("ma_snn3-csa", torch.float64)
    with torch.no_grad():
        outs = StreamingModel(model).run(x)
        for t in range(1, T + 1):
            assert torch.equal(outs[t - 1], model(x[:t]))


def test_state_is_one_membrane_per_lif():
    model, x = _model("ma_snn3-csa", torch.float32)
    s = StreamingModel(model)
    state = s.init_state(B, tuple(x.shape[2:]))
    neurons = sum(count_neurons(model, x).values())
    size0 = sum(v.numel() for v in state.v)
    assert size0 == B * neurons
    with torch.no_grad():
        for frame in x:
            _, state = s.step(frame, state)
            assert sum(v.numel() for v in state.v) == size0  # nothing grows with t
            assert state.acc.shape == (B, model.num_classes)


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        (
            "ma_snn3",
            dict(attn="tcsa"),
            r"module 'features\.0\.neuron\.post_attn\.ta' \(TemporalAttention\) is temporal "
            "attention",
        ),
        ("ma_snn3", dict(attn="ta"), r"'features\.0\.neuron\.post_attn\.ta'.*non-causal"),
        (
            "ma_snn3",
            dict(attn="ta", locations={"t": "conv_pre"}),
            r"'features\.0\.pre_attn\.ta' \(TemporalAttention\) is temporal attention",
        ),
        ("ma_snn5", dict(), r"'features\.0\.neuron\.post_attn\.ta'.*temporal attention"),
        (
            "ma_snn3",
            dict(attn="csa", placement="code"),
            r"'features\.0\.neuron\.post_attn\.ca' \(ChannelAttention\) pools over all T",
        ),
        (
            "ma_snn3",
            dict(attn="eca", placement="code"),
            r"'features\.0\.neuron\.post_attn\.ca' \(EfficientChannelAttention\) pools over "
            "all T",
        ),
        ("ms_resnet18", dict(placement="code"), r"'stages\.0\.0\.attn\.ca'.*non-causal"),
    ],
)
def test_non_causal_models_refused(name, kwargs, match):
    m = create_model(name, timesteps=4, **kwargs)
    with pytest.raises(ValueError, match=match):
        StreamingModel(m)


def test_streaming_requires_eval_and_one_frame():
    m = create_model("ma_snn3_tiny", attn="csa", timesteps=2)
    s = StreamingModel(m)
    with pytest.raises(ValueError, match="eval mode"):
        s.init_state(1)
    m.eval()
    state = s.init_state(1)
    with pytest.raises(ValueError, match="one frame"):
        s.step(torch.zeros(1, 1, 2, 32, 32), state)
    with pytest.raises(ValueError, match="no streaming contract"):
        StreamingModel(torch.nn.Linear(2, 2))
