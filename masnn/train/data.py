"""Training data: the dataset behind a config, an honest validation split, framed samples.

* The offline default (``synth_gesture``) is generated on first use into the default data dir.
* The validation split is carved from the *training* set by group (``subject`` = user for DVS128
  Gesture, one recording for DVS128 Gait, whose subjects are the labels), seeded; carving per
  sample would leak users and lighting into validation.
* Random training windows are drawn from ``numpy.random.default_rng([seed, epoch, index])``:
  reproducible, independent across DataLoader workers, and exactly resumable.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from masnn.data import DVS128Gait, DVS128Gesture, collate_time_major
from masnn.events.schema import SensorSize
from masnn.frames import FrameCfg, to_frames
from masnn.train.config import DataCfg

DOCS_HINT = "see docs/data.md for where to get it and the expected layout"


@dataclass
class DataBundle:
    """Everything the trainer needs from the data side."""

    train: FramedSamples
    val: FramedSamples | None
    test: FramedSamples
    num_classes: int
    in_shape: tuple[int, int, int]  # (C, H, W) of one frame
    class_names: tuple[str, ...]
    root: Path
    split_info: dict[str, Any]


def _class_names(src: Any) -> tuple[str, ...]:
    """Gesture names, gait subject folders, else the label indices as text."""
    names = getattr(src, "classes", None) or getattr(src, "subjects", None)
    n = int(src.num_classes)
    if names is None or len(names) != n:
        return tuple(str(i) for i in range(n))
    return tuple(str(v) for v in names)


class FramedSamples(torch.utils.data.Dataset):
    """A subset of an event dataset, framed on access per :class:`FrameCfg`.

    Args:
        source: a dataset with ``events(i)``, ``labels`` and ``sensor``.
        indices: the subset, as indices into ``source``.
        frame_cfg: framing (``window`` mode draws a random start when ``train``).
        train: random window start (else ``frame_cfg.clips`` evenly spaced clips).
        seed: base seed of the per-sample window draws.
    """

    def __init__(
        self,
        source: Any,
        indices: np.ndarray,
        frame_cfg: FrameCfg,
        *,
        train: bool,
        seed: int,
    ) -> None:
        self.source = source
        self.indices = np.asarray(indices, np.int64)
        self.frame_cfg = frame_cfg
        self.train = train
        self.seed = int(seed)
        self.epoch = 0
        self.labels = np.asarray(source.labels)[self.indices]

    def set_epoch(self, epoch: int) -> None:
        """Select the window draws of ``epoch`` (call before iterating)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        idx = int(self.indices[i])
        rng = np.random.default_rng([self.seed, self.epoch, idx]) if self.train else None
        frames = to_frames(
            self.source.events(idx), self.source.sensor, self.frame_cfg, train=self.train, rng=rng
        )
        return frames, int(self.labels[i])


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


def _groups(source: Any, dataset: str) -> tuple[list[str], str]:
    """Per-sample validation groups and what a group is (``"subject"`` / ``"recording"``)."""
    if dataset == "dvs128_gait":
        return list(source.trials), "recording"  # subjects are the labels: hold out recordings
    return [t.split("_")[0] for t in source.trials], "subject"  # userNN_<light> -> userNN


def carve_validation(
    groups: list[str], fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Split sample indices into (train, val) by whole groups; returns the held-out groups."""
    idx = np.arange(len(groups))
    if fraction <= 0:
        return idx, idx[:0], []
    uniq = sorted(set(groups))
    if len(uniq) < 2:
        raise ValueError(
            f"cannot carve a validation split: the training set has {len(uniq)} group(s); "
            "set data.val_fraction=0"
        )
    n_val = min(len(uniq) - 1, max(1, round(fraction * len(uniq))))
    perm = np.random.default_rng(seed).permutation(len(uniq))
    held = sorted(uniq[i] for i in perm[:n_val])
    mask = np.isin(np.asarray(groups), held)
    return idx[~mask], idx[mask], held


def build_data(cfg: DataCfg, seed: int, *, progress: bool = True) -> DataBundle:
    """Open (or generate) the dataset of ``cfg`` and build train/val/test framed subsets."""
    if cfg.dataset == "synth_gesture":
        from masnn.synth import ensure_synth_gesture

        root = ensure_synth_gesture(cfg.root, size=cfg.synth_size, seed=cfg.synth_seed)
    else:
        root = Path(cfg.root or "").expanduser()
        if not root.exists():
            raise FileNotFoundError(f"data.root={str(root)!r} does not exist ({DOCS_HINT})")
    if cfg.dataset == "imagenet":  # HOOK(issue 18): becomes a DATASETS registration
        return _imagenet_bundle(cfg, root, seed)
    common: dict[str, Any] = {"cache_dir": cfg.cache_dir, "progress": progress}
    if cfg.dataset == "dvs128_gait":
        train_src: Any = DVS128Gait(root, "train", variant=cfg.gait_variant, **common)
        test_src: Any = DVS128Gait(root, "test", variant=cfg.gait_variant, **common)
    else:
        train_src = DVS128Gesture(root, "train", **common)
        test_src = DVS128Gesture(root, "test", **common)
    sensor: SensorSize = train_src.sensor
    train_cfg = FrameCfg(
        mode="window", timesteps=cfg.timesteps, dt_ms=cfg.dt_ms, ds=cfg.ds, short=cfg.short
    )
    test_cfg = replace(train_cfg, clips=cfg.test_clips)
    groups, group_unit = _groups(train_src, cfg.dataset)
    tr_idx, val_idx, held = carve_validation(groups, cfg.val_fraction, seed)
    train = FramedSamples(train_src, tr_idx, train_cfg, train=True, seed=seed)
    val = (
        FramedSamples(train_src, val_idx, test_cfg, train=False, seed=seed)
        if len(val_idx)
        else None
    )
    test = FramedSamples(test_src, np.arange(len(test_src)), test_cfg, train=False, seed=seed)
    _, c, h, w = train_cfg.frame_shape(sensor)
    return DataBundle(
        train=train,
        val=val,
        test=test,
        num_classes=int(train_src.num_classes),
        in_shape=(c, h, w),
        class_names=_class_names(train_src),
        root=Path(root),
        split_info={
            "train_samples": len(train),
            "val_samples": 0 if val is None else len(val),
            "test_samples": len(test),
            "val_groups": held,
            "val_split_by": group_unit,
        },
    )


def _imagenet_bundle(cfg: DataCfg, root: Path, seed: int) -> DataBundle:
    """HOOK(issue 18): ``masnn.data.imagenet.build_imagenet`` as a :class:`DataBundle`."""
    from masnn.data.imagenet import build_imagenet

    s = build_imagenet(
        root,
        timesteps=cfg.timesteps,
        image_size=cfg.image_size,
        crop=cfg.crop,
        resize=cfg.resize,
        val_fraction=cfg.val_fraction,
        seed=seed,
    )
    return DataBundle(
        train=s.train,  # type: ignore[arg-type]
        val=s.val,  # type: ignore[arg-type]
        test=s.test,  # type: ignore[arg-type]
        num_classes=s.num_classes,
        in_shape=s.in_shape,
        class_names=s.class_names,
        root=root,
        split_info=s.split_info,
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
