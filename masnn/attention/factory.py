"""The attention names and :func:`create_attn`, the one-call builder of a gate module.

Paper: `Attention Spiking Neural Networks` (§3, Tables 4-6) - https://arxiv.org/abs/2209.13929

Names (``ATTENTION``), each a tuple of gate kinds applied in T -> C -> S order. The one-gate
names (``ta``, ``ca``, ``sa``, ``eca``, ``simam``) come with their gate's registration
(:func:`masnn.attention.gates.register_gate`); the compositions are registered here:

=========  =====================  ==========================================
name       gates                  notes
=========  =====================  ==========================================
``none``   -                      no gate (``relu=True``: ReLU-only control)
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

Locations and placements: :mod:`masnn.attention.plan`.
"""

from __future__ import annotations

from torch import Tensor, nn

from masnn._registry import suggest
from masnn.attention.gates import ATTENTION, AttnSpec
from masnn.attention.plan import LOCATIONS, AttnCfg

ATTENTION.add("none", AttnSpec(()))
for _name, _kinds in {
    "tca": ("ta", "ca"),
    "tsa": ("ta", "sa"),
    "csa": ("ca", "sa"),
    "tcsa": ("ta", "ca", "sa"),
}.items():
    ATTENTION.add(_name, AttnSpec(_kinds))


def register_attn(name: str, kinds: tuple[str, ...]) -> None:
    """Register a composition of registered gate kinds under ``name`` (T -> C -> S order)."""
    ATTENTION.add(name, AttnSpec(tuple(kinds)))


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

    A convenience over ``AttnCfg(...).resolve().build(location, channels, timesteps)``.

    Args:
        name: a name from ``ATTENTION`` (``None`` = ``"none"``).
        channels: ``C`` of the tensor the gates see (the conv's input channels at
            ``conv_pre``).
        timesteps: ``T`` (TA's MLP width; other gates ignore it).
        placement: ``"paper"`` (default) or ``"code"`` (:data:`~masnn.attention.PLACEMENTS`).
        location: put every gate of ``name`` at this location (``conv_pre``, ``conv_post``,
            ``membrane``, ``residual``); ``None`` = the placement's locations.
        reduction_t: TA's ``r_t``; ``None`` = the placement's.
        reduction_c: CA's ``r_c``; ``None`` = the placement's.
        kernel_size: SA's odd kernel; ``None`` = the placement's.
        attn_relu: ReLU after the ``conv_post``/``residual`` gates; ``None`` = the
            placement's (``False`` for ``"none"``).

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
    if location is not None and location not in LOCATIONS:
        raise ValueError(
            f"unknown location {location!r}{suggest(str(location), LOCATIONS)}; "
            f"allowed: {list(LOCATIONS)}"
        )
    cfg = AttnCfg(
        "none" if name is None else name,
        placement,
        reduction_t=reduction_t,
        reduction_c=reduction_c,
        kernel_size=kernel_size,
        relu=attn_relu,
    )
    if location == "residual":
        return cfg.resolve().build("residual", channels, timesteps)
    if location is not None:
        cfg = AttnCfg(**(cfg.to_dict() | {"locations": dict.fromkeys(cfg.spec.slots, location)}))
    plan = cfg.resolve()
    parts = {loc: plan.build(loc, channels, timesteps) for loc in LOCATIONS[:3]}
    if location is not None:
        return parts[location]
    built = [m for m in parts.values() if m is not None]
    if len(built) > 1:
        return PlacedAttention(parts["conv_pre"], parts["conv_post"], parts["membrane"])
    return built[0] if built else None


def list_attn(pattern: str = "*") -> list[str]:
    """Registered attention names matching ``pattern``."""
    return ATTENTION.names(pattern)
