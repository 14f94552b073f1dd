"""Multi-step LIF implementations, selected by name: the single backend dispatch site.

Every backend is a callable with exactly the signature of
:func:`masnn.neurons.functional.lif_multistep`::

    backend(x_seq, v0, params, surrogate, gate=None) -> (spikes_seq, v_last)

and must equal the reference (``"torch"``) bit for bit on spikes away from threshold and
within tolerance on gradients; ``tests/neurons/test_backends.py`` parametrises over
``NEURON_BACKENDS.names()`` (``test_triton.py`` for ``"triton"``).

Registered: ``"torch"`` (the reference), ``"cpp"`` (fused CPU kernel), ``"triton"`` (fused CUDA
kernel), ``"auto"`` (the default: picks per call, falls back to the reference).
A backend that cannot honour an argument (e.g. a membrane gate it has no fused form for; the
CPU kernel fuses CA / ECA / SimAM / SA gates, :mod:`masnn.neurons.backends.membrane`) must
raise ``NotSupportedByBackend`` so the caller can fall back to the reference explicitly.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from masnn._registry import Registry
from masnn.neurons.functional import lif_multistep


class NotSupportedByBackend(ValueError):
    """A backend cannot run this configuration (e.g. a membrane gate in a fused kernel)."""


NEURON_BACKENDS: Registry[Callable[..., tuple[Tensor, Tensor]]] = Registry("neuron backend")
NEURON_BACKENDS.add("torch", lif_multistep)

# One file + one registration per backend (imported last: they register into NEURON_BACKENDS).
from masnn.neurons.backends import auto, cpp, triton  # noqa: E402, F401
