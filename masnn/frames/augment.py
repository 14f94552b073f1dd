"""Training-time augmentation of framed clips (numpy only, per-sample generator).

MA-SNN's recipe has one augmentation, the random temporal crop (the window start, drawn by
:func:`masnn.frames.to_frames` at training time); it has no spatial augmentation. The spatial
translation here is an opt-in recipe choice (``data.shift``), drawn from the same per-sample
generator right after the window start, so a run stays reproducible and exactly resumable.

Horizontal flips are deliberately absent: DVS128 Gesture has left/right class pairs (e.g.
"right hand wave" / "left hand wave"), so a flip would change the label.
"""

from __future__ import annotations

import numpy as np


class RandomShift:
    """Translate a clip by a random integer offset in ``[-max_shift, max_shift]`` per axis.

    One offset ``(dy, dx)`` per clip (every time step and polarity moves together, as a camera
    displacement would); pixels shifted in from outside are zero (no event), pixels shifted out
    are dropped.

    Args:
        max_shift: the largest displacement in pixels of the *framed* (downsampled) clip; ``0``
            returns the clip unchanged and draws nothing.
    """

    def __init__(self, max_shift: int) -> None:
        if isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer)):
            raise TypeError(f"max_shift must be an int, got {max_shift!r}")
        if max_shift < 0:
            raise ValueError(f"max_shift must be >= 0, got {max_shift}")
        self.max_shift = int(max_shift)

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``frames`` ``(..., H, W)`` shifted by one draw of ``rng`` (same shape and dtype)."""
        s = self.max_shift
        if s == 0:
            return frames
        h, w = frames.shape[-2:]
        if s >= min(h, w):
            raise ValueError(
                f"data.shift={s} is not smaller than the framed clip's {h}x{w} pixels; "
                f"allowed: 0..{min(h, w) - 1}"
            )
        dy, dx = (int(v) for v in rng.integers(-s, s + 1, size=2))
        out = np.zeros_like(frames)
        out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = frames[
            ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
        ]
        return out

    def __repr__(self) -> str:
        return f"RandomShift({self.max_shift})"
