"""Parity with SpikingJelly (remainder="last") and Tonic (remainder="drop") via committed goldens.

The goldens and the script that made them live in ``tests/golden/`` (``make_frames_golden.py``);
when the libraries are importable the comparison is also made live.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from masnn.events import SensorSize, make_events
from masnn.frames import integrate_split

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
sys.path.insert(0, str(GOLDEN))
from _thirdparty import spikingjelly_utils, tonic_to_frame  # noqa: E402

DATA = json.loads((GOLDEN / "frames_parity.json").read_text())
CASES = DATA["cases"]


def _events(case: dict) -> np.ndarray:
    e = case["events"]
    return make_events(e["t"], e["x"], e["y"], e["p"])


@pytest.mark.golden
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
@pytest.mark.parametrize("split_by", ["count", "time"])
@pytest.mark.parametrize("remainder", ["last", "drop"])
def test_matches_committed_golden(case: dict, split_by: str, remainder: str) -> None:
    h, w, T = case["height"], case["width"], case["timesteps"]
    ours = integrate_split(_events(case), SensorSize(h, w, 2), T, split_by, remainder)
    expected = np.asarray(case["frames"][f"{split_by}_{remainder}"]).reshape(T, 2, h, w)
    assert h != w
    np.testing.assert_array_equal(ours, expected)
    n = len(case["events"]["t"])
    if remainder == "last":
        assert expected.sum() == n
    elif split_by == "time" or n % T:  # Tonic drops the remainder (always the last event in time)
        assert expected.sum() < n


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_live_spikingjelly(case: dict) -> None:
    pytest.importorskip("spikingjelly")
    sj = spikingjelly_utils()
    if sj is None:
        pytest.skip("spikingjelly.datasets.utils does not import")
    h, w, T = case["height"], case["width"], case["timesteps"]
    ev = _events(case)
    arrays = {k: ev[k].astype(np.int64) for k in ("t", "x", "y", "p")}
    for split_by, name in (("count", "number"), ("time", "time")):
        ref = sj.integrate_events_by_fixed_frames_number(arrays, name, T, h, w)
        ours = integrate_split(ev, SensorSize(h, w, 2), T, split_by, "last")
        np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_live_tonic(case: dict) -> None:
    pytest.importorskip("tonic")
    to_frame = tonic_to_frame()
    if to_frame is None:
        pytest.skip("tonic does not import")
    h, w, T = case["height"], case["width"], case["timesteps"]
    ev = _events(case)
    tev = np.zeros(ev.size, [("x", "<i2"), ("y", "<i2"), ("p", "<i2"), ("t", "<i8")])
    for k in ("x", "y", "p", "t"):
        tev[k] = ev[k]
    for split_by, kw in (("count", "n_event_bins"), ("time", "n_time_bins")):
        ref = to_frame(tev.copy(), sensor_size=(w, h, 2), **{kw: T})
        ours = integrate_split(ev, SensorSize(h, w, 2), T, split_by, "drop")
        np.testing.assert_array_equal(ours, ref)
