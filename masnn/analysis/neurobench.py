"""NeuroBench adapter: run NeuroBench 2.x metrics on a masnn model.

NeuroBench feeds batch-first data ``[B, T, ...]``; :class:`MasnnModel` converts it to masnn's
time-major layout at this one edge and exposes the :class:`~masnn.neurons.LIF` modules as the
activation modules and the conv/linear layers outside the attention gates as the connection
layers, so ``ActivationSparsity`` and ``SynapticOperations`` (``Effective_ACs``) see what
:mod:`masnn.analysis` counts. Importing this module needs ``neurobench`` (2.3) and ``snntorch``
(which ``neurobench`` imports); ``masnn.analysis`` itself never imports it.

Membrane metrics. NeuroBench reads the membrane from an snnTorch neuron's ``.mem`` before and
after each single-step call; masnn's :class:`~masnn.neurons.LIF` runs all ``T`` steps in one
call and keeps no ``.mem``, so NeuroBench's stock hook records nothing and ``MembraneUpdates``
would silently report 0. :meth:`MasnnModel.register_hooks` therefore installs
:class:`LIFHook` on every LIF layer: it re-runs the reference step
(:func:`masnn.neurons.functional.lif_step`, membrane gates included) on the layer's input and
fills NeuroBench's per-step ``pre_fire_mem_potential`` / ``post_fire_mem_potential`` lists with
the post-reset state before and after each step, so ``MembraneUpdates`` counts, per sample,
every neuron at the first step plus every neuron whose state changed at a later step.

NeuroBench's ``NeuronOperations`` prices an update from a table keyed by snnTorch class
(``Leaky``: 4); it has no entry for masnn's LIF and is refused with a one-line error naming the
replacement (NeuroBench catches metric errors: it prints ``Error running workload metric
'NeuronOperations': ... use masnn.analysis.neurobench.NeuronOperations ...`` and reports 0.0),
:class:`NeuronOperations` here, which prices one update of each layer from its
parameters (:func:`ops_per_update`; the paper neuron is 4, as snnTorch's ``Leaky``).

MAC conventions. NeuroBench's ``SynapticOperations`` binarises each connection layer's actual
input: the first (encoding) conv sees event counts, so NeuroBench reports ``Effective_MACs`` =
its *nonzero* inputs x fan-out, while :mod:`masnn.analysis.energy` charges the encoder
densely (every input position, ``layer_flops``) at ``E_MAC``, as the paper's energy formula
does. On sparse DVS frames NeuroBench's encoder MACs are therefore smaller than masnn's by the
input density; the spiking layers' ACs agree (both count spikes x fan-out). Attention gates'
real-valued MACs are left out of NeuroBench's count by default (``attention_layers=False``)
and counted analytically by masnn.

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

from masnn.analysis.ops import CONNECTIONS
from masnn.attention.gates import gate_internals
from masnn.layout import to_time_major
from masnn.neurons import LIF
from masnn.neurons.functional import LIFParams, lif_step

try:
    from neurobench.hooks.neuron import NeuronHook
    from neurobench.metrics.abstract.workload_metric import AccumulatedMetric
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

    def register_hooks(self) -> None:
        """NeuroBench's hooks, with :class:`LIFHook` (per-step membranes) on the LIF layers."""
        super().register_hooks()
        hooks = []
        for h in list(getattr(self, "activation_hooks", [])):
            if isinstance(h.layer, LIF):
                h.close()  # NeuroBench's hook records nothing useful on a multi-step LIF
                h = LIFHook(h.layer, h.name)
            hooks.append(h)
        self.activation_hooks = hooks

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
        return [m for m in self.net.modules() if isinstance(m, CONNECTIONS) and id(m) not in inside]


