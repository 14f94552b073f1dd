"""End to end on tiny real-format data: train, select on validation, test once, eval again."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from masnn.cli import main
from masnn.data.gesture import user_of
from masnn.train import checkpoint as ckpt_io
from masnn.train.config import load_config
from masnn.train.data import build_data
from masnn.train.evaluate import evaluate_checkpoint
from masnn.train.runner import train
from tests.train.conftest import TINY_MODEL, tiny_overrides


def test_train_writes_provenance_and_eval_reproduces(
    gesture_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    over = tiny_overrides(gesture_root, tmp_path) + TINY_MODEL + ["run.epochs=2", "run.name=r"]
    assert main(["train", "--set", *over]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "runs" / "r"
    assert "test accuracy" in out and "NASAR" in out and f"run saved to {run}" in out
    for f in ("config.yaml", "run.json", "log.csv", "checkpoint.pt", "best.pt", "metrics.json"):
        assert (run / f).is_file(), f
    meta = json.loads((run / "run.json").read_text())
    for key in ("config_hash", "masnn", "torch", "git_sha", "dataset", "seed", "threads", "split"):
        assert key in meta
    assert meta["dataset"]["files"] > 0 and len(meta["dataset"]["sha256"]) == 64
    # validation carved by whole subjects from the training users only
    assert meta["split"]["val_split_by"] == "subject"
    assert len(meta["split"]["val_groups"]) == 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["samples"] == 11  # one test user, one lighting, 11 gestures
    assert 1 <= metrics["best"]["epoch"] <= 2
    assert metrics["accounting"]["nasar"] >= 0
    rows = (run / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,lr,train_loss")
    # the selected epoch is the first maximum of the logged validation curve, and best.pt
    # holds that epoch's weights: evaluating it on validation gives the logged accuracy
    curve = [float(r["val_acc"]) for r in csv.DictReader(io.StringIO("\n".join(rows)))]
    assert metrics["best"]["epoch"] == 1 + curve.index(max(curve))
    assert metrics["best"]["val_acc"] == pytest.approx(max(curve), abs=1e-4)
    again = evaluate_checkpoint(str(run / "best.pt"), split="val")
    assert again["epoch"] == metrics["best"]["epoch"]
    assert again["stats"]["acc"] == pytest.approx(metrics["best"]["val_acc"], abs=1e-9)
    # validation users are absent from training; test users from both
    data = build_data(load_config(run / "config.yaml").data, 0, progress=False)
    assert data.train.source is data.val.source  # both carved from the training split
    trials = data.train.source.trials
    train_users = {user_of(trials[i]) for i in data.train.indices}
    val_users = {user_of(trials[i]) for i in data.val.indices}
    test_users = {user_of(t) for t in data.test.source.trials}
    assert val_users == set(meta["split"]["val_groups"]) and len(train_users) == 2
    assert not train_users & val_users and not test_users & (train_users | val_users)
    # masnn eval, in a fresh process, reproduces the logged test metric exactly
    proc = subprocess.run(
        [sys.executable, "-m", "masnn.cli", "eval", str(run / "best.pt"), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout)
    assert res["stats"] == metrics["test"]
    assert res["accounting"]["nasar"] == pytest.approx(metrics["accounting"]["nasar"], abs=0)
    conf = metrics["test"]["confusion"]
    assert len(conf) == 11 and sum(map(sum, conf)) == 11
    assert sum(conf[i][i] for i in range(11)) == metrics["test"]["correct"]
    assert res["class_names"][3] == "right_arm_clockwise"
    # per-class view: one line per class, counts from the same confusion matrix
    assert main(["eval", str(run / "best.pt"), "--per-class"]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = lines[lines.index(next(x for x in lines if x.startswith("class"))) + 1 :]
    assert len(table) == 11 and table[0].startswith("hand_clapping")


def test_test_clips_protocols(gesture_root: Path, tmp_path: Path) -> None:
    over = tiny_overrides(gesture_root, tmp_path) + TINY_MODEL + ["data.test_clips=3"]
    m = train(load_config(None, over), quiet=True)
    t = m["test"]
    assert t["samples"] == 11
    for k in ("acc_single", "acc_majority", "acc_official"):
        assert 0.0 <= t[k] <= 1.0
    assert t["acc"] == t["acc_majority"]


def test_same_seed_same_result_and_no_val_selects_last(gesture_root: Path, tmp_path: Path) -> None:
    base = tiny_overrides(gesture_root, tmp_path) + TINY_MODEL + ["data.val_fraction=0"]
    a = train(load_config(None, [*base, "run.name=a"]), quiet=True)
    b = train(load_config(None, [*base, "run.name=b"]), quiet=True)
    assert a["test"] == b["test"]
    assert a["best"]["epoch"] == 1 and a["best"]["val_acc"] is None
    sa = ckpt_io.load_checkpoint(Path(a["run_dir"]) / "checkpoint.pt")["model"]
    sb = ckpt_io.load_checkpoint(Path(b["run_dir"]) / "checkpoint.pt")["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_gait_text_release_trains(gait_root: Path, tmp_path: Path) -> None:
    over = tiny_overrides(gait_root, tmp_path, dataset="dvs128_gait") + TINY_MODEL
    m = train(load_config(None, [*over, "data.short=pad"]), quiet=True)
    assert m["test"]["samples"] == 20
    meta = json.loads((Path(m["run_dir"]) / "run.json").read_text())
    # subjects are the labels: validation holds out one block of walks within every subject,
    # and the run says plainly that the subjects (and perhaps sessions) are shared
    assert meta["split"]["val_split_by"] == "walk block"
    assert len(meta["split"]["val_groups"]) == 20 == meta["split"]["val_samples"]
    assert {g.split("/")[0] for g in meta["split"]["val_groups"]} == {
        f"{s:02d}" for s in range(1, 21)
    }
    assert "share subjects" in meta["split"]["val_note"]


def test_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--set", "optim.lrr=1"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'optim.lr'" in err and "Traceback" not in err
    missing = tmp_path / "nowhere"
    assert main(["train", "--set", "data.dataset=dvs128_gesture", f"data.root={missing}"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "docs/data.md" in err and "Traceback" not in err
    assert main(["eval", str(tmp_path / "none.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_nan_loss_stops_names_step_keeps_last_good_checkpoint(
    gesture_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import masnn.train.build as build
    from masnn.train.engine import TrainingDiverged

    real = build.make_loss
    calls = {"n": 0}

    def poisoned(cfg, k):  # type: ignore[no-untyped-def]
        loss = real(cfg, k)

        def f(out, y):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            v = loss(out, y)
            return v * float("nan") if calls["n"] > 3 else v

        return f

    monkeypatch.setattr(build, "make_loss", poisoned)
    over = tiny_overrides(gesture_root, tmp_path) + TINY_MODEL
    over += ["run.epochs=3", "data.val_fraction=0", "run.name=nan"]
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 2"):
        train(load_config(None, over), quiet=True)
    kept = ckpt_io.load_checkpoint(tmp_path / "runs" / "nan" / "checkpoint.pt")
    assert kept["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


def test_cli_options_repeats_deterministic_sgd_ce_bf16(
    gesture_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    over = tiny_overrides(gesture_root, tmp_path) + TINY_MODEL
    over += ["optim.name=sgd", "optim.lr=0.05", "loss.name=ce", "loss.label_smoothing=0.1"]
    over += ["run.amp=bf16", "sched.name=none", "run.name=rep"]
    assert main(["train", "--set", *over, "--repeats", "2", "--deterministic"]) == 0
    out = capsys.readouterr().out
    assert "2 seeds: test accuracy" in out and "± " in out
    summary = json.loads((tmp_path / "runs" / "rep-summary.json").read_text())
    assert len(summary["test_acc"]) == 2
    for seed in (0, 1):
        cfg = load_config(tmp_path / "runs" / f"rep-seed{seed}" / "config.yaml")
        assert cfg.run.seed == seed and cfg.run.deterministic and cfg.run.amp == "bf16"
        assert cfg.optim.name == "sgd" and cfg.loss.label_smoothing == 0.1


def test_resume_via_cli_and_refusals(
    gesture_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    over = tiny_overrides(gesture_root, tmp_path) + TINY_MODEL + ["run.name=cli"]
    assert main(["train", "--set", *over]) == 0
    run = tmp_path / "runs" / "cli"
    # resuming a finished run re-runs nothing: it says the run is finished (metrics untouched)
    first = json.loads((run / "metrics.json").read_text())["test"]
    capsys.readouterr()
    assert main(["train", "--set", *over, "--resume", str(run / "checkpoint.pt")]) == 2
    assert "is finished" in capsys.readouterr().err
    assert json.loads((run / "metrics.json").read_text())["test"] == first
    assert main(["train", "--set", *over, "--resume", str(run / "best.pt")]) == 2
    assert "resume from the run's checkpoint.pt" in capsys.readouterr().err
    (run / "metrics.json").unlink()  # as if interrupted before the test: resumable again
    assert (
        main(["train", "--set", *over, "optim.lr=0.5", "--resume", str(run / "checkpoint.pt")]) == 2
    )
    assert "resume with the same config" in capsys.readouterr().err
    bad = ["sched.name=plateau", "sched.monitor=val_acc", "data.val_fraction=0"]
    assert main(["train", "--set", *over, *bad]) == 2
    assert "needs a validation split" in capsys.readouterr().err


def test_tensorboard_logs_or_names_its_extra(
    gesture_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    over = tiny_overrides(gesture_root, tmp_path) + TINY_MODEL + ["run.tensorboard=true"]
    if importlib.util.find_spec("tensorboard") is None:
        assert main(["train", "--set", *over]) == 2
        assert "pip install 'masnn[tb]'" in capsys.readouterr().err
    else:
        assert main(["train", "--set", *over]) == 0
        assert list((tmp_path / "runs").glob("*/tb/events.out.tfevents.*"))


def test_train_and_eval_leave_torch_globals_as_they_were(
    gesture_root: Path, tmp_path: Path
) -> None:
    import random

    import numpy as np

    from masnn.train.evaluate import evaluate_checkpoint

    threads = torch.get_num_threads()
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    other = 1 if threads != 1 else 2
    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(7)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    over = tiny_overrides(gesture_root, tmp_path) + TINY_MODEL
    over += [f"run.threads={other}", "run.deterministic=true", "run.name=g"]
    m = train(load_config(None, over), quiet=True)
    evaluate_checkpoint(str(Path(m["run_dir"]) / "best.pt"))
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.equal(torch.get_rng_state(), before[0])
    assert np.array_equal(np.random.get_state()[1], before[1])
    assert random.getstate() == before[2]
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == cublas
    # also when the run fails (here: the data directory is empty)
    (tmp_path / "empty").mkdir()
    over = [*over[:-1], "run.name=h", f"data.root={tmp_path / 'empty'}"]
    with pytest.raises(ValueError, match="empty"):
        train(load_config(None, over), quiet=True)
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()
