"""Stage 2b: datasets, their registry (:data:`DATASETS`), cache, and batch collation.

A new dataset is one file with one ``@register_dataset("name")`` opener, imported below
(event datasets return :class:`DatasetSplits` of sample sources; a dataset with its own views,
such as ImageNet, returns :class:`ReadySplits`).
Importing this package does not import torch; :func:`collate_time_major` does, when called.
"""

from masnn.data import gait, gesture, imagenet  # noqa: F401  (registers the datasets)
from masnn.data.base import EventDataset
from masnn.data.cache import default_cache_root, load_or_build
from masnn.data.collate import collate_time_major
from masnn.data.gait import DVS128Gait
from masnn.data.gesture import DVS128Gesture, detect_layout, read_labels_csv, read_trial_list
from masnn.data.registry import (
    DATASETS,
    DataRequest,
    DatasetEntry,
    DatasetSplits,
    ReadySplits,
    SampleSource,
    SplitView,
    ValidationGroups,
    carve_validation,
    register_dataset,
)

__all__ = [
    "DATASETS",
    "DVS128Gait",
    "DVS128Gesture",
    "DataRequest",
    "DatasetEntry",
    "DatasetSplits",
    "EventDataset",
    "ReadySplits",
    "SampleSource",
    "SplitView",
    "ValidationGroups",
    "carve_validation",
    "collate_time_major",
    "default_cache_root",
    "detect_layout",
    "load_or_build",
    "read_labels_csv",
    "read_trial_list",
    "register_dataset",
]
