"""Mutation fuzzing of read_aedat: any input gives events or DataFormatError, nothing else."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from masnn.errors import DataFormatError
from masnn.events import EVENT_DTYPE, make_events, read_aedat, write_aedat
from tests.events.aedat_bytes import MIXED_FILE, STD_HEADER, crossread_fixture

_INTERESTING = [0, 1, -1, 2**31 - 1, -(2**31), 2**30, 8, 28, 2**16, 0x7FFF]


def _seeds(tmp_path: Path) -> list[bytes]:
    rng = np.random.default_rng(0)
    n = 300
    ev = make_events(
        np.sort(rng.integers(0, 2**33, n)),
        rng.integers(0, 128, n),
        rng.integers(0, 128, n),
        rng.integers(0, 2, n),
    )
    p = tmp_path / "seed.aedat"
    write_aedat(p, ev, packet_events=37)
    return [MIXED_FILE, crossread_fixture(), p.read_bytes()]


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """Apply 1-3 random mutations of the kinds real corruption produces."""
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(0, 8))
        n = len(buf)
        if n == 0:
            buf += bytes(rng.integers(0, 256, 16, dtype=np.uint8))
            continue
        i = int(rng.integers(0, n))
        if kind == 0:  # bit flip
            buf[i] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:  # random byte
            buf[i] = int(rng.integers(0, 256))
        elif kind == 2 and n >= 4:  # interesting int32 at an aligned spot after the header
            j = len(STD_HEADER) + 4 * int(rng.integers(0, max(1, (n - len(STD_HEADER)) // 4)))
            if j + 4 <= n:
                buf[j : j + 4] = struct.pack(
                    "<i", _INTERESTING[int(rng.integers(len(_INTERESTING)))]
                )
        elif kind == 3:  # truncate
            del buf[i:]
        elif kind == 4:  # delete a span
            del buf[i : i + int(rng.integers(1, 40))]
        elif kind == 5:  # insert random bytes
            buf[i:i] = bytes(rng.integers(0, 256, int(rng.integers(1, 40)), dtype=np.uint8))
        elif kind == 6:  # delete one header line
            lines = bytes(buf).split(b"\n")
            k = int(rng.integers(0, min(len(lines), 5)))
            buf = bytearray(b"\n".join(lines[:k] + lines[k + 1 :]))
        else:  # duplicate a span (repeated packet fragments)
            j = min(n, i + int(rng.integers(1, 64)))
            buf[j:j] = buf[i:j]
    return bytes(buf)


def run_fuzz(tmp_path: Path, count: int, seed: int) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    seeds = _seeds(tmp_path)
    path = tmp_path / "fuzz.aedat"
    stats = {"ok": 0, "error": 0}
    for k in range(count):
        data = mutate(seeds[k % len(seeds)], rng)
        path.write_bytes(data)
        try:
            ev = read_aedat(path)
        except DataFormatError as e:
            assert e.path == str(path) and str(path) in str(e)
            stats["error"] += 1
        except Exception as e:  # pragma: no cover - the failure being tested for
            bad = tmp_path / f"crash_{k}.aedat"
            bad.write_bytes(data)
            raise AssertionError(
                f"read_aedat raised {type(e).__name__}: {e} (input kept at {bad})"
            ) from e
        else:
            assert ev.dtype == EVENT_DTYPE and ev.ndim == 1
            assert ev.size <= len(data) // 8
            assert (ev["t"] >= 0).all() and (ev["x"] >= 0).all() and (ev["y"] >= 0).all()
            stats["ok"] += 1
    return stats


def test_fuzz_2000(tmp_path: Path) -> None:
    stats = run_fuzz(tmp_path, 2_000, seed=2024)
    # both outcomes must actually occur, or the mutations are not exercising the reader
    assert stats["ok"] > 100 and stats["error"] > 100, stats


@pytest.mark.slow
def test_fuzz_10000(tmp_path: Path) -> None:
    stats = run_fuzz(tmp_path, 10_000, seed=7)
    assert stats["ok"] > 500 and stats["error"] > 500, stats
