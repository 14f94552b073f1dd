"""Named neuron presets: the neuron of the paper, of the official code and of peer libraries.

Each preset is a function taking only its own keyword arguments (validated) and returning a
:class:`NeuronDynamics`. Source tags: [P] paper, [C] official code, [SJ] SpikingJelly, [G] a value
neither the paper nor the official code states (our assumption).

==================  ======================================================================
preset              dynamics and defaults
==================  ======================================================================
``paper``           Eq. 3-5: ``U = H + X; S = [U >= u_th]; H = V_reset S + beta U (1-S)``.
                    ``u_th = 0.3``, ``beta = 0.3``, ``V_reset = 0`` (values [C]; the paper
                    states none [G]); rect surrogate width 0.5 / height 2 [C]; reset kept in
                    the graph [C].
``biclab``          official DVS cell (``ConvIFCell``): ``h = alpha (S V_th + (1-S) U)``,
                    ``alpha = V_th = 0.3`` [C]: reset to threshold, then decay (a neuron that
                    fired carries 0.09); not detached; rect width 0.5 [C].
``msresnet``        official ImageNet neuron: ``mem = 0.25 mem (1 - sg(S)) + x``,
                    ``S = [mem > 0.5]`` (strict), hard reset to 0, detached; rect width 1 /
                    height 1 on ``0 < mem < 1`` [C].
``spikingjelly``    SpikingJelly ``LIFNode``: ``tau = 2``, ``decay_input = True``,
                    ``v_th = 1``, ``v_reset = 0`` (``None`` = soft reset), ``detach_reset =
                    False``, sigmoid surrogate alpha 4 [SJ].
``plif``            SpikingJelly ``ParametricLIFNode``: learnable ``tau = 1/sigmoid(w)``,
                    ``init_tau = 2`` [SJ]; ``v_th = 1``, ``v_reset = 0``; ``detach_reset = True``
                    and atan surrogate (alpha 2) as in SpikingJelly's DVS Gesture example for
                    Fang et al.'s network [SJ]; how MA-SNN configured it is not stated [G].
==================  ======================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from masnn._registry import Registry
from masnn.neurons.functional import LIFParams
from masnn.neurons.surrogate import Surrogate, make_surrogate


@dataclass(frozen=True)
class NeuronDynamics:
    """A resolved neuron: its parameters, its spike function and learnable parts.

    Attributes:
        params: the :class:`LIFParams` (``leak``/``input_gain`` are overwritten by
            ``sigmoid(w)`` at run time when ``learnable_tau`` is set).
        surrogate: the spike function.
        learnable_tau: ``w`` with ``1/tau = sigmoid(w)`` is a trainable parameter.
        init_w: initial ``w`` when ``learnable_tau``.
        decay_input: with ``learnable_tau``, whether ``1/tau`` also scales the input.
    """

    params: LIFParams
    surrogate: Surrogate
    learnable_tau: bool = False
    init_w: float = 0.0
    decay_input: bool = True


NEURON_PRESETS: Registry[Callable[..., NeuronDynamics]] = Registry("neuron preset")


def _positive(name: str, value: float, preset: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"neuron preset {preset!r}: {name} must be > 0, got {value}")
    return value


def _unit(name: str, value: float, preset: str) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"neuron preset {preset!r}: {name} must be in [0, 1], got {value}")
    return value


@NEURON_PRESETS.register("paper")
def paper(
    v_th: float = 0.3,
    beta: float = 0.3,
    v_reset: float = 0.0,
    detach_reset: bool = False,
    surrogate: str | Surrogate = "rect:0.5",
) -> NeuronDynamics:
    """Paper Eq. 3-5 with the official values (see the module table)."""
    p = LIFParams(
        v_th=_positive("v_th", v_th, "paper"),
        decay=_unit("beta", beta, "paper"),
        v_reset=float(v_reset),
        detach_reset=bool(detach_reset),
    )
    return NeuronDynamics(p, make_surrogate(surrogate))


@NEURON_PRESETS.register("biclab")
def biclab(
    v_th: float = 0.3, alpha: float = 0.3, surrogate: str | Surrogate = "rect:0.5"
) -> NeuronDynamics:
    """The official DVS cell: reset to threshold, then decay by ``alpha``."""
    v_th = _positive("v_th", v_th, "biclab")
    alpha = _unit("alpha", alpha, "biclab")
    p = LIFParams(v_th=v_th, decay=alpha, v_reset=alpha * v_th, detach_reset=False)
    return NeuronDynamics(p, make_surrogate(surrogate))


@NEURON_PRESETS.register("msresnet")
def msresnet(
    v_th: float = 0.5, decay: float = 0.25, surrogate: str | Surrogate = "rect:1.0"
) -> NeuronDynamics:
    """The official ImageNet (MS-ResNet) neuron: strict ``>``, detached hard reset to 0."""
    p = LIFParams(
        v_th=_positive("v_th", v_th, "msresnet"),
        decay=_unit("decay", decay, "msresnet"),
        v_reset=0.0,
        detach_reset=True,
    )
    return NeuronDynamics(p, make_surrogate(surrogate, strict=True))


@NEURON_PRESETS.register("spikingjelly")
def spikingjelly(
    tau: float = 2.0,
    decay_input: bool = True,
    v_th: float = 1.0,
    v_reset: float | None = 0.0,
    detach_reset: bool = False,
    surrogate: str | Surrogate = "sigmoid:4",
) -> NeuronDynamics:
    """SpikingJelly ``LIFNode`` semantics; ``v_reset=None`` gives the soft reset."""
    tau = _positive("tau", tau, "spikingjelly")
    if tau < 1:
        raise ValueError(f"neuron preset 'spikingjelly': tau must be >= 1, got {tau}")
    p = _sj_params(tau, decay_input, v_th, v_reset, detach_reset)
    return NeuronDynamics(p, make_surrogate(surrogate), decay_input=bool(decay_input))


def _sj_params(
    tau: float, decay_input: bool, v_th: float, v_reset: float | None, detach_reset: bool
) -> LIFParams:
    """SpikingJelly's charge ``H = V + (X - (V - V_reset)) / tau`` in :class:`LIFParams` terms."""
    return LIFParams(
        v_th=float(v_th),
        decay=1.0,
        leak=1.0 / tau,
        v_rest=0.0 if v_reset is None else float(v_reset),
        input_gain=1.0 / tau if decay_input else 1.0,
        v_reset=None if v_reset is None else float(v_reset),
        detach_reset=bool(detach_reset),
    )


