"""Two ``masnn train`` processes of one config, started together, finish in two directories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.train.conftest import TINY_MODEL, tiny_overrides

ROOT = Path(__file__).resolve().parents[2]


def test_two_concurrent_trains_get_two_run_dirs(
    one_user_root: Path, finished_run: Path, tmp_path: Path
) -> None:
    over = tiny_overrides(one_user_root, tmp_path) + TINY_MODEL
    over += [f"data.cache_dir={finished_run.parent.parent / 'cache'}", "run.max_steps_per_epoch=1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MASNN_TRACEBACK", None)
    cmd = [sys.executable, "-m", "masnn.cli", "train", "--set", *over]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2, runs
    for r in runs:
        assert json.loads((r / "status.json").read_text())["state"] == "finished"
        assert (r / "metrics.json").is_file() and (r / "log.txt").is_file()
    assert {o.strip().splitlines()[-1] for o, _ in outs} == {f"run saved to {r}" for r in runs}
