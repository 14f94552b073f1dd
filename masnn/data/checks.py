"""Data honesty checks: problems in recordings and labels are reported, never trained on.

* :func:`time_order_problem`: timestamps that go backwards, or jump forward by more than
  :data:`MAX_GAP_US` (a damaged ``eventTSOverflow`` moves a packet hours ahead); the message
  names the file and the byte offset (AEDAT) or event index.
* :func:`sensor_problem`: coordinates outside the sensor, naming the file.
* :func:`empty_samples` / :func:`check_empty_samples`: label windows that select no event
  (e.g. CSV times in ms instead of µs); an error by default, a warning with the count under
  ``data.empty_samples=warn``.
* :func:`within_root`: a trial-list entry must not lead outside the dataset directory.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from masnn.errors import DataFormatError

#: Largest forward step between consecutive events of one recording (60 s): DVS128 Gesture
#: recordings are about a minute long and carry background activity throughout.
MAX_GAP_US = 60_000_000


def aedat_event_offset(path: str | os.PathLike[str], index: int) -> int | None:
    """Byte offset of polarity event ``index`` (file order) of an AEDAT 3.1 file, or ``None``."""
    from masnn.events.aedat import (
        HEADER_FMT,
        HEADER_SIZE,
        POLARITY_EVENT,
        parse_header,
    )

    data = Path(path).read_bytes()
    pos = parse_header(os.fspath(path), data)
    unpack = struct.Struct(HEADER_FMT).unpack_from
    while pos + HEADER_SIZE <= len(data):
        etype, _s, esize, _o, _v, cap, num, _val = unpack(data, pos)
        if etype == POLARITY_EVENT:
            if index < num:
                return pos + HEADER_SIZE + esize * index
            index -= num
        pos += HEADER_SIZE + cap * max(esize, 1)
    return None


def time_order_problem(
    path: str | os.PathLike[str], t: np.ndarray, *, aedat: bool = False
) -> str | None:
    """The first backwards step or over-long forward jump of ``t`` (one line), else ``None``."""
    if t.size < 2:
        return None
    d = np.diff(t.astype(np.int64))
    back = np.flatnonzero(d < 0)
    jump = np.flatnonzero(d > MAX_GAP_US)
    if not back.size and not jump.size:
        return None
    i = int(min(back[0] if back.size else t.size, jump[0] if jump.size else t.size))
    if d[i] < 0:
        what = (
            f"timestamps go backwards at event {i + 1}: {int(t[i + 1])} us after {int(t[i])} us "
            f"({int(back.size)} backward step(s) in the file)"
        )
    else:
        what = (
            f"timestamps jump {d[i] / 1e6:.1f} s ahead at event {i + 1} ({int(t[i])} -> "
            f"{int(t[i + 1])} us), beyond a recording's length (damaged eventTSOverflow?)"
        )
    off = aedat_event_offset(path, i + 1) if aedat else None
    return str(DataFormatError(path, what, off))


def check_time_order(path: str | os.PathLike[str], t: np.ndarray, *, aedat: bool = False) -> None:
    """Raise :class:`DataFormatError` (file and byte offset) for :func:`time_order_problem`."""
    msg = time_order_problem(path, t, aedat=aedat)
    if msg:
        err = DataFormatError(path, "")
        err.args = (msg,)
        raise err


def sensor_problem(path: str | os.PathLike[str], events: np.ndarray, sensor: Any) -> str | None:
    """The first event outside ``sensor`` (one line naming the file), else ``None``."""
    if not events.size:
        return None
    for name, hi in (("x", sensor.width), ("y", sensor.height)):
        v = events[name]
        bad = np.flatnonzero((v < 0) | (v >= hi))
        if bad.size:
            i = int(bad[0])
            return (
                f"{os.fspath(path)}: event {i} has {name}={int(v[i])} outside the sensor "
                f"{sensor} ({int(bad.size)} such events)"
            )
    return None


def check_events(path: str | os.PathLike[str], events: np.ndarray, sensor: Any) -> None:
    """Raise :class:`DataFormatError` naming ``path`` for coordinates outside ``sensor`` or
    timestamps out of order (:func:`sensor_problem`, :func:`time_order_problem`)."""
    for msg in (sensor_problem(path, events, sensor), time_order_problem(path, events["t"])):
        if msg:
            err = DataFormatError(path, "")
            err.args = (msg,)
            raise err


def empty_samples(source: Any) -> list[str]:
    """Samples of an event dataset that hold no event, as ``"<trial> #<k>"`` descriptions.

    Uses the cached sample offsets (the IBM release and DVS128 Gait, cut by masnn); pre-cut
    layouts (SpikingJelly, Tonic: one file per sample) are not read here (that would read the
    whole set on every start) and give ``[]``.
    """
    offsets = getattr(source, "_offsets", None)
    if offsets is None:
        return []
    sizes = np.diff(np.asarray(offsets))
    trials = list(getattr(source, "trials", [])) or [str(i) for i in range(len(sizes))]
    out = []
    seen: dict[str, int] = {}
    for i, n in enumerate(sizes):
        trial = trials[i] if i < len(trials) else str(i)
        k = seen.get(trial, 0)
        seen[trial] = k + 1
        if n == 0:
            out.append(f"{trial} #{k + 1}")
    return out


def check_empty_samples(source: Any, split: str, policy: str) -> int:
    """Apply ``data.empty_samples`` (``error`` | ``warn``) to ``source``; return the count."""
    empty = empty_samples(source)
    if not empty:
        return 0
    root = getattr(source, "root", "")
    msg = (
        f"{root}: {len(empty)} of {len(source)} {split} samples hold no event (first: "
        f"{', '.join(empty[:3])}); label windows outside the recording (times in ms instead of "
        "us?)"
    )
    if policy == "error":
        raise DataFormatError(
            root, msg.split(": ", 1)[1] + "; set data.empty_samples=warn to train anyway"
        )
    warnings.warn(msg + " - training on them (data.empty_samples=warn)", UserWarning, stacklevel=2)
    return len(empty)


def within_root(root: Path, entry: str, listing: Path) -> Path:
    """``root / entry``, refusing an entry that leads outside ``root`` (``..``, absolute)."""
    p = (root / entry).resolve()
    base = root.resolve()
    if Path(entry).is_absolute() or (p != base and base not in p.parents):
        raise DataFormatError(
            listing, f"trial list entry {entry!r} leads outside the dataset directory {root}"
        )
    return root / entry
