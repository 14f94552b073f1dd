"""Stage 2b: event datasets (DVS128 Gesture, DVS128 Gait), their cache, and batch collation.

Importing this package does not import torch; :func:`collate_time_major` does, when called.
"""

from masnn.data.cache import default_cache_root, load_or_build
from masnn.data.collate import collate_time_major
from masnn.data.gait import DVS128Gait
from masnn.data.gesture import DVS128Gesture, detect_layout, read_labels_csv, read_trial_list

__all__ = [
    "DVS128Gait",
    "DVS128Gesture",
    "collate_time_major",
    "default_cache_root",
    "detect_layout",
    "load_or_build",
    "read_labels_csv",
    "read_trial_list",
]
