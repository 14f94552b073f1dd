"""Round trips of trained models: ``masnn export onnx|nir`` reproduce the test predictions.

A tiny run trains on the real-format fixture (IBM layout), then the CLI exports its
``best.pt``; the exported files, run in onnxruntime and (NIR) in snnTorch, must predict every
test sample as the masnn model does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from masnn.cli import main
from masnn.export._model import model_from_checkpoint
from masnn.train.config import load_config
from masnn.train.data import build_data
from tests.export.test_nir import run_snntorch
from tests.train.conftest import TINY_MODEL, tiny_overrides

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
nir = pytest.importorskip("nir")

from masnn.export.onnx import run_onnx  # noqa: E402

#: The attention-free variant (NIR has no attention node). Adapt with the model YAML shape.
VANILLA = ["model.attn.name=none"]


def _train(root: Path, tmp: Path, name: str, extra: list[str]) -> tuple[Path, list[str]]:
    over = tiny_overrides(root, tmp) + TINY_MODEL + ["run.epochs=2", f"run.name={name}", *extra]
    assert main(["train", "--set", *over]) == 0
    return tmp / "runs" / name / "best.pt", over


def _test_set(over: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = load_config(None, over)
    data = build_data(cfg.data, cfg.run.seed, progress=False)
    xs, ys = [], []
    for i in range(len(data.test)):
        frames, label = data.test[i]
        frames = torch.as_tensor(np.asarray(frames), dtype=torch.float32)
        xs.append(frames[0] if frames.dim() == 5 else frames)  # first test clip
        ys.append(label)
    return torch.stack(xs, dim=1), torch.tensor(ys)  # (T, N, C, H, W), (N,)


def test_trained_main_job_model_onnx_predictions(
    gesture_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ckpt, over = _train(gesture_root, tmp_path, "main", [])
    out = tmp_path / "model.onnx"
    assert main(["export", "onnx", str(ckpt), "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    model = model_from_checkpoint(ckpt)
    x, _ = _test_set(over)
    with torch.no_grad():
        ref = model(x)
    (y,) = run_onnx(out, x)
    assert np.abs(y - ref.numpy()).max() <= 1e-5
    agree = int((torch.from_numpy(y).argmax(1) == ref.argmax(1)).sum())
    assert agree == x.shape[1] == 11  # all 11 test predictions agree
    # the main job has attention: NIR refuses it in one line naming the module
    assert main(["export", "nir", str(ckpt), "-o", str(tmp_path / "m.nir")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("masnn export: error: features.0.") and "attention" in err
    assert "\n" not in err and not (tmp_path / "m.nir").exists()


def test_trained_vanilla_model_nir_and_step_onnx_predictions(
    gesture_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ckpt, over = _train(gesture_root, tmp_path, "vanilla", VANILLA)
    out = tmp_path / "model.nir"
    assert main(["export", "nir", str(ckpt), "-o", str(out)]) == 0
    assert main(["export", "onnx", str(ckpt), "-o", str(tmp_path / "m.onnx"), "--step"]) == 0
    assert (tmp_path / "m.step.onnx").is_file()
    capsys.readouterr()
    model = model_from_checkpoint(ckpt)
    x, _ = _test_set(over)
    with torch.no_grad():
        ref = model(x)
    rates = run_snntorch(nir.read(str(out)), x).mean(0)  # (N, K)
    assert torch.equal(rates, ref)
    assert int((rates.argmax(1) == ref.argmax(1)).sum()) == 11
    # the per-step cell, stepped over the window, ends on the same predictions
    from masnn.export.onnx import step_state

    state = step_state(model, x.shape[1])
    for frame in x:
        outs = run_onnx(tmp_path / "m.step.onnx", frame, *state)
        state = tuple(torch.from_numpy(o) for o in outs[1:])
    assert np.abs(outs[0] - ref.numpy()).max() <= 1e-5


def test_cli_errors_are_one_line(gesture_root: Path, tmp_path: Path, capsys) -> None:
    assert main(["export", "onnx", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "checkpoint not found" in err
    assert main(["export", "nir", str(tmp_path / "x.pt"), "-o", "x.nir", "--timesteps", "4"]) == 2
    assert "masnn export nir does not take --timesteps" in capsys.readouterr().err
    assert main(["export", "tflite", str(tmp_path / "x.pt"), "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown export format 'tflite'" in err and "['nir', 'onnx']" in err
