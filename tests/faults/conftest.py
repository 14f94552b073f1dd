"""Shared fixtures of the fault suite: tiny real-format datasets and one finished tiny run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from masnn.synth import generate_synth_gesture, synth_config
from masnn.train.config import load_config
from masnn.train.runner import train
from tests.train.conftest import TINY_MODEL, gait_root, gesture_root, tiny_overrides  # noqa: F401


@pytest.fixture(scope="session")
def one_user_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-train-user / 1-test-user gesture set (fastest real-format data)."""
    root = tmp_path_factory.mktemp("gesture1")
    cfg = synth_config(
        "small", size="tiny-fault", train_users=2, test_users=1, lightings=("led",), gesture_s=1.0
    )
    generate_synth_gesture(root, cfg=cfg, seed=0, workers=1)
    return root


@pytest.fixture(scope="session")
def finished_run(one_user_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run (checkpoint.pt, best.pt, metrics.json); copy it before changing it."""
    out = tmp_path_factory.mktemp("finished")
    over = (
        tiny_overrides(one_user_root, out) + TINY_MODEL + ["run.name=done", "data.val_fraction=0.5"]
    )
    train(load_config(None, over), quiet=True)
    return out / "runs" / "done"


def copy_run(src: Path, dst_parent: Path, name: str = "copy") -> Path:
    dst = dst_parent / "runs" / name
    shutil.copytree(src, dst)
    return dst
