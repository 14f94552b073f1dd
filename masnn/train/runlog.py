"""Run directory: provenance, per-epoch CSV log, optional TensorBoard, ``metrics.json``.

A run directory holds ``config.yaml`` (the resolved config), ``run.json`` (config hash,
masnn/torch versions, git SHA when available, dataset fingerprint, seed, threads, world size,
command line), ``log.csv`` (one row per epoch), ``checkpoint.pt`` / ``best.pt`` and, at the end,
``metrics.json``. Only rank 0 writes.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from masnn.version import __version__


def git_sha() -> str | None:
    """The git commit of the masnn source tree, when it is a checkout; else ``None``."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    sha = out.stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=here,
        capture_output=True,
        text=True,
        timeout=5,
    )
    return sha + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def environment() -> dict[str, Any]:
    """Versions and machine facts worth recording with every run."""
    return {
        "masnn": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "git_sha": git_sha(),
        "argv": sys.argv,
    }


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


class EpochLog:
    """Append-only per-epoch CSV (and TensorBoard scalars when enabled)."""

    def __init__(self, run_dir: Path, tensorboard: bool = False, enabled: bool = True) -> None:
        self.path = run_dir / "log.csv"
        self.enabled = enabled
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ImportError(
                    "run.tensorboard=true needs the tb extra: pip install 'masnn[tb]'"
                ) from exc
            self.tb = SummaryWriter(str(run_dir / "tb"))

    def truncate_after(self, epoch: int) -> None:
        """On resume, drop rows of epochs after ``epoch`` (they will be re-run)."""
        if not (self.enabled and self.path.exists()):
            return
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        keep = [r for r in rows if int(r["epoch"]) <= epoch]
        if keep:
            with open(self.path, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(keep[0]))
                w.writeheader()
                w.writerows(keep)
        else:
            self.path.unlink()

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, row["epoch"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class Timer:
    """Wall-clock phases of a run (data, train, test), reported in ``metrics.json``."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self._t: dict[str, float] = {}

    def start(self, name: str) -> None:
        self._t[name] = time.perf_counter()

    def stop(self, name: str) -> float:
        dt = time.perf_counter() - self._t.pop(name)
        self.phases[name] = self.phases.get(name, 0.0) + dt
        return dt
