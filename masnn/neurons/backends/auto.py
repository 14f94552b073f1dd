"""The ``"auto"`` neuron backend (the default): the fastest backend that can run each call.

Per call: a CPU tensor goes to the fused ``"cpp"`` kernel (with a CA / ECA / SimAM / SA
membrane gate: the fused gated kernel, :mod:`masnn.neurons.backends.membrane`), a CUDA tensor
to the ``"triton"`` kernel (when Triton is installed; with such a membrane gate: its gated
kernels, :mod:`masnn.neurons.backends.triton_membrane`); everything a fused kernel does not
cover (another membrane gate, hooks on a membrane gate, another dtype, tracing under
``torch.compile``/``torch.export``/``torch.jit.trace`` (e.g. ONNX export), a kernel that
could not be built, calls inside :func:`~masnn.neurons.backends.reference_only`) runs the reference ``"torch"`` loop; a membrane
gate that stays on the reference is logged once per reason (INFO). A kernel that fails to
build is reported once, as a logged warning naming the reason, and the reference is used from
then on in this process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor

from masnn.neurons.backends import NEURON_BACKENDS, NotSupportedByBackend, reference_forced
from masnn.neurons.backends.kernel_build import LOGGED, BuildError, log_once
from masnn.neurons.functional import LIFParams, MembraneGate, lif_multistep
from masnn.neurons.surrogate import Surrogate

_log = logging.getLogger("masnn.neurons.backends")
_available: dict[str, Callable[..., tuple[Tensor, Tensor]] | None] = {}


def fused_backend(device_type: str) -> Callable[..., tuple[Tensor, Tensor]] | None:
    """The fused backend for ``device_type`` if it is usable here (checked once), else ``None``."""
    if device_type not in _available:
        _available[device_type] = _probe(device_type)
    return _available[device_type]


def _probe(device_type: str) -> Callable[..., tuple[Tensor, Tensor]] | None:
    if device_type == "cpu":
        from masnn.neurons.backends.kernel_build import BuildError, load_library

        try:
            load_library()
        except BuildError as exc:
            _log.warning(
                "fused LIF kernel unavailable (%s); using the reference 'torch' backend", exc
            )
            return None
        return NEURON_BACKENDS.get("cpp")
    if device_type == "cuda" and "triton" in NEURON_BACKENDS:
        from masnn.neurons.backends.triton import triton_available

        reason = triton_available()
        if reason:
            _log.warning(
                "Triton LIF kernel unavailable (%s); using the reference 'torch' backend", reason
            )
            return None
        return NEURON_BACKENDS.get("triton")
    return None


def fused_for(x: Tensor) -> Callable[..., tuple[Tensor, Tensor]] | None:
    """The fused backend ``"auto"`` runs for ``x`` here, or ``None``: never while tracing,
    compiling or under :func:`~masnn.neurons.backends.reference_only`, nor where no fused
    backend is usable for ``x``'s device."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or reference_forced():
        return None
    return fused_backend(x.device.type)


def lif_auto(
    x_seq: Tensor,
    v0: Tensor | None,
    params: LIFParams,
    surrogate: Surrogate,
    gate: MembraneGate = None,
) -> tuple[Tensor, Tensor]:
    """Dispatch one call (see the module docstring); same contract as the reference."""
    impl = fused_for(x_seq)
    if impl is not None:
        try:
            return impl(x_seq, v0, params, surrogate, gate)
        except NotSupportedByBackend as exc:
            if gate is not None:
                _once(logging.INFO, f"membrane gate on the reference loop: {exc}")
        except BuildError as exc:  # only the gated kernel builds here (the LIF one is probed)
            _once(logging.WARNING, f"fused membrane kernel unavailable ({exc}); reference used")
    return lif_multistep(x_seq, v0, params, surrogate, gate)


_said = LOGGED  # the messages logged once (shared with the other fused kernels)


def _once(level: int, msg: str) -> None:
    log_once(_log, level, msg)


NEURON_BACKENDS.add("auto", lif_auto)
