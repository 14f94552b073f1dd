"""Tiny datasets in the real on-disk formats, shared by the training tests.

* ``gesture_root``: a DVS128-Gesture-shaped directory (IBM layout: AEDAT 3.1 files, label
  CSVs, trial lists) written by the synthetic-set generator with a tiny configuration;
* ``gait_root``: a DVS128 Gait text release (``{train,test}/<subject>/*.txt``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from masnn.synth import generate_synth_gesture, synth_config

TINY_MODEL = [
    "model.name=ma_snn3_tiny",
    "model.kwargs={channels: [4, 8, 8], hidden: 16}",
]


@pytest.fixture(scope="session")
def gesture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gesture")
    cfg = synth_config(
        "small", size="tiny-test", train_users=3, test_users=1, lightings=("led",), gesture_s=1.0
    )
    generate_synth_gesture(root, cfg=cfg, seed=0, workers=1)
    return root


@pytest.fixture(scope="session")
def gait_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gait")
    rng = np.random.default_rng(0)
    for split, files in (("train", 2), ("test", 1)):
        for subject in range(1, 21):
            d = root / split / f"{subject:02d}"
            d.mkdir(parents=True)
            for k in range(files):
                n = 3000
                t = np.sort(rng.integers(0, 1_200_000, n))
                x = rng.integers(0, 128, n)
                y = rng.integers(0, 128, n)
                p = rng.integers(0, 2, n)
                lines = "\n".join(f"{a} {b} {c} {e}" for a, b, c, e in zip(t, x, y, p))
                (d / f"{k:03d}.txt").write_text(lines + "\n")
    return root


def tiny_overrides(root: Path, out: Path, dataset: str = "dvs128_gesture") -> list[str]:
    """``--set`` overrides that shrink any config to a seconds-long run on a fixture."""
    return [
        f"data.dataset={dataset}",
        f"data.root={root}",
        f"data.cache_dir={out / 'cache'}",
        "data.timesteps=4",
        "data.dt_ms=20",
        "data.ds=8",
        "data.val_fraction=0.34",
        "data.workers=0",
        "run.batch_size=4",
        "run.epochs=1",
        "run.max_steps_per_epoch=2",
        f"run.out_dir={out / 'runs'}",
        "run.progress=false",
        "run.threads=1",
    ]