def ops_per_update(p: LIFParams) -> int:
    """Arithmetic operations of one LIF neuron update (masnn's NeuroBench-style pricing).

    ``U = V + k (v_rest - V) + g X`` costs 1 (``+ X``), plus 3 with a leak ``k`` (subtract,
    multiply, add), plus 1 with an input gain ``g != 1``; firing is 1 compare; the reset is 1
    (select / subtract) plus 1 with a post-reset decay ``delta != 1``. The paper neuron
    (``k = 0, g = 1, delta = beta``) is 4, like snnTorch's ``Leaky`` in NeuroBench's table.
    Membrane attention gates are not neuron operations (masnn counts them as attention MACs).
    """

    def off(v: object, ref: float) -> bool:
        return isinstance(v, Tensor) or float(v) != ref  # type: ignore[arg-type]

    ops = 1 + 1 + 1  # + X, compare, reset
    ops += 3 if off(p.leak, 0.0) else 0
    ops += 1 if off(p.input_gain, 1.0) else 0
    ops += 1 if off(p.decay, 1.0) else 0
    return ops


class _LIFView:
    """What NeuroBench sees as ``hook.layer``: the LIF, without snnTorch's reset table key."""

    def __init__(self, lif: LIF) -> None:
        self._lif = lif

    def __getattr__(self, name: str) -> Any:
        if name == "_reset_mechanism":
            raise TypeError(
                "NeuroBench's NeuronOperations has no op table for masnn's LIF; use "
                "masnn.analysis.neurobench.NeuronOperations (prices updates from the neuron's "
                "parameters)"
            )
        return getattr(self._lif, name)


_LIFView.__name__ = _LIFView.__qualname__ = "LIF"


class LIFHook(NeuronHook):
    """NeuroBench activation hook for a masnn :class:`~masnn.neurons.LIF` (module docstring).

    ``activation_outputs`` gets the layer's spike sequence (one entry per call);
    ``pre_fire_mem_potential`` / ``post_fire_mem_potential`` get one entry per step: the
    post-reset state before and after it (zeros before the first step).
    """

    def __init__(self, layer: LIF, name: str | None = None) -> None:
        super().__init__(layer, name)
        self.lif = layer
        self.layer = _LIFView(layer)

    def pre_hook_fn(self, layer: nn.Module, input: tuple) -> None:
        self.activation_inputs.append(input)

    @torch.no_grad()
    def hook_fn(self, layer: nn.Module, input: tuple, output: Any) -> None:
        spikes = output[0] if isinstance(output, tuple) else output
        self.activation_outputs.append(spikes)
        x_seq = input[0].float()
        lif = self.lif
        v = torch.zeros_like(x_seq[0])
        for x in x_seq:  # (B, ...)
            self.pre_fire_mem_potential.append(v)
            _, v = lif_step(x, v, lif.params(), lif.surrogate, lif.membrane_gate)
            self.post_fire_mem_potential.append(v)


class NeuronOperations(AccumulatedMetric):
    """Neuron operations per sample for masnn models (NeuroBench's metric needs snnTorch).

    ``Effective Neuron Ops``: membrane updates (as NeuroBench's ``MembraneUpdates`` counts them)
    x :func:`ops_per_update` of their layer; ``Neuron Dense Ops``: every neuron at every step x
    the same price. Both per sample.
    """

    def __init__(self) -> None:
        super().__init__(requires_hooks=True)
        self.reset()

    def reset(self) -> None:
        self.total_samples = 0
        self.effective = 0
        self.dense = 0

    def __call__(self, model: Any, preds: Any, data: Any) -> dict[str, float]:
        for hook in model.activation_hooks:
            if not isinstance(hook, LIFHook):
                raise TypeError(
                    f"masnn NeuronOperations prices masnn LIF layers only, got {hook.name!r} "
                    "(wrap the model in masnn.analysis.neurobench.MasnnModel)"
                )
            if not hook.post_fire_mem_potential:
                continue
            price = ops_per_update(hook.lif.params())
            post = torch.stack(hook.post_fire_mem_potential)
            pre = torch.stack(hook.pre_fire_mem_potential)
            updates = post[0].numel() + int(torch.count_nonzero(pre[1:] - post[1:]))
            self.effective += updates * price
            self.dense += post.numel() * price
        self.total_samples += data[0].size(0)
        return self.compute()

    def compute(self) -> dict[str, float]:
        n = max(self.total_samples, 1)
        return {"Effective Neuron Ops": self.effective / n, "Neuron Dense Ops": self.dense / n}


__all__ = ["LIFHook", "MasnnModel", "NeuronOperations", "ops_per_update"]
