"""Stage 3c: the spiking nonlinearity: reference dynamics, presets, surrogates, backends."""

from masnn.neurons.backends import NEURON_BACKENDS
from masnn.neurons.functional import LIFParams, lif_multistep, lif_step
from masnn.neurons.lif import LIF
from masnn.neurons.presets import NEURON_PRESETS, NeuronDynamics, resolve_neuron
from masnn.neurons.spec import NeuronSpec
from masnn.neurons.surrogate import SURROGATES, Surrogate, make_surrogate

__all__ = [
    "LIF",
    "NEURON_BACKENDS",
    "NEURON_PRESETS",
    "SURROGATES",
    "LIFParams",
    "NeuronDynamics",
    "NeuronSpec",
    "Surrogate",
    "lif_multistep",
    "lif_step",
    "make_surrogate",
    "resolve_neuron",
]
