"""The spiking layer module: a multi-step LIF over time-major input, any preset, any backend.

Every forward starts from zero membrane (no ``reset_net``); explicit state is only for
streaming (``forward(x, state=v, return_state=True)``). The module's output is the spike
sequence, so forward hooks on ``LIF`` modules observe every spike of the network.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from masnn.neurons.backends import NEURON_BACKENDS
from masnn.neurons.functional import LIFParams
from masnn.neurons.presets import NeuronDynamics, resolve_neuron


class LIF(nn.Module):
    """Multi-step leaky integrate-and-fire neurons (equations in :mod:`masnn.neurons.functional`).

    Args:
        neuron: a preset name from ``NEURON_PRESETS`` (``"paper"``, ``"biclab"``,
            ``"msresnet"``, ``"spikingjelly"``, ``"plif"``) or a resolved ``NeuronDynamics``.
        backend: a name from ``NEURON_BACKENDS``; resolved once, here.
        membrane_gate: optional module applied to the membrane ``U[t]`` at every step, before
            firing (paper Eq. 14, CA/SA at the ``membrane`` location).
        **neuron_kwargs: the preset's own parameters (e.g. ``v_th=0.5``, ``tau=2.0``).

    Shape:
        x_seq: ``(T, B, ...)``; output: spikes of the same shape, values 0/1, dtype of the input
            (float32 for half-precision input: state is never kept in half precision).

    Example:
        >>> lif = LIF("paper")  # U = .25 (H = .075), U = .325 >= .3 fires (H = 0), U = .25
        >>> lif(torch.full((3, 1), 0.25)).flatten().tolist()
        [0.0, 1.0, 0.0]
    """

    def __init__(
        self,
        neuron: str | NeuronDynamics = "paper",
        *,
        backend: str = "torch",
        membrane_gate: nn.Module | None = None,
        **neuron_kwargs: object,
    ) -> None:
        super().__init__()
        spec = resolve_neuron(neuron, **neuron_kwargs)
        self.neuron = neuron if isinstance(neuron, str) else "custom"
        self.spec = spec
        self.surrogate = spec.surrogate
        self.backend = backend
        self._impl = NEURON_BACKENDS.get(backend)  # the one dispatch site
        self.membrane_gate = membrane_gate
        if spec.learnable_tau:
            self.w = nn.Parameter(torch.tensor(float(spec.init_w)))
        else:
            self.register_parameter("w", None)

    def params(self) -> LIFParams:
        """The current :class:`LIFParams` (with ``1/tau = sigmoid(w)`` for learnable tau)."""
        p = self.spec.params
        if self.w is None:
            return p
        k = torch.sigmoid(self.w)
        return p._replace(leak=k, input_gain=k if self.spec.decay_input else 1.0)

    def forward(
        self, x_seq: Tensor, state: Tensor | None = None, return_state: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Run all ``T`` steps from ``state`` (zeros when ``None``); see the class docstring."""
        if x_seq.dim() < 2:
            raise ValueError(
                f"LIF expects time-major input (T, B, ...), got shape {tuple(x_seq.shape)}"
            )
        # Neuron state and membrane gates stay in fp32 under autocast.
        with torch.autocast(x_seq.device.type, enabled=False):
            x_seq = _at_least_fp32(x_seq)
            v0 = None if state is None else state.to(x_seq.dtype)
            spikes, v = self._impl(x_seq, v0, self.params(), self.surrogate, self.membrane_gate)
        return (spikes, v) if return_state else spikes

    def extra_repr(self) -> str:
        p = self.spec.params
        s = f"neuron={self.neuron!r}, v_th={_fmt(p.v_th)}, decay={_fmt(p.decay)}"
        if self.w is None and not (isinstance(p.leak, float) and p.leak == 0):
            s += f", leak={_fmt(p.leak)}, input_gain={_fmt(p.input_gain)}"
        reset = "soft" if p.v_reset is None else f"hard({_fmt(p.v_reset)})"
        sg = self.surrogate
        s += f", reset={reset}, detach_reset={p.detach_reset}, surrogate={sg.name}:{sg.param:g}"
        return s + (", strict" if sg.strict else "") + f", backend={self.backend!r}"


def _at_least_fp32(x: Tensor) -> Tensor:
    """Half-precision tensors upcast to fp32 (the rule for neuron state and attention gates)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _fmt(v: object) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)
