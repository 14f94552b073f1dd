r"""The reference LIF dynamics: the one plain-torch implementation every backend must equal.

One step of layer ``n`` with input current ``X[t]`` and post-reset state ``V[t-1]`` is
*charge -> (gate) -> fire -> reset*:

.. math::

    U[t] &= V[t-1] + k\,(v_{rest} - V[t-1]) + g\,X[t]            && \text{charge} \\
    U[t] &\leftarrow \mathrm{gate}(U[t])                              && \text{optional membrane attention} \\
    S[t] &= \Theta(U[t] - v_{th})                                     && \text{fire} \\
    V[t] &= \tilde S[t]\,v_{reset} + (1 - \tilde S[t])\,\delta\,U[t]  && \text{hard reset} \\
    V[t] &= \delta\,(U[t] - \tilde S[t]\,v_{th})                      && \text{soft reset (v_reset = None)}

with ``S~ = stopgrad(S)`` when ``detach_reset`` and ``S~ = S`` otherwise, and ``V[-1] = v0``
(zero unless a caller streams state). ``Θ`` is the Heaviside step of a
:class:`~masnn.neurons.surrogate.Surrogate` (``>=`` or strict ``>``).

How the named presets (:mod:`masnn.neurons.presets`) map onto ``(k, g, delta)``:

* paper Eq. 3-5 (``U = H + X``; ``H = V_reset S + beta U (1 - S)``): ``k = 0, g = 1, delta = beta``.
* official DVS cell (``h = alpha (S V_th + (1 - S) U)``): ``k = 0, g = 1, delta = alpha,
  v_reset = alpha V_th`` (reset to threshold, then decay).
* MS-ResNet (``mem = decay mem (1 - sg(S)) + x``): ``k = 0, g = 1, delta = decay, v_reset = 0``,
  reset detached, strict ``>``.
* SpikingJelly ``LIFNode`` (``H = V + (X - (V - V_reset)) / tau``): ``k = 1/tau, v_rest = V_reset,
  g = 1/tau`` (``decay_input``) or ``1``, ``delta = 1``.

The gated ``U`` is what fires *and* what leaks on: membrane attention (paper Eq. 14) acts
inside this loop, per step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from masnn.neurons.surrogate import Surrogate

Scalar = float | Tensor
#: A per-step membrane gate ``U[t] -> gated U[t]`` (e.g. paper CA/SA), or ``None``.
MembraneGate = Callable[[Tensor], Tensor] | None


class LIFParams(NamedTuple):
    """Parameters of :func:`lif_step` (see the module docstring for the equations).

    Attributes:
        v_th: firing threshold.
        decay: ``delta``, multiplies the membrane of neurons that did not fire (paper ``beta``).
        leak: ``k``, the charge-time leak rate towards ``v_rest`` (SpikingJelly ``1/tau``).
        v_rest: the potential the charge-time leak pulls towards.
        input_gain: ``g``, scales the input current.
        v_reset: the membrane after a spike (hard reset); ``None`` = soft reset by ``v_th``.
        detach_reset: stop the gradient through the reset path.
    """

    v_th: Scalar = 1.0
    decay: Scalar = 1.0
    leak: Scalar = 0.0
    v_rest: Scalar = 0.0
    input_gain: Scalar = 1.0
    v_reset: Scalar | None = 0.0
    detach_reset: bool = False


def charge(x: Tensor, v: Tensor, p: LIFParams) -> Tensor:
    """``U = V + k (v_rest - V) + g X``."""
    u = v if _is_zero(p.leak) else v + p.leak * (p.v_rest - v)
    return u + (x if _is_one(p.input_gain) else p.input_gain * x)


def fire(u: Tensor, p: LIFParams, surrogate: Surrogate) -> Tensor:
    """``S = Θ(U - v_th)`` with the surrogate's backward."""
    return surrogate(u - p.v_th)


def reset(u: Tensor, spikes: Tensor, p: LIFParams) -> Tensor:
    """Post-spike membrane: hard reset to ``v_reset`` or soft reset by ``v_th``, then decay."""
    s = spikes.detach() if p.detach_reset else spikes
    if p.v_reset is None:
        v = u - s * p.v_th
        return v if _is_one(p.decay) else p.decay * v
    kept = u if _is_one(p.decay) else p.decay * u
    v = kept * (1.0 - s)
    return v if _is_zero(p.v_reset) else v + s * p.v_reset


def lif_step(
    x: Tensor,
    v: Tensor,
    params: LIFParams,
    surrogate: Surrogate,
    gate: MembraneGate = None,
) -> tuple[Tensor, Tensor]:
    """One time step: charge -> gate -> fire -> reset.

    Args:
        x: input current of this step.
        v: post-reset membrane of the previous step (same shape as ``x``).
        params: the neuron parameters.
        surrogate: the spike function.
        gate: optional per-step membrane gate applied to ``U`` before firing.

    Returns:
        ``(spikes, v_next)``, both shaped like ``x``.
    """
    u = charge(x, v, params)
    if gate is not None:
        u = gate(u)
    spikes = fire(u, params, surrogate)
    return spikes, reset(u, spikes, params)


def lif_multistep(
    x_seq: Tensor,
    v0: Tensor | None,
    params: LIFParams,
    surrogate: Surrogate,
    gate: MembraneGate = None,
) -> tuple[Tensor, Tensor]:
    """The reference multi-step LIF: a loop of :func:`lif_step` over the leading time axis.

    Args:
        x_seq: input current, time-major.
        v0: initial membrane (shape ``x_seq.shape[1:]``); ``None`` means zeros.
        params: the neuron parameters.
        surrogate: the spike function.
        gate: optional per-step membrane gate.

    Returns:
        ``(spikes_seq, v_last)``.

    Shape:
        x_seq: ``(T, B, ...)``; spikes_seq: same; v_last: ``(B, ...)``.
    """
    if x_seq.dim() < 2:
        raise ValueError(f"lif_multistep expects (T, B, ...) input, got shape {tuple(x_seq.shape)}")
    v = torch.zeros_like(x_seq[0]) if v0 is None else v0
    if v.shape != x_seq.shape[1:]:
        raise ValueError(f"v0 has shape {tuple(v.shape)}, expected {tuple(x_seq.shape[1:])}")
    out = []
    for x in x_seq:  # (B, ...)
        spikes, v = lif_step(x, v, params, surrogate, gate)
        out.append(spikes)
    return torch.stack(out), v


def _is_zero(a: Scalar | None) -> bool:
    return not isinstance(a, Tensor) and a == 0


def _is_one(a: Scalar) -> bool:
    return not isinstance(a, Tensor) and a == 1
