"""Shared helpers of the model tests."""

from __future__ import annotations

import torch
from torch import nn

from masnn.neurons import LIF


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def calibrate(model: nn.Module, x_seq: torch.Tensor) -> nn.Module:
    """Set BN running statistics to those of ``x_seq`` (so eval-mode layers spike), then eval."""
    for mod in model.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.momentum = None  # cumulative average: one pass = the batch statistics
            mod.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(x_seq)
    return model.eval()


def record_spikes(model: nn.Module) -> tuple[list[torch.Tensor], list]:
    """Forward hooks appending every LIF layer's spikes to a list; returns (list, handles)."""
    out: list[torch.Tensor] = []
    handles = [
        m.register_forward_hook(lambda mod, a, o: out.append(o[0] if isinstance(o, tuple) else o))
        for m in model.modules()
        if isinstance(m, LIF)
    ]
    return out, handles


def event_counts(shape: tuple[int, ...], rate: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Integer event counts (quantised input, so the first layer's currents are exact)."""
    g = torch.Generator().manual_seed(seed)
    return torch.poisson(torch.full(shape, rate), generator=g)
