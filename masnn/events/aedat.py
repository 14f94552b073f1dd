"""AEDAT 3.1 (libcaer) polarity-event files: writer here; reader in ``read_aedat``.

Layout (little-endian): ASCII header lines starting with ``#`` (first ``#!AER-DAT3.1``,
last ``#!END-HEADER``, each ending ``\\r\\n``), then packets of a 28-byte header

    int16 eventType, int16 eventSource, int32 eventSize, int32 eventTSOffset,
    int32 eventTSOverflow, int32 eventCapacity, int32 eventNumber, int32 eventValid

followed by ``eventCapacity * eventSize`` bytes. A polarity event (type 1, size 8) is
``uint32 data`` + ``int32 timestamp``; ``data`` bit 0 = valid, bit 1 = polarity,
bits 2-16 = y, bits 17-31 = x. The full timestamp is ``(eventTSOverflow << 31) | timestamp``.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from masnn.events.schema import EVENT_DTYPE

HEADER_FMT = "<hhiiiiii"
HEADER_SIZE = struct.calcsize(HEADER_FMT)  # 28
POLARITY_EVENT = 1
POLARITY_EVENT_SIZE = 8
TS_OVERFLOW_SHIFT = 31
_POL_DTYPE = np.dtype([("data", "<u4"), ("ts", "<i4")])


def encode_polarity(events: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Pack events into the 8-byte libcaer polarity record (timestamps modulo 2**31)."""
    rec = np.empty(events.size, dtype=_POL_DTYPE)
    v = np.ones(events.size, np.uint32) if valid is None else np.asarray(valid, np.uint32)
    rec["data"] = (
        (events["x"].astype(np.uint32) << 17)
        | (events["y"].astype(np.uint32) << 2)
        | (events["p"].astype(np.uint32) << 1)
        | v
    )
    rec["ts"] = (events["t"] & ((1 << TS_OVERFLOW_SHIFT) - 1)).astype(np.int32)
    return rec


def write_aedat(
    path: str | os.PathLike[str],
    events: np.ndarray,
    *,
    packet_events: int = 4096,
    source: int = 1,
    source_name: str = "DVS128",
    extra_header: tuple[str, ...] = (),
) -> None:
    """Write ``events`` (``EVENT_DTYPE``, time-sorted) as an AEDAT 3.1 polarity file.

    Packets hold at most ``packet_events`` events and never straddle a timestamp
    overflow boundary (each packet has a single ``eventTSOverflow``). The file is written to
    a temporary name and renamed, so readers never see a half-written file.

    Args:
        path: output file.
        events: events to write; ``t`` must be non-decreasing and non-negative.
        packet_events: maximum events per packet (``eventCapacity == eventNumber``).
        source: the ``eventSource`` id.
        source_name: written into the ``#Source`` header line.
        extra_header: further header lines (without ``#`` or line ends).
    """
    if events.dtype != EVENT_DTYPE:
        raise TypeError(f"write_aedat: events must have dtype {EVENT_DTYPE}, got {events.dtype}")
    if packet_events < 1:
        raise ValueError(f"write_aedat: packet_events must be >= 1, got {packet_events}")
    t = events["t"]
    if t.size and (t[0] < 0 or np.any(np.diff(t) < 0)):
        raise ValueError("write_aedat: timestamps must be non-negative and sorted")
    lines = ["#!AER-DAT3.1", "#Format: RAW", f"#Source {source}: {source_name}"]
    lines += [f"#{h}" for h in extra_header]
    lines.append("#!END-HEADER")
    header = "".join(line + "\r\n" for line in lines).encode("ascii")
    rec = encode_polarity(events)
    overflow = (t >> TS_OVERFLOW_SHIFT).astype(np.int64)
    # packet boundaries: every packet_events events, and wherever the overflow counter changes
    cuts = set(range(0, events.size, packet_events))
    cuts.update((np.flatnonzero(np.diff(overflow)) + 1).tolist())
    bounds = sorted(cuts) + [events.size]
    tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(header)
        for a, b in zip(bounds[:-1], bounds[1:]):
            n = b - a
            f.write(
                struct.pack(
                    HEADER_FMT,
                    POLARITY_EVENT,
                    source,
                    POLARITY_EVENT_SIZE,
                    4,
                    int(overflow[a]),
                    n,
                    n,
                    n,
                )
            )
            f.write(rec[a:b].tobytes())
    os.replace(tmp, path)
