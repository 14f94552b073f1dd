"""AEDAT 3.1 files assembled byte by byte from the libcaer layout (``struct.pack`` literals).

Used by the tests and by ``tests/golden/make_aedat_golden.py`` (which records what
SpikingJelly's ``load_aedat_v3`` reads from :func:`crossread_fixture`).
"""

from __future__ import annotations

import struct


def header(*lines: bytes) -> bytes:
    """ASCII header: ``#!AER-DAT3.1``, the given lines, ``#!END-HEADER`` (all ``\\r\\n``)."""
    body = [b"#!AER-DAT3.1", *lines, b"#!END-HEADER"]
    return b"".join(line + b"\r\n" for line in body)


STD_HEADER = header(b"#Format: RAW", b"#Source 1: DVS128", b"#Start-Time: 2017-01-01 00:00:00")


def packet(
    etype: int,
    payload: bytes,
    *,
    size: int,
    capacity: int,
    number: int,
    valid: int | None = None,
    overflow: int = 0,
    source: int = 1,
    ts_offset: int = 4,
) -> bytes:
    """28-byte packet header ``<hhiiiiii`` followed by ``payload``."""
    v = number if valid is None else valid
    return struct.pack(
        "<hhiiiiii", etype, source, size, ts_offset, overflow, capacity, number, v
    ) + bytes(payload)


def pol(x: int, y: int, p: int, ts: int, valid: int = 1) -> bytes:
    """One 8-byte polarity event: ``uint32 data`` (x<<17 | y<<2 | p<<1 | valid), ``int32 ts``."""
    return struct.pack("<Ii", (x << 17) | (y << 2) | (p << 1) | valid, ts)


def pol_packet(
    events: list[tuple[int, int, int, int, int]], *, overflow: int = 0, spare: int = 0
) -> bytes:
    """Polarity packet of ``(x, y, p, ts, valid)`` tuples plus ``spare`` unused capacity slots."""
    payload = b"".join(pol(*e) for e in events) + b"\xab" * (8 * spare)
    n = len(events)
    return packet(
        1,
        payload,
        size=8,
        capacity=n + spare,
        number=n,
        valid=sum(e[4] for e in events),
        overflow=overflow,
    )


#: The multi-packet fixture and the events read_aedat must return from it (hand-derived).
MIXED_PACKETS = [
    # special-event packet (type 0, 8-byte events): skipped
    packet(0, struct.pack("<Ii", 0x3, 0) * 2, size=8, capacity=2, number=2),
    pol_packet([(0, 0, 1, 10, 1), (127, 5, 0, 11, 1), (3, 127, 1, 12, 0)]),
    # frame packet (type 2) with an odd event size: skipped by capacity * size
    packet(2, b"\x07" * (37 * 2), size=37, capacity=2, number=1),
    # capacity 4, number 2: two spare slots of garbage after the events
    pol_packet([(64, 32, 1, 2**31 - 1, 1), (1, 2, 0, 5, 1)], overflow=0, spare=2),
    # overflow 1 and 3: t = (overflow << 31) | ts
    pol_packet([(9, 8, 0, 7, 1)], overflow=1),
    # IMU6 packet (type 3, 36-byte events)
    packet(3, b"\x00" * 36, size=36, capacity=1, number=1),
    pol_packet([(100, 120, 1, 0, 0), (100, 121, 1, 1, 1)], overflow=3),
    # empty polarity packet
    packet(1, b"", size=8, capacity=0, number=0),
]
MIXED_FILE = STD_HEADER + b"".join(MIXED_PACKETS)
MIXED_EXPECTED = [  # (t, x, y, p)
    (10, 0, 0, 1),
    (11, 127, 5, 0),
    (2**31 - 1, 64, 32, 1),
    (5, 1, 2, 0),
    ((1 << 31) | 7, 9, 8, 0),
    ((3 << 31) | 1, 100, 121, 1),
]


def crossread_fixture() -> bytes:
    """A file SpikingJelly reads the same way: capacity == number, all events valid."""
    events = []
    for k in range(40):
        events.append((k * 3 % 128, k * 7 % 128, k % 2, 1000 + 37 * k, 1))
    return (
        STD_HEADER
        + packet(0, struct.pack("<Ii", 0x3, 0), size=8, capacity=1, number=1)
        + pol_packet(events[:15])
        + packet(2, b"\x01" * 20, size=10, capacity=2, number=2)
        + pol_packet(events[15:31], overflow=1)
        + pol_packet(events[31:], overflow=2)
    )
