"""NeuroBench adapter: run NeuroBench 2.x metrics on a masnn model.

NeuroBench feeds batch-first data ``[B, T, ...]``; :class:`MasnnModel` converts it to masnn's
time-major layout at this one edge and exposes the :class:`~masnn.neurons.LIF` modules as the
activation modules and the conv/linear layers outside the attention gates as the connection
layers, so ``ActivationSparsity`` and ``SynapticOperations`` (``Effective_ACs``) see what
:mod:`masnn.analysis` counts. Importing this module needs ``neurobench`` (2.3) and ``snntorch``
(which ``neurobench`` imports); ``masnn.analysis`` itself never imports it.

Example (a sketch; ``loader`` yields ``([B, T, C, H, W], targets)``)::

    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.workload import ActivationSparsity, SynapticOperations

    bench = Benchmark(MasnnModel(model), loader, [], [], [[], [ActivationSparsity,
                                                               SynapticOperations]])
    results = bench.run()  # {"SynapticOperations": {"Effective_ACs": ...}, ...}
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from masnn.analysis.ops import _CONNECTIONS
from masnn.attention.gates import gate_internals
from masnn.layout import to_time_major
from masnn.neurons import LIF

try:
    from neurobench.models.neurobench_model import NeuroBenchModel
except ImportError as err:  # pragma: no cover - exercised only without neurobench
    raise ImportError(
        "masnn.analysis.neurobench needs NeuroBench: pip install neurobench==2.3.0 snntorch "
        "(both work with --no-deps on top of masnn's dependencies); "
        f"import failed with: {err}"
    ) from err


class MasnnModel(NeuroBenchModel):
    """A masnn model in NeuroBench's ``NeuroBenchModel`` interface.

    Args:
        model: a masnn model taking time-major ``(T, B, ...)`` input (put in eval mode).
        layout: the layout of the batches NeuroBench passes: ``"BTCHW"`` (NeuroBench's
            ``[B, T, ...]``, the default) or ``"TBCHW"``.
        attention_layers: also expose the conv/linear layers inside attention gates as
            connection layers (NeuroBench would count their real-valued inputs as
            ``Effective_MACs``; masnn counts gates analytically instead, so off by default).
    """

    def __init__(
        self, model: nn.Module, *, layout: str = "BTCHW", attention_layers: bool = False
    ) -> None:
        super().__init__()
        if layout not in ("BTCHW", "TBCHW"):
            raise ValueError(f"unknown layout {layout!r}; allowed: ['BTCHW', 'TBCHW']")
        self.net = model
        self.layout = layout
        self.attention_layers = bool(attention_layers)
        self.activation_modules = [LIF]
        model.eval()

    def __call__(self, batch: Tensor) -> Any:
        """Run the model on a NeuroBench batch (converted to time-major here)."""
        with torch.no_grad():
            return self.net(to_time_major(batch, self.layout))

    def __net__(self) -> nn.Module:
        """The wrapped masnn model."""
        return self.net

    def connection_layers(self) -> list[nn.Module]:
        """Conv/linear layers in module order (those inside attention gates only on request)."""
        inside = set() if self.attention_layers else gate_internals(self.net)
        return [
            m for m in self.net.modules() if isinstance(m, _CONNECTIONS) and id(m) not in inside
        ]


__all__ = ["MasnnModel"]
