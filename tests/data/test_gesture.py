"""DVS128Gesture on miniature directories in the IBM, SpikingJelly and Tonic layouts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import masnn.data.gesture as gesture_mod
from masnn.data import DVS128Gesture, collate_time_major
from masnn.errors import DataFormatError
from masnn.events import EVENT_DTYPE
from masnn.frames import FrameCfg, integrate_split
from tests.data.ibm_fixture import TEST, TRAIN, make_ibm, trial_events


def _expected(trials: dict) -> list[tuple[np.ndarray, int]]:
    out = []
    for name, rows in trials.items():
        ev = trial_events(name)
        for c, s, e in rows:
            out.append((ev[(ev["t"] >= s) & (ev["t"] < e)], c - 1))
    return out


@pytest.fixture
def ibm(tmp_path: Path) -> Path:
    return make_ibm(tmp_path / "DvsGesture")


@pytest.mark.parametrize(("split", "trials"), [("train", TRAIN), ("test", TEST)])
def test_ibm_one_sample_per_row(ibm: Path, tmp_path: Path, split: str, trials: dict) -> None:
    ds = DVS128Gesture(ibm.parent, split, cache_dir=tmp_path / "cache", progress=False)
    assert ds.layout == "ibm"
    exp = _expected(trials)
    assert len(ds) == len(exp) == sum(len(r) for r in trials.values())
    for i, (ev, lab) in enumerate(exp):
        got, label = ds[i]
        assert label == lab
        assert got.dtype == EVENT_DTYPE
        np.testing.assert_array_equal(got, ev)
    if split == "train":  # the repeated class 8 of user01 gives two samples
        assert list(ds.labels).count(7) == 2


def test_cache_reused_then_rebuilt_when_csv_changes(ibm: Path, tmp_path: Path, monkeypatch) -> None:
    calls = []
    real = gesture_mod.read_aedat
    monkeypatch.setattr(gesture_mod, "read_aedat", lambda p, **k: calls.append(p) or real(p, **k))
    cache = tmp_path / "cache"
    a = DVS128Gesture(ibm, "train", cache_dir=cache, progress=False)
    assert len(calls) == 2
    b = DVS128Gesture(ibm, "train", cache_dir=cache, progress=False)
    assert len(calls) == 2 and b.cache_path == a.cache_path
    # edit a CSV (same size, same mtime would not matter: the CSV is hashed)
    csv = ibm / "user02_led_labels.csv"
    st = csv.stat()
    csv.write_text(csv.read_text().replace("11,4000,8000", "10,4000,8000"))
    os.utime(csv, ns=(st.st_atime_ns, st.st_mtime_ns))
    c = DVS128Gesture(ibm, "train", cache_dir=cache, progress=False)
    assert len(calls) == 4 and c.cache_path != a.cache_path
    assert c[len(c) - 1][1] == 9 and a[len(a) - 1][1] == 10


def test_damaged_cache_entry_is_rebuilt(ibm: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    a = DVS128Gesture(ibm, "test", cache_dir=cache, progress=False)
    ref = [a[i][0].copy() for i in range(len(a))]
    entry = a.cache_path
    del a
    events = entry / "events.npy"
    events.write_bytes(events.read_bytes()[:-13])  # truncated by a crash or a full disk
    with pytest.warns(UserWarning, match=r"damaged cache entry removed and rebuilt: .*events\.npy"):
        b = DVS128Gesture(ibm, "test", cache_dir=cache, progress=False)
    for i in range(len(b)):
        np.testing.assert_array_equal(b[i][0], ref[i])


_KILL_SCRIPT = """
import sys, time
from pathlib import Path
import masnn.data.gesture as g
real = g.read_aedat
def slow(p, **k):
    Path(sys.argv[3]).write_text("started")
    time.sleep(60)
    return real(p, **k)
