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

import contextlib
import mmap
import os
import struct
from typing import Literal

import numpy as np

from masnn.errors import DataFormatError
from masnn.events.schema import EVENT_DTYPE, SensorSize
from masnn.fsutil import atomic_write

HEADER_FMT = "<hhiiiiii"
HEADER_SIZE = struct.calcsize(HEADER_FMT)  # 28
POLARITY_EVENT = 1
POLARITY_EVENT_SIZE = 8
TS_OVERFLOW_SHIFT = 31
_POL_DTYPE = np.dtype([("data", "<u4"), ("ts", "<i4")])
#: What :func:`read_aedat` does with events whose valid bit is 0.
INVALID_POLICIES = ("keep", "drop")
InvalidPolicy = Literal["keep", "drop"]


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
    with atomic_write(path, "wb") as f:
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


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------

#: First header line of the only AEDAT version read here.
MAGIC_31 = b"#!AER-DAT3.1"
END_HEADER = b"#!END-HEADER"
#: Longest ASCII header accepted before ``#!END-HEADER`` (real files have a few hundred bytes).
MAX_HEADER_BYTES = 1 << 20
_CHUNK_EVENTS = 1 << 16  # events decoded per vectorised batch (bounds temporary memory)
_INT31 = (1 << 31) - 1


def parse_header(path: str, buf: memoryview | bytes) -> int:
    """Validate the ASCII header; return the byte offset of the first packet."""
    head = bytes(buf[: min(len(buf), MAX_HEADER_BYTES + 2)])
    first = head.split(b"\n", 1)[0].rstrip(b"\r")
    if not first.startswith(b"#!AER-DAT"):
        if head[:4] == b"#!AE" or head[:1] == b"#":
            raise DataFormatError(path, f"not an AEDAT file: first line {first[:40]!r}", 0)
        raise DataFormatError(
            path, f"not an AEDAT file (no '#!AER-DAT' version line): starts {head[:16]!r}", 0
        )
    version = first[len(b"#!AER-DAT") :].decode("ascii", "replace")
    if first != MAGIC_31:
        if version.startswith("2"):
            hint = "AEDAT 2.0 (jAER) is not supported; convert it to AEDAT 3.1 or use jAER/dv tools"
        elif version.startswith("4"):
            hint = "AEDAT 4 (DV) is not supported here; read it with dv-processing or the aedat package"
        else:
            hint = "only AEDAT 3.1 (libcaer) is supported"
        raise DataFormatError(path, f"AEDAT version {version!r}: {hint}", 0)
    pos = 0
    while True:
        nl = head.find(b"\n", pos)
        if nl < 0:
            if len(head) > MAX_HEADER_BYTES:
                raise DataFormatError(
                    path, f"no '#!END-HEADER' line within the first {MAX_HEADER_BYTES} bytes", pos
                )
            raise DataFormatError(
                path, "file ends inside the ASCII header (no '#!END-HEADER')", pos
            )
        line = head[pos:nl].rstrip(b"\r")
        if not line.startswith(b"#"):
            raise DataFormatError(
                path,
                "header line does not start with '#' before '#!END-HEADER' "
                "(deleted or damaged header line?)",
                pos,
            )
        pos = nl + 1
        if line == END_HEADER:
            return pos


def read_aedat(
    path: str | os.PathLike[str],
    *,
    sensor: SensorSize | None = None,
    invalid: InvalidPolicy = "keep",
) -> np.ndarray:
    """Read the polarity events of an AEDAT 3.1 (libcaer) file, vectorised.

    The ASCII header (``#!AER-DAT3.1`` ... ``#!END-HEADER``) is checked, then packets are
    walked by their 28-byte headers. Only polarity packets (type 1) are decoded; every other
    type is skipped by its declared ``eventCapacity * eventSize`` bytes. Per packet the first
    ``eventNumber`` events are read (``eventNumber <= eventCapacity``; the unused capacity is
    skipped) and the full timestamp ``(eventTSOverflow << 31) | timestamp`` is built. The file
    is memory-mapped and decoded in batches, so the extra memory is the output (13 bytes per
    event) plus a fixed few megabytes.

    Args:
        path: the ``.aedat`` file.
        sensor: if given, coordinates outside it are reported as a format error.
        invalid: events whose valid bit (``data`` bit 0) is 0: ``"keep"`` (the default, as
            SpikingJelly's and the official MA-SNN readers do, so frames match theirs) or
            ``"drop"`` (libcaer's meaning of the bit: the event was filtered out on the device).

    Returns:
        ``EVENT_DTYPE`` array in file order (``t`` in µs, ``p`` 1 = ON).

    Raises:
        DataFormatError: any malformed, truncated or unsupported file (AEDAT 2.0 and 4 get their
            own message); the message names the file and the byte offset.
    """
    if invalid not in INVALID_POLICIES:
        raise ValueError(f"invalid must be one of {INVALID_POLICIES}, got {invalid!r}")
    spath = os.fspath(path)
    try:
        f = open(spath, "rb")  # noqa: SIM115 (closed by the with-block below)
    except OSError as e:
        raise DataFormatError(spath, f"cannot open: {e.strerror or e}") from e
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise DataFormatError(spath, "empty file (no AEDAT header)", 0)
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as e:
            raise DataFormatError(spath, f"cannot read: {e.strerror or e}") from e
        try:
            return _read_mapped(spath, mm, size, sensor, invalid == "keep")
        finally:
            # a traceback may still hold a view; the map is then closed when it is freed
            with contextlib.suppress(BufferError):
                mm.close()


