"""Block checkpointing is exact: same outputs, gradients and BN statistics, bit for bit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from masnn import create_model
from masnn.layers.checkpoint import disable_checkpointing, enable_checkpointing

CASES = {
    "ma_snn3_tcsa_paper": dict(name="ma_snn3_tiny", attn="tcsa", timesteps=6),
    "ma_snn3_tcsa_code": dict(name="ma_snn3_tiny", attn="tcsa", placement="code", timesteps=6),
    "ma_snn5_dropout_plif": dict(
        name="ma_snn5",
        attn="none",
        timesteps=3,
        channels=(4,) * 5,
        hidden=8,
        input_size=(2, 32, 32),
    ),  # fmt: skip
    "ms_resnet18": dict(
        name="ms_resnet18",
        attn="none",
        timesteps=2,
        num_classes=5,
        widths=(4, 4, 8, 8),
        input_size=(2, 32, 32),
    ),  # fmt: skip
}


def _step(model: nn.Module, x: torch.Tensor, seed: int) -> tuple[torch.Tensor, dict]:
    torch.manual_seed(seed)  # dropout masks
    out = model(x)
    (out * torch.linspace(0.5, 1.5, out.shape[-1])).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.detach(), grads


@pytest.mark.parametrize("case", list(CASES))
def test_checkpointed_training_step_is_bit_exact(case: str) -> None:
    kw = dict(CASES[case])
    name = kw.pop("name")
    torch.manual_seed(0)
    plain = create_model(name, **kw).train()
    torch.manual_seed(0)
    ckpt = create_model(name, **kw).train()
    assert enable_checkpointing(ckpt) >= 3
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(kw["timesteps"], 3, 2, 32, 32, generator=g) < 0.3).float()
    for seed in (0, 1):  # two steps: the second sees the first's BN statistics
        out_p, g_p = _step(plain, x, seed)
        out_c, g_c = _step(ckpt, x, seed)
        assert torch.equal(out_p, out_c)
        assert g_p.keys() == g_c.keys() and len(g_p) > 0
        for k in g_p:
            assert torch.equal(g_p[k], g_c[k]), k
    sd_p, sd_c = plain.state_dict(), ckpt.state_dict()
    assert sd_p.keys() == sd_c.keys()  # structure and checkpoints unchanged
    for k in sd_p:  # BN running statistics updated once per step, not twice
        assert torch.equal(sd_p[k], sd_c[k]), k


def test_checkpointing_saves_memory_and_can_be_undone() -> None:
    torch.manual_seed(0)
    model = create_model("ma_snn3_tiny", attn="none", timesteps=8).train()
    x = (torch.rand(8, 4, 2, 32, 32) < 0.3).float()

    def saved_bytes() -> int:
        total = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x).sum().backward()
        return total

    plain = saved_bytes()
    enable_checkpointing(model)
    lean = saved_bytes()
    assert lean < 0.5 * plain, (lean, plain)
    disable_checkpointing(model)
    assert saved_bytes() == plain
    with torch.no_grad():  # evaluation: nothing is checkpointed
        enable_checkpointing(model)
        model.eval()(x)
