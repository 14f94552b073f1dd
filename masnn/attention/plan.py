"""``AttnCfg`` -> ``AttnPlan``: attention settings resolved once, then built per location.

Paper: `Attention Spiking Neural Networks` (§3, Eq. 14, Tables 4-6) - https://arxiv.org/abs/2209.13929

:class:`AttnCfg` is the data a user writes (the training YAML's ``model.attn`` mapping, or
``masnn.create_model(name, attn=AttnCfg(...))``); ``None`` fields mean "the placement's
default". :meth:`AttnCfg.resolve` validates it once against the gate registry and the
placement presets (:data:`PLACEMENTS`, the one place placement defaults live) and returns an
:class:`AttnPlan` with no ``None`` left. A layer asks the plan for the modules of a location
(:meth:`AttnPlan.build`); nothing is re-resolved per layer.

Locations, per gate slot (``"t"``, ``"c"``, ``"s"``); equations in ``docs/placements.md``:

* ``conv_pre``: on the input spikes of the layer, before the conv / linear map (any slot);
* ``conv_post``: on the input current ``X`` over the whole window, before the neuron (any slot);
* ``membrane``: on ``U[t] = H[t-1] + X[t]`` inside the neuron loop (C, S; gates with a
  per-step form);
* ``residual``: on a spiking ResNet block's BN2 output (C, S; :meth:`AttnPlan.build` only).

Placements (:data:`PLACEMENTS`):

=========  =============================  ========  ===  ===  ===  ====
placement  locations (t / c / s)          pooling   r_t  r_c  k    ReLU
=========  =============================  ========  ===  ===  ===  ====
``paper``  conv_post / membrane / membr.  per step  5    16   7    no
``code``   conv_post / conv_post / c.p.   over T    5    8    3    yes
=========  =============================  ========  ===  ===  ===  ====

``paper`` is Eq. 14 (r_c = 16 matches Table 5's +4,608 parameters; r_t is not stated, 5 is
the Gesture config). ``code`` is the official release and SpikingJelly's
``MultiDimensionalAttention``: CA pooled over ``(T, H, W)``, SA over all ``T*C`` maps, k = 3,
then a ReLU (only when a gate is on).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from torch import nn

from masnn._registry import Registry, suggest
from masnn.attention.checks import odd_kernel, positive_int
from masnn.attention.composite import MembraneAttention, MultiDimAttention
from masnn.attention.gates import ATTENTION, GATES, SLOTS, AttnSpec, GateHyper

LOCATIONS = ("conv_pre", "conv_post", "membrane", "residual")
#: Locations each slot may take through ``locations`` (``residual`` is a layer's choice).
SLOT_LOCATIONS = {
    "t": ("conv_pre", "conv_post"),
    "c": ("conv_pre", "conv_post", "membrane"),
    "s": ("conv_pre", "conv_post", "membrane"),
}


@dataclass(frozen=True)
class Placement:
    """A placement preset: default locations, pooling and hyper-parameters."""

    locations: Mapping[str, str]
    per_step: bool
    reduction_t: int
    reduction_c: int
    kernel_size: int
    relu: bool


PLACEMENTS: Registry[Placement] = Registry("attention placement")
PLACEMENTS.add(
    "paper", Placement({"t": "conv_post", "c": "membrane", "s": "membrane"}, True, 5, 16, 7, False)
)
PLACEMENTS.add(
    "code", Placement({"t": "conv_post", "c": "conv_post", "s": "conv_post"}, False, 5, 8, 3, True)
)


def attn_spec(name: str | None) -> AttnSpec:
    """Look a name up (``None`` = ``"none"``); unknown names raise listing the allowed ones."""
    if name is None:
        name = "none"
    if not isinstance(name, str):
        raise TypeError(f"attention name must be a str, got {type(name).__name__}")
    return ATTENTION.get(name.lower())


def _check_location(slot: str, loc: object) -> None:
    allowed = SLOT_LOCATIONS[slot]
    if loc not in allowed:
        extra = " (TA needs the whole window; it cannot gate an integrated membrane)"
        raise ValueError(
            f"unknown location {loc!r} for slot {slot!r}{suggest(str(loc), allowed)}; "
            f"allowed: {list(allowed)}" + (extra if slot == "t" and loc == "membrane" else "")
        )


@dataclass(frozen=True)
class AttnCfg:
    """Attention settings of a layer or a whole model (``None`` = the placement's default).

    Attributes:
        name: a name from ``ATTENTION`` (``"none"``, ``"ta"``, ..., ``"tcsa"``, ``"eca"``,
            ``"simam"``, or a registered plug-in).
        placement: a preset from :data:`PLACEMENTS` (``"paper"`` or ``"code"``).
        locations: per-slot overrides, e.g. ``{"t": "conv_pre"}``; entries for slots the name
            does not use are validated and ignored (one mapping configures every layer).
        reduction_t: TA's ``r_t``.
        reduction_c: CA's ``r_c``.
        kernel_size: SA's odd kernel.
        relu: ReLU on ``X`` after the ``conv_post`` gates (official code). ``None`` = the
            placement's when a gate is on, ``False`` for ``"none"``; ``name="none",
            relu=True`` is the ReLU-only control.

    Raises:
        ValueError: an unknown name / placement / slot / location (the message lists the
            allowed values) or a bad hyper-parameter. TypeError: a non-bool ``relu``.

    Example:
        >>> cfg = AttnCfg("tcsa", locations={"t": "conv_pre"})
        >>> plan = cfg.resolve()
        >>> plan.at("conv_pre"), plan.at("membrane"), plan.hp.reduction_c
        (('ta',), ('ca', 'sa'), 16)
    """

    name: str = "none"
    placement: str = "paper"
    locations: dict[str, str] = field(default_factory=dict)
    reduction_t: int | None = None
    reduction_c: int | None = None
    kernel_size: int | None = None
    relu: bool | None = None

    def __post_init__(self) -> None:
        spec = attn_spec(self.name)
        object.__setattr__(self, "name", self.name.lower())
        if not isinstance(self.placement, str):
            raise TypeError(f"placement must be a str, got {type(self.placement).__name__}")
        if self.placement not in PLACEMENTS:
            allowed = PLACEMENTS.names()
            raise ValueError(
                f"unknown placement {self.placement!r}; allowed: {allowed}"
                f"{suggest(self.placement, allowed)}"
            )
        if self.locations is None:
            object.__setattr__(self, "locations", {})
        if not isinstance(self.locations, Mapping):
            raise TypeError(f"locations must be a mapping slot -> location, got {self.locations!r}")
        object.__setattr__(self, "locations", dict(self.locations))
        for slot, loc in self.locations.items():
            if slot not in SLOT_LOCATIONS:
                raise ValueError(
                    f"unknown attention slot {slot!r}{suggest(str(slot), SLOTS)}; "
                    f"allowed: {list(SLOTS)}"
                )
            _check_location(slot, loc)
        for kind in spec.kinds:
            g = GATES.get(kind)
            if not g.per_step and self.locations.get(g.slot) == "membrane":
                raise ValueError(f"gate {kind!r} has no per-step form; it cannot sit at 'membrane'")
        if self.reduction_t is not None:
            positive_int("reduction_t", self.reduction_t)
        if self.reduction_c is not None:
            positive_int("reduction_c", self.reduction_c)
        if self.kernel_size is not None:
            odd_kernel(self.kernel_size)
        if self.relu is not None and not isinstance(self.relu, bool):
            raise TypeError(f"relu (attn_relu) must be a bool or None, got {self.relu!r}")

    @property
    def spec(self) -> AttnSpec:
        """The registered :class:`AttnSpec` of :attr:`name`."""
        return attn_spec(self.name)

    def resolve(self) -> AttnPlan:
        """The :class:`AttnPlan`: every ``None`` filled from the placement, locations decided."""
        spec = self.spec
        pl = PLACEMENTS.get(self.placement)
        where = {}
        for kind in spec.kinds:
            slot = GATES.get(kind).slot
            where[kind] = self.locations.get(slot, pl.locations[slot])
        return AttnPlan(
            cfg=self,
            kinds=spec.kinds,
            where=where,
            per_step=pl.per_step,
            hp=GateHyper(
                pl.reduction_t if self.reduction_t is None else self.reduction_t,
                pl.reduction_c if self.reduction_c is None else self.reduction_c,
                pl.kernel_size if self.kernel_size is None else self.kernel_size,
            ),
            relu=(pl.relu and bool(spec.kinds)) if self.relu is None else self.relu,
        )

    def to_dict(self) -> dict[str, Any]:
        """The YAML mapping (every field, ``None`` kept)."""
        return {f.name: getattr(self, f.name) for f in fields(self)} | {
            "locations": dict(self.locations)
        }


@dataclass(frozen=True)
class AttnPlan:
    """Resolved attention: which gate sits where, built on demand per location.

    Attributes:
        cfg: the :class:`AttnCfg` it came from.
        kinds: the gate kinds in T -> C -> S order.
        where: gate kind -> location.
        per_step: the placement's pooling (per step, or over the window).
        hp: the resolved ``reduction_t``, ``reduction_c``, ``kernel_size``.
        relu: the ReLU after the ``conv_post`` gates.
    """

    cfg: AttnCfg
    kinds: tuple[str, ...]
    where: Mapping[str, str]
    per_step: bool
    hp: GateHyper
    relu: bool

    @property
    def name(self) -> str:
        """The attention name."""
        return self.cfg.name

    @property
    def placement(self) -> str:
        """The placement preset."""
        return self.cfg.placement

    def at(self, location: str) -> tuple[str, ...]:
        """The gate kinds at ``location``, in order."""
        return tuple(k for k in self.kinds if self.where[k] == location)

    def only(self, slots: Iterable[str]) -> AttnPlan:
        """The plan restricted to gates of ``slots`` (e.g. FC layers keep ``{"t"}``).

        The ReLU stays when a kept gate is on, or for the ReLU-only control (no gate at all);
        a name whose gates are all dropped keeps no ReLU (the official CA/SA/CSA FC layers).
        """
        keep = tuple(k for k in self.kinds if GATES.get(k).slot in set(slots))
        relu = self.relu and (bool(keep) or not self.kinds)
        return replace(self, kinds=keep, where={k: self.where[k] for k in keep}, relu=relu)

    def drop(self, location: str) -> AttnPlan:
        """The plan without its gates at ``location`` (the ReLU stays: it belongs to
        ``conv_post``). A block builds its ``conv_pre`` gates itself and hands the rest on."""
        keep = tuple(k for k in self.kinds if self.where[k] != location)
        return replace(self, kinds=keep, where={k: self.where[k] for k in keep})

    def _gate(self, kind: str, channels: int, timesteps: int, per_step: bool) -> nn.Module:
        g = GATES.get(kind)
        return g.build(channels, timesteps, self.hp, g.form(per_step))

    def build(
        self, location: str, channels: int, timesteps: int, *, backend: str = "auto"
    ) -> nn.Module | None:
        """The module of ``location`` for a tensor of ``channels`` channels, or ``None``.

        ``backend`` (the layer's neuron backend name) goes to :class:`MultiDimAttention`:
        ``"torch"`` keeps its gates on the reference, any other name lets them take the fused
        pooled kernel (:mod:`masnn.attention.pooled`).

        * ``conv_pre``: a :class:`MultiDimAttention` of the gates there (no ReLU);
        * ``conv_post``: a :class:`MultiDimAttention` of the gates there, with the ReLU if on
          (also alone: the ReLU-only control);
        * ``membrane``: a per-step :class:`MembraneAttention` for ``LIF(membrane_gate=...)``;
        * ``residual``: every gate of the plan (C/S only) with the ``conv_post`` equations and
          the placement's pooling and ReLU (Att-Res-SNN).
        """
        positive_int("channels", channels)
        positive_int("timesteps", timesteps)
        if location == "residual":
            if any(GATES.get(k).slot == "t" for k in self.kinds):
                raise ValueError(
                    f"location 'residual' takes channel/spatial gates only (paper §2.2 drops TA "
                    f"on ImageNet), got {self.name!r}; allowed: "
                    f"{[n for n in ATTENTION.names() if 't' not in attn_spec(n).slots]}"
                )
            kinds, relu = self.kinds, self.relu
        elif location in ("conv_pre", "conv_post"):
            kinds, relu = self.at(location), self.relu and location == "conv_post"
        elif location == "membrane":
            kinds = self.at("membrane")
            if not kinds:
                return None
            gates = {GATES.get(k).slot: self._gate(k, channels, timesteps, True) for k in kinds}
            return MembraneAttention(gates.get("c"), gates.get("s"))
        else:
            raise ValueError(
                f"unknown location {location!r}{suggest(str(location), LOCATIONS)}; "
                f"allowed: {list(LOCATIONS)}"
            )
        if not kinds and not relu:
            return None
        gates = {
            GATES.get(k).slot: self._gate(k, channels, timesteps, self.per_step) for k in kinds
        }
        return MultiDimAttention(
            gates.get("t"), gates.get("c"), gates.get("s"), relu=relu, backend=backend
        )


def as_plan(attn: AttnCfg | AttnPlan) -> AttnPlan:
    """Accept a config or an already resolved plan (layers call this once)."""
    if isinstance(attn, AttnPlan):
        return attn
    if isinstance(attn, AttnCfg):
        return attn.resolve()
    raise TypeError(
        f"attn must be an AttnCfg (masnn.attention.AttnCfg) or an AttnPlan, got {attn!r}"
    )


__all__ = [
    "LOCATIONS",
    "PLACEMENTS",
    "SLOT_LOCATIONS",
    "AttnCfg",
    "AttnPlan",
    "Placement",
    "as_plan",
    "attn_spec",
]
