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
CPU kernel fuses CA / ECA / SimAM / SA gates, :mod:`masnn.neurons.backends.membrane`, and
so does the Triton one, :mod:`masnn.neurons.backends.triton_membrane`) must
raise ``NotSupportedByBackend`` so the caller can fall back to the reference explicitly.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from masnn._registry import Registry
from masnn.neurons.functional import lif_multistep


class NotSupportedByBackend(ValueError):
    """A backend cannot run this configuration (e.g. a membrane gate in a fused kernel)."""


_forced = threading.local()


@contextlib.contextmanager
def reference_only() -> Iterator[None]:
    """Within this block the ``"auto"`` backend runs the reference for every call.

    The fused kernels' backward passes are hand-written and differentiable once; code that
    differentiates a gradient again (``create_graph=True``: double backward, Hessian-vector or
    J J^T products, e.g. :func:`masnn.analysis.jacobian_moments`) runs the model in here.
    """
    depth = getattr(_forced, "depth", 0)
    _forced.depth = depth + 1
    try:
        yield
    finally:
        _forced.depth = depth


def reference_forced() -> bool:
    """Whether :func:`reference_only` is active in this thread."""
    return getattr(_forced, "depth", 0) > 0


def refuse_double_backward(kernel: str) -> None:
    """Raise when a fused kernel's backward runs with ``create_graph=True`` (its gradient would
    not be differentiable: a second derivative would silently miss this path)."""
    if torch.is_grad_enabled():
        raise RuntimeError(
            f"{kernel}: its backward is differentiable once, not under create_graph=True; run "
            "the model inside masnn.neurons.backends.reference_only() or with backend='torch'"
        )


NEURON_BACKENDS: Registry[Callable[..., tuple[Tensor, Tensor]]] = Registry("neuron backend")
NEURON_BACKENDS.add("torch", lif_multistep)

# One file + one registration per backend (imported last: they register into NEURON_BACKENDS).
from masnn.neurons.backends import auto, cpp, triton  # noqa: E402, F401