def _read_mapped(
    path: str, mm: mmap.mmap, size: int, sensor: SensorSize | None, keep_invalid: bool
) -> np.ndarray:
    pos = parse_header(path, mm[: MAX_HEADER_BYTES + 2])
    # 1. walk the packet headers (one small Python step per packet)
    offsets: list[int] = []
    counts: list[int] = []
    overflows: list[int] = []
    unpack = struct.Struct(HEADER_FMT).unpack_from
    while pos < size:
        if size - pos < HEADER_SIZE:
            raise DataFormatError(
                path, f"truncated packet header: {size - pos} of {HEADER_SIZE} bytes left", pos
            )
        etype, _src, esize, tsoff, tsovf, cap, num, valid = unpack(mm, pos)
        if etype < 0:
            raise DataFormatError(path, f"packet eventType {etype} is negative", pos)
        if esize <= 0:
            raise DataFormatError(path, f"packet eventSize {esize} must be > 0", pos)
        if cap < 0 or num < 0 or valid < 0:
            raise DataFormatError(
                path,
                f"negative packet counts (eventCapacity={cap}, eventNumber={num}, "
                f"eventValid={valid})",
                pos,
            )
        if num > cap:
            raise DataFormatError(
                path, f"packet eventNumber {num} exceeds eventCapacity {cap}", pos
            )
        if valid > num:
            raise DataFormatError(path, f"packet eventValid {valid} exceeds eventNumber {num}", pos)
        body = cap * esize
        if body > size - pos - HEADER_SIZE:
            raise DataFormatError(
                path,
                f"truncated packet: header declares {cap} x {esize} = {body} bytes, "
                f"{size - pos - HEADER_SIZE} remain",
                pos,
            )
        if etype == POLARITY_EVENT:
            if esize != POLARITY_EVENT_SIZE or tsoff != 4:
                raise DataFormatError(
                    path,
                    f"polarity packet with eventSize={esize}, eventTSOffset={tsoff} "
                    f"(expected {POLARITY_EVENT_SIZE}, 4)",
                    pos,
                )
            if tsovf < 0:
                raise DataFormatError(path, f"negative eventTSOverflow {tsovf}", pos)
            if num:
                offsets.append(pos + HEADER_SIZE)
                counts.append(num)
                overflows.append(tsovf)
        pos += HEADER_SIZE + body
    total = sum(counts)
    out = np.empty(total, dtype=EVENT_DTYPE)
    if total == 0:
        return out
    # 2. decode batches of packets with numpy
    raw = np.frombuffer(mm, dtype=np.uint8)
    k = 0  # events written
    i = 0
    npk = len(offsets)
    while i < npk:
        j, n = i, 0
        while j < npk and (n == 0 or n + counts[j] <= _CHUNK_EVENTS):
            n += counts[j]
            j += 1
        if j - i == 1:
            rec = raw[offsets[i] : offsets[i] + 8 * n].view(_POL_DTYPE)
        else:
            rec = np.concatenate(
                [raw[o : o + 8 * c] for o, c in zip(offsets[i:j], counts[i:j])]
            ).view(_POL_DTYPE)
        data = rec["data"]
        ts = rec["ts"]
        if ts.min() < 0:
            bad = int(np.flatnonzero(ts < 0)[0])
            raise DataFormatError(
                path,
                f"negative event timestamp {int(ts[bad])}",
                _event_offset(offsets, counts, i, bad),
            )
        if keep_invalid or int(np.bitwise_and.reduce(data)) & 1:  # no compaction
            m = data.size
        else:
            ok = (data & 1).astype(bool)
            data, ts = data[ok], ts[ok]
            m = data.size
        seg = out[k : k + m]
        seg["t"] = ts
        if len(set(overflows[i:j])) == 1:
            if overflows[i]:
                seg["t"] |= np.int64(overflows[i]) << TS_OVERFLOW_SHIFT
        else:
            ovf = np.repeat(np.asarray(overflows[i:j], np.int64), counts[i:j])
            seg["t"] |= (ovf if m == ovf.size else ovf[ok]) << TS_OVERFLOW_SHIFT
        tmp = np.right_shift(data, 17)
        seg["x"] = tmp
        np.right_shift(data, 2, out=tmp)
        seg["y"] = np.bitwise_and(tmp, 0x7FFF, out=tmp)
        np.right_shift(data, 1, out=tmp)
        seg["p"] = np.bitwise_and(tmp, 1, out=tmp)
        k += m
        i = j
    if k < total:
        out = out[:k].copy()
    if sensor is not None and out.size:
        for name, hi in (("x", sensor.width), ("y", sensor.height)):
            v = out[name]
            if int(v.max()) >= hi:
                raise DataFormatError(
                    path, f"event {name}={int(v.max())} outside the sensor {sensor}"
                )
    return out


def _event_offset(offsets: list[int], counts: list[int], first: int, idx: int) -> int:
    """Byte offset of event ``idx`` of the batch starting at packet ``first``."""
    for o, c in zip(offsets[first:], counts[first:]):
        if idx < c:
            return o + 8 * idx
        idx -= c
    return offsets[first]
