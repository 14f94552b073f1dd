"""Tonic interop: ``masnn data export --format tonic`` writes Tonic's DVSGesture layout, read back
by Tonic's documented procedure and by masnn; masnn's framing works on Tonic's event arrays."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import numpy.lib.recfunctions as rfn
import pytest

from masnn.cli import main
from masnn.data.gesture import DVS128Gesture
from masnn.events.schema import DVS128
from masnn.export.tonic import TONIC_DTYPE
from masnn.frames import FrameCfg, ToFrames


def tonic_read(path: Path) -> np.ndarray:
    """Tonic 1.7 ``DVSGesture.__getitem__``'s steps on one file (its documented format)."""
    events = np.load(path)
    events[:, 3] *= 1000  # ms -> us
    return rfn.unstructured_to_structured(events, TONIC_DTYPE)


@pytest.fixture(scope="module")
def exported(gesture_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tonic")
    cache = tmp_path_factory.mktemp("cache")
    import os

    old = os.environ.get("MASNN_CACHE")
    os.environ["MASNN_CACHE"] = str(cache)
    try:
        assert main(["data", "export", str(gesture_root), "--out", str(out)]) == 0
    finally:
        if old is None:
            os.environ.pop("MASNN_CACHE")
        else:
            os.environ["MASNN_CACHE"] = old
    return out


def test_layout_and_events_as_tonic_reads_them(
    exported: Path,
    gesture_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = DVS128Gesture(gesture_root, "train", cache_dir=tmp_path, progress=False)
    d = exported / "DVSGesture" / "ibmGestureTrain"
    trials = sorted(p.name for p in d.iterdir())
    assert trials and all(t.startswith("user") and "_" in t for t in trials)
    seen: set[tuple[str, int]] = set()
    checked = dropped = 0
    for i in range(len(src)):
        trial = Path(src.trials[i]).name.removesuffix(".aedat")
        key = (trial, int(src.labels[i]))
        if key in seen:
            dropped += 1
            continue
        seen.add(key)
        got = tonic_read(d / trial / f"{key[1]}.npy")
        ref = src.events(i)
        assert got.dtype == TONIC_DTYPE and got.shape == ref.shape
        for f in ("x", "y", "t"):
            assert np.array_equal(got[f], ref[f]), f  # exact microseconds
        assert np.array_equal(got["p"], ref["p"] != 0)
        checked += 1
    files = sorted(d.glob("*/*.npy"))
    assert len(files) == checked == len(src) - dropped
    assert all(0 <= int(f.stem) <= 10 for f in files)


def test_masnn_reads_the_tonic_copy_back(
    exported: Path, gesture_root: Path, tmp_path: Path
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Tonic's layout drops repeated classes
        copy = DVS128Gesture(exported, "test", progress=False)
    assert copy.layout == "tonic"
    src = DVS128Gesture(gesture_root, "test", cache_dir=tmp_path, progress=False)
    by_key = {
        (Path(src.trials[i]).name.removesuffix(".aedat"), int(src.labels[i])): i
        for i in range(len(src) - 1, -1, -1)
    }
    for j in range(len(copy)):
        i = by_key[(copy.trials[j], int(copy.labels[j]))]
        assert np.array_equal(copy.events(j), src.events(i))


def test_masnn_framing_is_a_tonic_transform(exported: Path) -> None:
    f = next((exported / "DVSGesture" / "ibmGestureTrain").glob("*/*.npy"))
    tonic_events = tonic_read(f)  # x, y: int16, p: bool, t: int64, Tonic's field order
    cfg = FrameCfg(mode="time", timesteps=5, dt_ms=None, ds=4, remainder="drop")
    frames = ToFrames(cfg, DVS128)(tonic_events)
    assert frames.shape == (5, 2, 32, 32) and frames.dtype == np.float32
    # Tonic's ToFrame(n_time_bins=T) semantics: bins of floor(duration / T) from the first event,
    # the tail dropped, np.add.at into (T, P, H, W)
    t = tonic_events["t"]
    width = (t[-1] - t[0]) // 5
    idx = (t - t[0]) // width
    keep = idx < 5
    ref = np.zeros((5, 2, 32, 32))
    e = tonic_events[keep]
    np.add.at(ref, (idx[keep], e["p"].astype(int), e["y"] // 4, e["x"] // 4), 1)
    assert np.array_equal(frames, ref)


def test_refuses_a_non_empty_target(exported: Path, gesture_root: Path, capsys) -> None:
    assert main(["data", "export", str(gesture_root), "--out", str(exported)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
