"""Benchmark rows: what each one builds and times (run in a fresh process by the runner).

A row is data (:class:`Row`); :func:`measure` runs it in the current process and returns
median / min / max wall time per iteration, peak RSS and the RSS right after the imports
(``activation MB`` = peak minus that baseline). Kinds:

* ``lif``: the neuron layer alone on ``(T, *size)`` fp32, ``fwd`` or ``fwdbwd``;
  libs ``masnn:<backend>``, ``sj``, ``sj-compile``, ``snntorch``, ``norse``, ``elementwise``
  (``x * 0.5 + 0.1``: one read + one write per element, the memory-bandwidth floor).
* ``net``: ``ma_snn3`` (``variant`` vanilla / tcsa-code / tcsa-paper) or ``ma_snn5``;
  ``train`` (MSE on output rates vs one-hot, SGD step) or ``infer`` (eval, no grad);
  lib ``floor`` = the convolutions and linear layers alone; ``masnn-fast`` = the
  inference fast path (:func:`masnn.inference.fast`); ``masnn-ckpt`` = training with block
  checkpointing (:func:`masnn.layers.checkpoint.enable_checkpointing`); ``masnn-bnunfused`` =
  training with BatchNorm and the LIF as two modules where masnn fuses them
  (:func:`masnn.layers.bn_lif.fused_bn_lif`; the A/B in one process:
  ``benchmarks/bench_bn_lif.py``).
* ``breakdown``: one masnn train step split into conv / BN / neuron / attention / other.
* ``stream``: per-step latency of :class:`masnn.models.streaming.StreamingModel` over a causal
  ``ma_snn3`` (``variant`` ``csa-paper``: CA + SA on the membrane), eval, batch ``B``; every
  step is timed, and the medians of the first and the second half of the ``T`` steps show
  whether the per-step cost depends on ``t`` (it must not).
* ``aedat``: decode a synthetic AEDAT 3.1 file and integrate it into ``T`` frames.
"""

from __future__ import annotations

import gc
import json
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from masnn.bench import timing


@dataclass(frozen=True)
class Row:
    """One benchmark row (all fields JSON-serialisable)."""

    kind: str
    lib: str
    group: str
    mode: str = "train"
    variant: str = "vanilla"
    net: str = "ma_snn3"
    T: int = 16
    B: int = 8
    size: tuple[int, ...] = ()
    repeat: int = 5
    warmup: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.kind == "lif":
            return f"{self.lib} {self.mode} T={self.T} {'x'.join(map(str, self.size))}"
        if self.kind == "net":
            return f"{self.lib} {self.net} {self.variant} {self.mode} T={self.T} B={self.B}"
        return f"{self.kind} {self.lib} {self.variant}"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(s: str) -> Row:
        d = json.loads(s)
        d["size"] = tuple(d["size"])
        return Row(**d)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return _rss_mb()


def _lif_step_fn(row: Row) -> Callable[[], Any]:
    from masnn.bench.nets import neuron_factory

    g = torch.Generator().manual_seed(0)
    x = torch.randn((row.T, *row.size), generator=g) * 0.5 + 0.3
    if row.lib == "elementwise":
        mod: Callable[[Tensor], Tensor] = lambda t: t * 0.5 + 0.1  # noqa: E731
    else:
        lib = "sj" if row.lib == "sj-compile" else row.lib
        mod = neuron_factory(lib)()
        if row.lib == "sj-compile":
            mod = torch.compile(mod)
    if row.mode == "fwd":

        def run() -> None:
            with torch.no_grad():
                mod(x)
                _reset(mod)

        return run
    xg = x.requires_grad_()
    gout = torch.rand_like(x)

    def run_bwd() -> None:
        xg.grad = None
        out = mod(xg)
        out.backward(gout)
        _reset(mod)

    return run_bwd


def _reset(mod: Any) -> None:
    """SpikingJelly modules keep state between calls unless reset."""
    if hasattr(mod, "reset") and callable(mod.reset):
        mod.reset()
    elif isinstance(mod, nn.Module):
        for m in mod.modules():
            if m is not mod and hasattr(m, "reset") and callable(m.reset):
                m.reset()


def unfuse_bn_lif(net: nn.Module) -> int:
    """Run BatchNorm and the LIF of every conv block as two modules (a no-op forward pre-hook
    on each block's neuron: :func:`masnn.layers.bn_lif.fused_bn_lif` falls back on hooks; the
    BN + AvgPool fusion is untouched). Returns how many blocks."""
    from masnn.layers import SpikingConvBlock

    blocks = [m for m in net.modules() if isinstance(m, SpikingConvBlock)]
    for b in blocks:
        b.neuron.register_forward_pre_hook(lambda *_: None)
    return len(blocks)


