"""Stage 2: events -> dense ``(T, P, H, W)`` float32 frames (numpy only).

See :mod:`masnn.frames.integrate` for the bin definitions and the layout note.
"""

from masnn.frames.augment import RandomShift
from masnn.frames.integrate import (
    MODES,
    REMAINDERS,
    SHORT_POLICIES,
    FrameCfg,
    ToFrames,
    integrate_split,
    integrate_window,
    to_frames,
    window_starts,
)

__all__ = [
    "MODES",
    "REMAINDERS",
    "SHORT_POLICIES",
    "FrameCfg",
    "RandomShift",
    "ToFrames",
    "integrate_split",
    "integrate_window",
    "to_frames",
    "window_starts",
]