g.read_aedat = slow
g.DVS128Gesture(sys.argv[1], "test", cache_dir=sys.argv[2], progress=False, num_workers=1)
"""


def test_process_killed_while_writing_is_detected(ibm: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    marker = tmp_path / "started"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(ibm), str(cache), str(marker)])
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    leftovers = [p.name for p in cache.iterdir()]
    assert leftovers and all(
        n.startswith(".") and ".tmp" in n for n in leftovers
    )  # no entry was published
    ds = DVS128Gesture(ibm, "test", cache_dir=cache, progress=False)
    exp = _expected(TEST)
    assert len(ds) == len(exp)
    np.testing.assert_array_equal(ds[1][0], exp[1][0])
    assert not any(".tmp" in p.name for p in cache.iterdir())  # dead temp removed


def test_default_cache_root_from_env(ibm: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MASNN_CACHE", str(tmp_path / "envcache"))
    ds = DVS128Gesture(ibm, "test", progress=False)
    assert ds.cache_path is not None and ds.cache_path.parent == tmp_path / "envcache"


def test_cached_deterministic_frames(ibm: Path, tmp_path: Path) -> None:
    cfg = FrameCfg(mode="count", dt_ms=None, timesteps=4, ds=4)
    ds = DVS128Gesture(ibm, "test", cache_dir=tmp_path / "c", frame_cfg=cfg, progress=False)
    frames, label = ds[0]
    assert frames.shape == (4, 2, 32, 32) and frames.dtype == np.float32
    exp_ev, exp_label = _expected(TEST)[0]
    np.testing.assert_array_equal(frames, integrate_split(exp_ev, ds.sensor, 4, "count", "last", 4))
    assert label == exp_label
    x_seq, labels = collate_time_major([ds[i] for i in range(len(ds))])
    assert tuple(x_seq.shape) == (4, 3, 2, 32, 32) and labels.tolist() == [4, 5, 6]
    # the frame config is part of the key
    other = DVS128Gesture(ibm, "test", cache_dir=tmp_path / "c", progress=False)
    assert other.cache_path != ds.cache_path


def test_window_framing_on_the_fly(ibm: Path, tmp_path: Path) -> None:
    cfg = FrameCfg(timesteps=3, dt_ms=0.5, ds=2)
    ds = DVS128Gesture(
        ibm, "train", cache_dir=tmp_path / "c", frame_cfg=cfg, seed=0, progress=False
    )
    f, _ = ds[0]
    assert f.shape == (3, 2, 64, 64)


# ----------------------------------------------------------------------------- bad input


def test_missing_trial_file_named(ibm: Path, tmp_path: Path) -> None:
    (ibm / "user02_led.aedat").unlink()
    with pytest.raises(DataFormatError, match=r"user02_led\.aedat: missing trial file"):
        DVS128Gesture(ibm, "train", cache_dir=tmp_path / "c", progress=False)


@pytest.mark.parametrize(
    ("content", "match", "offset"),
    [
        ("class,startTime_usec,endTime_usec\n1,10,20\n2,30\n", "row 3 has 2 columns", 42),
        ("class,startTime_usec,endTime_usec\n1,10,20\n2,30,25\n", "end 25 < start 30", 42),
        ("class,startTime_usec\n1,10\n", "header", 0),
        ("class,startTime_usec,endTime_usec\n12,1,2\n", "class 12 outside", 34),
        ("class,startTime_usec,endTime_usec\n1,a,2\n", "not three integers", 34),
    ],
)
def test_bad_label_csv(ibm: Path, tmp_path: Path, content: str, match: str, offset: int) -> None:
    csv = ibm / "user24_lab_labels.csv"
    csv.write_text(content)
    with pytest.raises(DataFormatError, match=match) as info:
        DVS128Gesture(ibm, "test", cache_dir=tmp_path / "c", progress=False)
    assert info.value.path == str(csv) and info.value.offset == offset


def test_corrupt_aedat_in_release_names_file(ibm: Path, tmp_path: Path) -> None:
    f = ibm / "user24_lab.aedat"
    f.write_bytes(f.read_bytes()[:-3])
    with pytest.raises(DataFormatError, match="user24_lab.aedat @ byte"):
        DVS128Gesture(ibm, "test", cache_dir=tmp_path / "c", progress=False)
    assert not any((tmp_path / "c").glob("dvs128*"))


def test_not_a_gesture_directory(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="no DVS128 Gesture data found"):
        DVS128Gesture(tmp_path, "train")
    with pytest.raises(ValueError, match="'train', 'test'"):
        DVS128Gesture(tmp_path, "val")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- other layouts


def test_spikingjelly_layout(tmp_path: Path) -> None:
    root = tmp_path / "DVS128Gesture"
    exp = _expected(TRAIN)
    counts: dict[int, int] = {}
    for ev, lab in exp:
        d = root / "events_np" / "train" / str(lab)
        d.mkdir(parents=True, exist_ok=True)
        k = counts[lab] = counts.get(lab, -1) + 1
        np.savez_compressed(d / f"trial_{k}.npz", t=ev["t"], x=ev["x"], y=ev["y"], p=ev["p"])
    ds = DVS128Gesture(root, "train")
    assert ds.layout == "spikingjelly" and len(ds) == len(exp)
    by_label = sorted(exp, key=lambda e: e[1])
    for i in range(len(ds)):
        got, lab = ds[i]
        assert lab == by_label[i][1]
        assert got.size == by_label[i][0].size or lab == 7  # the two class-8 samples share a label
    assert sorted(ds.labels.tolist()) == sorted(lab for _, lab in exp)


def test_tonic_layout_warns_and_converts_ms(tmp_path: Path) -> None:
    root = tmp_path / "DVSGesture"
    d = root / "ibmGestureTest" / "user24_lab"
    d.mkdir(parents=True)
    arr = np.array([[1, 2, 1, 0.5], [3, 4, 0, 1.25]], np.float64)  # x, y, p, t (ms)
    np.save(d / "4.npy", arr)
    with pytest.warns(UserWarning, match="repeated classes are lost"):
        ds = DVS128Gesture(tmp_path, "test")
    ev, lab = ds[0]
    assert ds.layout == "tonic" and lab == 4
    assert (
        ev["t"].tolist() == [500, 1250]
        and ev["x"].tolist() == [1, 3]
        and ev["p"].tolist() == [1, 0]
    )
