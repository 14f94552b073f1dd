"""Run a training config in this process and SIGKILL it at a chosen moment (test helper).

Usage: python _killed_run.py OVERRIDES_JSON MODE N
  MODE=step:       kill just before the N-th optimiser step;
  MODE=checkpoint: kill inside the N-th checkpoint write, after the temporary file is
                   written and fsync'ed, before it is renamed over the checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import torch

from masnn.train.config import load_config
from masnn.train.runner import train

overrides, mode, n = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
count = {"n": 0}


def _tick() -> None:
    count["n"] += 1
    if count["n"] == n:
        os.kill(os.getpid(), signal.SIGKILL)


if mode == "step":
    real_step = torch.optim.Adam.step

    def step(self, *a, **k):  # type: ignore[no-untyped-def]
        _tick()
        return real_step(self, *a, **k)

    torch.optim.Adam.step = step  # type: ignore[method-assign]
elif mode == "checkpoint":
    real_fsync = os.fsync
    calls = {"n": 0}

    def fsync(fd: int) -> None:
        real_fsync(fd)
        # every checkpoint write fsyncs the file, then its directory: tick on the file's
        # (only checkpoint writes count: status, logs and run.json are written atomically too)
        import stat

        name = os.readlink(f"/proc/self/fd/{fd}")
        if stat.S_ISREG(os.fstat(fd).st_mode) and (".checkpoint.pt" in name or ".best.pt" in name):
            _tick()

    os.fsync = fsync  # type: ignore[assignment]
else:
    raise SystemExit(f"unknown mode {mode}")

train(load_config(None, overrides), quiet=True)
