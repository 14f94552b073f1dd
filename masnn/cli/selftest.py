"""``masnn selftest``: a real forward + backward through every layer family, with timings.

Each family registers a check with :func:`register_selftest`. A check builds a realistic
layer or model (DVS-sized input, time-major), runs forward and backward, verifies the result
(finite values, gradients reaching every parameter, plausible spike rates) and returns a few
facts to print. Any failure makes the command exit non-zero.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from masnn._registry import Registry
from masnn.cli import register_command

Check = Callable[[], dict[str, object]]
SELFTESTS: Registry[Check] = Registry("selftest family")

#: Modules that register selftest families (imported on demand; each must import cleanly).
_SELFTEST_MODULES: tuple[str, ...] = (
    "masnn.cli.selftest",
    "masnn.cli.selftest_attention",
    "masnn.cli.selftest_models",
)


def register_selftest(name: str) -> Callable[[Check], Check]:
    """Register ``fn() -> dict`` as a selftest family."""
    return SELFTESTS.register(name)


def check_backward(module: nn.Module, loss: torch.Tensor) -> int:
    """Backpropagate ``loss``; raise if a trainable parameter got no or a non-finite gradient.

    Returns:
        the number of trainable parameters checked.
    """
    if not torch.isfinite(loss):
        raise RuntimeError(f"non-finite loss {loss.item()}")
    loss.backward()
    n = 0
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            raise RuntimeError(f"parameter {name!r} received no gradient")
        if not torch.isfinite(p.grad).all():
            raise RuntimeError(f"parameter {name!r} has a non-finite gradient")
        n += p.numel()
    return n


@register_selftest("neurons")
def _neurons() -> dict[str, object]:
    """Conv -> BN -> LIF over a DVS-sized sequence for every neuron preset."""
    from masnn.neurons import LIF, NEURON_PRESETS

    T, B = 16, 4
    g = torch.Generator().manual_seed(0)
    x = torch.poisson(torch.full((T, B, 2, 32, 32), 0.3), generator=g)  # event counts
    rates = {}
    for name in NEURON_PRESETS.names():
        conv = nn.Sequential(nn.Conv2d(2, 16, 3, padding=1), nn.BatchNorm2d(16))
        lif = LIF(name)
        net = nn.ModuleDict({"conv": conv, "lif": lif})
        cur = conv(x.flatten(0, 1)).unflatten(0, (T, B))  # (T, B, 16, 32, 32)
        spikes = lif(cur)
        rate = spikes.mean().item()
        if not 0.0 < rate < 1.0:
            raise RuntimeError(f"neuron {name!r}: implausible spike rate {rate:.3f}")
        check_backward(net, (spikes.mean(dim=0) - 0.1).pow(2).mean())
        rates[name] = round(rate, 3)
    return {"spike rate": rates}


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", nargs="*", default=None, help="families to run (default: all)")
    p.add_argument("--seed", type=int, default=0)


@register_command(
    "selftest", "Forward + backward through every layer family, with timings.", _configure
)
def run(args: argparse.Namespace) -> int:
    for mod in _SELFTEST_MODULES:
        importlib.import_module(mod)
    names = SELFTESTS.names()
    if args.only:
        for n in args.only:
            SELFTESTS.get(n)  # unknown -> error listing the families
        names = [n for n in names if n in args.only]
    torch.manual_seed(args.seed)
    print(f"masnn selftest: torch {torch.__version__}, {torch.get_num_threads()} threads")
    failed = 0
    t_all = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        try:
            facts = SELFTESTS.get(name)()
            status = "ok"
        except Exception as exc:  # report every family, then fail
            facts, status, failed = {"error": f"{type(exc).__name__}: {exc}"}, "FAIL", failed + 1
        dt = time.perf_counter() - t0
        detail = "; ".join(f"{k}: {v}" for k, v in facts.items())
        print(f"  {status:4s} {name:<12s} {dt:7.2f} s  {detail}")
    total = time.perf_counter() - t_all
    print(f"selftest: {len(names) - failed}/{len(names)} families ok ({total:.1f} s)")
    sys.stdout.flush()
    return 1 if failed else 0


__all__ = ["SELFTESTS", "check_backward", "register_selftest"]
