"""masnn: attention spiking neural networks (MA-SNN), the reference Python implementation.

Paper: `Attention Spiking Neural Networks` (Yao et al., IEEE TPAMI 2023) - https://arxiv.org/abs/2209.13929

The public surface lives here; everything else is reached through its sub-package.
Tensors are time-major, ``[T, B, C, H, W]`` (see :mod:`masnn.layout`).
"""

from typing import Any

from masnn.attention import AttnCfg, create_attn, register_gate
from masnn.models import create_model, list_models, register_model
from masnn.neurons import NeuronSpec
from masnn.version import __version__

__all__ = [
    "AttnCfg",
    "NeuronSpec",
    "__version__",
    "create_attn",
    "create_model",
    "list_models",
    "load_model",
    "register_gate",
    "register_model",
]


def load_model(path: str, *, map_location: str = "cpu") -> Any:
    """Rebuild a trained model from a run's ``best.pt`` alone (see
    :func:`masnn.train.evaluate.load_model`)."""
    from masnn.train.evaluate import load_model as _load

    return _load(path, map_location=map_location)
