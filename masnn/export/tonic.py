"""Data interop with Tonic: write a DVS128 Gesture set in Tonic's ``DVSGesture`` layout.

Tonic's ``tonic.datasets.DVSGesture(save_to, train=...)`` reads
``<save_to>/DVSGesture/ibmGestureTrain/`` (``ibmGestureTest/``) with one directory per trial,
``userNN_<lighting>/``, holding one ``<label>.npy`` per class (label ``0..10`` = IBM class - 1):
an ``N x 4`` array with columns ``x, y, p, t`` and ``t`` in milliseconds, which Tonic multiplies
by 1000 and casts to its structured dtype (``x, y: int16, p: bool, t: int64`` microseconds).

:func:`write_tonic_gesture` writes exactly that from any layout masnn reads. Times are written
as float64 milliseconds ``(t_us + 0.25) / 1000``: Tonic's truncating cast and masnn's rounding
reader both recover the exact microsecond (Tonic's own download keeps only whole ms). The
layout has one file per class per trial, so a class repeated within a trial keeps its first
sample only (the IBM release's 1176 / 288 samples become Tonic's 1077 / 264); the count of
dropped samples is returned. Tonic downloads its copy unless the split directory holds at
least 100 ``.npy`` files, so a smaller set must be read with masnn (``layout="tonic"``) or
with Tonic's low-level loader.

Reading Tonic or SpikingJelly copies needs no conversion: ``masnn.data.DVS128Gesture(root)``
detects ``ibmGestureTrain/`` (Tonic) and ``events_np/`` (SpikingJelly) itself, and
:class:`masnn.frames.ToFrames` is a Tonic transform (it takes Tonic's structured events).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

#: Tonic's split directories.
TONIC_DIRS = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}
#: Tonic's event dtype for DVSGesture (what ``tonic.datasets.DVSGesture`` returns).
TONIC_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])


def tonic_array(events: np.ndarray) -> np.ndarray:
    """masnn events -> Tonic's ``N x 4`` float64 file array ``(x, y, p, t_ms)``."""
    out = np.empty((events.shape[0], 4), np.float64)
    out[:, 0] = events["x"]
    out[:, 1] = events["y"]
    out[:, 2] = events["p"] != 0
    out[:, 3] = (events["t"].astype(np.float64) + 0.25) / 1000.0
    return out


def _save_npy(path: Path, arr: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(suffix=".npy", dir=path.parent, prefix=f".{path.stem}.")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, arr, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_tonic_gesture(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    splits: tuple[str, ...] = ("train", "test"),
    **dataset_kw: Any,
) -> dict[str, dict[str, int]]:
    """Write the DVS128 Gesture set at ``root`` (any layout masnn reads) in Tonic's layout.

    Args:
        root: the source dataset directory.
        out: Tonic's ``save_to``; files go to ``out/DVSGesture/ibmGesture{Train,Test}/``.
        splits: which splits to write.
        **dataset_kw: passed to :class:`masnn.data.gesture.DVS128Gesture` (``cache_dir``, ...).

    Returns:
        Per split: ``{"written": files, "dropped": repeated-class samples left out,
        "events": events written}``.

    Raises:
        ValueError: the target split directory exists and is not empty.
    """
    from masnn.data.gesture import DVS128Gesture

    base = Path(out).expanduser() / "DVSGesture"
    report: dict[str, dict[str, int]] = {}
    for split in splits:
        if split not in TONIC_DIRS:
            raise ValueError(f"unknown split {split!r}; allowed: {list(TONIC_DIRS)}")
        target = base / TONIC_DIRS[split]
        if target.exists() and any(target.iterdir()):
            raise ValueError(f"{target} exists and is not empty; choose another output")
        ds = DVS128Gesture(root, split, progress=False, **dataset_kw)  # type: ignore[arg-type]
        labels = ds.labels
        written = dropped = events = 0
        seen: set[tuple[str, int]] = set()
        for i in range(len(ds)):
            trial = Path(str(ds.trials[i])).name
            trial = trial[: -len(".aedat")] if trial.endswith(".aedat") else trial
            key = (trial, int(labels[i]))
            if key in seen:
                dropped += 1
                continue
            seen.add(key)
            ev = ds.events(i)
            d = target / trial
            d.mkdir(parents=True, exist_ok=True)
            _save_npy(d / f"{int(labels[i])}.npy", tonic_array(ev))
            written += 1
            events += int(ev.shape[0])
        report[split] = {"written": written, "dropped": dropped, "events": events}
    return report
