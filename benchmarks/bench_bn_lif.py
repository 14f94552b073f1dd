"""A/B in one process: ``BatchNorm2d -> LIF`` unfused (the two modules) vs fused
(:func:`masnn.layers.bn_lif.fused_bn_lif`: BN's affine map read inside the LIF kernel).

Rows (train = forward + backward; ``step`` adds SGD):

* ``layer``: ``BN -> LIF`` alone on the conv output ``[T, B, C, H, W]`` (ma_snn3's first block
  is ``C = 64`` at 32 x 32; ``C = 128`` is the issue's example shape);
* ``ma_snn3``: a whole train step (MSE on output rates, SGD) of ``create_model("ma_snn3")``, where
  only the first block (no pool before its neuron) changes;
* ``ma_snn5``: the same for Fang et al.'s five-block PLIF net (every block is ``Conv -> BN ->
  PLIF -> MaxPool``), at a reduced shape.

Both variants run alternately (their order swapped every round) in one process; each round
times ``--steps`` calls and keeps their median; the table gives the median of the rounds and
the ratio fused / unfused. This is a relative measurement on a possibly busy machine, not a
published number.

    PYTHONPATH=$PWD python benchmarks/bench_bn_lif.py [--rounds 7] [--steps 3] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import masnn.layers.blocks as blocks
from masnn import create_model
from masnn.layers import AttnLIF
from masnn.layers.bn_lif import fused_bn_lif
from masnn.layout import seq_apply


def _layer(shape: tuple[int, ...], fused: bool) -> Callable[[], Any]:
    T, B, C, H, W = shape
    torch.manual_seed(0)
    bn, neuron = nn.BatchNorm2d(C), AttnLIF(C, T)
    y = (torch.randn(shape) * 0.5 + 0.2).requires_grad_()
    g = torch.randn(shape)

    def run() -> None:
        s = fused_bn_lif(y, bn, neuron) if fused else None
        if s is None:
            s = neuron(seq_apply(bn, y))
        s.backward(g)
        y.grad = None
        bn.weight.grad = bn.bias.grad = None

    return run


def _step(name: str, T: int, B: int, hw: int, fused: bool) -> Callable[[], Any]:
    torch.manual_seed(0)
    net = create_model(name, timesteps=T, num_classes=11)
    net.train()
    x = (torch.rand(T, B, 2, hw, hw, generator=torch.Generator().manual_seed(0)) < 0.2).float()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    target = torch.zeros(B, 11)
    target[:, 0] = 1.0

    def run() -> None:
        unfused = lambda *a: None  # noqa: E731
        blocks.fused_bn_lif = fused_bn_lif if fused else unfused  # type: ignore[assignment]
        try:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(net(x), target).backward()
            opt.step()
        finally:
            blocks.fused_bn_lif = fused_bn_lif

    return run


def ab(make: Callable[[bool], Callable[[], Any]], rounds: int, steps: int) -> tuple[float, float]:
    """Median over ``rounds`` of the per-round median of ``steps`` calls: (unfused, fused) ms."""
    fns = {False: make(False), True: make(True)}
    for f in fns.values():  # warm-up (kernel build, allocator)
        f()
    res: dict[bool, list[float]] = {False: [], True: []}
    for r in range(rounds):
        for fused in (r % 2 == 1, r % 2 == 0):
            ts = []
            for _ in range(steps):
                t0 = time.perf_counter()
                fns[fused]()
                ts.append((time.perf_counter() - t0) * 1e3)
            res[fused].append(statistics.median(ts))
    return statistics.median(res[False]), statistics.median(res[True])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="tiny shapes (a smoke run)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.quick:
        rows: list[tuple[str, Callable[[bool], Callable[[], Any]]]] = [
            ("layer [4, 2, 8, 16, 16]", lambda f: _layer((4, 2, 8, 16, 16), f)),
            ("ma_snn3 train T=4 B=2", lambda f: _step("ma_snn3", 4, 2, 32, f)),
        ]
    else:
        rows = [
            ("layer [16, 8, 64, 32, 32]", lambda f: _layer((16, 8, 64, 32, 32), f)),
            ("layer [16, 8, 128, 32, 32]", lambda f: _layer((16, 8, 128, 32, 32), f)),
            ("ma_snn3 train T=16 B=8", lambda f: _step("ma_snn3", 16, 8, 32, f)),
            ("ma_snn5 train T=8 B=2 (128x128)", lambda f: _step("ma_snn5", 8, 2, 128, f)),
        ]
    print(f"threads={a.threads} rounds={a.rounds} steps/round={a.steps}")
    print("| row | unfused ms | fused ms | saved ms | fused / unfused |")
    print("|---|---|---|---|---|")
    for name, make in rows:
        u, f = ab(make, a.rounds, a.steps)
        print(f"| {name} | {u:.1f} | {f:.1f} | {u - f:.1f} | {f / u:.3f} |", flush=True)


if __name__ == "__main__":
    main()
