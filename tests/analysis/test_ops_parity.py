"""Exact ACs agree with SpikingJelly's SynOpCounter and NeuroBench's Effective_ACs.

Always checked against the committed golden (``tests/golden/ops_parity.json``, made by
``tests/golden/make_ops_golden.py``); also checked live when the libraries import.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from masnn.analysis import OpsCounter, SpikeMonitor, measure

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
sys.path.insert(0, str(GOLDEN))
from make_ops_golden import (  # noqa: E402
    CONNECTIONS,
    build_case,
    neurobench_synops,
    spike_counts,
    spikingjelly_synops,
)

DATA = json.loads((GOLDEN / "ops_parity.json").read_text())


def _ours() -> tuple[OpsCounter, int]:
    net, x = build_case()
    with torch.no_grad(), OpsCounter(net) as ops:
        net(x)
    return ops, x.shape[1]


@pytest.mark.golden
def test_exact_acs_match_committed_spikingjelly_and_neurobench() -> None:
    net, x = build_case()
    assert spike_counts(net, x) == DATA["spikes"], "the spike pattern changed, not the count"
    ops, b = _ours()
    for name in CONNECTIONS:
        assert ops.layers[name].ac_exact == DATA["spikingjelly"][name], name
    per_sample_ac = sum(r.ac_exact for r in ops.layers.values()) / b
    assert per_sample_ac == pytest.approx(DATA["neurobench"]["Effective_ACs"], rel=1e-12)
    per_sample_mac = sum(r.mac_exact for r in ops.layers.values()) / b
    assert per_sample_mac == pytest.approx(DATA["neurobench"]["Effective_MACs"], rel=1e-12)
    # NeuroBench's "Dense" skips taps on padding; the paper's FLOPs (our dense) count them
    dense = sum(r.ac_dense + r.mac_dense for r in ops.layers.values()) / b
    assert dense > DATA["neurobench"]["Dense"]


def test_exact_acs_match_spikingjelly_live() -> None:
    if importlib.util.find_spec("spikingjelly") is None:
        pytest.skip("spikingjelly not installed")
    net, x = build_case()
    sj = spikingjelly_synops(net, x)
    if sj is None:
        pytest.skip("spikingjelly.activation_based.op_counter not importable")
    ops, _ = _ours()
    assert {n: ops.layers[n].ac_exact for n in CONNECTIONS} == sj


def test_exact_acs_match_neurobench_live() -> None:
    pytest.importorskip("neurobench")
    pytest.importorskip("snntorch")
    net, x = build_case()
    nb = neurobench_synops(net, x)
    ops, b = _ours()
    assert sum(r.ac_exact for r in ops.layers.values()) / b == pytest.approx(nb["Effective_ACs"])
    assert sum(r.mac_exact for r in ops.layers.values()) / b == pytest.approx(nb["Effective_MACs"])


def test_neurobench_activation_sparsity_matches_monitor() -> None:
    pytest.importorskip("neurobench")
    pytest.importorskip("snntorch")
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.workload import ActivationSparsity

    from masnn.analysis.neurobench import MasnnModel

    net, x = build_case()
    wrapped = MasnnModel(net)
    assert [d["layer"] for d in wrapped.activation_layers()] == [
        net.lif1,
        net.lif2,
        net.lif3,
        net.lif4,
    ]
    assert wrapped.connection_layers() == [net.conv1, net.conv2, net.conv3, net.fc]
    data = torch.utils.data.TensorDataset(x.transpose(0, 1), torch.zeros(x.shape[1]))
    loader = torch.utils.data.DataLoader(data, batch_size=x.shape[1])
    res = Benchmark(wrapped, loader, [], [], [[], [ActivationSparsity]]).run(quiet=True)
    with torch.no_grad(), SpikeMonitor(net, neuron_layers="all_lif") as mon:
        net(x)
    s = mon.stats()
    assert 1 - res["ActivationSparsity"] == pytest.approx(s.nasar, rel=1e-12)


def test_measure_report_on_parity_net() -> None:
    net, x = build_case()
    rep = measure(net, [(x, None)])
    assert rep.samples == x.shape[1]
    assert rep.totals["acs_exact"] == pytest.approx(DATA["neurobench"]["Effective_ACs"])
    e = 0.9 * rep.totals["acs_exact"] + 4.6 * rep.totals["macs_dense"]
    assert rep.totals["energy_pj"] == pytest.approx(e)
    ops, b = _ours()
    flops = sum(r.ac_dense + r.mac_dense for r in ops.layers.values()) / b / x.shape[0]
    assert rep.totals["ann_flops"] == pytest.approx(flops)  # dense MACs of one step
    assert rep.totals["ann_energy_pj"] == pytest.approx(4.6 * flops)
    d = rep.to_dict()
    json.dumps(d)
    assert "| conv2 | spikes |" in rep.to_markdown()
    bt = measure(net, [x.transpose(0, 1)], layout="BTCHW")
    assert bt.totals == rep.totals
