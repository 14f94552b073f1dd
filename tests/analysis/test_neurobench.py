"""NeuroBench wrapper: membrane updates and neuron operations are counted for masnn models."""

from __future__ import annotations

import pytest
import torch

import masnn
from masnn.neurons import LIF
from masnn.neurons.functional import lif_multistep
from tests.models._model_helpers import calibrate, event_counts

pytest.importorskip("snntorch")
pytest.importorskip("neurobench")

from neurobench.benchmarks import Benchmark  # noqa: E402
from neurobench.metrics.workload import (  # noqa: E402
    ActivationSparsity,
    MembraneUpdates,
)
from neurobench.metrics.workload import NeuronOperations as NBNeuronOperations  # noqa: E402

from masnn.analysis.neurobench import MasnnModel, NeuronOperations, ops_per_update  # noqa: E402

T, B = 4, 3


def _run(model: torch.nn.Module, x: torch.Tensor, metrics: list, quiet: bool = True) -> dict:
    data = torch.utils.data.TensorDataset(x.transpose(0, 1), torch.zeros(x.shape[1]))
    loader = torch.utils.data.DataLoader(data, batch_size=x.shape[1])
    return Benchmark(MasnnModel(model), loader, [], [], [[], metrics]).run(quiet=quiet)


def _expected_updates(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """Per sample: membrane updates and priced neuron ops, from each LIF's own input."""
    inputs: dict[LIF, torch.Tensor] = {}
    hs = [
        m.register_forward_hook(lambda mod, a, o: inputs.__setitem__(mod, a[0]))
        for m in model.modules()
        if isinstance(m, LIF)
    ]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    updates = ops = 0.0
    for lif, x_seq in inputs.items():
        vs = [torch.zeros_like(x_seq[0])]
        for t in range(x_seq.shape[0]):  # state after each step, by the reference loop
            _, v = lif_multistep(
                x_seq[: t + 1], None, lif.params(), lif.surrogate, lif.membrane_gate
            )
            vs.append(v)
        changed = vs[1].numel() + sum(
            int((vs[t + 1] != vs[t]).sum()) for t in range(1, len(vs) - 1)
        )
        updates += changed
        ops += changed * ops_per_update(lif.params())
    return updates / x.shape[1], ops / x.shape[1]


@pytest.mark.parametrize("attn", ["none", "csa"])
def test_membrane_updates_and_neuron_ops_are_counted(attn: str) -> None:
    torch.manual_seed(0)
    m = masnn.create_model("ma_snn3_tiny", attn=attn, channels=(4, 8, 8), hidden=16, timesteps=T)
    x = event_counts((T, B, 2, 32, 32), seed=1)
    calibrate(m, x)
    res = _run(m, x, [MembraneUpdates, NeuronOperations, ActivationSparsity])
    upd, ops = _expected_updates(m, x)
    n_neurons = sum(v for v in masnn.models.count_neurons(m, x).values())
    assert 0 < res["MembraneUpdates"] == pytest.approx(upd)
    assert upd <= n_neurons * T  # at most every neuron at every step
    assert res["NeuronOperations"]["Effective Neuron Ops"] == pytest.approx(ops)
    assert res["NeuronOperations"]["Neuron Dense Ops"] == pytest.approx(4 * n_neurons * T)
    assert 0 < res["ActivationSparsity"] < 1


def test_ops_per_update_prices() -> None:
    assert ops_per_update(LIF("paper").params()) == 4  # snnTorch Leaky's price in NeuroBench
    assert ops_per_update(LIF("spikingjelly").params()) == 7
    assert ops_per_update(LIF("spikingjelly", decay_input=False).params()) == 6
    assert ops_per_update(LIF("plif").params()) == 7


def test_stock_neuron_operations_refused_loudly(capsys: pytest.CaptureFixture[str]) -> None:
    m = masnn.create_model("ma_snn3_tiny", attn="none", channels=(4, 8, 8), hidden=16, timesteps=T)
    res = _run(m.eval(), event_counts((T, B, 2, 32, 32)), [NBNeuronOperations], quiet=False)
    # NeuroBench catches metric errors, prints them and reports 0.0: the print names the fix
    out = capsys.readouterr().out
    assert "Error running workload metric 'NeuronOperations'" in out
    assert "use masnn.analysis.neurobench.NeuronOperations" in out
    assert res["NeuronOperations"] == 0.0
