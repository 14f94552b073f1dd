"""Frame integration: hand goldens and invariants on non-square sensors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masnn.events import EVENT_DTYPE, SensorSize, make_events
from masnn.frames import FrameCfg, ToFrames, integrate_split, integrate_window, to_frames

SENSOR = SensorSize(height=3, width=5, polarities=2)


def random_events(rng: np.random.Generator, n: int, sensor: SensorSize, t_max: int = 10_000):
    t = np.sort(rng.integers(0, t_max, n))
    return make_events(
        t,
        rng.integers(0, sensor.width, n),
        rng.integers(0, sensor.height, n),
        rng.integers(0, sensor.polarities, n),
    )


def test_hand_golden_window_non_square() -> None:
    # six events on a 3 x 5 sensor, 2 bins of 10 us
    ev = make_events(
        t=[0, 3, 9, 10, 19, 20],
        x=[4, 4, 0, 2, 2, 1],
        y=[0, 0, 2, 1, 1, 1],
        p=[1, 1, 0, 0, 1, 1],
    )
    f = integrate_window(ev, SENSOR, t_start_us=0, dt_us=10, timesteps=2)
    expected = np.zeros((2, 2, 3, 5), np.float32)
    expected[0, 1, 0, 4] = 2  # (x=4, y=0) twice, ON
    expected[0, 0, 2, 0] = 1
    expected[1, 0, 1, 2] = 1
    expected[1, 1, 1, 2] = 1
    # t=20 falls outside [0, 20)
    np.testing.assert_array_equal(f, expected)
    assert f.dtype == np.float32


def test_downsampling_non_divisible_keeps_events() -> None:
    ev = make_events([0, 1, 2], [4, 3, 0], [2, 1, 0], [0, 0, 1])
    f = integrate_window(ev, SENSOR, 0, 10, 1, ds=2)
    assert f.shape == (1, 2, 2, 3)
    assert f[0, 0, 1, 2] == 1 and f[0, 0, 0, 1] == 1 and f[0, 1, 0, 0] == 1
    assert f.sum() == 3


@pytest.mark.parametrize("sensor", [SensorSize(3, 5, 2), SensorSize(7, 2, 1), SensorSize(16, 9, 2)])
@pytest.mark.parametrize("split_by", ["count", "time"])
@pytest.mark.parametrize("remainder", ["last", "drop"])
@pytest.mark.parametrize("timesteps", [1, 3, 7])
def test_split_conservation_and_closed_form(sensor, split_by, remainder, timesteps) -> None:
    rng = np.random.default_rng(timesteps)
    n = 101
    ev = random_events(rng, n, sensor)
    f = integrate_split(ev, sensor, timesteps, split_by, remainder)
    assert f.shape == (timesteps, sensor.polarities, sensor.height, sensor.width)
    if remainder == "last":
        assert f.sum() == n
    elif split_by == "count":
        assert f.sum() == (n // timesteps) * timesteps
        np.testing.assert_array_equal(f.sum(axis=(1, 2, 3)), n // timesteps)
    else:
        t = ev["t"]
        width = (t[-1] - t[0]) // timesteps
        assert f.sum() == np.count_nonzero(t < t[0] + timesteps * width)


@pytest.mark.parametrize("split_by", ["count", "time"])
@pytest.mark.parametrize("remainder", ["last", "drop"])
def test_empty_input_keeps_shape_and_dtype(split_by, remainder) -> None:
    sensor = SensorSize(4, 6, 2)
    empty = np.zeros(0, EVENT_DTYPE)
    full = random_events(np.random.default_rng(0), 20, sensor)
    a = integrate_split(empty, sensor, 5, split_by, remainder, ds=2)
    b = integrate_split(full, sensor, 5, split_by, remainder, ds=2)
    assert a.shape == b.shape == (5, 2, 2, 3) and a.dtype == b.dtype == np.float32
    assert a.sum() == 0
    w = integrate_window(empty, sensor, 0, 10, 4)
    assert w.shape == (4, 2, 4, 6) and w.dtype == np.float32


def test_empty_bins_allowed_in_time_split() -> None:
    ev = make_events([0, 1, 100], [0, 1, 2], [0, 0, 0], [0, 1, 0])
    f = integrate_split(ev, SENSOR, 10, "time", "last")
    np.testing.assert_array_equal(f.sum(axis=(1, 2, 3)), [2, 0, 0, 0, 0, 0, 0, 0, 0, 1])


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 300),
    t_max=st.integers(1, 5_000),
    dt=st.integers(1, 700),
    timesteps=st.integers(1, 12),
    ds=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_window_conservation_property(n, t_max, dt, timesteps, ds, seed) -> None:
    sensor = SensorSize(5, 11, 2)
    ev = random_events(np.random.default_rng(seed), n, sensor, t_max)
    t0 = int(ev["t"][0]) if n else 0
    f = integrate_window(ev, sensor, t0, dt, timesteps, ds)
    in_window = (ev["t"] >= t0) & (ev["t"] < t0 + timesteps * dt)
    assert f.sum() == np.count_nonzero(in_window)
    per_bin = np.bincount((ev["t"][in_window] - t0) // dt, minlength=timesteps)
    np.testing.assert_array_equal(f.sum(axis=(1, 2, 3)), per_bin)
    assert f.shape == (timesteps, 2, -(-5 // ds), -(-11 // ds))


def test_out_of_sensor_raises() -> None:
    ev = make_events([0], [5], [0], [0])  # x == width
    with pytest.raises(ValueError, match="outside the sensor"):
        integrate_window(ev, SENSOR, 0, 10, 1)


def test_framecfg_validation_names_allowed_values() -> None:
    with pytest.raises(ValueError, match="'window', 'count', 'time'"):
        FrameCfg(mode="frames")
    with pytest.raises(ValueError, match="'last', 'drop'"):
        FrameCfg(mode="count", dt_ms=None, remainder="keep")
    with pytest.raises(ValueError, match="'pad', 'error'"):
        FrameCfg(short="clip")
    with pytest.raises(ValueError, match="timesteps"):
        FrameCfg(timesteps=0)
    with pytest.raises(ValueError, match="microseconds"):
        FrameCfg(dt_ms=0.0001)
    with pytest.raises(ValueError, match="dt_ms=None"):
        FrameCfg(mode="count")
    cfg = FrameCfg(timesteps=4, dt_ms=2.5)
    assert cfg.dt_us == 2500
    assert hash(cfg) == hash(FrameCfg(timesteps=4, dt_ms=2.5)) and cfg == FrameCfg(
        timesteps=4, dt_ms=2.5
    )
    with pytest.raises(AttributeError):
        cfg.timesteps = 3  # type: ignore[misc]


def test_window_protocol_train_and_test_clips() -> None:
    sensor = SensorSize(6, 10, 2)
    rng = np.random.default_rng(1)
    ev = random_events(rng, 2_000, sensor, t_max=100_000)
    cfg = FrameCfg(mode="window", timesteps=5, dt_ms=2, clips=4)
    test = to_frames(ev, sensor, cfg, train=False)
    assert test.shape == (4, 5, 2, 6, 10)
    t0, t1 = int(ev["t"].min()), int(ev["t"].max())
    span = 5 * 2000
    starts = t0 + np.arange(4) * (t1 - span - t0) // 3
    for k, s in enumerate(starts):
        np.testing.assert_array_equal(test[k], integrate_window(ev, sensor, int(s), 2000, 5))
    # training: same seed -> same crop, and the crop is a full window inside the sample
    a = ToFrames(cfg, sensor, train=True, seed=3)(ev)
    b = ToFrames(cfg, sensor, train=True, seed=3)(ev)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (5, 2, 6, 10)
    draws = {float(ToFrames(cfg, sensor, train=True, seed=s)(ev).sum()) for s in range(8)}
    assert len(draws) > 1


def test_short_sample_policy() -> None:
    sensor = SensorSize(3, 5, 2)
    ev = make_events([100, 250], [0, 1], [0, 1], [0, 1])  # lasts 150 us
    pad = FrameCfg(timesteps=4, dt_ms=0.1)  # 400 us window
    f = to_frames(ev, sensor, pad, train=True, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(f.sum(axis=(1, 2, 3)), [1, 1, 0, 0])
    with pytest.raises(ValueError, match="shorter than"):
        to_frames(ev, sensor, FrameCfg(timesteps=4, dt_ms=0.1, short="error"))


def test_accepts_tonic_style_dtype() -> None:
    dtype = np.dtype([("x", "<i2"), ("y", "<i2"), ("p", "?"), ("t", "<i8")])
    ev = np.zeros(3, dtype)
    ev["x"], ev["y"], ev["p"], ev["t"] = [1, 2, 4], [0, 2, 1], [True, False, True], [0, 5, 9]
    f = ToFrames(FrameCfg(mode="count", dt_ms=None, timesteps=3), SensorSize(3, 5, 2))(ev)
    assert f[0, 1, 0, 1] == 1 and f[1, 0, 2, 2] == 1 and f[2, 1, 1, 4] == 1