def build_net(row: Row) -> nn.Module:
    """The row's network (see :mod:`masnn.bench.nets`)."""
    from masnn.bench.nets import build_ma_snn3, build_ma_snn5

    lib = "masnn" if row.lib in ("masnn-fast", "masnn-ckpt", "masnn-bnunfused") else row.lib
    if row.net == "ma_snn5":
        return build_ma_snn5(lib, row.T)
    return build_ma_snn3(lib, row.variant, row.T)


def net_input(row: Row) -> Tensor:
    """Binary-ish event counts ``(T, B, 2, H, W)`` (20 % of pixels active)."""
    hw = 128 if row.net == "ma_snn5" else 32
    g = torch.Generator().manual_seed(0)
    return (torch.rand(row.T, row.B, 2, hw, hw, generator=g) < 0.2).float()


def _net_step_fn(row: Row) -> Callable[[], Any]:
    torch.manual_seed(0)
    net = build_net(row)
    x = net_input(row)
    if row.mode == "infer":
        net.eval()
        if row.lib == "masnn-fast":
            from masnn.inference import fast

            net = fast(net)

        def infer() -> None:
            with torch.no_grad():
                net(x)
            _reset(net)

        return infer
    net.train()
    if row.lib == "masnn-bnunfused":
        unfuse_bn_lif(net)
    if row.lib == "masnn-ckpt":
        from masnn.layers.checkpoint import enable_checkpointing

        enable_checkpointing(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    target = torch.zeros(row.B, 11)
    target[:, 0] = 1.0

    def train() -> None:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(net(x), target)
        loss.backward()
        opt.step()
        _reset(net)

    return train


def _aedat_fn(row: Row) -> Callable[[], Any]:
    import tempfile
    from pathlib import Path

    import numpy as np

    from masnn.events import DVS128, make_events, read_aedat, write_aedat
    from masnn.frames.integrate import integrate_split

    n = int(row.extra.get("events", 1_000_000))
    rng = np.random.default_rng(0)
    ev = make_events(
        np.sort(rng.integers(0, 6_000_000, n)),
        rng.integers(0, 128, n),
        rng.integers(0, 128, n),
        rng.integers(0, 2, n),
    )
    path = Path(tempfile.mkdtemp()) / "bench.aedat"
    write_aedat(path, ev)

    def run() -> None:
        events = read_aedat(path)
        integrate_split(events, DVS128, row.T, "count", "drop", 4)

    return run


def _stream(row: Row) -> dict[str, Any]:
    from masnn.models.streaming import StreamingModel

    torch.manual_seed(0)
    net = build_net(row).eval()
    x = net_input(row)
    s = StreamingModel(net)
    steps: list[float] = []
    with torch.no_grad():
        for r in range(row.warmup + row.repeat):
            state = s.init_state(x.shape[1], tuple(x.shape[2:]))
            for frame in x:
                gc.collect()
                t0 = time.perf_counter()
                _, state = s.step(frame, state)
                if r >= row.warmup:
                    steps.append((time.perf_counter() - t0) * 1000)
    by_t = [steps[i :: row.T] for i in range(row.T)]  # step t of every repeat
    per_t = [statistics.median(h) for h in by_t]
    return {
        "median_ms": statistics.median(steps),
        "min_ms": min(steps),
        "max_ms": max(steps),
        "first_half_ms": statistics.median(per_t[: row.T // 2] or per_t),
        "second_half_ms": statistics.median(per_t[row.T // 2 :]),
    }


def measure(row: Row) -> dict[str, Any]:
    """Run ``row`` here; returns times (ms), RSS (MB) and row-specific extras."""
    base = _current_rss_mb()
    if row.kind == "breakdown":
        from masnn.bench.breakdown import breakdown

        res = breakdown(row)
        res.update(rss_base_mb=base, rss_peak_mb=_rss_mb())
        return res
    if row.kind == "stream":
        res = _stream(row)
        res.update(rss_base_mb=base, rss_peak_mb=_rss_mb())
        return res
    fn = {"lif": _lif_step_fn, "net": _net_step_fn, "aedat": _aedat_fn}[row.kind](row)
    times = [t * 1000 for t in timing.times(fn, row.repeat, row.warmup, collect=True)]
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "rss_base_mb": base,
        "rss_peak_mb": _rss_mb(),
    }
