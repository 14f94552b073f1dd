"""Training data: the registered dataset behind a config, an honest validation split, samples.

* The dataset comes from :data:`masnn.data.DATASETS` (``data.dataset``); nothing here knows a
  particular dataset. Its sources frame their own samples (:meth:`SampleSource.frames`), with
  the framing built here from the config: the frames a dataset produces are the frames
  training uses. A dataset that builds its own views (:class:`~masnn.data.ReadySplits`, e.g.
  ImageNet) is used as it returns them.
* The validation split is carved from the *training* split by whole groups, as the dataset
  declares them (users for DVS128 Gesture; blocks of consecutive walks within every subject
  for DVS128 Gait, whose subjects are the labels), seeded; the dataset's one-sentence
  statement of the split is printed with the run and saved in ``run.json``.
* Random training windows are drawn from ``numpy.random.default_rng([seed, epoch, index])``:
  reproducible, independent across DataLoader workers, and exactly resumable.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from masnn.data import (
    DATASETS,
    DataRequest,
    DatasetSplits,
    ReadySplits,
    SampleSource,
    SplitView,
    carve_validation,
    collate_time_major,
)
from masnn.data.registry import SPLIT_INFO_KEYS, resolve_options
from masnn.frames import FrameCfg, RandomShift
from masnn.train.config import DataCfg, given_options

DOCS_HINT = "see docs/data.md for where to get it and the expected layout"


@dataclass
class DataBundle:
    """Everything the trainer needs from the data side."""

    train: SplitView
    val: SplitView | None
    test: SplitView
    num_classes: int
    in_shape: tuple[int, int, int]  # (C, H, W) of one frame
    class_names: tuple[str, ...]
    root: Path
    split_info: dict[str, Any]


class FramedSamples(torch.utils.data.Dataset):
    """A subset of a dataset split; each sample framed by the split itself.

    Args:
        source: a :class:`~masnn.data.SampleSource` (it frames its samples).
        indices: the subset, as indices into ``source``.
        train: the random training view (else the evaluation view: ``clips`` test clips).
        seed: base seed of the per-sample random draws (``[seed, epoch, index]``).
        shift: the training view's random translation (:class:`~masnn.frames.RandomShift`,
            drawn after the window start from the same generator); ignored for evaluation.
    """

    def __init__(
        self,
        source: SampleSource,
        indices: np.ndarray,
        *,
        train: bool,
        seed: int,
        shift: int = 0,
    ) -> None:
        self.source = source
        self.indices = np.asarray(indices, np.int64)
        self.train = train
        self.seed = int(seed)
        self.epoch = 0
        self.labels = np.asarray(source.labels)[self.indices]
        self.augment = RandomShift(shift) if train and shift else None

    def set_epoch(self, epoch: int) -> None:
        """Select the random draws of ``epoch`` (call before iterating)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, i: int) -> tuple[Any, int]:
        idx = int(self.indices[i])
        if not self.train:
            return self.source.frames(idx, train=False), int(self.labels[i])
        rng = np.random.default_rng([self.seed, self.epoch, idx])
        x = self.source.frames(idx, train=True, rng=rng)
        if self.augment is not None:
            x = self.augment(x, rng)
        return x, int(self.labels[i])


def fingerprint(root: Path, max_hash_bytes: int = 1 << 20) -> dict[str, Any]:
    """A fingerprint of a dataset directory: every file's size, and a hash of the small ones
    (trial lists, label CSVs), plus one digest over all of it."""
    h = hashlib.sha256()
    n_files = total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            size = p.stat().st_size
            h.update(f"{rel}\0{size}\0".encode())
            if size <= max_hash_bytes and p.suffix in (".txt", ".csv", ".json"):
                h.update(hashlib.sha256(p.read_bytes()).digest())
            n_files += 1
            total += size
    return {"root": str(root), "files": n_files, "bytes": total, "sha256": h.hexdigest()}


def frame_cfg(cfg: DataCfg) -> FrameCfg:
    """The framing of every sample: MA-SNN fixed windows (``test_clips`` at evaluation)."""
    return FrameCfg(
        mode="window",
        timesteps=cfg.timesteps,
        dt_ms=cfg.dt_ms,
        ds=cfg.ds,
        clips=cfg.test_clips,
        short=cfg.short,
    )


