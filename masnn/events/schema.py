"""Event records and sensor geometry: the one event layout used throughout masnn.

Events are numpy structured arrays with fields ``t`` (microseconds, int64), ``x`` and ``y``
(pixel column and row, int16; (0, 0) is the top-left pixel) and ``p`` (polarity, int8:
1 = ON / brightness increase, 0 = OFF). Frames built from them are ``(P, H, W)`` with
``H`` indexed by ``y`` and ``W`` by ``x`` (the official MA-SNN code stores ``[P, x, y]``;
see ``docs/deviations.md``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "i1")])


class SensorSize(NamedTuple):
    """Sensor geometry with named fields, height before width (never a bare tuple)."""

    height: int
    width: int
    polarities: int = 2


#: The DVS128 camera used by DVS128 Gesture and DVS128 Gait.
DVS128 = SensorSize(128, 128, 2)


def make_events(t, x, y, p) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Build an ``EVENT_DTYPE`` array from four equal-length sequences.

    Example:
        >>> ev = make_events([0, 5], [1, 2], [3, 4], [1, 0])
        >>> ev["t"].tolist(), ev.dtype == EVENT_DTYPE
        ([0, 5], True)
    """
    t = np.asarray(t)
    n = t.shape[0]
    for name, arr in (("x", x), ("y", y), ("p", p)):
        if np.shape(arr) != (n,):
            raise ValueError(
                f"make_events: field {name!r} has shape {np.shape(arr)}, expected ({n},)"
            )
    ev = np.empty(n, dtype=EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["p"] = t, x, y, p
    return ev


def validate_events(events: np.ndarray, sensor: SensorSize | None = None) -> np.ndarray:
    """Check dtype and (given a sensor) coordinate bounds; return ``events`` unchanged.

    Raises:
        TypeError: wrong dtype.
        ValueError: a coordinate or polarity outside the sensor.
    """
    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE:
        got = getattr(events, "dtype", type(events).__name__)
        raise TypeError(f"events must be a numpy array of dtype {EVENT_DTYPE}, got {got}")
    if sensor is not None and events.size:
        for name, hi in (("x", sensor.width), ("y", sensor.height), ("p", sensor.polarities)):
            v = events[name]
            if v.min() < 0 or v.max() >= hi:
                raise ValueError(
                    f"event field {name!r} spans [{v.min()}, {v.max()}], outside [0, {hi}) for {sensor}"
                )
    return events
