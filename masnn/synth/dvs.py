"""A DVS128-like camera model: scene rendering, log-intensity change detection and noise.

Each pixel ``i`` keeps a reference log intensity ``L_ref[i]``; it emits an ON event whenever
``L(t) - L_ref[i] >= C_on[i]`` (then ``L_ref[i] += C_on[i]``) and an OFF event whenever
``L(t) - L_ref[i] <= -C_off[i]`` (then ``L_ref[i] -= C_off[i]``). The thresholds carry a
per-pixel mismatch ``C[i] = C * (1 + sigma * N(0, 1))``. After an event the pixel is blind
for a refractory period: crossings inside it are lost (the reference still moves, as the
real pixel resets to the current level when it comes back).

The scene is rendered only at a coarse rate (``render_hz``, default 100 Hz) and only inside
the bounding box of the moving limbs; between two renders ``L`` is taken as linear in time,
so the crossing times are interpolated to the microsecond. Background activity (Poisson,
per-pixel rate with mismatch) and a few hot pixels (high-rate Poisson) are added on top.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from masnn.events.schema import EVENT_DTYPE, SensorSize

_F = np.float32


@dataclass(frozen=True)
class CameraCfg:
    """Camera parameters (defaults give a DVS128-like sensor).

    Attributes:
        threshold_on: mean ON contrast threshold (log-intensity units).
        threshold_off: mean OFF contrast threshold.
        threshold_mismatch: relative per-pixel spread (sigma) of both thresholds.
        refractory_us: dead time after each event, microseconds.
        ba_rate_hz: mean background-activity rate per pixel (before lighting gain).
        ba_on_fraction: share of ON events in background activity.
        hot_pixels: number of hot pixels.
        hot_rate_hz: median hot-pixel rate (before lighting gain).
        render_hz: scene render rate; crossing times are interpolated in between.
        edge_px: width of the soft limb edges, pixels.
    """

    threshold_on: float = 0.2
    threshold_off: float = 0.2
    threshold_mismatch: float = 0.15
    refractory_us: float = 1000.0
    ba_rate_hz: float = 0.35
    ba_on_fraction: float = 0.6
    hot_pixels: int = 6
    hot_rate_hz: float = 80.0
    render_hz: float = 100.0
    edge_px: float = 1.5

    def __post_init__(self) -> None:
        for name in ("threshold_on", "threshold_off", "render_hz", "edge_px"):
            if not getattr(self, name) > 0:
                raise ValueError(f"CameraCfg.{name} must be > 0, got {getattr(self, name)}")
        for name in ("threshold_mismatch", "refractory_us", "ba_rate_hz", "hot_rate_hz"):
            if getattr(self, name) < 0:
                raise ValueError(f"CameraCfg.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.ba_on_fraction <= 1:
            raise ValueError(
                f"CameraCfg.ba_on_fraction must be in [0, 1], got {self.ba_on_fraction}"
            )
        if self.hot_pixels < 0:
            raise ValueError(f"CameraCfg.hot_pixels must be >= 0, got {self.hot_pixels}")


@dataclass(frozen=True)
class Camera:
    """One physical sensor: per-pixel thresholds, noise-rate map and hot pixels.

    Attributes:
        cfg: the parameters it was drawn from.
        sensor: geometry.
        c_on: ON thresholds ``(H, W)``.
        c_off: OFF thresholds ``(H, W)``.
        ba_rate: background-activity rate per pixel ``(H, W)``, Hz (before lighting gain).
        hot: hot pixels ``(k, 4)``: x, y, rate (Hz), probability of ON.
    """

    cfg: CameraCfg
    sensor: SensorSize
    c_on: np.ndarray
    c_off: np.ndarray
    ba_rate: np.ndarray
    hot: np.ndarray

    @classmethod
    def draw(cls, cfg: CameraCfg, sensor: SensorSize, rng: np.random.Generator) -> Camera:
        """Draw the fixed-pattern properties of a camera."""
        shape = (sensor.height, sensor.width)
        floor = 0.2 * min(cfg.threshold_on, cfg.threshold_off)

        def mism(c: float) -> np.ndarray:
            m = c * (1.0 + cfg.threshold_mismatch * rng.standard_normal(shape))
            return np.maximum(m, floor).astype(_F)

        c_on, c_off = mism(cfg.threshold_on), mism(cfg.threshold_off)
        ba = cfg.ba_rate_hz * rng.lognormal(-0.125, 0.5, shape)  # mean 1 spread
        npix = sensor.height * sensor.width
        idx = rng.choice(npix, size=cfg.hot_pixels, replace=False)
        hot = np.stack(
            [
                idx % sensor.width,
                idx // sensor.width,
                cfg.hot_rate_hz * rng.lognormal(0.0, 0.7, cfg.hot_pixels),
                rng.choice([0.1, 0.9, 0.5], size=cfg.hot_pixels),
            ],
            axis=1,
        ).astype(np.float64)
        return cls(cfg, sensor, c_on, c_off, ba, hot)


@dataclass(frozen=True)
class Scene:
    """A static backdrop plus two moving arms, in image pixels.

    Attributes:
        log_background: log intensity of everything that does not move ``(H, W)``.
        sleeve: linear intensity of the arms.
        hand: linear intensity of the hands.
        radii: upper arm, forearm and hand radii, pixels.
        shoulders: ``(2, 2)`` shoulder positions (image pixels), right then left.
    """

    log_background: np.ndarray
    sleeve: float
    hand: float
    radii: tuple[float, float, float]
    shoulders: np.ndarray


def _capsule_coverage(
    px: np.ndarray, py: np.ndarray, a: np.ndarray, b: np.ndarray, r: float, edge: float
) -> np.ndarray:
    """Soft coverage in [0, 1] of capsules ``a -> b`` (each ``(K, 2)``) on a pixel grid.

    ``px`` is ``(1, 1, w)`` and ``py`` ``(1, h, 1)``; the result is ``(K, h, w)``.
    """
    ax, ay = a[:, 0, None, None], a[:, 1, None, None]
    dx, dy = (b[:, 0] - a[:, 0])[:, None, None], (b[:, 1] - a[:, 1])[:, None, None]
    qx, qy = px - ax, py - ay
    h = np.clip((qx * dx + qy * dy) / (dx * dx + dy * dy + _F(1e-6)), 0, 1)
    ex, ey = qx - h * dx, qy - h * dy
    c = np.clip((r - np.sqrt(ex * ex + ey * ey)) / edge + _F(0.5), 0, 1)
    return c * c * (3 - 2 * c)


def render_log(
    scene: Scene,
    joints: np.ndarray,
    rows: slice,
    cols: slice,
    edge: float,
) -> np.ndarray:
    """Log intensity ``(K, h, w)`` of a region for ``K`` poses.

    Args:
        scene: the backdrop and arm appearance.
        joints: ``(K, 2 arms, 2 joints [elbow, hand], 2)`` image positions.
        rows: region rows.
        cols: region columns.
        edge: soft edge width, pixels.
    """
    joints = joints.astype(_F)
    py = np.arange(rows.start, rows.stop, dtype=_F)[None, :, None]
    px = np.arange(cols.start, cols.stop, dtype=_F)[None, None, :]
    bg = np.exp(scene.log_background[rows, cols]).astype(_F)
    img = np.broadcast_to(bg, (joints.shape[0],) + bg.shape).copy()
    r_up, r_fore, r_hand = scene.radii
    for arm in range(2):
        sh = np.broadcast_to(scene.shoulders[arm].astype(_F), (joints.shape[0], 2))
        el, hd = joints[:, arm, 0], joints[:, arm, 1]
        cov = np.maximum(
            _capsule_coverage(px, py, sh, el, r_up, edge),
            _capsule_coverage(px, py, el, hd, r_fore, edge),
        )
        img += (_F(scene.sleeve) - img) * cov
        img += (_F(scene.hand) - img) * _capsule_coverage(px, py, hd, hd, r_hand, edge)
    return np.log(img)


class _Pixels:
    """Change-detector state of the whole array (reference levels and last event times)."""

    def __init__(self, camera: Camera, log_initial: np.ndarray) -> None:
        self.camera = camera
        self.ref = log_initial.astype(np.float64)
        self.last = np.full(log_initial.shape, -1e18)
        self.refractory = float(camera.cfg.refractory_us)

    def step(
        self, rows: slice, cols: slice, l0: np.ndarray, l1: np.ndarray, t0: float, t1: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Events of a region while ``L`` goes linearly from ``l0`` (at ``t0``) to ``l1``.

        Returns:
            Times (µs, float), flat pixel indices and polarities of the events, unsorted.
        """
        width = self.camera.sensor.width
        ref = self.ref[rows, cols]
        last = self.last[rows, cols]
        diff = l1 - ref
        out_t, out_i, out_p = [], [], []
        for pol, thr in ((1, self.camera.c_on[rows, cols]), (0, self.camera.c_off[rows, cols])):
            sgn = 1.0 if pol else -1.0
            hit = np.flatnonzero(sgn * diff >= thr)
            if hit.size == 0:
                continue
            rr, cc = np.unravel_index(hit, diff.shape)
            c = thr.ravel()[hit].astype(np.float64)
            n = np.floor(sgn * diff.ravel()[hit] / c).astype(np.int64)
            a = l0.ravel()[hit]
            slope = np.maximum(sgn * (l1.ravel()[hit] - a), 1e-12)  # change per step, > 0
            dt = t1 - t0
            first = t0 + np.clip(sgn * (ref.ravel()[hit] - a) + c, 0, None) / slope * dt
            spacing = c / slope * dt
            ref[rr, cc] += sgn * n * c
            # refractory: keep every s-th crossing, starting after the pixel's dead time
            i0 = np.maximum(0, np.ceil((last[rr, cc] + self.refractory - first) / spacing))
            s = np.maximum(1, np.ceil(self.refractory / spacing))
            kept = np.maximum(0, np.ceil((n - i0) / s)).astype(np.int64)
            ok = kept > 0
            if not ok.any():
                continue
            rr, cc, kept = rr[ok], cc[ok], kept[ok]
            first, spacing, i0, s = first[ok], spacing[ok], i0[ok], s[ok]
            last[rr, cc] = first + (i0 + (kept - 1) * s) * spacing
            rep = np.repeat(np.arange(kept.size), kept)
            m = np.arange(rep.size) - np.repeat(np.cumsum(kept) - kept, kept)
            out_t.append(first[rep] + (i0[rep] + m * s[rep]) * spacing[rep])
            out_i.append((rr[rep] + rows.start) * width + cc[rep] + cols.start)
            out_p.append(np.full(rep.size, pol, np.int8))
        self.ref[rows, cols] = ref
        self.last[rows, cols] = last
        if not out_t:
            return np.empty(0), np.empty(0, np.int64), np.empty(0, np.int8)
        return np.concatenate(out_t), np.concatenate(out_i), np.concatenate(out_p)


