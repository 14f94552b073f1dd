"""Per-op breakdown of one masnn train step: conv, BN, neuron, attention, other.

Each top-level module of a category is timed with forward pre/post hooks and full backward
pre/post hooks (the CPU autograd engine runs one node at a time, so the time between a
module's backward pre-hook and its backward hook is that module's backward). Modules inside a
categorised module count for their parent (an attention gate inside a LIF counts as neuron).
``other`` = the step's wall time minus the categorised time (pools, reshapes, the loss, the
optimiser, hook overhead). Hooks add a little time: read the shares, not the absolute times.
"""

from __future__ import annotations

import time
import warnings
from collections import defaultdict
from typing import Any

import torch
from torch import nn

CATEGORIES = ("conv", "bn", "neuron", "attention")


def category(m: nn.Module) -> str | None:
    """The category of a module, or ``None``."""
    from masnn.attention import ATTENTION
    from masnn.neurons import LIF

    if isinstance(m, LIF):
        return "neuron"
    gate_types = tuple(
        t for t in (ATTENTION.get(n) for n in ATTENTION.names()) if isinstance(t, type)
    )
    if gate_types and isinstance(m, gate_types):
        return "attention"
    if type(m).__module__.startswith("masnn.attention"):
        return "attention"
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return "bn"
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        return "conv"
    return None


def _top_level(model: nn.Module) -> list[tuple[nn.Module, str]]:
    out: list[tuple[nn.Module, str]] = []

    def walk(m: nn.Module) -> None:
        for child in m.children():
            cat = category(child)
            if cat is not None:
                out.append((child, cat))
            else:
                walk(child)

    walk(model)
    return out


def breakdown(row: Any) -> dict[str, Any]:
    """Median per-category milliseconds (forward + backward) of ``row``'s train step."""
    from masnn.bench.rows import build_net, net_input

    torch.manual_seed(0)
    net = build_net(row).train()
    x = net_input(row)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    target = torch.zeros(row.B, 11)
    target[:, 0] = 1.0
    acc: dict[str, float] = defaultdict(float)
    starts: dict[int, float] = {}
    handles = []
    for m, cat in _top_level(net):

        def pre(mod: nn.Module, *_: Any, key: int = id(m)) -> None:
            starts[key] = time.perf_counter()

        def post(mod: nn.Module, *_: Any, key: int = id(m), cat: str = cat) -> None:
            acc[cat] += time.perf_counter() - starts.pop(key, time.perf_counter())

        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
        handles += [m.register_full_backward_pre_hook(pre), m.register_full_backward_hook(post)]
    steps: list[dict[str, float]] = []
    # the first conv's input needs no gradient: its backward hook fires on output grads (fine)
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    for i in range(row.warmup + row.repeat):
        acc.clear()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(net(x), target).backward()
        opt.step()
        total = time.perf_counter() - t0
        if i >= row.warmup:
            d = {c: acc.get(c, 0.0) * 1000 for c in CATEGORIES}
            d["other"] = total * 1000 - sum(d.values())
            d["total"] = total * 1000
            steps.append(d)
    for h in handles:
        h.remove()
    keys = (*CATEGORIES, "other", "total")
    med = {k: sorted(s[k] for s in steps)[len(steps) // 2] for k in keys}
    return {"median_ms": med["total"], "breakdown_ms": med}
