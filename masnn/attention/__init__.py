"""Stage 3b: plug-in attention gates (TA, CA, SA, ECA, SimAM), their compositions and placements.

Paper: `Attention Spiking Neural Networks` - https://arxiv.org/abs/2209.13929

Every sequence-level module maps ``(T, B, C, H, W) -> same shape``; the ``membrane``
location's gate maps one step ``(B, C, H, W) -> same`` inside the LIF loop. Settings are an
:class:`AttnCfg`, resolved once into an :class:`AttnPlan` that builds the modules of a
location; gate kinds live in the :data:`GATES` registry (:func:`register_gate`). See
``docs/placements.md`` and ``docs/architecture.md``.
"""

from masnn.attention.channel import ChannelAttention, EfficientChannelAttention, SimAM
from masnn.attention.composite import MembraneAttention, MultiDimAttention
from masnn.attention.factory import PlacedAttention, create_attn, list_attn, register_attn
from masnn.attention.gates import (
    ATTENTION,
    GATES,
    GateHyper,
    GateKind,
    gate_of,
    register_gate,
    unregister_gate,
)
from masnn.attention.plan import LOCATIONS, PLACEMENTS, AttnCfg, AttnPlan
from masnn.attention.spatial import SpatialAttention
from masnn.attention.temporal import TemporalAttention  # noqa: I001  (registers "ta" first)

__all__ = [
    "ATTENTION",
    "GATES",
    "LOCATIONS",
    "PLACEMENTS",
    "AttnCfg",
    "AttnPlan",
    "ChannelAttention",
    "EfficientChannelAttention",
    "GateHyper",
    "GateKind",
    "MembraneAttention",
    "MultiDimAttention",
    "PlacedAttention",
    "SimAM",
    "SpatialAttention",
    "TemporalAttention",
    "create_attn",
    "gate_of",
    "list_attn",
    "register_attn",
    "register_gate",
    "unregister_gate",
]
