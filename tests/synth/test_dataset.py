"""The generated set: IBM layout, determinism, cross-reading, noise share, stale detection."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from masnn.events import read_aedat
from masnn.events.schema import DVS128
from masnn.synth import (
    GENERATOR_VERSION,
    default_data_dir,
    ensure_synth_gesture,
    generate_synth_gesture,
    manifest_ok,
    synth_config,
)
from masnn.synth import dataset as D
from tests.synth.conftest import tiny_cfg

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def _digests(root: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.iterdir())
        if p.is_file()
    }


def test_ibm_layout(tiny_set: Path) -> None:
    names = {p.name for p in tiny_set.iterdir()}
    assert {
        "trials_to_train.txt",
        "trials_to_test.txt",
        "gesture_mapping.csv",
        "manifest.json",
    } <= names
    assert (tiny_set / "trials_to_train.txt").read_text() == "user01_led.aedat\n"
    assert (tiny_set / "trials_to_test.txt").read_text() == "user02_led.aedat\n"
    assert not [n for n in names if ".tmp" in n]
    for stem in ("user01_led", "user02_led"):
        head = (tiny_set / f"{stem}.aedat").read_bytes()[:14]
        assert head == b"#!AER-DAT3.1\r\n"
        with open(tiny_set / f"{stem}_labels.csv", newline="") as fh:
            rows = list(csv.reader(fh))
        assert rows[0] == ["class", "startTime_usec", "endTime_usec"]
        body = np.array(rows[1:], dtype=np.int64)
        assert sorted(body[:, 0].tolist()) == [1, 4, 5]
        assert np.all(body[:, 2] > body[:, 1]) and np.all(body[1:, 1] > body[:-1, 2])
        ev = read_aedat(tiny_set / f"{stem}.aedat", sensor=DVS128)
        assert np.all(np.diff(ev["t"]) >= 0)
        assert ev["t"][0] <= body[0, 1] and ev["t"][-1] >= body[-1, 2]
        for _, a, b in body:  # every gesture has events at a DVS-like rate
            n = np.count_nonzero((ev["t"] >= a) & (ev["t"] < b))
            assert 5e3 < n / ((b - a) * 1e-6) < 2e5


def test_multi_packet(tiny_set: Path) -> None:
    raw = (tiny_set / "user01_led.aedat").read_bytes()
    pos = raw.index(b"#!END-HEADER\r\n") + 14
    packets = 0
    while pos < len(raw):
        n = int.from_bytes(raw[pos + 20 : pos + 24], "little")
        pos += 28 + 8 * n
        packets += 1
    assert pos == len(raw) and packets > 10


def test_manifest(tiny_set: Path) -> None:
    man = json.loads((tiny_set / "manifest.json").read_text())
    assert man["generator_version"] == GENERATOR_VERSION and man["seed"] == 3
    tot = man["totals"]
    assert tot["events"] == sum(f["events"] for f in man["files"])
    assert tot["events"] == tot["signal_events"] + tot["ba_events"] + tot["hot_events"]
    assert tot["events"] == tot["on_events"] + tot["off_events"]
    n_read = sum(read_aedat(tiny_set / f["file"]).size for f in man["files"])
    assert n_read == tot["events"]
    assert len(man["samples"]) == 6 and tot["samples"] == {"train": 3, "test": 3}
    assert len(man["camera"]["hot_pixels"]) == 6
    assert 0 < tot["noise_fraction"] < 1 and tot["on_off_ratio"] > 0


def test_deterministic_bytes(tiny_set: Path, tmp_path: Path) -> None:
    same = tmp_path / "same"
    generate_synth_gesture(same, seed=3, cfg=tiny_cfg(), workers=2)  # other worker count
    assert _digests(same) == _digests(tiny_set)
    other = tmp_path / "other"
    generate_synth_gesture(other, seed=4, cfg=tiny_cfg(), workers=1)
    a, b = _digests(other), _digests(tiny_set)
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a if k.endswith((".aedat", ".csv")) and "mapping" not in k)


def test_spikingjelly_reads_identically(tiny_set: Path) -> None:
    pytest.importorskip("spikingjelly")
    sys.path.insert(0, str(GOLDEN))
    from _thirdparty import spikingjelly_utils

    sj = spikingjelly_utils()
    if sj is None:
        pytest.skip("spikingjelly.datasets.utils does not import")
    path = tiny_set / "user02_led.aedat"
    ours = read_aedat(path)
    theirs = sj.load_aedat_v3(str(path))
    assert ours.size == len(theirs["t"]) > 0
    for k in ("t", "x", "y", "p"):
        np.testing.assert_array_equal(ours[k].astype(np.int64), np.asarray(theirs[k], np.int64))


def test_default_noise_share() -> None:
    """The shipped ``small`` defaults: noise is 20-40 % of the events (one file per lighting)."""
    cfg = synth_config("small")
    jobs = D.plan_files(cfg, 0)
    picks = [
        next(j for j in jobs if j.lighting == lt and j.user == u)
        for u, lt in ((1, "fluorescent"), (5, "led"), (10, "natural"))
    ]
    tot = np.zeros(3)
    for j in picks:
        s = _stats_only(cfg, j)
        tot += s
        assert 0.1 < (s[1] + s[2]) / s.sum() < 0.55
    assert 0.2 <= (tot[1] + tot[2]) / tot.sum() <= 0.4


def _stats_only(cfg: D.SynthGestureCfg, job: D._FileJob) -> np.ndarray:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        st = D._generate_file((cfg, 0, job, d))
    return np.array([st["signal_events"], st["ba_events"], st["hot_events"]], float)


def test_noise_scale_knob() -> None:
    cfg = tiny_cfg(classes=(4,))
    job = D.plan_files(cfg, 0)[0]
    quiet = _stats_only(D.synth_config("small", **{**_fields(cfg), "noise_scale": 0.0}), job)
    loud = _stats_only(D.synth_config("small", **{**_fields(cfg), "noise_scale": 2.0}), job)
    assert quiet[1] == quiet[2] == 0 and loud[1] > 0
    assert quiet[0] == loud[0]  # the signal does not depend on the noise


def _fields(cfg: D.SynthGestureCfg) -> dict[str, object]:
    return {k: getattr(cfg, k) for k in D.SynthGestureCfg.__dataclass_fields__}


def test_ensure_detects_stale_sets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tiny_cfg(classes=(2,))
    root = tmp_path / "set"
    calls = []
    real = D.generate_synth_gesture

    def counting(*a: object, **k: object) -> dict:
        calls.append(1)
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(D, "generate_synth_gesture", counting)
    assert ensure_synth_gesture(root, seed=1, cfg=cfg, workers=1) == root
    assert ensure_synth_gesture(root, seed=1, cfg=cfg, workers=1) == root and len(calls) == 1
    assert manifest_ok(root, 1, cfg) and not manifest_ok(root, 2, cfg)
    (root / "manifest.json").unlink()  # interrupted run: no manifest
    ensure_synth_gesture(root, seed=1, cfg=cfg, workers=1)
    assert len(calls) == 2
    f = root / "user01_led.aedat"
    f.write_bytes(f.read_bytes()[:-8])  # truncated file
    assert not manifest_ok(root, 1, cfg)
    ensure_synth_gesture(root, seed=1, cfg=cfg, workers=1)
    assert len(calls) == 3 and manifest_ok(root, 1, cfg)
    monkeypatch.setattr(D, "GENERATOR_VERSION", "0.0.0-other")
    assert not manifest_ok(root, 1, cfg)


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MASNN_DATA", str(tmp_path / "d"))
    assert default_data_dir() == tmp_path / "d"
    monkeypatch.delenv("MASNN_DATA")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "x"))
    assert default_data_dir() == tmp_path / "x" / "masnn"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_data_dir() == Path.home() / ".local" / "share" / "masnn"


def test_config_validation() -> None:
    with pytest.raises(TypeError, match="unknown synth option"):
        synth_config("small", nosie_scale=1.0)
    with pytest.raises(ValueError, match="size must be one of"):
        synth_config("huge")
    with pytest.raises(ValueError, match="lightings"):
        synth_config("small", lightings=("disco",))
    with pytest.raises(ValueError, match="classes"):
        synth_config("small", classes=(0, 1))
    for knob in ("subject_jitter", "tempo_jitter", "amplitude_jitter", "position_jitter"):
        with pytest.raises(ValueError, match=f"{knob} must be >= 0"):
            synth_config("small", **{knob: -0.5})


def test_full_preset_mirrors_ibm_release() -> None:
    jobs = D.plan_files(synth_config("full"), 0)
    assert sum(j.split == "train" for j in jobs) == 98
    assert sum(j.split == "test" for j in jobs) == 24
    assert {j.user for j in jobs if j.split == "test"} == set(range(24, 30))


def test_cli_registers_action() -> None:
    from masnn.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["data", "synth-gesture", "--out", "x", "--seed", "2"])
    assert args.out == "x" and args.seed == 2 and args.size == "small"


@pytest.mark.slow
def test_small_set_end_to_end(tmp_path: Path) -> None:
    """The whole default set: generation time, noise share, sample counts."""
    import time

    tic = time.perf_counter()
    man = generate_synth_gesture(tmp_path, seed=0, size="small")
    took = time.perf_counter() - tic
    tot = man["totals"]
    assert 0.2 <= tot["noise_fraction"] <= 0.4
    assert 1e4 <= tot["events_per_s"] <= 1e5
    assert tot["samples"]["train"] >= 200 and 100 <= tot["samples"]["test"] <= 200
    assert took <= 90  # 60 s budget on 2 idle cores; slack for a shared machine


def test_goes_through_the_dataset_class(tiny_set: Path, tmp_path: Path) -> None:
    gesture = pytest.importorskip("masnn.data.gesture")
    ds = gesture.DVS128Gesture(tiny_set, "test", cache_dir=tmp_path, progress=False)
    labels = json.loads((tiny_set / "manifest.json").read_text())["samples"]
    want = sorted(s["class"] - 1 for s in labels if s["file"] == "user02_led")
    assert sorted(int(ds[i][1]) for i in range(len(ds))) == want
    assert sum(ds[i][0].size for i in range(len(ds))) == sum(
        s["events"] for s in labels if s["file"] == "user02_led"
    )


def test_refuses_to_overwrite_a_foreign_directory(tmp_path: Path) -> None:
    """A directory with other files (e.g. the user's real DvsGesture copy) is never written."""
    real = tmp_path / "DvsGesture"
    real.mkdir()
    (real / "trials_to_train.txt").write_text("user01_fluorescent.aedat\n")
    (real / "user01_fluorescent.aedat").write_bytes(b"#!AER-DAT3.1\r\n")
    before = {p.name: p.read_bytes() for p in real.iterdir()}
    with pytest.raises(ValueError, match="data.dataset=dvs128_gesture"):
        ensure_synth_gesture(real, cfg=tiny_cfg())
    assert {p.name: p.read_bytes() for p in real.iterdir()} == before


def test_verify_checks_a_synthetic_set_against_its_manifest(tiny_set: Path, tmp_path: Path) -> None:
    from masnn.cli.data_verify import verify_gesture

    root = tmp_path / "set"
    shutil.copytree(tiny_set, root)
    problems, notes = verify_gesture(root, decode=True)
    assert problems == [] and any("masnn synthetic set" in n for n in notes)
    aedat = next(root.glob("*.aedat"))
    aedat.write_bytes(aedat.read_bytes()[:-100])  # cut a recording short
    (root / "trials_to_test.txt").write_text("")  # and lose a trial list's entries
    problems, _ = verify_gesture(root)
    text = "\n".join(problems)
    assert f"{aedat}: " in text and "the manifest says" in text
    assert "lists 0 trial files, the manifest has 1" in text
    assert "0 labelled samples, the manifest gives 3" in text
    aedat.unlink()
    problems, _ = verify_gesture(root)
    assert f"{aedat}: missing (listed in the manifest)" in "\n".join(problems)
    man = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps({**man, "generator_version": "0.9.0"}))
    _, notes = verify_gesture(root)
    assert any("made by generator 0.9.0" in n for n in notes)
    (root / "manifest.json").write_text('{"generator_version": "1.2.0"}')
    problems, _ = verify_gesture(root)
    assert len(problems) == 1 and "unreadable synthetic-set manifest" in problems[0]
