"""``masnn eval --engine sparse`` on a model trained on the offline real-format fixture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from masnn.cli import main
from tests.train.conftest import TINY_MODEL, gesture_root, tiny_overrides

__all__ = ["gesture_root"]  # the session fixture, shared with tests/train


def test_eval_engine_sparse_gives_the_same_predictions(
    gesture_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    over = tiny_overrides(gesture_root, tmp_path) + TINY_MODEL + ["run.epochs=2", "run.name=r"]
    assert main(["train", "--set", *over]) == 0
    best = str(tmp_path / "runs" / "r" / "best.pt")
    capsys.readouterr()
    res = {}
    for engine in ("model", "fast", "sparse"):
        assert main(["eval", best, "--engine", engine, "--json"]) == 0
        res[engine] = json.loads(capsys.readouterr().out)["stats"]
    assert res["model"]["samples"] == 11
    # every test clip gets the same class from all three engines
    assert res["sparse"]["confusion"] == res["model"]["confusion"]
    assert res["fast"]["confusion"] == res["model"]["confusion"]
    assert res["sparse"]["correct"] == res["model"]["correct"]
    with pytest.raises(SystemExit) as exc:  # argparse: exit 2 with the allowed engines
        main(["eval", best, "--engine", "nope"])
    assert exc.value.code == 2
    assert "choose from 'model', 'fast', 'sparse'" in capsys.readouterr().err