def simulate_motion(
    camera: Camera,
    scene: Scene,
    joints: np.ndarray,
    chunk: int = 8,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signal events of a scene whose arms follow ``joints`` sampled at ``render_hz``.

    Args:
        camera: the sensor.
        scene: backdrop and appearance.
        joints: ``(n, 2, 2, 2)`` elbow and hand image positions of both arms per render.
        chunk: renders evaluated together (speed only; results do not depend on it).

    Returns:
        Times (µs from the first render, float), flat pixel indices, polarities; unsorted.
    """
    cfg = camera.cfg
    h, w = camera.sensor.height, camera.sensor.width
    period = 1e6 / cfg.render_hz
    pad = max(scene.radii) + 2 * cfg.edge_px + 1
    full_r, full_c = slice(0, h), slice(0, w)
    state = render_log(scene, joints[:1], full_r, full_c, cfg.edge_px)[0].astype(np.float64)
    pixels = _Pixels(camera, state)
    ts, idx, pol = [], [], []
    for k0 in range(1, joints.shape[0], chunk):
        k1 = min(k0 + chunk, joints.shape[0])
        seg = joints[k0 - 1 : k1]  # includes the previous pose
        moving = np.ptp(seg, axis=0).max(axis=(1, 2)) > 1e-6  # per arm
        if not moving.any():
            continue
        pts = np.concatenate(
            [seg[:, moving].reshape(-1, 2), np.repeat(scene.shoulders[moving], 1, axis=0)]
        )
        x0, y0 = np.floor(pts.min(axis=0) - pad).astype(int)
        x1, y1 = np.ceil(pts.max(axis=0) + pad).astype(int) + 1
        rows = slice(max(y0, 0), min(y1, h))
        cols = slice(max(x0, 0), min(x1, w))
        if rows.start >= rows.stop or cols.start >= cols.stop:
            continue
        frames = render_log(scene, seg[1:], rows, cols, cfg.edge_px).astype(np.float64)
        prev = state[rows, cols]
        for j in range(frames.shape[0]):
            k = k0 + j
            t_, i_, p_ = pixels.step(rows, cols, prev, frames[j], (k - 1) * period, k * period)
            if t_.size:
                ts.append(t_)
                idx.append(i_)
                pol.append(p_)
            prev = frames[j]
        state[rows, cols] = prev
    if not ts:
        return np.empty(0), np.empty(0, np.int64), np.empty(0, np.int8)
    return np.concatenate(ts), np.concatenate(idx), np.concatenate(pol)


def noise_events(
    camera: Camera,
    duration_us: float,
    rng: np.random.Generator,
    ba_gain: float = 1.0,
    hot_gain: float = 1.0,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Background activity and hot-pixel events over ``[0, duration_us)``.

    Returns:
        ``(t, flat_index, p)`` for background activity, then for hot pixels (unsorted).
    """
    w = camera.sensor.width
    rate = camera.ba_rate.ravel() * ba_gain
    total = float(rate.sum()) * duration_us * 1e-6
    n = int(rng.poisson(total)) if total > 0 else 0
    cdf = np.cumsum(rate)
    ba_i = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right").astype(np.int64)
    ba_i = np.minimum(ba_i, rate.size - 1)
    ba = (
        rng.random(n) * duration_us,
        ba_i,
        (rng.random(n) < camera.cfg.ba_on_fraction).astype(np.int8),
    )
    hot_t, hot_i, hot_p = [], [], []
    for x, y, r, p_on in camera.hot:
        k = int(rng.poisson(r * hot_gain * duration_us * 1e-6))
        hot_t.append(rng.random(k) * duration_us)
        hot_i.append(np.full(k, int(y) * w + int(x), np.int64))
        hot_p.append((rng.random(k) < p_on).astype(np.int8))
    hot = (
        np.concatenate(hot_t) if hot_t else np.empty(0),
        np.concatenate(hot_i) if hot_i else np.empty(0, np.int64),
        np.concatenate(hot_p) if hot_p else np.empty(0, np.int8),
    )
    return ba, hot


def to_event_array(
    t_us: np.ndarray, flat: np.ndarray, p: np.ndarray, width: int, t_offset_us: int = 0
) -> np.ndarray:
    """Sort by time (stable, so equal times keep input order) into an ``EVENT_DTYPE`` array."""
    ti = np.floor(t_us).astype(np.int64) + int(t_offset_us)
    order = np.argsort(ti, kind="stable")
    ev = np.empty(ti.size, dtype=EVENT_DTYPE)
    ev["t"] = ti[order]
    ev["x"] = (flat[order] % width).astype(np.int16)
    ev["y"] = (flat[order] // width).astype(np.int16)
    ev["p"] = p[order]
    return ev
