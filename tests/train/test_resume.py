"""Exact resume: SIGKILL at a seeded random moment, ``--resume``, bitwise-equal final state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from masnn.train import checkpoint as ckpt_io
from masnn.train.config import load_config
from masnn.train.runner import train
from tests.train.conftest import TINY_MODEL, tiny_overrides

HERE = Path(__file__).resolve().parent


# ma_snn5 has dropout: its masks come from torch's global generator, so resume must restore it
# and nothing else (e.g. creating a DataLoader iterator) may draw from it
DROPOUT_MODEL = [
    "model.name=ma_snn5",
    "model.kwargs={channels: [4, 4, 4, 4, 4], hidden: 16}",
    "data.ds=4",
]


def _overrides(root: Path, out: Path, name: str, model: list[str] = TINY_MODEL) -> list[str]:
    over = tiny_overrides(root, out) + model
    # 22 training samples / batch 4 = 5 steps per epoch; checkpoints mid-epoch every 2 steps
    over += ["run.epochs=3", "run.max_steps_per_epoch=null", "run.checkpoint_every_steps=2"]
    over += ["sched.name=plateau", "sched.monitor=val_loss", f"run.name={name}"]
    return over


def _final_state(run_dir: Path) -> dict:
    return ckpt_io.load_checkpoint(run_dir / "checkpoint.pt")


def _assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a["epoch"] == b["epoch"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    for part in ("model",):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for key in sa[k]:
            assert torch.equal(torch.as_tensor(sa[k][key]), torch.as_tensor(sb[k][key]))
    assert a["scheduler"] == b["scheduler"]

    def drop_time(h: list[dict]) -> list[dict]:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in h]

    assert drop_time(a["history"]) == drop_time(b["history"])


@pytest.mark.parametrize(
    ("mode", "model"),
    [("step", TINY_MODEL), ("checkpoint", TINY_MODEL), ("step", DROPOUT_MODEL)],
    ids=["step", "checkpoint", "step-dropout"],
)
def test_sigkill_then_resume_is_bitwise_equal(
    gesture_root: Path, tmp_path: Path, mode: str, model: list[str]
) -> None:
    ref = train(load_config(None, _overrides(gesture_root, tmp_path, "ref", model)), quiet=True)
    ref_state = _final_state(Path(ref["run_dir"]))

    rng = np.random.default_rng(123 if mode == "step" else 7)
    # steps: 15 optimiser steps in all; checkpoints: 2 mid-epoch + 1 end per epoch (+ best.pt)
    # (from step 4 on: the first checkpoint is written after step 2)
    n = int(rng.integers(4, 15)) if mode == "step" else int(rng.integers(2, 9))
    over = _overrides(gesture_root, tmp_path, "killed", model)
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1])}
    proc = subprocess.run(
        [sys.executable, str(HERE / "_killed_run.py"), json.dumps(over), mode, str(n)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    run_dir = tmp_path / "runs" / "killed"
    # the checkpoint on disk is always a complete one (atomic writes)
    before = ckpt_io.load_checkpoint(run_dir / "checkpoint.pt")
    assert before["epoch"] < 3
    leftovers = [p.name for p in run_dir.iterdir() if ".tmp" in p.name]
    if mode == "checkpoint":  # the killed write left its temp file, never a torn checkpoint
        assert leftovers
    resumed = train(load_config(None, over), resume=run_dir / "checkpoint.pt", quiet=True)
    assert not [p.name for p in run_dir.iterdir() if ".tmp" in p.name]  # cleaned on resume
    _assert_bitwise_equal(_final_state(run_dir), ref_state)
    assert resumed["test"] == ref["test"]
