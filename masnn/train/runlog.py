"""Run directory: provenance, per-epoch CSV log, optional TensorBoard, ``metrics.json``.

A run directory holds ``config.yaml`` (the resolved config), ``run.json`` (config hash,
masnn/torch versions, git SHA when available, dataset fingerprint, seed, threads, world size,
command line), ``log.csv`` (one row per epoch), ``checkpoint.pt`` / ``best.pt`` and, at the end,
``metrics.json``. Only rank 0 writes.
"""

from __future__ import annotations

import csv
import io
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from masnn.fsutil import write_text
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
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def append_log(run_dir: Path, text: str) -> None:
    """Append lines to the run's ``log.txt`` (the console output), atomically."""
    path = run_dir / "log.txt"
    old = path.read_text() if path.is_file() else ""
    write_text(path, old + text.rstrip("\n") + "\n")


def _csv_text(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


#: TensorBoard tag of each per-epoch column (grouped by split: ``train/loss``, ``val/acc``).
TB_TAGS = {
    "lr": "train/lr",
    "train_loss": "train/loss",
    "train_acc": "train/acc",
    "val_loss": "val/loss",
    "val_acc": "val/acc",
    "seconds": "time/epoch_seconds",
}


class EpochLog:
    """Per-epoch CSV (rewritten atomically each epoch) and TensorBoard scalars when enabled.

    TensorBoard tags are grouped by split (:data:`TB_TAGS`); :meth:`final` adds the test
    metrics (``test/acc``, ...) and an hparams entry (the flattened config against them).
    """

    def __init__(self, run_dir: Path, tensorboard: bool = False, enabled: bool = True) -> None:
        self.path = run_dir / "log.csv"
        self.enabled = enabled
        self.tb = None
        self._tb_dir = run_dir / "tb"
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ImportError(
                    "run.tensorboard=true needs the tb extra: pip install 'masnn[tb]'"
                ) from exc
            self.tb = SummaryWriter(str(self._tb_dir))

    def _rows(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def truncate_after(self, epoch: int) -> None:
        """On resume, drop rows of epochs after ``epoch`` (they will be re-run)."""
        if not self.enabled:
            return
        keep = [r for r in self._rows() if int(r["epoch"]) <= epoch]
        if keep:
            write_text(self.path, _csv_text(keep))
        elif self.path.exists():
            self.path.unlink()

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        write_text(self.path, _csv_text([*self._rows(), row]))
        if self.tb is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    self.tb.add_scalar(TB_TAGS.get(k, k), v, row["epoch"])
            self.tb.flush()

    def final(self, test: dict[str, Any], hparams: dict[str, Any], step: int) -> None:
        """Test metrics (``test/acc``, ``test/loss``, ...) and the hparams entry."""
        if self.tb is None:
            return
        scalars = {
            f"test/{k}": float(v)
            for k, v in test.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        for k, v in scalars.items():
            self.tb.add_scalar(k, v, step)
        hp = {
            k: v if isinstance(v, (int, float, str, bool)) else str(v)
            for k, v in hparams.items()
            if v is not None
        }
        self.tb.add_hparams(hp, {f"hparam/{k}": v for k, v in scalars.items()}, run_name=".")
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
