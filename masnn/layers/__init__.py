"""Stage 3a: sequence layers: the fold site and the spiking blocks with attention.

The blocks are loaded lazily (PEP 562) because :mod:`masnn.attention` uses the fold site in
:mod:`masnn.layers.seq`, and the blocks use :mod:`masnn.attention`; eager imports both ways
would be circular.
"""

from __future__ import annotations

from typing import Any

from masnn.layers.seq import SeqToBatch, fold_time, seq_apply, unfold_time

_BLOCKS = ("AttnLIF", "SpikingConvBlock", "SpikingLinearBlock")

__all__ = ["AttnLIF", "SeqToBatch", "SpikingConvBlock", "SpikingLinearBlock", "fold_time"]
__all__ += ["seq_apply", "unfold_time"]


def __getattr__(name: str) -> Any:
    if name in _BLOCKS:
        from masnn.layers import blocks

        return getattr(blocks, name)
    raise AttributeError(f"module 'masnn.layers' has no attribute {name!r}")
