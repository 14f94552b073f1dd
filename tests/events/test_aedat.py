"""read_aedat on files assembled byte by byte; cross-read with SpikingJelly; bad input."""

from __future__ import annotations

import json
import struct
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from masnn.errors import DataFormatError
from masnn.events import EVENT_DTYPE, SensorSize, make_events, read_aedat, write_aedat
from tests.events.aedat_bytes import (
    MIXED_EXPECTED,
    MIXED_FILE,
    MIXED_PACKETS,
    STD_HEADER,
    crossread_fixture,
    packet,
    pol_packet,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
sys.path.insert(0, str(GOLDEN))
from _thirdparty import spikingjelly_utils  # noqa: E402


def _write(tmp_path: Path, data: bytes, name: str = "f.aedat") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _tuples(ev: np.ndarray) -> list[tuple[int, int, int, int]]:
    return [
        (int(a), int(b), int(c), int(d)) for a, b, c, d in zip(ev["t"], ev["x"], ev["y"], ev["p"])
    ]


def test_mixed_packets_overflow_invalid_capacity(tmp_path: Path) -> None:
    ev = read_aedat(_write(tmp_path, MIXED_FILE), invalid="drop")
    assert ev.dtype == EVENT_DTYPE
    assert _tuples(ev) == MIXED_EXPECTED


def test_invalid_events_are_kept_by_default_as_spikingjelly_does(tmp_path: Path) -> None:
    path = _write(tmp_path, MIXED_FILE)
    ev = read_aedat(path)
    # the two events whose valid bit is 0, in file order, beside the valid ones
    keep = [
        *MIXED_EXPECTED[:2],
        (12, 3, 127, 1),
        *MIXED_EXPECTED[2:5],
        ((3 << 31) | 0, 100, 120, 1),
    ]
    keep += MIXED_EXPECTED[5:]
    assert _tuples(ev) == keep
    assert _tuples(read_aedat(path, invalid="keep")) == keep
    with pytest.raises(ValueError, match="'keep', 'drop'"):
        read_aedat(path, invalid="skip")  # type: ignore[arg-type]


def test_header_with_lf_only_and_extra_lines(tmp_path: Path) -> None:
    data = b"#!AER-DAT3.1\n#Source 1: DVS128\n#!END-HEADER\n" + pol_packet([(1, 2, 1, 3, 1)])
    assert _tuples(read_aedat(_write(tmp_path, data))) == [(3, 1, 2, 1)]


def test_header_only_file_is_empty(tmp_path: Path) -> None:
    ev = read_aedat(_write(tmp_path, STD_HEADER))
    assert ev.shape == (0,) and ev.dtype == EVENT_DTYPE


def test_roundtrip_with_writer_many_packets(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 50_000
    t = np.sort(rng.integers(0, 2**34, n))
    ev = make_events(t, rng.integers(0, 346, n), rng.integers(0, 260, n), rng.integers(0, 2, n))
    path = tmp_path / "rt.aedat"
    write_aedat(path, ev, packet_events=333)
    np.testing.assert_array_equal(read_aedat(path), ev)


def test_crossread_matches_spikingjelly_golden(tmp_path: Path) -> None:
    golden = json.loads((GOLDEN / "aedat_spikingjelly.json").read_text())
    ev = read_aedat(_write(tmp_path, crossread_fixture()))
    for k in ("t", "x", "y", "p"):
        assert ev[k].tolist() == golden[k], k
    assert ev["t"].max() > 2**32  # the fixture exercises the overflow


def test_crossread_live_spikingjelly(tmp_path: Path) -> None:
    pytest.importorskip("spikingjelly")
    sj = spikingjelly_utils()
    if sj is None:
        pytest.skip("spikingjelly.datasets.utils does not import")
    path = _write(tmp_path, crossread_fixture())
    ref = sj.load_aedat_v3(str(path))
    ev = read_aedat(path)
    for k in ("t", "x", "y", "p"):
        np.testing.assert_array_equal(ev[k], ref[k].astype(np.int64))


def test_sensor_bounds(tmp_path: Path) -> None:
    path = _write(tmp_path, STD_HEADER + pol_packet([(200, 3, 1, 1, 1)]))
    assert read_aedat(path)["x"].tolist() == [200]
    with pytest.raises(DataFormatError, match="outside the sensor"):
        read_aedat(path, sensor=SensorSize(128, 128, 2))


# ---------------------------------------------------------------------------- bad input


def _expect_error(path: Path, match: str, offset: int | None = None) -> DataFormatError:
    with pytest.raises(DataFormatError, match=match) as info:
        read_aedat(path)
    err = info.value
    assert err.path == str(path) and str(path) in str(err)
    if offset is not None:
        assert err.offset == offset and f"@ byte {offset}" in str(err)
    return err


@pytest.mark.parametrize(
    ("first", "match"),
    [
        (b"#!AER-DAT2.0", "AEDAT 2.0"),
        (b"#!AER-DAT4.0", "AEDAT 4"),
        (b"#!AER-DAT3.0", "only AEDAT 3.1"),
        (b"#AER-DAT3.1", "not an AEDAT file"),
        (b"\x00\x01garbage", "not an AEDAT file"),
    ],
)
def test_wrong_version(tmp_path: Path, first: bytes, match: str) -> None:
    data = first + b"\r\n#!END-HEADER\r\n" + pol_packet([(1, 1, 1, 1, 1)])
    _expect_error(_write(tmp_path, data), match, 0)


def test_empty_and_missing_file(tmp_path: Path) -> None:
    _expect_error(_write(tmp_path, b""), "empty file", 0)
    with pytest.raises(DataFormatError, match="cannot open") as info:
        read_aedat(tmp_path / "nope.aedat")
    assert "nope.aedat" in str(info.value)


def test_deleted_end_header_line(tmp_path: Path) -> None:
    lines = STD_HEADER.split(b"\r\n")
    no_end = b"\r\n".join(line for line in lines if line != b"#!END-HEADER")
    err = _expect_error(_write(tmp_path, no_end + MIXED_FILE[len(STD_HEADER) :]), "header")
    assert err.offset is not None
    # a header that simply stops
    _expect_error(_write(tmp_path, b"#!AER-DAT3.1\r\n#Format: RAW"), "ends inside the ASCII header")


def test_deleted_header_hash(tmp_path: Path) -> None:
    bad = STD_HEADER.replace(b"#Format", b"Format")
    _expect_error(
        _write(tmp_path, bad + MIXED_FILE[len(STD_HEADER) :]), "does not start with '#'", 14
    )


def test_truncated_packet_everywhere(tmp_path: Path) -> None:
    hdr = len(STD_HEADER)
    starts = np.cumsum([hdr] + [len(p) for p in MIXED_PACKETS])
    for cut in range(hdr + 1, len(MIXED_FILE)):
        if cut in starts:
            continue  # a cut exactly between packets is a valid shorter file
        err = _expect_error(_write(tmp_path, MIXED_FILE[:cut]), "truncated")
        pkt = int(starts[np.searchsorted(starts, cut, side="right") - 1])
        assert err.offset == pkt


@pytest.mark.parametrize("field", [2, 5, 6])  # eventSize, eventCapacity, eventNumber
@pytest.mark.parametrize("value", [2**31 - 1, 2**30, 2**24 + 1, -1, -(2**31)])
def test_huge_or_negative_counts(tmp_path: Path, field: int, value: int) -> None:
    hdr = list(struct.unpack("<hhiiiiii", MIXED_PACKETS[1][:28]))
    hdr[field] = value
    pkt = struct.pack("<hhiiiiii", *hdr) + MIXED_PACKETS[1][28:]
    path = _write(tmp_path, STD_HEADER + MIXED_PACKETS[0] + pkt)
    err = _expect_error(path, "eventSize|eventCapacity|eventNumber|truncated|negative|eventValid")
    assert err.offset == len(STD_HEADER) + len(MIXED_PACKETS[0])


def test_number_above_capacity_and_valid_above_number(tmp_path: Path) -> None:
    body = b"".join(struct.pack("<Ii", 1, 0) for _ in range(2))
    path = _write(tmp_path, STD_HEADER + packet(1, body, size=8, capacity=2, number=3))
    _expect_error(path, "exceeds eventCapacity", len(STD_HEADER))
    path = _write(tmp_path, STD_HEADER + packet(1, body, size=8, capacity=2, number=2, valid=5))
    _expect_error(path, "eventValid", len(STD_HEADER))


def test_polarity_packet_with_wrong_event_size(tmp_path: Path) -> None:
    path = _write(tmp_path, STD_HEADER + packet(1, b"\x00" * 24, size=12, capacity=2, number=2))
    _expect_error(path, "eventSize=12", len(STD_HEADER))


def test_negative_timestamp_names_event_offset(tmp_path: Path) -> None:
    data = STD_HEADER + pol_packet([(1, 1, 1, 5, 1), (2, 2, 0, -7, 1)])
    _expect_error(_write(tmp_path, data), "negative event timestamp", len(STD_HEADER) + 28 + 8)


@pytest.mark.parametrize("byte", range(28))
def test_bit_flipped_packet_header(tmp_path: Path, byte: int) -> None:
    """Flip each bit of the second packet header: either a clean read or our error."""
    off = len(STD_HEADER) + len(MIXED_PACKETS[0]) + byte
    for bit in range(8):
        data = bytearray(MIXED_FILE)
        data[off] ^= 1 << bit
        path = _write(tmp_path, bytes(data))
        try:
            ev = read_aedat(path)
        except DataFormatError as e:
            assert str(path) in str(e) and e.offset is not None
        else:
            assert ev.dtype == EVENT_DTYPE and ev.size <= len(data) // 8


def test_peak_memory_below_twice_file_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 1_000_000
    ev = make_events(
        np.sort(rng.integers(0, 2**33, n)),
        rng.integers(0, 128, n),
        rng.integers(0, 128, n),
        rng.integers(0, 2, n),
    )
    path = tmp_path / "big.aedat"
    write_aedat(path, ev, packet_events=5000)
    size = path.stat().st_size
    del ev
    tracemalloc.start()
    try:
        out = read_aedat(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.size == n
    assert peak < 2 * size, (peak, size)