@NEURON_PRESETS.register("plif")
def plif(
    init_tau: float = 2.0,
    decay_input: bool = True,
    v_th: float = 1.0,
    v_reset: float | None = 0.0,
    detach_reset: bool = True,
    surrogate: str | Surrogate = "atan:2",
) -> NeuronDynamics:
    """SpikingJelly ``ParametricLIFNode``: ``1/tau = sigmoid(w)`` learnable, ``init_tau = 2``."""
    init_tau = _positive("init_tau", init_tau, "plif")
    if init_tau <= 1:
        raise ValueError(f"neuron preset 'plif': init_tau must be > 1, got {init_tau}")
    p = _sj_params(init_tau, decay_input, v_th, v_reset, detach_reset)
    init_w = -math.log(init_tau - 1.0)  # sigmoid(w) = 1 / init_tau
    return NeuronDynamics(
        p, make_surrogate(surrogate), learnable_tau=True, init_w=init_w, decay_input=decay_input
    )


def resolve_neuron(neuron: str | NeuronDynamics = "paper", **kwargs: object) -> NeuronDynamics:
    """Build a :class:`NeuronDynamics` from a preset name and that preset's keyword arguments.

    Raises:
        ValueError: unknown preset (the message lists the presets) or a bad value.
        TypeError: a keyword the preset does not take (the message lists those it takes).
    """
    if isinstance(neuron, NeuronDynamics):
        if kwargs:
            raise TypeError("neuron overrides cannot be combined with a resolved NeuronDynamics")
        return neuron
    fn = NEURON_PRESETS.get(neuron)
    try:
        return fn(**kwargs)
    except TypeError as exc:
        import inspect

        accepted = list(inspect.signature(fn).parameters)
        raise TypeError(
            f"neuron preset {neuron!r} got an unexpected argument ({exc}); accepted: {accepted}"
        ) from None
