"""Stage 3a: sequence layers: the fold module and the spiking blocks with attention.

Layering: :mod:`masnn.layers` builds on :mod:`masnn.attention` and :mod:`masnn.neurons`; the
fold helpers themselves live at the bottom, in :mod:`masnn.layout` (re-exported here).
"""

from __future__ import annotations

from masnn.layers.blocks import AttnLIF, SpikingConvBlock, SpikingLinearBlock
from masnn.layers.seq import SeqToBatch, fold_time, seq_apply, unfold_time

__all__ = ["AttnLIF", "SeqToBatch", "SpikingConvBlock", "SpikingLinearBlock", "fold_time"]
__all__ += ["seq_apply", "unfold_time"]
