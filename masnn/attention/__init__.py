"""Stage 3b: plug-in attention gates (TA, CA, SA, ECA, SimAM), their compositions and placements.

Paper: `Attention Spiking Neural Networks` - https://arxiv.org/abs/2209.13929

Every sequence-level module maps ``(T, B, C, H, W) -> same shape``; the ``membrane``
location's gate maps one step ``(B, C, H, W) -> same`` inside the LIF loop. Build them with
:func:`create_attn`; see ``docs/placements.md`` for the equations of each location.
"""

from masnn.attention.channel import ChannelAttention, EfficientChannelAttention, SimAM
from masnn.attention.composite import MembraneAttention, MultiDimAttention
from masnn.attention.factory import (
    ATTENTION,
    LOCATIONS,
    PLACEMENTS,
    PlacedAttention,
    build_placed,
    create_attn,
    list_attn,
    resolve_config,
    resolve_locations,
)
from masnn.attention.spatial import SpatialAttention
from masnn.attention.temporal import TemporalAttention

__all__ = [
    "ATTENTION",
    "LOCATIONS",
    "PLACEMENTS",
    "ChannelAttention",
    "EfficientChannelAttention",
    "MembraneAttention",
    "MultiDimAttention",
    "PlacedAttention",
    "SimAM",
    "SpatialAttention",
    "TemporalAttention",
    "build_placed",
    "create_attn",
    "list_attn",
    "resolve_config",
    "resolve_locations",
]
