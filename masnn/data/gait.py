"""DVS128 Gait (Wang et al., EV-Gait CVPR 2019 / TPAMI 2021): 20 subjects, Day and Night sets.

The public text release is ``[origin/]{train,test}/<subject>/*.txt``, one ``t x y p`` event per
line (``t`` in µs). The label is the subject's rank among the sorted subject folder names
(``0..19``). Files are parsed with the vectorised :func:`masnn.events.textio.read_event_text`
once, into the cache (:mod:`masnn.data.cache`).

Time-unit check: the recordings last about 4 s, so every sample must last between 0.5 s and
30 s when ``t`` is read as µs; otherwise a :class:`~masnn.errors.DataFormatError` names the file
(a different time unit, or a damaged file).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from masnn.data.base import EventDataset
from masnn.data.cache import load_or_build
from masnn.data.checks import check_events
from masnn.data.registry import DataRequest, DatasetSplits, ValidationGroups, register_dataset
from masnn.data.util import ordered_map, progress_bar
from masnn.errors import DataFormatError
from masnn.events.schema import DVS128
from masnn.events.textio import read_event_text
from masnn.frames.integrate import FrameCfg

SPLITS = ("train", "test")
VARIANTS = ("day", "night")
NUM_CLASSES = 20
DURATION_RANGE_S = (0.5, 30.0)


def find_split_root(root: str | os.PathLike[str], variant: str) -> Path:
    """Directory holding ``train/`` and ``test/`` for ``variant`` under ``root``.

    Accepted: ``root/{train,test}``, ``root/origin/{train,test}``, or a child of ``root`` whose
    name contains the variant (``DVS128-Gait-Day/[origin/]{train,test}``).
    """
    base = Path(root).expanduser()
    cands = [base, base / "origin"]
    if base.is_dir():
        for child in sorted(base.iterdir()):
            if child.is_dir() and variant in child.name.lower():
                cands += [child, child / "origin"]
    for c in cands:
        if (c / "train").is_dir() or (c / "test").is_dir():
            return c
    raise DataFormatError(
        base,
        f"no DVS128 Gait ({variant}) data found: expected [origin/]{{train,test}}/<subject>/*.txt "
        f"under it or under a sub-directory named like 'DVS128-Gait-{variant.capitalize()}'",
    )


class DVS128Gait(EventDataset):
    """DVS128 Gait samples as ``(events, label)`` (or ``(frames, label)`` with ``frame_cfg``).

    Args:
        root: directory of the text release (see :func:`find_split_root`).
        split: ``"train"`` or ``"test"``.
        variant: ``"day"`` or ``"night"``: selects the sub-directory when ``root`` holds both,
            and is part of the cache key.
        transform: applied to each sample's events (or frames).
        cache_dir: cache root (default ``$MASNN_CACHE`` or the XDG cache).
        frame_cfg: optional framing, applied per access (random start for ``train``).
        num_workers: parser threads when building the cache.
        progress: show a progress bar while building the cache.
        check_duration: enforce the 0.5-30 s sample-duration check.
        seed: seed for random window starts.
    """

    sensor = DVS128
    num_classes = NUM_CLASSES

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: Literal["train", "test"] = "train",
        variant: Literal["day", "night"] = "day",
        transform: Callable[[np.ndarray], Any] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        frame_cfg: FrameCfg | None = None,
        num_workers: int | None = None,
        progress: bool = True,
        check_duration: bool = True,
        seed: int | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self._init_framing(frame_cfg, seed)
        self.split, self.variant, self.transform = split, variant, transform
        base = find_split_root(root, variant)
        self.data_dir = base
        subjects = sorted(
            {
                p.name
                for s in SPLITS
                if (base / s).is_dir()
                for p in (base / s).iterdir()
                if p.is_dir()
            },
            key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n),
        )
        if len(subjects) > NUM_CLASSES:
            raise DataFormatError(
                base, f"{len(subjects)} subject folders, expected at most {NUM_CLASSES}"
            )
        self.subjects = subjects
        split_dir = base / split
        if not split_dir.is_dir():
            raise DataFormatError(split_dir, "missing split directory")
        files, labels = [], []
        for label, subj in enumerate(subjects):
            for f in sorted((split_dir / subj).glob("*.txt")):
                files.append(f)
                labels.append(label)
        if not files:
            raise DataFormatError(split_dir, "no <subject>/*.txt event files")
        #: one recording per file: the unit for carving a validation split
        self.trials = [f"{f.parent.name}/{f.stem}" for f in files]
        parts = {
            "dataset": "dvs128_gait",
            "variant": variant,
            "split": split,
            # sizes + mtimes (thousands of small files; hashing them would cost a full read)
            "files": [
                [os.path.relpath(f, base), f.stat().st_size, f.stat().st_mtime_ns] for f in files
            ],
            "subjects": subjects,
        }
        workers = num_workers if num_workers is not None else min(8, os.cpu_count() or 1)

        def build(tmp: Path) -> dict[str, np.ndarray]:
            bar = progress_bar(len(files), f"DVS128 Gait {variant} {split}", progress)
            chunks, offsets, durations = [], [0], []
            try:
                for k, ev in enumerate(ordered_map(read_event_text, files, workers)):
                    check_events(files[k], ev, DVS128)
                    chunks.append(ev)
                    offsets.append(offsets[-1] + ev.size)
                    durations.append(int(ev["t"].max() - ev["t"].min()) if ev.size else 0)
                    bar.update(1)
            finally:
                bar.close()
            return {
                "events": np.concatenate(chunks),
                "offsets": np.asarray(offsets, np.int64),
                "labels": np.asarray(labels, np.int64),
                "durations_us": np.asarray(durations, np.int64),
            }

        self.cache_path, arrays = load_or_build(
            f"dvs128_gait_{variant}-{split}", parts, build, cache_dir
        )
        self._events, self._offsets = arrays["events"], arrays["offsets"]
        self._labels, self.durations_us = arrays["labels"], arrays["durations_us"]
        self.files = files
        if check_duration:
            self._check_durations()

    def _check_durations(self) -> None:
        lo, hi = (int(v * 1e6) for v in DURATION_RANGE_S)
        d = np.asarray(self.durations_us)
        bad = np.flatnonzero((d < lo) | (d > hi))
        if bad.size:
            i = int(bad[0])
            raise DataFormatError(
                self.files[i],
                f"sample lasts {d[i] / 1e6:.6g} s reading t as microseconds; DVS128 Gait samples "
                f"last {DURATION_RANGE_S[0]}-{DURATION_RANGE_S[1]} s ({bad.size} of {d.size} files "
                "outside). Wrong time unit or damaged file? (check_duration=False to skip)",
            )

    @property
    def class_names(self) -> tuple[str, ...]:
        """The subject folder names, in label order."""
        if len(self.subjects) == self.num_classes:
            return tuple(self.subjects)
        return super().class_names

    def events(self, index: int) -> np.ndarray:
        """Raw events of sample ``index``."""
        a, b = int(self._offsets[index]), int(self._offsets[index + 1])
        return np.array(self._events[a:b])  # a writable copy, never the cache itself


#: Contiguous blocks per subject that validation chooses from (see :func:`walk_blocks`).
WALK_BLOCKS = 5


def _natural(name: str) -> tuple[Any, ...]:
    """Sort key that orders ``walk2`` before ``walk10``."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def walk_blocks(trials: Sequence[str], blocks: int = WALK_BLOCKS) -> tuple[list[str], list[str]]:
    """Validation groups of a Gait split: per subject, its walks in file-name order cut into
    ``blocks`` contiguous blocks (fewer when a subject has fewer walks).

    The release names neither session nor walk order beyond the file names, and the subjects
    are the labels, so the least leaky unit it allows is a run of consecutive walks of one
    subject; validation takes whole blocks within every subject (the subject is the stratum).

    Args:
        trials: ``"<subject>/<file stem>"`` per sample.
        blocks: blocks per subject.

    Returns:
        ``(groups, strata)``: ``"<subject>/block<k>"`` and ``"<subject>"`` per sample.

    Example:
        >>> walk_blocks(["1/w1", "1/w2", "1/w10", "1/w3", "2/a"], blocks=2)[0]
        ['1/block0', '1/block0', '1/block1', '1/block1', '2/block0']
    """
    subject = [t.split("/", 1)[0] for t in trials]
    groups = [""] * len(trials)
    for s in sorted(set(subject)):
        mine = sorted(
            (i for i, v in enumerate(subject) if v == s), key=lambda i: _natural(trials[i])
        )
        k = min(blocks, len(mine))
        for rank, i in enumerate(mine):
            groups[i] = f"{s}/block{rank * k // len(mine)}"
    return groups, subject


@register_dataset("dvs128_gait", options={"gait_variant": "day"})
def open_dvs128_gait(req: DataRequest) -> DatasetSplits:
    """DVS128 Gait (``gait_variant``: ``day`` | ``night``) from the text release in ``data.root``."""
    if req.root is None:
        raise ValueError("dvs128_gait needs data.root (masnn never downloads)")
    variant = req.options["gait_variant"]
    common: dict[str, Any] = {
        "variant": variant,
        "cache_dir": req.cache_dir,
        "progress": req.progress,
        "frame_cfg": req.frames,
    }
    train = DVS128Gait(req.root, "train", **common)
    test = DVS128Gait(req.root, "test", **common)
    groups, strata = walk_blocks(train.trials)
    note = (
        f"validation holds out contiguous blocks of walks (file-name order, {WALK_BLOCKS} blocks "
        "per subject) within every subject; subjects are the labels, so validation and training "
        "share subjects, and the release does not name sessions, so they may share a session"
    )
    return DatasetSplits(
        train, test, Path(req.root), ValidationGroups(groups, "walk block", note, strata)
    )
