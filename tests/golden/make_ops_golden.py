"""Record SpikingJelly's and NeuroBench's synaptic-operation counts on a small spiking net.

Run: ``python tests/golden/make_ops_golden.py``. Needs ``spikingjelly==2.0.0`` (``pip install
--no-deps``; its logger's ``loguru`` is replaced by a placeholder, see ``_thirdparty.py``) and
``neurobench==2.3.0`` with ``snntorch`` (both ``--no-deps``). Writes ``ops_parity.json``:

* ``spikingjelly``: per connection layer, ``SynOpCounter`` under ``DispatchCounterMode``
  (binary-input ``aten.convolution``/``mm``/``addmm`` re-run with ones weights);
* ``neurobench``: ``SynapticOperations`` (``Effective_ACs``, ``Effective_MACs``, ``Dense``) per
  sample, through ``masnn.analysis.neurobench.MasnnModel``;
* ``spikes``: spikes per LIF layer (if these change, the spike pattern changed, not the count).

:func:`build_case` is imported by ``tests/analysis/test_ops_parity.py``, so the live and the
golden comparisons run on the same deterministic network and input.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

HERE = Path(__file__).resolve().parent
OUT = HERE / "ops_parity.json"

T, B, H, W = 4, 3, 9, 11


def _fill(module: nn.Module, seed: int) -> None:
    """Deterministic weights from a closed form (no RNG, identical on every platform)."""
    with torch.no_grad():
        for i, p in enumerate(module.parameters()):
            n = p.numel()
            v = torch.sin(torch.arange(n, dtype=torch.float64) * 0.731 + seed + 0.37 * i + 0.1)
            p.copy_((v * 1.5 / math.sqrt(max(n // max(p.shape[0], 1), 1))).reshape(p.shape))


class OpsNet(nn.Module):
    """Conv (real input) -> LIF -> padded 5x7 strided conv -> LIF -> grouped conv -> LIF ->
    Linear -> LIF; time-major ``(T, B, 2, 9, 11)`` in, ``(B, 10)`` firing rates out."""

    def __init__(self) -> None:
        super().__init__()
        from masnn.neurons import LIF

        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.lif1 = LIF("paper")
        self.conv2 = nn.Conv2d(4, 6, (5, 7), stride=2, padding=(2, 3))
        self.lif2 = LIF("paper")
        self.conv3 = nn.Conv2d(6, 6, 3, padding=1, groups=3, bias=False)
        self.lif3 = LIF("paper")
        self.fc = nn.Linear(6 * 5 * 6, 10)
        self.lif4 = LIF("paper")
        for i, m in enumerate((self.conv1, self.conv2, self.conv3, self.fc)):
            _fill(m, i)

    def forward(self, x_seq: Tensor) -> Tensor:
        from masnn.layers.seq import seq_apply

        s = self.lif1(seq_apply(self.conv1, x_seq))  # (T, B, 4, 9, 11)
        s = self.lif2(seq_apply(self.conv2, s))  # (T, B, 6, 5, 6)
        s = self.lif3(seq_apply(self.conv3, s))  # (T, B, 6, 5, 6)
        s = self.lif4(seq_apply(self.fc, s.flatten(2)))  # (T, B, 10)
        return s.mean(0)


def build_case() -> tuple[nn.Module, Tensor]:
    """The network (eval mode) and its input: event-count-like integers in ``[0, 3]``."""
    net = OpsNet().eval()
    idx = torch.arange(T * B * 2 * H * W, dtype=torch.float64)
    x = torch.floor(4 * (torch.sin(idx * 12.9898) * 43758.5453).frac().abs()).clamp(max=3)
    x = torch.where((torch.sin(idx * 3.1) > 0.3), x, torch.zeros_like(x))
    return net, x.float().reshape(T, B, 2, H, W)


CONNECTIONS = ("conv1", "conv2", "conv3", "fc")
LIFS = ("lif1", "lif2", "lif3", "lif4")


def spike_counts(net: nn.Module, x: Tensor) -> dict[str, int]:
    """Spikes per LIF layer (to tell a changed spike pattern from a changed count)."""
    out: dict[str, int] = {}
    hs = [
        getattr(net, n).register_forward_hook(lambda m, a, o, n=n: out.__setitem__(n, int(o.sum())))
        for n in LIFS
    ]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in hs:
            h.remove()
    return out


def spikingjelly_synops(net: nn.Module, x: Tensor) -> dict[str, int] | None:
    """Per-layer ``SynOpCounter`` counts, or ``None`` when SpikingJelly is not importable."""
    if importlib.util.find_spec("spikingjelly") is None:
        return None
    sys.path.insert(0, str(HERE))
    from _thirdparty import _install_placeholders

    _install_placeholders()
    try:
        oc = importlib.import_module("spikingjelly.activation_based.op_counter")
    except Exception:
        return None
    counter = oc.SynOpCounter()
    with torch.no_grad(), oc.DispatchCounterMode([counter]):
        net(x)
    root = type(net).__name__
    rec = counter.records
    return {n: int(sum(rec.get(f"{root}.{n}", {}).values())) for n in CONNECTIONS}


def neurobench_synops(net: nn.Module, x: Tensor) -> dict[str, float] | None:
    """NeuroBench ``SynapticOperations`` per sample, or ``None`` when it is not importable."""
    try:
        from neurobench.benchmarks import Benchmark
        from neurobench.metrics.workload import SynapticOperations

        from masnn.analysis.neurobench import MasnnModel
    except ImportError:
        return None
    data = torch.utils.data.TensorDataset(x.transpose(0, 1), torch.zeros(x.shape[1]))
    loader = torch.utils.data.DataLoader(data, batch_size=x.shape[1])
    bench = Benchmark(MasnnModel(net), loader, [], [], [[], [SynapticOperations]])
    res = bench.run(quiet=True)["SynapticOperations"]
    return {k: float(v) for k, v in res.items()}


def main() -> None:
    net, x = build_case()
    sj = spikingjelly_synops(net, x)
    nb = neurobench_synops(net, x)
    if sj is None or nb is None:
        raise SystemExit("needs spikingjelly==2.0.0, neurobench==2.3.0 and snntorch (--no-deps)")
    # The two tools must agree before anything is recorded (NeuroBench: per sample).
    assert sum(sj.values()) == round(nb["Effective_ACs"] * x.shape[1]), (sj, nb)
    import neurobench
    import spikingjelly

    golden = {
        "producers": {
            "spikingjelly": f"spikingjelly {getattr(spikingjelly, '__version__', '2.0.0')} "
            "op_counter.SynOpCounter + DispatchCounterMode",
            "neurobench": f"neurobench {neurobench.__version__} SynapticOperations",
        },
        "torch": torch.__version__,
        "shape": [T, B, 2, H, W],
        "samples": B,
        "spikes": spike_counts(net, x),
        "spikingjelly": sj,
        "neurobench": nb,
    }
    OUT.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {OUT}: {golden}")


if __name__ == "__main__":
    main()
