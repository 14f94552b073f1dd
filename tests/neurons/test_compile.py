"""The whole model traces under ``torch.compile`` without graph breaks (TorchDynamo).

On the reference backend by construction; under ``"auto"`` the dispatcher runs the reference
while Dynamo traces (the fused kernels are opaque calls), so the default backend is
``torch.compile``-clean too.
"""

from __future__ import annotations

import pytest
import torch

from masnn import create_model


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_ma_snn3_tcsa_has_no_graph_breaks(backend: str) -> None:
    torch.manual_seed(0)
    model = create_model("ma_snn3_tiny", attn="tcsa", timesteps=4, backend=backend)
    x = (torch.rand(4, 2, 2, 32, 32) < 0.3).float()
    explained = torch._dynamo.explain(model)(x)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


def test_vanilla_ma_snn3_has_no_graph_breaks() -> None:
    """The BatchNorm + LIF fusion of the first block steps aside while Dynamo traces."""
    torch.manual_seed(0)
    model = create_model("ma_snn3_tiny", attn="none", timesteps=4)
    x = (torch.rand(4, 2, 2, 32, 32) < 0.3).float()
    explained = torch._dynamo.explain(model)(x)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_jit_trace_records_the_reference_under_auto() -> None:
    """A traced graph (e.g. legacy ONNX export) must contain the LIF's real operations."""
    from masnn.neurons import LIF

    lif = LIF("paper")
    x = torch.randn(4, 2, 5)
    traced = torch.jit.trace(lif, (x,), check_trace=False)
    y = torch.randn(4, 2, 5) * 2
    assert torch.equal(traced(y), LIF("paper", backend="torch")(y))
