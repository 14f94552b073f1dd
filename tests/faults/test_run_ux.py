"""Run UX and the write/lock helpers: load_model, log.txt, TensorBoard tags, atomic writes."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch

import masnn
from masnn import fsutil
from masnn.train import checkpoint as ckpt_io
from masnn.train.config import load_config
from masnn.train.runner import train
from tests.train.conftest import TINY_MODEL, tiny_overrides


def test_load_model_rebuilds_from_best_pt_alone(finished_run: Path) -> None:
    best = ckpt_io.load_checkpoint(finished_run / "best.pt")
    model = masnn.load_model(str(finished_run / "best.pt"))
    assert not model.training
    sd = model.state_dict()
    assert sd.keys() == best["model"].keys()
    assert all(torch.equal(sd[k], best["model"][k]) for k in sd)
    c, h, w = best["in_shape"]
    t = best["config"]["data"]["timesteps"]
    out = model(torch.rand(t, 3, c, h, w))
    assert out.shape == (3, best["num_classes"])
    assert model.class_names[0] == "hand_clapping"


def test_log_txt_and_status(finished_run: Path) -> None:
    log = (finished_run / "log.txt").read_text()
    assert log.startswith("data: ") and "model: ma_snn3_tiny" in log and "train_loss" in log
    assert '"state": "finished"' in (finished_run / "status.json").read_text()


def test_tensorboard_tags_grouped_with_test_and_hparams(
    one_user_root: Path, finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {"scalars": set(), "hparams": None}

    class Writer:
        def __init__(self, logdir: str) -> None:
            seen["dir"] = logdir

        def add_scalar(self, tag: str, v: float, step: int) -> None:
            seen["scalars"].add(tag)

        def add_hparams(self, hp: dict, metrics: dict, run_name: str) -> None:
            seen["hparams"] = (hp, metrics)

        def flush(self) -> None:
            pass

        def close(self) -> None:
            pass

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = Writer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    over = tiny_overrides(one_user_root, tmp_path) + TINY_MODEL
    over += [f"data.cache_dir={finished_run.parent.parent / 'cache'}", "run.tensorboard=true"]
    train(load_config(None, over), quiet=True)
    assert {"train/loss", "train/acc", "train/lr", "val/loss", "val/acc", "test/acc"} <= seen[
        "scalars"
    ]
    hp, metrics = seen["hparams"]
    assert hp["optim.lr"] == 2e-3 and hp["model.name"] == "ma_snn3_tiny"
    assert "hparam/test/acc" in metrics


def test_atomic_write_failure_keeps_previous_file(tmp_path: Path) -> None:
    p = tmp_path / "f.txt"
    fsutil.write_text(p, "old\n")
    with (
        pytest.raises(fsutil.FileSystemError, match=r"cannot write .*f\.txt"),
        fsutil.atomic_write(p, "w") as f,
    ):
        f.write("new")
        raise OSError(28, "No space left on device")
    assert p.read_text() == "old\n"
    assert [x.name for x in tmp_path.iterdir()] == ["f.txt"]
    with pytest.raises(ValueError, match="boom"), fsutil.atomic_write(p, "w") as f:
        f.write("half")
        raise ValueError("boom")  # any error in the body: the target is untouched
    assert p.read_text() == "old\n"
    assert [x.name for x in tmp_path.iterdir()] == ["f.txt"]


def test_remove_stale_temps_keeps_live_processes(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    (tmp_path / f".a.pt.tmp{dead}").write_text("x")
    (tmp_path / f".b.pt.tmp{__import__('os').getpid()}").write_text("x")
    (tmp_path / f".entry.tmp{dead}-abcd").mkdir()
    removed = {p.name for p in fsutil.remove_stale_temps(tmp_path)}
    assert removed == {f".a.pt.tmp{dead}", f".entry.tmp{dead}-abcd"}


def test_file_lock_excludes_another_process(tmp_path: Path) -> None:
    lock = tmp_path / ".x.lock"
    code = (
        "import sys, time; from masnn.fsutil import file_lock\n"
        f"with file_lock({str(lock)!r}):\n    print('held', flush=True); time.sleep(1.5)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with (
            pytest.raises(fsutil.FileSystemError, match=r"\.x\.lock: held by another process"),
            fsutil.file_lock(lock, timeout=0.2),
        ):
            pass
    finally:
        proc.wait(timeout=30)
    with fsutil.file_lock(lock, timeout=5):
        pass


def test_progress_bars_show_running_loss_and_cover_val_and_test(
    one_user_root: Path,
    finished_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    over = tiny_overrides(one_user_root, tmp_path) + TINY_MODEL
    over += [f"data.cache_dir={finished_run.parent.parent / 'cache'}", "run.progress=true"]
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    train(load_config(None, over))
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "loss=" in err and "acc=" in err
    assert "val:" in err and "test:" in err
