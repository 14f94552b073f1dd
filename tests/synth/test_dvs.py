"""Camera model: threshold crossings, interpolated times, refractory period, noise rates."""

from __future__ import annotations

import numpy as np
import pytest

from masnn.events.schema import SensorSize
from masnn.synth.dvs import Camera, CameraCfg, _Pixels, noise_events

SENSOR = SensorSize(3, 5, 2)  # non-square


def _camera(**kw: float) -> Camera:
    cfg = CameraCfg(threshold_mismatch=0.0, hot_pixels=0, **kw)  # type: ignore[arg-type]
    return Camera.draw(cfg, SENSOR, np.random.default_rng(0))


def test_linear_ramp_gives_evenly_spaced_on_events() -> None:
    cam = _camera(threshold_on=0.2, threshold_off=0.3, refractory_us=0.0)
    l0 = np.zeros((3, 5))
    px = _Pixels(cam, l0)
    full = (slice(0, 3), slice(0, 5))
    t, i, p = px.step(*full, l0, l0 + 0.9, 0.0, 9000.0)
    assert t.size == 4 * 15 and set(p.tolist()) == {1}  # floor(0.9 / 0.2) per pixel
    np.testing.assert_allclose(np.sort(t[i == 7]), [2000, 4000, 6000, 8000])
    np.testing.assert_allclose(px.ref, 0.8)
    # going back down by 0.9: from reference 0.8, OFF crossings at L = 0.5 and 0.2
    t, i, p = px.step(*full, l0 + 0.9, l0, 9000.0, 18000.0)
    assert t.size == 2 * 15 and set(p.tolist()) == {0}
    np.testing.assert_allclose(np.sort(t[i == 0]), [13000, 16000])


def test_refractory_drops_close_crossings() -> None:
    cam = _camera(threshold_on=0.125, refractory_us=2500.0)
    l0 = np.zeros((3, 5))
    px = _Pixels(cam, l0)
    t, i, _ = px.step(slice(0, 1), slice(0, 1), l0[:1, :1], l0[:1, :1] + 1.0, 0.0, 8000.0)
    # crossings every 1000 us at 1000..8000; a dead time of 2500 us keeps every third
    np.testing.assert_allclose(np.sort(t), [1000, 4000, 7000])
    # the next step continues the dead time across the render boundary
    t, i, _ = px.step(slice(0, 1), slice(0, 1), l0[:1, :1] + 1.0, l0[:1, :1] + 2.0, 8000.0, 16000.0)
    np.testing.assert_allclose(np.sort(t), [10000, 13000, 16000])
    assert px.ref[0, 0] == pytest.approx(2.0)  # the reference still follows the signal


def test_threshold_mismatch_spread() -> None:
    cfg = CameraCfg(threshold_on=0.2, threshold_mismatch=0.15)
    cam = Camera.draw(cfg, SensorSize(128, 128, 2), np.random.default_rng(1))
    assert cam.c_on.mean() == pytest.approx(0.2, rel=0.02)
    assert cam.c_on.std() / cam.c_on.mean() == pytest.approx(0.15, rel=0.1)


def test_noise_rates() -> None:
    cfg = CameraCfg(ba_rate_hz=2.0, hot_pixels=2, hot_rate_hz=500.0)
    cam = Camera.draw(cfg, SensorSize(40, 60, 2), np.random.default_rng(2))
    (bt, bi, bp), (ht, hi, hp) = noise_events(cam, 2e6, np.random.default_rng(3))
    expect = cam.ba_rate.sum() * 2.0
    assert abs(bt.size - expect) < 5 * np.sqrt(expect)
    assert bt.min() >= 0 and bt.max() < 2e6 and bi.max() < 40 * 60
    assert bp.mean() == pytest.approx(cfg.ba_on_fraction, abs=0.03)
    assert set(np.unique(hi).tolist()) <= {int(y * 60 + x) for x, y, *_ in cam.hot}
    assert abs(ht.size - cam.hot[:, 2].sum() * 2.0) < 5 * np.sqrt(cam.hot[:, 2].sum() * 2.0)


def test_camera_cfg_validates() -> None:
    with pytest.raises(ValueError, match="threshold_on"):
        CameraCfg(threshold_on=0)
    with pytest.raises(ValueError, match="ba_on_fraction"):
        CameraCfg(ba_on_fraction=1.5)
