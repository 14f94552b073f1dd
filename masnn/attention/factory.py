"""The attention registry, the placement presets and :func:`create_attn`.

Paper: `Attention Spiking Neural Networks` (§3, Tables 4-6) - https://arxiv.org/abs/2209.13929

Names (``ATTENTION``), each a tuple of gate kinds applied in T -> C -> S order:

=========  =====================  ==========================================
name       gates                  notes
=========  =====================  ==========================================
``none``   -                      no gate (``attn_relu=True``: ReLU-only control)
``ta``     TA                     temporal
``ca``     CA                     CBAM channel
``sa``     SA                     CBAM spatial
``tca``    TA, CA
``tsa``    TA, SA
``csa``    CA, SA                 ImageNet residual attention
``tcsa``   TA, CA, SA             MA-SNN
``eca``    ECA                    Table 5 channel variant
``simam``  SimAM                  Table 5 channel variant (no parameters)
=========  =====================  ==========================================

Locations, per gate slot (``"t"``, ``"c"``, ``"s"``); equations in ``docs/placements.md``:

* ``conv_pre``: on the input spikes of the layer, before the conv (any slot);
* ``conv_post``: on the input current ``X`` after conv/BN/pool, over the whole window, before
  the neuron (any slot);
* ``membrane``: on ``U[t] = H[t-1] + X[t]`` inside the neuron loop, before firing (C, S);
* ``residual``: on the residual branch's BN2 output of a spiking ResNet block (C, S; only
  through ``create_attn(..., location="residual")``).

Placements (``PLACEMENTS``) fill every ``None`` argument:

=========  =============================  ========  ===  ===  ===  ====
placement  locations (t / c / s)          pooling   r_t  r_c  k    ReLU
=========  =============================  ========  ===  ===  ===  ====
``paper``  conv_post / membrane / membr.  per step  5    16   7    no
``code``   conv_post / conv_post / c.p.   over T    5    8    3    yes
=========  =============================  ========  ===  ===  ===  ====

``paper`` is Eq. 14 (r_c = 16 matches Table 5's +4,608 parameters; r_t is not stated, 5 is
the Gesture config [G]). ``code`` is the official release and SpikingJelly's
``MultiDimensionalAttention``: CA pooled over ``(T, H, W)``, SA over all ``T*C`` maps, k = 3,
then a ReLU.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from masnn._registry import Registry, suggest
from masnn.attention.channel import ChannelAttention, EfficientChannelAttention, SimAM
from masnn.attention.checks import odd_kernel, positive_int
from masnn.attention.composite import MembraneAttention, MultiDimAttention
from masnn.attention.spatial import SpatialAttention
from masnn.attention.temporal import TemporalAttention

#: Gate kind -> the slot it occupies.
SLOT_OF = {"ta": "t", "ca": "c", "eca": "c", "simam": "c", "sa": "s"}
SLOTS = ("t", "c", "s")
LOCATIONS = ("conv_pre", "conv_post", "membrane", "residual")
#: Locations each slot may take through ``locations=`` (``residual`` only via create_attn).
SLOT_LOCATIONS = {
    "t": ("conv_pre", "conv_post"),
    "c": ("conv_pre", "conv_post", "membrane"),
    "s": ("conv_pre", "conv_post", "membrane"),
}


@dataclass(frozen=True)
class AttnSpec:
    """A registered attention name: its gate kinds in application order."""

    kinds: tuple[str, ...]

    @property
    def slots(self) -> tuple[str, ...]:
        return tuple(SLOT_OF[k] for k in self.kinds)


ATTENTION: Registry[AttnSpec] = Registry("attention")
for _name, _kinds in {
    "none": (),
    "ta": ("ta",),
    "ca": ("ca",),
    "sa": ("sa",),
    "tca": ("ta", "ca"),
    "tsa": ("ta", "sa"),
    "csa": ("ca", "sa"),
    "tcsa": ("ta", "ca", "sa"),
    "eca": ("eca",),
    "simam": ("simam",),
}.items():
    ATTENTION.add(_name, AttnSpec(_kinds))


@dataclass(frozen=True)
class Placement:
    """A placement preset: default locations, pooling and hyper-parameters."""

    locations: dict[str, str]
    per_step: bool
    reduction_t: int
    reduction_c: int
    kernel_size: int
    attn_relu: bool


PLACEMENTS: Registry[Placement] = Registry("attention placement")
PLACEMENTS.add(
    "paper",
    Placement({"t": "conv_post", "c": "membrane", "s": "membrane"}, True, 5, 16, 7, False),
)
PLACEMENTS.add(
    "code",
    Placement({"t": "conv_post", "c": "conv_post", "s": "conv_post"}, False, 5, 8, 3, True),
)


@dataclass(frozen=True)
class AttnConfig:
    """Resolved, validated attention hyper-parameters (no ``None`` left)."""

    spec: AttnSpec
    placement: Placement
    reduction_t: int
    reduction_c: int
    kernel_size: int
    attn_relu: bool


def attn_spec(name: str | None) -> AttnSpec:
    """Look a name up (``None`` = ``"none"``); unknown names raise listing the allowed ones."""
    if name is None:
        name = "none"
    if not isinstance(name, str):
        raise TypeError(f"attention name must be a str, got {type(name).__name__}")
    return ATTENTION.get(name.lower())


def name_of(kinds: tuple[str, ...]) -> str:
    """The registered name whose gates are exactly ``kinds`` (inverse of the table)."""
    for n in ATTENTION.names():
        if ATTENTION.get(n).kinds == tuple(kinds):
            return n
    raise ValueError(f"no registered attention has the gates {kinds}")


def resolve_config(
    name: str | None,
    placement: str = "paper",
    *,
    reduction_t: int | None = None,
    reduction_c: int | None = None,
    kernel_size: int | None = None,
    attn_relu: bool | None = None,
) -> AttnConfig:
    """Validate the kwargs every attention name accepts and fill ``None`` from the placement.

    ``attn_relu`` defaults to the placement's value when there is a gate, and to ``False``
    for ``"none"`` (the official code adds the ReLU only when attention is on).
    """
    spec = attn_spec(name)
    if not isinstance(placement, str):
        raise TypeError(f"placement must be a str, got {type(placement).__name__}")
    pl = PLACEMENTS.get(placement)
    r_t = pl.reduction_t if reduction_t is None else positive_int("reduction_t", reduction_t)
    r_c = pl.reduction_c if reduction_c is None else positive_int("reduction_c", reduction_c)
    k = pl.kernel_size if kernel_size is None else odd_kernel(kernel_size)
    if attn_relu is None:
        relu = pl.attn_relu and bool(spec.kinds)
    elif isinstance(attn_relu, bool):
        relu = attn_relu
    else:
        raise TypeError(f"attn_relu must be a bool or None, got {attn_relu!r}")
    return AttnConfig(spec, pl, r_t, r_c, k, relu)


def resolve_locations(
    name: str | None, placement: str = "paper", locations: dict[str, str] | None = None
) -> dict[str, str]:
    """Slot -> location for the gates of ``name``: the placement's defaults, then overrides.

    ``locations`` maps ``"t"``/``"c"``/``"s"`` to a location; entries for slots the name does
    not use are validated and ignored (one dict can configure every layer of a net).
    """
    spec = attn_spec(name)
    pl = PLACEMENTS.get(placement)
    out = {s: pl.locations[s] for s in spec.slots}
    for slot, loc in (locations or {}).items():
        if slot not in SLOT_LOCATIONS:
            raise ValueError(
                f"unknown attention slot {slot!r}{suggest(str(slot), SLOTS)}; "
                f"allowed: {list(SLOTS)}"
            )
        _check_location(slot, loc)
        if slot in out:
            out[slot] = loc
    return out


def _check_location(slot: str, loc: object) -> None:
    allowed = SLOT_LOCATIONS[slot]
    if loc not in allowed:
        extra = " (TA needs the whole window; it cannot gate an integrated membrane)"
        raise ValueError(
            f"unknown location {loc!r} for slot {slot!r}{suggest(str(loc), allowed)}; "
            f"allowed: {list(allowed)}" + (extra if slot == "t" and loc == "membrane" else "")
        )


def _gate(kind: str, channels: int, timesteps: int, cfg: AttnConfig, per_step: bool) -> nn.Module:
    """Build one gate: the one place each kind is constructed."""
    if kind == "ta":
        return TemporalAttention(timesteps, cfg.reduction_t)
    if kind == "ca":
        return ChannelAttention(channels, cfg.reduction_c, per_step=per_step)
    if kind == "eca":
        return EfficientChannelAttention(channels, per_step=per_step)
    if kind == "simam":
        return SimAM(channels, per_step=per_step)
    if kind == "sa":
        return SpatialAttention(cfg.kernel_size, per_step=per_step)
    raise ValueError(f"unknown gate kind {kind!r}; allowed: {sorted(SLOT_OF)}")


def _sequence_module(
    kinds: list[str], channels: int, timesteps: int, cfg: AttnConfig, per_step: bool, relu: bool
) -> MultiDimAttention | None:
    if not kinds and not relu:
        return None
    gates = {SLOT_OF[k]: _gate(k, channels, timesteps, cfg, per_step) for k in kinds}
    return MultiDimAttention(gates.get("t"), gates.get("c"), gates.get("s"), relu=relu)


def _membrane_module(
    kinds: list[str], channels: int, timesteps: int, cfg: AttnConfig
) -> MembraneAttention | None:
    if not kinds:
        return None
    gates = {SLOT_OF[k]: _gate(k, channels, timesteps, cfg, True) for k in kinds}
    return MembraneAttention(gates.get("c"), gates.get("s"))


class PlacedAttention(nn.Module):
    """The gates of one attention name, split by location (for names spanning several).

    Attributes:
        conv_pre: sequence module on the layer's input spikes, or ``None``.
        conv_post: sequence module on the input current ``X`` (with the ReLU if on), or ``None``.
        membrane: per-step :class:`MembraneAttention` for the LIF loop, or ``None``.

    It has no forward of its own: a membrane gate runs inside the neuron loop, so only a
    spiking layer can apply all three. Use :class:`masnn.layers.AttnLIF` /
    :class:`masnn.layers.SpikingConvBlock`, or ``create_attn(..., location=...)``.
    """

    def __init__(
        self,
        conv_pre: nn.Module | None = None,
        conv_post: nn.Module | None = None,
        membrane: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv_pre, self.conv_post, self.membrane = conv_pre, conv_post, membrane

    def forward(self, x_seq: Tensor) -> Tensor:
        raise TypeError(
            "PlacedAttention spans several locations and cannot run on its own; use "
            "masnn.layers.AttnLIF / SpikingConvBlock, or create_attn(..., location=...)"
        )


def build_placed(
    name: str | None,
    channels: int,
    timesteps: int,
    placement: str = "paper",
    *,
    locations: dict[str, str] | None = None,
    reduction_t: int | None = None,
    reduction_c: int | None = None,
    kernel_size: int | None = None,
    attn_relu: bool | None = None,
) -> PlacedAttention:
    """Build every gate of ``name`` at its location (see :func:`resolve_locations`)."""
    positive_int("channels", channels)
    positive_int("timesteps", timesteps)
    cfg = resolve_config(
        name,
        placement,
        reduction_t=reduction_t,
        reduction_c=reduction_c,
        kernel_size=kernel_size,
        attn_relu=attn_relu,
    )
    where = resolve_locations(name, placement, locations)
    at = {loc: [k for k in cfg.spec.kinds if where[SLOT_OF[k]] == loc] for loc in LOCATIONS}
    per_step = cfg.placement.per_step
    return PlacedAttention(
        _sequence_module(at["conv_pre"], channels, timesteps, cfg, per_step, False),
        _sequence_module(at["conv_post"], channels, timesteps, cfg, per_step, cfg.attn_relu),
        _membrane_module(at["membrane"], channels, timesteps, cfg),
    )


def create_attn(
    name: str | None,
    channels: int,
    timesteps: int,
    placement: str = "paper",
    *,
    location: str | None = None,
    reduction_t: int | None = None,
    reduction_c: int | None = None,
    kernel_size: int | None = None,
    attn_relu: bool | None = None,
) -> nn.Module | None:
    """Build an attention module by name (``channels`` first, as in timm's ``create_attn``).

    Args:
        name: a name from ``ATTENTION`` (``None`` = ``"none"``).
        channels: ``C`` of the tensor the gates see (the conv's input channels at
            ``conv_pre``).
        timesteps: ``T`` (TA's MLP width; other gates ignore it).
        placement: ``"paper"`` (default) or ``"code"``: default locations, pooling and
            hyper-parameters (module docstring).
        location: put every gate of ``name`` at this location (``conv_pre``, ``conv_post``,
            ``membrane``, ``residual``); ``None`` = the placement's locations.
        reduction_t: TA's ``r_t``; ``None`` = the placement's.
        reduction_c: CA's ``r_c``; ``None`` = the placement's.
        kernel_size: SA's odd kernel; ``None`` = the placement's.
        attn_relu: ReLU after the sequence-level gates; ``None`` = the placement's (``False``
            for ``"none"``). Ignored at ``conv_pre`` and ``membrane``.

    Returns:
        * ``conv_pre`` / ``conv_post`` / ``residual``: a :class:`MultiDimAttention` sequence
          module ``(T, B, C, H, W) -> same``. At ``residual`` (spiking ResNet branch output
          after BN2, Att-Res-SNN-1) ``paper`` pools per step without ReLU and ``code`` pools
          over ``T`` and adds the ReLU, as the official ImageNet code.
        * ``membrane``: a :class:`MembraneAttention` whose forward gates one step
          ``(B, C, H, W)``; give it to ``LIF(membrane_gate=...)``.
        * ``location=None`` with gates at several locations (e.g. ``paper`` ``tcsa``): a
          :class:`PlacedAttention` holding one module per location.
        * ``None`` when nothing is built (``"none"`` without ReLU, or no gate at ``location``).

    Raises:
        ValueError: unknown name, placement or location (the message lists the allowed
            values), TA at ``membrane``/``residual``, or a bad hyper-parameter.

    Example:
        >>> import torch
        >>> ca = create_attn("ca", 16, 4, placement="code", location="conv_post")
        >>> ca(torch.rand(4, 2, 16, 5, 6)).shape
        torch.Size([4, 2, 16, 5, 6])
    """
    if location is None:
        placed = build_placed(
            name,
            channels,
            timesteps,
            placement,
            reduction_t=reduction_t,
            reduction_c=reduction_c,
            kernel_size=kernel_size,
            attn_relu=attn_relu,
        )
        parts = [m for m in (placed.conv_pre, placed.conv_post, placed.membrane) if m is not None]
        if len(parts) > 1:
            return placed
        return parts[0] if parts else None
    if location not in LOCATIONS:
        raise ValueError(
            f"unknown location {location!r}{suggest(str(location), LOCATIONS)}; "
            f"allowed: {list(LOCATIONS)}"
        )
    spec = attn_spec(name)
    if location == "residual":
        if "t" in spec.slots:
            raise ValueError(
                f"location 'residual' takes channel/spatial gates only (paper §2.2 drops TA "
                f"on ImageNet), got {name!r}; allowed: ['none', 'ca', 'sa', 'csa', 'eca', 'simam']"
            )
        location = "conv_post"  # same equations, on the residual branch's BN2 output
    locs = {s: location for s in spec.slots}
    for slot in spec.slots:
        _check_location(slot, location)
    placed = build_placed(
        name,
        channels,
        timesteps,
        placement,
        locations=locs,
        reduction_t=reduction_t,
        reduction_c=reduction_c,
        kernel_size=kernel_size,
        attn_relu=attn_relu,
    )
    return {"conv_pre": placed.conv_pre, "conv_post": placed.conv_post}.get(
        location, placed.membrane
    )


def list_attn(pattern: str = "*") -> list[str]:
    """Registered attention names matching ``pattern``."""
    return ATTENTION.names(pattern)
