"""Shared pieces of the DDP test and its torchrun worker."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from masnn.neurons import LIF
from masnn.train.config import load_config
from masnn.train.data import DataBundle
from masnn.train.runner import build_model

K_STEPS = 3


def overrides(root: Path, out: Path) -> list[str]:
    return [
        "data.dataset=dvs128_gesture",
        f"data.root={root}",
        f"data.cache_dir={out / 'cache'}",
        "data.timesteps=4",
        "data.dt_ms=20",
        "data.ds=8",
        "data.val_fraction=0",
        "data.test_clips=2",
        "run.batch_size=4",
        "run.eval_batch_size=3",
        "model.name=ma_snn3_tiny",
        "model.kwargs={channels: [4, 8, 8], hidden: 16}",
    ]


def eval_model(data: DataBundle) -> nn.Module:
    torch.manual_seed(1)
    cfg = load_config(
        None,
        [
            "model.name=ma_snn3_tiny",
            "model.kwargs={channels: [4, 8, 8], hidden: 16}",
            "data.timesteps=4",
        ],
    )
    m = build_model(cfg, data)
    m.eval()
    return m


class BNFreeSNN(nn.Module):
    """Conv -> LIF -> Linear -> LIF -> rate: no batch statistics, so DDP == one process."""

    def __init__(self, in_shape: tuple[int, int, int], k: int) -> None:
        super().__init__()
        c, h, w = in_shape
        self.conv = nn.Conv2d(c, 4, 3, padding=1)
        self.lif1 = LIF("paper")
        self.fc = nn.Linear(4 * h * w, k)
        self.lif2 = LIF("paper")

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        t, b = x_seq.shape[:2]
        y = self.conv(x_seq.flatten(0, 1)).unflatten(0, (t, b))  # (T, B, 4, H, W)
        s = self.lif1(y).flatten(2)  # (T, B, 4*H*W)
        return self.lif2(self.fc(s) + 0.2).mean(0)  # (B, K)


def bn_free_snn(data: DataBundle) -> nn.Module:
    return BNFreeSNN(data.in_shape, data.num_classes)
