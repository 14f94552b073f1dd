"""DVS128 Gesture (IBM, Amir et al. CVPR 2017): 11 classes, 29 subjects, 3 lighting conditions.

Three on-disk layouts are accepted and auto-detected (``layout="auto"``):

* ``"ibm"``: the original release (``DvsGesture/``): ``trials_to_train.txt`` /
  ``trials_to_test.txt`` and per trial ``userNN_<light>.aedat`` + ``userNN_<light>_labels.csv``.
  Every CSV row is one sample: the events with ``startTime_usec <= t < endTime_usec``, label
  ``class - 1``; a class repeated within a trial gives several samples. The full release gives
  1176 train / 288 test samples. Decoding and cutting run once, in parallel over trial files,
  into a cache (:mod:`masnn.data.cache`).
* ``"spikingjelly"``: SpikingJelly's ``events_np/{train,test}/<label>/<trial>_<k>.npz`` (keys
  ``t, x, y, p``): same samples as ``"ibm"``.
* ``"tonic"``: Tonic's pre-cut ``ibmGestureTrain/`` / ``ibmGestureTest/`` with
  ``userNN_<light>/<label>.npy`` (``N x 4``: ``x, y, p, t`` with ``t`` in ms). One file per class
  per trial, so repeated classes are lost (1077 / 264 samples); a ``UserWarning`` says so.

Event times are kept on the recording clock (not re-zeroed).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from masnn.data.base import EventDataset
from masnn.data.cache import fingerprint, load_or_build
from masnn.data.checks import check_time_order, within_root
from masnn.data.registry import DataRequest, DatasetSplits, ValidationGroups, register_dataset
from masnn.data.util import ordered_map, progress_bar
from masnn.errors import DataFormatError
from masnn.events.aedat import INVALID_POLICIES, InvalidPolicy, read_aedat
from masnn.events.schema import DVS128, EVENT_DTYPE
from masnn.frames.integrate import FrameCfg, to_frames

CLASSES = (
    "hand_clapping",
    "right_hand_wave",
    "left_hand_wave",
    "right_arm_clockwise",
    "right_arm_counter_clockwise",
    "left_arm_clockwise",
    "left_arm_counter_clockwise",
    "arm_roll",
    "air_drums",
    "air_guitar",
    "other_gestures",
)
SPLITS = ("train", "test")
LAYOUTS = ("auto", "ibm", "spikingjelly", "tonic")
#: Trial files per split and samples per split in the full IBM release.
EXPECTED_TRIALS = {"train": 98, "test": 24}
EXPECTED_SAMPLES = {"train": 1176, "test": 288}
CSV_HEADER = ("class", "startTime_usec", "endTime_usec")
_TONIC_DIRS = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}


# ----------------------------------------------------------------------------- file readers


def read_trial_list(path: str | os.PathLike[str]) -> list[str]:
    """Trial file names (``userNN_<light>.aedat``) listed one per line in ``trials_to_*.txt``."""
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise DataFormatError(p, f"cannot read trial list: {e}") from e
    names = [line.strip() for line in text.splitlines() if line.strip()]
    offset = 0
    for line in text.splitlines(keepends=True):
        s = line.strip()
        if s and not s.endswith(".aedat"):
            raise DataFormatError(p, f"trial list entry {s!r} is not an .aedat file name", offset)
        offset += len(line.encode())
    return names


def read_labels_csv(path: str | os.PathLike[str]) -> np.ndarray:
    """Rows ``(class, start_us, end_us)`` of a ``*_labels.csv`` as an ``(n, 3)`` int64 array.

    Raises:
        DataFormatError: missing file, wrong header, a row without exactly three integers,
            ``end < start`` or a class outside 1..11 (names the file and the row's byte offset).
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise DataFormatError(p, f"cannot read label CSV: {e.strerror or e}") from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataFormatError(p, "label CSV is not UTF-8 text", e.start) from e
    rows: list[tuple[int, int, int]] = []
    offset = len(raw) - len(text.encode())  # BOM
    lines = text.splitlines(keepends=True)
    if not lines:
        raise DataFormatError(p, "empty label CSV", 0)
    for i, line in enumerate(lines):
        s = line.strip()
        here = offset
        offset += len(line.encode())
        if not s:
            continue
        cols = [c.strip() for c in s.split(",")]
        if i == 0:
            if tuple(cols) != CSV_HEADER:
                raise DataFormatError(p, f"header {s!r}, expected {','.join(CSV_HEADER)!r}", here)
            continue
        if len(cols) != 3:
            raise DataFormatError(
                p, f"row {i + 1} has {len(cols)} columns, expected 3 ({','.join(CSV_HEADER)})", here
            )
        try:
            cls, start, end = (int(c) for c in cols)
        except ValueError:
            raise DataFormatError(p, f"row {i + 1} is not three integers: {s!r}", here) from None
        if not 1 <= cls <= len(CLASSES):
            raise DataFormatError(p, f"row {i + 1}: class {cls} outside 1..{len(CLASSES)}", here)
        if start < 0:
            raise DataFormatError(
                p, f"row {i + 1}: negative startTime_usec {start} (times are >= 0 us)", here
            )
        if end < start:
            raise DataFormatError(p, f"row {i + 1}: end {end} < start {start}", here)
        rows.append((cls, start, end))
    return np.asarray(rows, np.int64).reshape(-1, 3)


def cut_trial(events: np.ndarray, rows: np.ndarray) -> list[np.ndarray]:
    """One array per CSV row: events with ``start <= t < end`` (rows may overlap)."""
    t = events["t"]
    if t.size and bool(np.all(t[1:] >= t[:-1])):
        lo = np.searchsorted(t, rows[:, 1], side="left")
        hi = np.searchsorted(t, rows[:, 2], side="left")
        return [events[a:b] for a, b in zip(lo, hi)]
    return [events[(t >= s) & (t < e)] for s, e in rows[:, 1:]]


# ----------------------------------------------------------------------------- layouts


def detect_layout(root: str | os.PathLike[str]) -> tuple[str, Path]:
    """Return ``(layout, directory)`` for a DVS128 Gesture directory in any accepted layout."""
    base = Path(root).expanduser()
    for d in (base, base / "DvsGesture", base / "DVS128Gesture", base / "DVSGesture"):
        if (d / "trials_to_train.txt").is_file() or (d / "trials_to_test.txt").is_file():
            return "ibm", d
        if (d / "events_np").is_dir():
            return "spikingjelly", d / "events_np"
        if any((d / v).is_dir() for v in _TONIC_DIRS.values()):
            return "tonic", d
    raise DataFormatError(
        base,
        "no DVS128 Gesture data found: expected the IBM release (trials_to_train.txt, "
        "userNN_<light>.aedat + _labels.csv), SpikingJelly's events_np/ or Tonic's "
        "ibmGestureTrain/ / ibmGestureTest/",
    )


class DVS128Gesture(EventDataset):
    """DVS128 Gesture samples as ``(events, label)`` (or ``(frames, label)`` with ``frame_cfg``).

    Args:
        root: dataset directory in any accepted layout (see the module docstring).
        split: ``"train"`` (users 01-23) or ``"test"`` (users 24-29).
        transform: applied to each sample's events (or frames) before returning.
        cache_dir: cache root for the IBM layout (default ``$MASNN_CACHE`` or the XDG cache).
        frame_cfg: optional framing. Deterministic configs (``count`` / ``time`` modes) are
            integrated once and cached; ``window`` configs are applied per access with a random
            start for ``train`` and ``frame_cfg.clips`` windows for ``test``.
        layout: ``"auto"``, ``"ibm"``, ``"spikingjelly"`` or ``"tonic"``.
        num_workers: threads used to decode trials when building the cache (default: CPU count,
            at most 8).
        progress: show a progress bar while building the cache.
        seed: seed for the random window starts (``window`` framing at train time).
        invalid_events: AEDAT events whose valid bit is 0: ``"keep"`` (default, as SpikingJelly
            and the official MA-SNN reader) or ``"drop"`` (IBM layout only; part of the cache key).
    """

    sensor = DVS128
    classes = CLASSES
    num_classes = len(CLASSES)

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: Literal["train", "test"] = "train",
        transform: Callable[[np.ndarray], Any] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        frame_cfg: FrameCfg | None = None,
        layout: Literal["auto", "ibm", "spikingjelly", "tonic"] = "auto",
        num_workers: int | None = None,
        progress: bool = True,
        seed: int | None = None,
        invalid_events: InvalidPolicy = "keep",
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if invalid_events not in INVALID_POLICIES:
            raise ValueError(
                f"invalid_events must be one of {INVALID_POLICIES}, got {invalid_events!r}"
            )
        self.invalid_events = invalid_events
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self._init_framing(frame_cfg, seed)
        self.root = Path(root).expanduser()
        self.split = split
        self.transform = transform
        found, where = detect_layout(self.root)
        if layout != "auto" and layout != found:
            raise DataFormatError(self.root, f"layout {layout!r} requested but found {found!r}")
        self.layout = found
        self.data_dir = where
        workers = num_workers if num_workers is not None else min(8, os.cpu_count() or 1)
        self._frames: np.ndarray | None = None
        self._files: list[Path] = []
        self.cache_path: Path | None = None
        if found == "ibm":
            self._init_ibm(cache_dir, workers, progress)
        elif found == "spikingjelly":
            self._init_spikingjelly()
        else:
            self._init_tonic()

    # -- IBM release --------------------------------------------------------------------------

    def _init_ibm(
        self, cache_dir: str | os.PathLike[str] | None, workers: int, progress: bool
    ) -> None:
        d = self.data_dir
        listing = d / f"trials_to_{self.split}.txt"
        trials = read_trial_list(listing)
        if not trials:
            raise DataFormatError(listing, "trial list is empty")
        aedats = [within_root(d, t, listing) for t in trials]
        csvs = [d / (t[: -len(".aedat")] + "_labels.csv") for t in trials]
        for f in (*aedats, *csvs):
            if not f.is_file():
                raise DataFormatError(f, f"missing trial file (listed in {listing.name})")
        cfg = (
            self.frame_cfg if self.frame_cfg is not None and self.frame_cfg.deterministic else None
        )
        parts = {
            "dataset": "dvs128_gesture",
            "split": self.split,
            "files": fingerprint([listing, *aedats, *csvs], d),
            "frame_cfg": repr(cfg),
            "invalid_events": self.invalid_events,
        }

        def build(tmp: Path) -> dict[str, np.ndarray]:
            return self._build_ibm(tmp, aedats, csvs, cfg, workers, progress)

        name = f"dvs128_gesture-{self.split}"
        self.cache_path, arrays = load_or_build(name, parts, build, cache_dir)
        self._events = arrays["events"]
        self._offsets = arrays["offsets"]
        self._labels = arrays["labels"]
        self._frames = arrays.get("frames")
        self.trials = [trials[i] for i in arrays["trial"]]

    def _build_ibm(
        self,
        tmp: Path,
        aedats: list[Path],
        csvs: list[Path],
        cfg: FrameCfg | None,
        workers: int,
        progress: bool,
    ) -> dict[str, np.ndarray]:
        def work(k: int) -> tuple[int, list[np.ndarray], np.ndarray]:
            rows = read_labels_csv(csvs[k])
            ev = read_aedat(aedats[k], sensor=DVS128, invalid=self.invalid_events)
            check_time_order(aedats[k], ev["t"], aedat=True)
            return k, cut_trial(ev, rows), rows[:, 0] - 1

        offsets, labels, trial_idx = [0], [], []
        frames: list[np.ndarray] = []
        bar = progress_bar(len(aedats), f"DVS128 Gesture {self.split}", progress)
        raw_path = tmp / "events.raw"
        try:
            with open(raw_path, "wb") as raw:
                for k, samples, lab in ordered_map(work, range(len(aedats)), workers):
                    for s, c in zip(samples, lab):
                        raw.write(np.ascontiguousarray(s).tobytes())
                        offsets.append(offsets[-1] + s.size)
                        labels.append(int(c))
                        trial_idx.append(k)
                        if cfg is not None:
                            frames.append(to_frames(s, DVS128, cfg))
                    bar.update(1)
        finally:
            bar.close()
        total = offsets[-1]
        src = np.memmap(raw_path, EVENT_DTYPE, "r", shape=(total,)) if total else None
        dst = np.lib.format.open_memmap(tmp / "events.npy", "w+", EVENT_DTYPE, (total,))
        step = 1 << 22
        for a in range(0, total, step):
            dst[a : a + step] = src[a : a + step]  # type: ignore[index]
        dst.flush()
        del src, dst
        raw_path.unlink()
        out = {
            "offsets": np.asarray(offsets, np.int64),
            "labels": np.asarray(labels, np.int64),
            "trial": np.asarray(trial_idx, np.int64),
        }
        if cfg is not None:
            shape = (len(labels), *cfg.frame_shape(DVS128))
            out["frames"] = np.stack(frames) if frames else np.zeros(shape, np.float32)
        return out

    # -- SpikingJelly / Tonic layouts ---------------------------------------------------------

    def _init_spikingjelly(self) -> None:
        d = self.data_dir / self.split
        if not d.is_dir():
            raise DataFormatError(d, "missing split directory in SpikingJelly's events_np/")
        files, labels = [], []
        for label in range(len(CLASSES)):
            for f in sorted((d / str(label)).glob("*.npz")):
                files.append(f)
                labels.append(label)
        if not files:
            raise DataFormatError(d, "no .npz samples under <label>/ directories")
        self._files, self._labels = files, np.asarray(labels, np.int64)
        # SpikingJelly names samples {trial}_{k}.npz
        self.trials = [f.stem.rsplit("_", 1)[0] for f in files]

    def _init_tonic(self) -> None:
        d = self.data_dir / _TONIC_DIRS[self.split]
        if not d.is_dir():
            raise DataFormatError(d, "missing split directory in Tonic's layout")
        files, labels = [], []
        for trial in sorted(p for p in d.iterdir() if p.is_dir()):
            for f in sorted(trial.glob("*.npy")):
                try:
                    lab = int(f.stem)
                except ValueError:
                    raise DataFormatError(
                        f, "Tonic sample file name is not a label number"
                    ) from None
                if not 0 <= lab < len(CLASSES):
                    raise DataFormatError(f, f"label {lab} outside 0..{len(CLASSES) - 1}")
                files.append(f)
                labels.append(lab)
        if not files:
            raise DataFormatError(d, "no userNN_<light>/<label>.npy samples")
        warnings.warn(
            f"{d}: Tonic's pre-cut DVS128 Gesture keeps one sample per class per trial, so "
            f"repeated classes are lost ({len(files)} samples here; the IBM release gives "
            f"{EXPECTED_SAMPLES[self.split]}). Use the IBM release for the standard split.",
            UserWarning,
            stacklevel=3,
        )
        self._files, self._labels = files, np.asarray(labels, np.int64)
        self.trials = [f.parent.name for f in files]

    def _load_file(self, f: Path) -> np.ndarray:
        try:
            if self.layout == "spikingjelly":
                with np.load(f, allow_pickle=False) as z:
                    cols = {k: np.asarray(z[k]) for k in ("t", "x", "y", "p")}
            else:
                a = np.load(f, allow_pickle=False)
                if a.ndim != 2 or a.shape[1] != 4:
                    raise DataFormatError(f, f"expected an N x 4 array (x, y, p, t), got {a.shape}")
                cols = {
                    "x": a[:, 0],
                    "y": a[:, 1],
                    "p": a[:, 2],
                    "t": np.rint(a[:, 3].astype(np.float64) * 1000),  # ms -> us
                }
        except DataFormatError:
            raise
        except (OSError, ValueError, KeyError) as e:
            raise DataFormatError(f, f"cannot read sample: {e}") from e
        ev = np.empty(cols["t"].shape[0], EVENT_DTYPE)
        for k in ("t", "x", "y", "p"):
            ev[k] = cols[k]
        ev["p"] = ev["p"] != 0
        return ev

    # -- samples ------------------------------------------------------------------------------

    @property
    def class_names(self) -> tuple[str, ...]:
        """The gesture names, in label order."""
        return CLASSES

    def events(self, index: int) -> np.ndarray:
        """The raw events of sample ``index`` (no framing, no transform)."""
        if self.layout == "ibm":
            a, b = int(self._offsets[index]), int(self._offsets[index + 1])
            return np.array(self._events[a:b])  # a writable copy, never the cache itself
        return self._load_file(self._files[index])


def user_of(trial: str) -> str:
    """The subject of a trial name: ``user07_fluorescent_led.aedat`` -> ``user07``."""
    return trial.split("_")[0]


def gesture_splits(root: Path, req: DataRequest) -> DatasetSplits:
    """Both splits of a DVS128-Gesture-shaped directory, framed per ``req.frames``; validation
    holds out whole users (every lighting condition of a user goes to the same side)."""
    common: dict[str, Any] = {
        "cache_dir": req.cache_dir,
        "progress": req.progress,
        "frame_cfg": req.frames,
        "invalid_events": req.options.get("invalid_events", "keep"),
    }
    train = DVS128Gesture(root, "train", **common)
    test = DVS128Gesture(root, "test", **common)
    note = (
        "validation holds out whole users of the training split (all their lighting "
        "conditions); the test users are never seen"
    )
    groups = ValidationGroups([user_of(t) for t in train.trials], "subject", note)
    return DatasetSplits(train, test, Path(root), groups)


@register_dataset("dvs128_gesture", options={"invalid_events": "keep"})
def open_dvs128_gesture(req: DataRequest) -> DatasetSplits:
    """DVS128 Gesture from ``data.root`` in the IBM, SpikingJelly or Tonic layout."""
    if req.root is None:
        raise ValueError("dvs128_gesture needs data.root (masnn never downloads)")
    return gesture_splits(req.root, req)


@register_dataset(
    "synth_gesture",
    needs_root=False,
    options={"synth_size": "small", "synth_seed": 0, "invalid_events": "keep"},
)
def open_synth_gesture(req: DataRequest) -> DatasetSplits:
    """The synthetic Gesture-shaped set, generated into ``data.root`` (or the default data dir)
    on first use."""
    from masnn.synth import ensure_synth_gesture

    size, seed = req.options["synth_size"], int(req.options["synth_seed"])
    return gesture_splits(ensure_synth_gesture(req.root, size=size, seed=seed), req)