def data_request(cfg: DataCfg, *, seed: int = 0, progress: bool = True) -> DataRequest:
    """The request for the registered dataset ``cfg.dataset`` (its options resolved, see
    :func:`given_options`)."""
    entry = DATASETS.get(cfg.dataset)
    root = None
    if cfg.root is not None:
        root = Path(cfg.root).expanduser()
        if entry.needs_root and not root.exists():
            raise FileNotFoundError(f"data.root={str(root)!r} does not exist ({DOCS_HINT})")
    elif entry.needs_root:
        raise ValueError(f"data.root is required for data.dataset={cfg.dataset!r} ({DOCS_HINT})")
    return DataRequest(
        frames=frame_cfg(cfg),
        root=root,
        cache_dir=cfg.cache_dir,
        progress=progress,
        options=resolve_options(entry, given_options(cfg)),
        val_fraction=cfg.val_fraction,
        seed=seed,
    )


def build_data(cfg: DataCfg, seed: int, *, progress: bool = True) -> DataBundle:
    """Open the registered dataset of ``cfg`` and build the train/val/test subsets.

    Sample sources (:class:`~masnn.data.DatasetSplits`) are framed here and split by whole
    groups; ready views (:class:`~masnn.data.ReadySplits`) are used as the dataset built them.
    """
    entry = DATASETS.get(cfg.dataset)
    splits = entry.open(data_request(cfg, seed=seed, progress=progress))
    if isinstance(splits, ReadySplits):
        return _ready_bundle(cfg.dataset, splits)
    if not isinstance(splits, DatasetSplits):
        raise TypeError(
            f"dataset {cfg.dataset!r}: its opener returned {type(splits).__name__}; "
            "expected DatasetSplits or ReadySplits"
        )
    val_plan = splits.validation
    if len(val_plan.groups) != len(splits.train):
        raise ValueError(
            f"dataset {cfg.dataset!r}: {len(val_plan.groups)} validation groups for "
            f"{len(splits.train)} training samples"
        )
    tr_idx, val_idx, held = carve_validation(
        val_plan.groups, cfg.val_fraction, seed, val_plan.strata
    )
    train = FramedSamples(splits.train, tr_idx, train=True, seed=seed, shift=cfg.shift)
    val = FramedSamples(splits.train, val_idx, train=False, seed=seed) if len(val_idx) else None
    test = FramedSamples(splits.test, np.arange(len(splits.test)), train=False, seed=seed)
    _, c, h, w = splits.train.frame_shape()
    if cfg.shift >= min(h, w):
        raise ValueError(
            f"data.shift={cfg.shift} is not smaller than the framed clip's {h}x{w} pixels "
            f"(data.ds={cfg.ds}); allowed: 0..{min(h, w) - 1}"
        )
    return DataBundle(
        train=train,
        val=val,
        test=test,
        num_classes=int(splits.train.num_classes),
        in_shape=(c, h, w),
        class_names=tuple(splits.train.class_names),
        root=Path(splits.root),
        split_info={
            "train_samples": len(train),
            "val_samples": 0 if val is None else len(val),
            "test_samples": len(test),
            "val_groups": held,
            "val_split_by": val_plan.unit,
            "val_note": val_plan.note if val is not None else "no validation split",
        },
    )


def _ready_bundle(name: str, splits: ReadySplits) -> DataBundle:
    """A dataset's own views as a :class:`DataBundle` (its split info checked for the keys
    every run reports)."""
    missing = [k for k in SPLIT_INFO_KEYS if k not in splits.split_info]
    if missing:
        raise ValueError(
            f"dataset {name!r}: split_info lacks {missing}; every dataset reports "
            f"{list(SPLIT_INFO_KEYS)}"
        )
    return DataBundle(
        train=splits.train,
        val=splits.val,
        test=splits.test,
        num_classes=int(splits.num_classes),
        in_shape=splits.in_shape,
        class_names=tuple(splits.class_names),
        root=Path(splits.root),
        split_info=dict(splits.split_info),
    )


def make_loader(ds: Any, batches: list[list[int]], workers: int) -> torch.utils.data.DataLoader:
    """A DataLoader over explicit index batches, collated time-major.

    It draws from its own generator, never from torch's global one: creating an iterator
    would otherwise consume a global random number and shift every later dropout mask, which
    breaks exact resume.
    """
    return torch.utils.data.DataLoader(
        ds,
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=collate_time_major,
        pin_memory=torch.cuda.is_available(),  # page-locked host batches: async H2D copies
        generator=torch.Generator().manual_seed(0),
    )
