"""Offline synthetic data: a DVS128-like camera simulator and a DVS128-Gesture-shaped set.

numpy only. The generated set uses the IBM release layout (AEDAT 3.1 files, label CSVs,
train/test trial lists) so it goes through the same reader and dataset class as the real
data. See ``docs/data.md`` ("Synthetic gesture set").
"""

from __future__ import annotations

from masnn.synth.dataset import (
    GENERATOR_VERSION,
    LIGHTINGS,
    PRESETS,
    SynthGestureCfg,
    default_data_dir,
    ensure_synth_gesture,
    generate_synth_gesture,
    manifest_ok,
    synth_config,
)
from masnn.synth.dvs import Camera, CameraCfg
from masnn.synth.gesture import GESTURE_CLASSES, TIME_PAIRS

__all__ = [
    "GENERATOR_VERSION",
    "GESTURE_CLASSES",
    "LIGHTINGS",
    "PRESETS",
    "TIME_PAIRS",
    "Camera",
    "CameraCfg",
    "SynthGestureCfg",
    "default_data_dir",
    "ensure_synth_gesture",
    "generate_synth_gesture",
    "manifest_ok",
    "synth_config",
]
