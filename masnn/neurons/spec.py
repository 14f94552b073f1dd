"""``NeuronSpec``: which neuron a layer gets, as data (preset, backend, the preset's kwargs).

Models and blocks take one :class:`NeuronSpec` instead of loose ``neuron=``, ``backend=`` and
``**neuron_kwargs``; :meth:`NeuronSpec.build` makes the :class:`~masnn.neurons.LIF`. The preset
and its kwargs are validated once, at construction (a typo fails before any layer is built).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from masnn.neurons.backends import NEURON_BACKENDS
from masnn.neurons.lif import LIF
from masnn.neurons.presets import resolve_neuron


@dataclass(frozen=True)
class NeuronSpec:
    """A neuron preset with its backend and parameters.

    Attributes:
        preset: a name from ``NEURON_PRESETS`` (``"paper"``, ``"biclab"``, ``"msresnet"``,
            ``"spikingjelly"``, ``"plif"``).
        backend: a name from ``NEURON_BACKENDS``.
        kwargs: the preset's own parameters (e.g. ``{"v_th": 0.5}``).

    Raises:
        ValueError: unknown preset or backend (listing the allowed ones), or a bad value.
        TypeError: a keyword the preset does not take (listing those it takes).

    Example:
        >>> NeuronSpec("paper", kwargs={"v_th": 0.5}).build()
        LIF(neuron='paper', v_th=0.5, decay=0.3, reset=hard(0), detach_reset=False, surrogate=rect:0.5, backend='torch')
    """

    preset: str = "paper"
    backend: str = "torch"
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.preset, str):
            raise TypeError(f"neuron preset must be a str, got {self.preset!r}")
        object.__setattr__(self, "kwargs", dict(self.kwargs))
        resolve_neuron(self.preset, **self.kwargs)  # validates preset and kwargs
        NEURON_BACKENDS.get(self.backend)

    def build(self, membrane_gate: nn.Module | None = None) -> LIF:
        """A :class:`~masnn.neurons.LIF` of this spec (with an optional membrane gate)."""
        return LIF(self.preset, backend=self.backend, membrane_gate=membrane_gate, **self.kwargs)


__all__ = ["NeuronSpec"]
