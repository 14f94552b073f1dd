"""Events -> dense frames: ``FrameCfg`` and the one reference integration (numpy only).

Every frame is a histogram of event counts, ``float32``, laid out ``(T, P, H, W)``: ``H`` is
indexed by ``y // ds`` and ``W`` by ``x // ds`` (the official MA-SNN code stores
``[P, x, y]``; masnn transposes once, here, so that frames match the event-camera image
orientation; see ``docs/data.md``). Polarity ``p`` goes to channel ``p`` (``0 <= p < P``).
All integration goes through :func:`_histogram`: one ``np.bincount`` over the flat index
``((bin * P + p) * H' + y // ds) * W' + x // ds`` with ``H' = ceil(H / ds)`` and
``W' = ceil(W / ds)`` (equal to ``H // ds``, ``W // ds`` when ``ds`` divides the sensor size, as
for DVS128 with ``ds`` in 1, 2, 4; the ceiling keeps every event when it does not).

Three ways to place events in ``T`` bins:

* ``mode="window"`` (the MA-SNN protocol, paper Eq. 1-2): bin ``i`` holds events with
  ``t0 + i * dt <= t < t0 + (i + 1) * dt``; events outside the ``T * dt`` window are ignored.
  Training draws ``t0`` uniformly from ``[t_first, t_last - T * dt]``; testing uses ``clips``
  windows whose starts are evenly spaced over the same range. A sample shorter than
  ``T * dt`` follows ``short``: ``"pad"`` starts the window at the first event (the trailing bins
  stay empty, as in the official code) and ``"error"`` raises.
* ``mode="count"``: with ``N`` events, bin ``j`` holds indices ``[j * (N // T), (j + 1) * (N // T))``.
* ``mode="time"``: with ``D = (t_last - t_first) // T``, bin ``j`` holds
  ``t_first + j * D <= t < t_first + (j + 1) * D``.

For ``count`` and ``time`` the events past the last regular bin are the *remainder*:
``remainder="last"`` adds them to bin ``T - 1`` (SpikingJelly's
``integrate_events_by_fixed_frames_number``), ``remainder="drop"`` discards them (Tonic's
``ToFrame(n_event_bins=T)`` / ``ToFrame(n_time_bins=T)``). Empty bins are allowed everywhere
(SpikingJelly raises ``IndexError`` on an empty time bin). ``time`` mode expects events sorted
by ``t`` (every reader in masnn returns them sorted when the file is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from masnn.events.schema import SensorSize

MODES = ("window", "count", "time")
REMAINDERS = ("last", "drop")
SHORT_POLICIES = ("pad", "error")

Mode = Literal["window", "count", "time"]
Remainder = Literal["last", "drop"]
ShortPolicy = Literal["pad", "error"]


@dataclass(frozen=True)
class FrameCfg:
    """How events become ``T`` frames. Frozen and hashable: it is part of cache keys.

    Attributes:
        mode: ``"window"`` (MA-SNN fixed ``dt`` windows), ``"count"`` or ``"time"`` (split the
            whole sample into ``timesteps`` bins by event count or by time).
        timesteps: number of frames ``T`` (>= 1).
        dt_ms: bin width in milliseconds for ``mode="window"``; must be a whole number of
            microseconds. Ignored (must stay ``None``) for the other modes.
        ds: spatial downsampling factor: pixel ``(x, y)`` goes to ``(x // ds, y // ds)``.
        clips: number of evenly spaced test windows for ``mode="window"`` (>= 1).
        short: policy for samples shorter than ``timesteps * dt_ms`` in ``window`` mode:
            ``"pad"`` or ``"error"``.
        remainder: policy for events after the last regular bin in ``count`` / ``time`` modes:
            ``"last"`` (into the last bin, SpikingJelly) or ``"drop"`` (Tonic).

    Example:
        >>> FrameCfg(mode="window", timesteps=60, dt_ms=15, ds=4).dt_us
        15000
    """

    mode: Mode = "window"
    timesteps: int = 60
    dt_ms: float | None = 15.0
    ds: int = 1
    clips: int = 1
    short: ShortPolicy = "pad"
    remainder: Remainder = "last"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"FrameCfg.mode must be one of {MODES}, got {self.mode!r}")
        if self.remainder not in REMAINDERS:
            raise ValueError(
                f"FrameCfg.remainder must be one of {REMAINDERS}, got {self.remainder!r}"
            )
        if self.short not in SHORT_POLICIES:
            raise ValueError(f"FrameCfg.short must be one of {SHORT_POLICIES}, got {self.short!r}")
        for name in ("timesteps", "ds", "clips"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"FrameCfg.{name} must be an integer >= 1, got {v!r}")
        if self.mode == "window":
            dt = self.dt_ms
            if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not dt > 0:
                raise ValueError(f"FrameCfg.dt_ms must be > 0 for mode='window', got {dt!r}")
            if not math.isfinite(dt) or abs(dt * 1000 - round(dt * 1000)) > 1e-6:
                raise ValueError(
                    f"FrameCfg.dt_ms must be a whole number of microseconds, got {dt!r}"
                )
        else:
            if self.dt_ms is not None:
                raise ValueError(
                    f"FrameCfg.dt_ms applies only to mode='window'; set dt_ms=None for "
                    f"mode={self.mode!r}"
                )
            if self.clips != 1:
                raise ValueError(f"FrameCfg.clips applies only to mode='window', got {self.clips}")

    @property
    def dt_us(self) -> int:
        """Bin width in microseconds (``window`` mode)."""
        if self.dt_ms is None:
            raise ValueError(f"FrameCfg.dt_us is undefined for mode={self.mode!r}")
        return int(round(self.dt_ms * 1000))

    @property
    def deterministic(self) -> bool:
        """True when the frames of a sample do not depend on a random draw (cacheable)."""
        return self.mode != "window"

    def frame_shape(self, sensor: SensorSize) -> tuple[int, int, int, int]:
        """``(T, P, H', W')`` of one clip for ``sensor``."""
        h, w = _out_hw(sensor, self.ds)
        return (self.timesteps, sensor.polarities, h, w)


def _out_hw(sensor: SensorSize, ds: int) -> tuple[int, int]:
    return -(-sensor.height // ds), -(-sensor.width // ds)


def _fields(events: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``t, x, y, p`` of any structured array with those field names (masnn's or Tonic's)."""
    names = getattr(getattr(events, "dtype", None), "names", None) or ()
    missing = [n for n in ("t", "x", "y", "p") if n not in names]
    if missing:
        raise TypeError(
            f"events must be a structured array with fields t, x, y, p; missing {missing}"
        )
    return events["t"], events["x"], events["y"], events["p"]


def _histogram(
    bins: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    p: np.ndarray,
    sensor: SensorSize,
    timesteps: int,
    ds: int,
) -> np.ndarray:
    """THE integration kernel: count events per ``(bin, p, y // ds, x // ds)``.

    Events whose ``bins`` value lies outside ``[0, timesteps)`` are ignored.
    """
    h, w = _out_hw(sensor, ds)
    npol = sensor.polarities
    size = timesteps * npol * h * w
    if bins.size == 0:
        return np.zeros((timesteps, npol, h, w), np.float32)
    xi = x.astype(np.int64)
    yi = y.astype(np.int64)
    pi = p.astype(np.int64)
    bad = (xi < 0) | (xi >= sensor.width) | (yi < 0) | (yi >= sensor.height)
    bad |= (pi < 0) | (pi >= npol)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"event {i} (x={xi[i]}, y={yi[i]}, p={pi[i]}) lies outside the sensor {sensor}"
        )
    keep = (bins >= 0) & (bins < timesteps)
    if not keep.all():
        bins, xi, yi, pi = bins[keep], xi[keep], yi[keep], pi[keep]
    if ds > 1:
        xi //= ds
        yi //= ds
    flat = ((bins.astype(np.int64) * npol + pi) * h + yi) * w + xi
    counts = np.bincount(flat, minlength=size)
    return counts.astype(np.float32).reshape(timesteps, npol, h, w)


