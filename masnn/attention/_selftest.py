"""``masnn selftest`` family "attention": the Gesture 3-layer block with every placement.

Imported by the selftest command (add ``"masnn.attention._selftest"`` to its module list).
"""

from __future__ import annotations

import torch

from masnn.attention.plan import AttnCfg
from masnn.cli.selftest import check_backward, register_selftest


@register_selftest("attention")
def _attention() -> dict[str, object]:
    """Conv -> BN -> AvgPool -> TCSA -> LIF on a DVS-sized sequence, paper and code placements."""
    from masnn.layers import SpikingConvBlock

    T, B = 16, 4
    g = torch.Generator().manual_seed(0)
    x = torch.poisson(torch.full((T, B, 2, 32, 32), 0.3), generator=g).clamp(max=1)  # spikes
    facts: dict[str, object] = {}
    for attn, placement in (("none", "paper"), ("tcsa", "paper"), ("tcsa", "code")):
        blk = SpikingConvBlock(2, 16, T, pool="avg", attn=AttnCfg(attn, placement=placement))
        spikes = blk(x)
        rate = spikes.mean().item()
        if not 0.0 < rate < 1.0:
            raise RuntimeError(f"{attn}/{placement}: implausible spike rate {rate:.3f}")
        n = check_backward(blk, (spikes.mean(dim=0) - 0.1).pow(2).mean())
        facts[f"{attn}/{placement}"] = f"rate {rate:.4f}, {n} params"
    return facts
