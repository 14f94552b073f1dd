"""A miniature IBM DvsGesture directory written with the real on-disk formats."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from masnn.events import make_events, write_aedat

CSV_HEADER = "class,startTime_usec,endTime_usec\n"

# trial -> rows (class, start, end); user01 repeats class 8 (as the real user01_fluorescent)
TRAIN = {
    "user01_fluorescent": [
        (1, 1_000, 5_000),
        (8, 5_000, 9_000),
        (8, 9_500, 12_000),
        (2, 12_000, 15_000),
    ],
    "user02_led": [(3, 2_000, 4_000), (11, 4_000, 8_000)],
}
TEST = {"user24_lab": [(5, 1_000, 3_000), (6, 3_000, 6_000), (7, 6_000, 7_000)]}


def trial_events(name: str, t_end: int = 16_000, n: int = 3_000) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    t = np.sort(rng.integers(0, t_end, n))
    return make_events(t, rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n))


def make_ibm(root: Path, train: dict = TRAIN, test: dict = TEST) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split, trials in (("train", train), ("test", test)):
        (root / f"trials_to_{split}.txt").write_text("".join(f"{t}.aedat\n" for t in trials))
        for name, rows in trials.items():
            write_aedat(root / f"{name}.aedat", trial_events(name), packet_events=500)
            (root / f"{name}_labels.csv").write_text(
                CSV_HEADER + "".join(f"{c},{s},{e}\n" for c, s, e in rows)
            )
    return root
