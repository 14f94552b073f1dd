"""A gate defined outside the package: one class + one ``register_gate`` line, no masnn edit.

It is built into a model from the training config (``model.attn.name``), trained two steps,
streamed, and its operations are counted by its own registered MAC count.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from masnn.analysis import OpsCounter
from masnn.attention import AttnCfg, GateKind, register_gate, unregister_gate
from masnn.models import StreamingModel, create_model, layer_flops
from masnn.train.checkpoint import load_checkpoint
from masnn.train.config import load_config
from masnn.train.runner import train
from tests.train import conftest as train_fixtures
from tests.train.conftest import tiny_overrides

gesture_root = train_fixtures.gesture_root  # the session fixture of tests/train

T, B = 4, 2


class MeanGate(nn.Module):
    """A channel gate: ``sigmoid(W mean(x))`` per frame (per step) or over the window."""

    def __init__(self, channels: int, per_step: bool = True) -> None:
        super().__init__()
        self.channels, self.per_step = channels, per_step
        self.proj = nn.Linear(channels, channels, bias=False)  # inside the gate: not a synapse

    def forward(self, x: Tensor) -> Tensor:
        axes = (-2, -1) if self.per_step else (0, 3, 4)
        m = x.mean(dim=axes, keepdim=True)  # (..., C, 1, 1)
        g = torch.sigmoid(self.proj(m.squeeze(-1).squeeze(-1)))[..., None, None]
        return g * x


def mean_gate_macs(module: nn.Module, x: Tensor) -> dict[str, float]:
    steps = 1 if x.dim() == 4 else x.shape[0]
    b, c = x.shape[-4], x.shape[-3]
    gates = steps if module.per_step else 1
    return {"paper_table5": b * gates * c * c, "full": b * (gates * c * c + steps * x[0].numel())}


@pytest.fixture
def mean_gate() -> Iterator[str]:
    register_gate(
        GateKind(
            "test_mean",
            "c",
            MeanGate,
            lambda c, t, hp, per_step: MeanGate(c, per_step),
            mean_gate_macs,
        )
    )
    yield "test_mean"
    unregister_gate("test_mean")


def test_plugin_gate_trains_two_steps_from_the_config(
    mean_gate: str, gesture_root: Path, tmp_path: Path
) -> None:
    over = tiny_overrides(gesture_root, tmp_path) + [f"model.attn.name={mean_gate}"]
    cfg = load_config(None, over)
    assert cfg.model.attn.name == mean_gate and cfg.run.max_steps_per_epoch == 2
    metrics = train(cfg, quiet=True)
    assert metrics["test"]["samples"] > 0
    (ckpt,) = (tmp_path / "runs").rglob("checkpoint.pt")
    weights = load_checkpoint(ckpt)["model"]
    # the plug-in gate was built at the membrane of every conv layer and trained
    names = [k for k in weights if k.endswith("membrane_gate.ca.proj.weight")]
    assert len(names) == 3


def _model(name: str, **kw: object) -> nn.Module:
    torch.manual_seed(0)
    return create_model(
        "ma_snn3_tiny",
        attn=AttnCfg(name, **kw),
        timesteps=T,
        input_size=(2, 16, 16),
        channels=(4, 8, 8),
        hidden=16,
        neuron_kwargs={"v_th": 0.1},
    )


def test_plugin_gate_builds_learns_streams_and_is_counted(mean_gate: str) -> None:
    model = _model(mean_gate)
    gates = [m for m in model.modules() if isinstance(m, MeanGate)]
    assert len(gates) == 3 and all(g.per_step for g in gates)  # paper: on the membrane
    assert model.features[0].neuron.lif.membrane_gate.ca is gates[0]
    # two training steps move the plug-in gate's weights
    x = torch.poisson(
        torch.full((T, B, 2, 16, 16), 0.5), generator=torch.Generator().manual_seed(1)
    )
    before = gates[1].proj.weight.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        loss = (model(x) - 0.5).pow(2).mean()
        loss.backward()
        assert gates[1].proj.weight.grad is not None
        opt.step()
    assert not torch.equal(before, gates[1].proj.weight)
    # streaming: a per-step plug-in gate is causal, decided from the built modules
    model.eval()
    with torch.no_grad():
        full = model(x)
        assert full.abs().sum() > 0
        streamed = StreamingModel(model).run(x)[-1]
    torch.testing.assert_close(streamed, full, rtol=0, atol=1e-6)
    # accounting: the registered MAC count, and the gate's Linear is not a synapse layer
    with torch.no_grad(), OpsCounter(model) as ops:
        model(x)
    kinds = {a.kind for a in ops.attention.values()}
    assert kinds == {mean_gate}
    per_sample = sum(a.macs["paper_table5"] for a in ops.attention.values()) / B
    assert per_sample == T * (4 * 4 + 8 * 8 + 8 * 8)  # one C x C map per step per layer
    assert not any("proj" in name for name in ops.layers)
    assert not any("proj" in name for name in layer_flops(model, x))


def test_pooled_plugin_gate_is_refused_by_streaming_naming_the_module(mean_gate: str) -> None:
    model = _model(mean_gate, placement="code").eval()
    assert not model.features[0].neuron.post_attn.ca.per_step
    with pytest.raises(
        ValueError, match=r"'features\.0\.neuron\.post_attn\.ca' \(MeanGate\) pools"
    ):
        StreamingModel(model)
    with torch.no_grad(), OpsCounter(model) as ops:
        model(torch.rand(T, B, 2, 16, 16))
    # pooled over the window: the map runs once per sample, not T times
    per_sample = sum(a.macs["paper_table5"] for a in ops.attention.values()) / B
    assert per_sample == 4 * 4 + 8 * 8 + 8 * 8