def integrate_window(
    events: np.ndarray,
    sensor: SensorSize,
    t_start_us: int,
    dt_us: int,
    timesteps: int,
    ds: int = 1,
) -> np.ndarray:
    """Integrate ``timesteps`` fixed windows of ``dt_us`` starting at ``t_start_us``.

    Frame ``i`` counts the events with ``t_start_us + i * dt_us <= t < t_start_us + (i + 1) *
    dt_us``; events outside ``[t_start_us, t_start_us + timesteps * dt_us)`` are ignored.

    Args:
        events: structured array with fields ``t`` (µs), ``x``, ``y``, ``p`` (any order).
        sensor: sensor geometry; coordinates outside it raise ``ValueError``.
        t_start_us: start of the first window (µs).
        dt_us: window width (µs, >= 1).
        timesteps: number of windows ``T`` (>= 1).
        ds: spatial downsampling factor (>= 1).

    Returns:
        ``float32`` counts of shape ``(T, P, ceil(H / ds), ceil(W / ds))``.

    Example:
        >>> from masnn.events import SensorSize, make_events
        >>> ev = make_events([0, 10, 25], [4, 0, 1], [2, 0, 1], [1, 0, 1])
        >>> f = integrate_window(ev, SensorSize(3, 5, 2), 0, 10, 3)
        >>> f.shape, f.sum(), f[0, 1, 2, 4], f[2, 1, 1, 1]
        ((3, 2, 3, 5), np.float32(3.0), np.float32(1.0), np.float32(1.0))
    """
    _check_int("timesteps", timesteps)
    _check_int("dt_us", dt_us)
    _check_int("ds", ds)
    t, x, y, p = _fields(events)
    rel = t.astype(np.int64) - np.int64(t_start_us)
    bins = np.where(rel >= 0, rel // dt_us, -1)
    return _histogram(bins, x, y, p, sensor, timesteps, ds)


def integrate_split(
    events: np.ndarray,
    sensor: SensorSize,
    timesteps: int,
    split_by: Literal["count", "time"],
    remainder: Remainder = "last",
    ds: int = 1,
) -> np.ndarray:
    """Split a whole sample into ``timesteps`` frames by event count or by time.

    See the module docstring for the bin edges. ``remainder="last"`` reproduces SpikingJelly's
    ``integrate_events_by_fixed_frames_number`` (without its empty-bin ``IndexError``);
    ``remainder="drop"`` reproduces Tonic's ``ToFrame(n_event_bins=T | n_time_bins=T)``.

    Returns:
        ``float32`` counts of shape ``(T, P, ceil(H / ds), ceil(W / ds))``; all zeros for an
        empty input.
    """
    _check_int("timesteps", timesteps)
    _check_int("ds", ds)
    if remainder not in REMAINDERS:
        raise ValueError(f"remainder must be one of {REMAINDERS}, got {remainder!r}")
    t, x, y, p = _fields(events)
    n = t.shape[0]
    if split_by == "count":
        per = n // timesteps
        idx = np.arange(n, dtype=np.int64)
        bins = idx // per if per > 0 else np.full(n, timesteps, np.int64)
    elif split_by == "time":
        if n == 0:
            bins = np.zeros(0, np.int64)
        else:
            t64 = t.astype(np.int64)
            t0 = t64[0]
            width = (t64[-1] - t0) // timesteps
            rel = t64 - t0
            bins = rel // width if width > 0 else np.full(n, timesteps, np.int64)
            bins = np.where(rel >= 0, bins, -1)
    else:
        raise ValueError(f"split_by must be one of ('count', 'time'), got {split_by!r}")
    if remainder == "last":
        bins = np.minimum(bins, timesteps - 1)
    return _histogram(bins, x, y, p, sensor, timesteps, ds)


def window_starts(
    t_first: int, t_last: int, cfg: FrameCfg, *, train: bool, rng: np.random.Generator | None
) -> np.ndarray:
    """Start times (µs, int64) of the ``window``-mode clips for a sample spanning the given times.

    Training returns one start drawn uniformly from ``[t_first, t_last - T * dt]``; testing
    returns ``cfg.clips`` starts evenly spaced over that range (the first at ``t_first``). A
    sample shorter than ``T * dt`` follows ``cfg.short``.
    """
    span = cfg.timesteps * cfg.dt_us
    latest = int(t_last) - span
    if latest < int(t_first):
        if cfg.short == "error":
            raise ValueError(
                f"sample lasts {int(t_last) - int(t_first)} µs, shorter than "
                f"timesteps * dt = {span} µs (FrameCfg.short='error'; use short='pad')"
            )
        latest = int(t_first)
    if train:
        gen = rng if rng is not None else np.random.default_rng()
        return np.array([gen.integers(int(t_first), latest, endpoint=True)], np.int64)
    if cfg.clips == 1:
        return np.array([int(t_first)], np.int64)
    return np.int64(t_first) + (
        np.arange(cfg.clips, dtype=np.int64) * (latest - int(t_first)) // (cfg.clips - 1)
    )


def to_frames(
    events: np.ndarray,
    sensor: SensorSize,
    cfg: FrameCfg,
    *,
    train: bool = False,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Frames of one sample according to ``cfg``.

    Returns:
        ``(T, P, H', W')`` float32; in ``window`` mode at test time with ``cfg.clips > 1``,
        ``(clips, T, P, H', W')``.
    """
    if cfg.mode in ("count", "time"):
        return integrate_split(events, sensor, cfg.timesteps, cfg.mode, cfg.remainder, cfg.ds)
    t = _fields(events)[0]
    if t.shape[0] == 0:
        starts = np.zeros(1 if train else cfg.clips, np.int64)
    else:
        starts = window_starts(int(t.min()), int(t.max()), cfg, train=train, rng=rng)
    clips = [
        integrate_window(events, sensor, int(s), cfg.dt_us, cfg.timesteps, cfg.ds) for s in starts
    ]
    if train or cfg.clips == 1:
        return clips[0]
    return np.stack(clips)


class ToFrames:
    """Transform: events -> frames per :class:`FrameCfg`; callable on one sample.

    Works on masnn's ``EVENT_DTYPE`` and on any structured array with fields ``t``, ``x``,
    ``y``, ``p`` (so it can sit inside ``tonic.transforms.Compose``).

    Args:
        cfg: the framing configuration.
        sensor: sensor geometry (``SensorSize``; height before width).
        train: draw a random window start (``window`` mode); otherwise use ``cfg.clips`` windows.
        seed: seed of the private random generator (``None``: fresh entropy).
    """

    def __init__(
        self, cfg: FrameCfg, sensor: SensorSize, *, train: bool = False, seed: int | None = None
    ) -> None:
        if not isinstance(cfg, FrameCfg):
            raise TypeError(f"cfg must be a FrameCfg, got {type(cfg).__name__}")
        if not isinstance(sensor, SensorSize):
            raise TypeError(
                "sensor must be a masnn.events.SensorSize(height, width, polarities), got "
                f"{sensor!r}"
            )
        self.cfg = cfg
        self.sensor = sensor
        self.train = bool(train)
        self.rng = np.random.default_rng(seed)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return to_frames(events, self.sensor, self.cfg, train=self.train, rng=self.rng)

    def __repr__(self) -> str:
        return f"ToFrames({self.cfg!r}, {self.sensor!r}, train={self.train})"


def _check_int(name: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
