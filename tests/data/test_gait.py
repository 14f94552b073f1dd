"""DVS128Gait and the vectorised text parser on a miniature text release."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from masnn.data import DVS128Gait
from masnn.errors import DataFormatError
from masnn.events.textio import parse_event_text, read_event_text


def _write_sample(
    path: Path, rng: np.random.Generator, duration_us: int = 2_000_000, n: int = 200
) -> np.ndarray:
    t = np.sort(rng.integers(0, duration_us, n)) + 10_000_000
    t[-1] = t[0] + duration_us
    cols = np.stack([t, rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)], 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{a} {b} {c} {d}\n" for a, b, c, d in cols))
    return cols


def make_gait(
    root: Path, subjects=("1", "2", "10"), per=2
) -> dict[tuple[str, str], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    out: dict[tuple[str, str], list[np.ndarray]] = {}
    for split in ("train", "test"):
        for s in subjects:
            out[(split, s)] = [
                _write_sample(root / split / s / f"{k:03d}.txt", rng) for k in range(per)
            ]
    return out


def test_parser_matches_python_reference() -> None:
    text = b"10 1 2 1\r\n\n 15\t3 4 0\n123456789012 127 0 1"
    ev = parse_event_text(text)
    ref = [[int(v) for v in line.split()] for line in text.decode().splitlines() if line.strip()]
    assert np.stack([ev[k] for k in ("t", "x", "y", "p")], 1).tolist() == ref


@pytest.mark.parametrize(
    ("text", "match", "offset"),
    [
        (b"1 2 3 1\n4 5 6\n", "line 2 has 3 values", 8),
        (b"1 2 3 1\n4 5 6 7 8\n", "line 2 has 5 values", 8),
        (b"1 2 3 1\n4 -5 6 1\n", "unexpected byte", 10),
        (b"1 2 3 1.5\n", "unexpected byte", 7),
        (b"1 2 3 2\n", "p=2 out of range", 6),
        (b"1 99999 3 1\n", "x=99999 out of range", 2),
    ],
)
def test_parser_errors(tmp_path: Path, text: bytes, match: str, offset: int) -> None:
    f = tmp_path / "bad.txt"
    f.write_bytes(text)
    with pytest.raises(DataFormatError, match=match) as info:
        read_event_text(f)
    assert info.value.offset == offset and str(f) in str(info.value)


def test_gait_dataset_labels_and_events(tmp_path: Path) -> None:
    root = tmp_path / "DVS128-Gait-Day" / "origin"
    written = make_gait(root)
    ds = DVS128Gait(tmp_path, "test", variant="day", cache_dir=tmp_path / "c", progress=False)
    assert ds.subjects == ["1", "2", "10"]  # numeric order
    assert len(ds) == 6 and ds.labels.tolist() == [0, 0, 1, 1, 2, 2]
    ev, lab = ds[4]
    assert lab == 2
    cols = written[("test", "10")][0]
    np.testing.assert_array_equal(ev["t"], cols[:, 0])
    np.testing.assert_array_equal(ev["x"], cols[:, 1])


def test_gait_time_unit_check(tmp_path: Path) -> None:
    root = tmp_path / "gait"
    make_gait(root, subjects=("1",), per=1)
    # a file in milliseconds: 2 s becomes 2000 "us"
    f = root / "train" / "1" / "000.txt"
    rows = [line.split() for line in f.read_text().splitlines()]
    f.write_text("".join(f"{int(r[0]) // 1000} {r[1]} {r[2]} {r[3]}\n" for r in rows))
    with pytest.raises(DataFormatError, match="Wrong time unit") as info:
        DVS128Gait(root, "train", cache_dir=tmp_path / "c", progress=False)
    assert info.value.path == str(f)
    ds = DVS128Gait(root, "train", cache_dir=tmp_path / "c", progress=False, check_duration=False)
    assert len(ds) == 1


def test_gait_errors(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="no DVS128 Gait"):
        DVS128Gait(tmp_path, "train")
    with pytest.raises(ValueError, match="'day', 'night'"):
        DVS128Gait(tmp_path, "train", variant="dusk")  # type: ignore[arg-type]
