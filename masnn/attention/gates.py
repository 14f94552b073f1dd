"""The gate registry: one :class:`GateKind` per gate, everything the package asks about it.

A gate kind (``"ta"``, ``"ca"``, ``"sa"``, ``"eca"``, ``"simam"``, or a plug-in) is registered
once, next to its module class, with :func:`register_gate`. The registration holds

* its **slot** (``"t"``, ``"c"`` or ``"s"``: where it sits in the T -> C -> S order);
* its **builder** ``build(channels, timesteps, hp, per_step) -> nn.Module``;
* its **forms**: whether it has a per-step form (pools one frame; may sit at the ``membrane``
  location) and/or a pooled form (pools the whole window);
* its **MAC count** ``macs(module, x) -> {convention: MACs}`` for one call on input ``x``
  (all samples), read by :class:`masnn.analysis.OpsCounter`;
* whether it is **causal per step**: a built module of this kind computes step ``t`` from
  frame ``t`` only (read by streaming, from the built modules).

The factory (:mod:`masnn.attention.plan`), the accounting (:mod:`masnn.analysis.ops`, the FLOP
counts of :mod:`masnn.models`) and streaming (:meth:`SpikingClassifier.streaming_blocker`)
read this registry; nothing else lists gate kinds. A gate outside the package::

    register_gate(GateKind("mygate", slot="c", module=MyGate, build=..., macs=...))

also registers the one-gate attention name ``"mygate"``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from torch import Tensor, nn

from masnn._registry import Registry

SLOTS = ("t", "c", "s")


class GateHyper(NamedTuple):
    """The resolved hyper-parameters a gate builder may read."""

    reduction_t: int
    reduction_c: int
    kernel_size: int


#: ``build(channels, timesteps, hp, per_step) -> module``.
GateBuilder = Callable[[int, int, GateHyper, bool], nn.Module]
#: ``macs(module, x) -> {convention: MACs}`` for one call on ``x`` (all samples).
GateMacs = Callable[[Any, Tensor], Mapping[str, float]]


@dataclass(frozen=True)
class GateKind:
    """One registered gate kind (module docstring).

    Attributes:
        name: the kind's name (also a one-gate attention name).
        slot: ``"t"``, ``"c"`` or ``"s"``.
        module: the module class the builder returns (accounting recognises gates by it).
        build: the builder.
        macs: the MAC count of one call.
        per_step: the kind has a per-step form (``build(..., per_step=True)``).
        pooled: the kind has a pooled-over-the-window form.
        causal_per_step: a per-step module of this kind is causal (step ``t`` from frame ``t``).
        per_forward: MACs added once per sample per forward, per convention (SimAM's "+3").
    """

    name: str
    slot: str
    module: type[nn.Module]
    build: GateBuilder
    macs: GateMacs
    per_step: bool = True
    pooled: bool = True
    causal_per_step: bool = True
    per_forward: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.slot not in SLOTS:
            raise ValueError(
                f"gate {self.name!r}: slot must be one of {list(SLOTS)}, got {self.slot!r}"
            )
        if not (self.per_step or self.pooled):
            raise ValueError(f"gate {self.name!r}: needs a per-step or a pooled form")

    def form(self, per_step: bool) -> bool:
        """The form to build when the placement asks for ``per_step`` (falls back to the other)."""
        return self.per_step if per_step else not self.pooled

    def is_causal(self, module: nn.Module) -> bool:
        """Whether a built ``module`` of this kind computes step ``t`` from frame ``t`` only."""
        return self.causal_per_step and self.per_step and bool(getattr(module, "per_step", True))


@dataclass(frozen=True)
class AttnSpec:
    """A registered attention name: its gate kinds, in T -> C -> S order."""

    kinds: tuple[str, ...]

    @property
    def slots(self) -> tuple[str, ...]:
        """The slot of each kind."""
        return tuple(GATES.get(k).slot for k in self.kinds)


#: Attention names -> :class:`AttnSpec` (one-gate names come from :func:`register_gate`;
#: the compositions are registered in :mod:`masnn.attention.factory`).
ATTENTION: Registry[AttnSpec] = Registry("attention")
GATES: Registry[GateKind] = Registry("gate kind")
_BY_TYPE: dict[type, GateKind] = {}


def register_gate(kind: GateKind) -> GateKind:
    """Register ``kind`` (and the one-gate attention name ``kind.name``); returns it.

    Raises:
        KeyError: the name or the module class is already registered.
    """
    if kind.module in _BY_TYPE:
        raise KeyError(f"module class {kind.module.__name__} is already a registered gate")
    GATES.add(kind.name, kind)
    _BY_TYPE[kind.module] = kind
    if kind.name not in ATTENTION:
        ATTENTION.add(kind.name, AttnSpec((kind.name,)))
    return kind


def unregister_gate(name: str) -> GateKind:
    """Remove a gate kind (and its one-gate attention name); for plug-in lifecycles and tests."""
    kind = GATES.remove(name)
    del _BY_TYPE[kind.module]
    if name in ATTENTION and ATTENTION.get(name).kinds == (name,):
        ATTENTION.remove(name)
    return kind


def gate_of(module: nn.Module) -> GateKind | None:
    """The registered kind of ``module`` (by exact type), or ``None`` if it is not a gate."""
    return _BY_TYPE.get(type(module))


def gate_internals(model: nn.Module) -> set[int]:
    """``id`` of every module strictly inside a registered gate (its MLP, conv, sigmoid).

    Accounting skips these: a gate's own layers are counted by its :attr:`GateKind.macs`,
    not as connection layers.
    """
    inside: set[int] = set()
    for mod in model.modules():
        if gate_of(mod) is not None:
            inside.update(id(m) for m in mod.modules() if m is not mod)
    return inside


def gate_dims(module: nn.Module, x: Tensor) -> tuple[int, int, int, int, bool]:
    """``(steps, B, C, H*W, per_step)`` of one gate call on a sequence or one step ``x``."""
    if x.dim() == 4:
        b, c = x.shape[:2]
        steps, hw = 1, x.shape[2] * x.shape[3]
    else:
        steps, b, c = x.shape[:3]
        hw = x.shape[3] * x.shape[4]
    return steps, b, c, hw, bool(getattr(module, "per_step", True))


def mlp_hidden(module: Any) -> int:
    """Hidden width of a CBAM-style gate's ``mlp`` (TA, CA)."""
    return int(module.mlp[0].out_features)


def pooled_counts(module: nn.Module, x: Tensor) -> tuple[int, int, int, int, int, int]:
    """``(steps, B, C, H*W, gate evaluations, pool size)`` of a C/S gate call.

    A per-step gate is evaluated once per step over ``H*W``; a pooled one once per sample over
    ``steps*H*W`` (its learned map runs once, not ``T`` times).
    """
    steps, b, c, hw, per_step = gate_dims(module, x)
    gates, pool = (steps, hw) if per_step else (1, steps * hw)
    return steps, b, c, hw, gates, pool


__all__ = [
    "ATTENTION",
    "GATES",
    "AttnSpec",
    "SLOTS",
    "GateHyper",
    "GateKind",
    "gate_dims",
    "gate_internals",
    "gate_of",
    "mlp_hidden",
    "pooled_counts",
    "register_gate",
    "unregister_gate",
]
