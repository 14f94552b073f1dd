"""``masnn report --preset tiny`` end to end: runs, reuse, table, plots, and ``masnn eval``
reproducing every number of the table from the saved runs."""

from __future__ import annotations

import csv
import importlib.metadata
import json
import statistics
from pathlib import Path

import pytest

from masnn.cli import main
from masnn.report.sweep import PRESETS, plan_runs
from masnn.train.evaluate import evaluate_checkpoint
from tests.train.conftest import tiny_overrides


def _over(root: Path, tmp: Path) -> list[str]:
    # the fixture set, framed small; the report sets run.out_dir/name/seed itself
    return [o for o in tiny_overrides(root, tmp) if not o.startswith("run.out_dir")]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_tiny_report_is_reproduced_by_masnn_eval(
    gesture_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rep"
    # the installed distribution, not an importable name: the SpikingJelly parity harness
    # (tests/golden/_thirdparty.py) registers an inert placeholder module for an absent matplotlib
    try:
        importlib.metadata.version("matplotlib")
        plots: list[str] = []
    except importlib.metadata.PackageNotFoundError:
        plots = ["--no-plots"]
    argv = ["report", "--preset", "tiny", "--out", str(out), *plots]
    argv += ["--set", *_over(gesture_root, tmp_path)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| vanilla |" in printed and "| +TA (paper) |" in printed
    for f in ("table.md", "table.csv", "tests.csv", "runs.csv", "report.json", "isometry.csv"):
        assert (out / f).is_file(), f
    if not plots:
        for f in ("ta_weights", "response_maps", "response_channels", "nsar", "layer_rates",
                  "acc_energy", "isometry"):  # fmt: skip
            assert (out / "plots" / f"{f}.png").stat().st_size > 1000, f
    runs = _rows(out / "runs.csv")
    assert [(r["setting"], r["seed"]) for r in runs] == [
        ("none", "0"), ("none", "1"), ("ta-paper", "0"), ("ta-paper", "1")
    ]  # fmt: skip
    iso = _rows(out / "isometry.csv")  # ms_resnet18 at T = 1, Att-Res-SNN-1 and -2: 8 blocks each
    assert len(iso) == 16 and {r["att_res"] for r in iso} == {"1", "2"}
    assert all(r["run_dir"].startswith("runs/") for r in runs)  # relative: the report moves
    # every per-run number is what masnn eval gives for the saved best.pt ...
    for r in runs:
        res = evaluate_checkpoint(str((out / r["run_dir"]) / "best.pt"))
        assert float(r["acc"]) == pytest.approx(100 * res["stats"]["acc"], abs=1e-9)
        assert int(r["correct"]) == res["stats"]["correct"]
        assert float(r["nasar"]) == pytest.approx(res["accounting"]["nasar"], rel=1e-12)
        assert float(r["energy_mj"]) == pytest.approx(res["accounting"]["energy_mj"], rel=1e-12)
        assert float(r["spikes_per_sample"]) == pytest.approx(
            res["accounting"]["spikes_per_sample"], rel=1e-12
        )
    # ... and the table is their mean / std over seeds
    table = {row["setting"]: row for row in _rows(out / "table.csv")}
    assert list(table) == ["none", "ta-paper"]
    for s, row in table.items():
        mine = [r for r in runs if r["setting"] == s]
        for k in ("acc", "nasar", "energy_mj"):
            vals = [float(r[k]) for r in mine]
            assert float(row[f"{k}_mean"]) == pytest.approx(statistics.mean(vals), rel=1e-12)
            assert float(row[f"{k}_std"]) == pytest.approx(statistics.stdev(vals), abs=1e-12)
        lo, hi = float(row["acc_ci_lo"]), float(row["acc_ci_hi"])
        assert lo <= float(row["acc_mean"]) <= hi
    e0 = statistics.mean(float(r["energy_mj"]) for r in runs if r["setting"] == "none")
    e1 = statistics.mean(float(r["energy_mj"]) for r in runs if r["setting"] == "ta-paper")
    assert float(table["ta-paper"]["ree"]) == pytest.approx(e0 / e1, rel=1e-12)
    assert float(table["none"]["ree"]) == 1.0
    # paired test rows and the time-pair columns exist; the TA runs recorded TA weights
    tests = _rows(out / "tests.csv")
    assert [(t["setting"], t["baseline"], t["seeds"]) for t in tests] == [
        ("ta-paper", "none", "0 1")
    ]
    assert 0.0 <= float(tests[0]["p_sign_flip"]) <= 1.0
    assert table["none"]["acc_pairs_mean"] != ""
    blob = json.loads(((out / runs[2]["run_dir"]) / "analysis.json").read_text())
    assert len(blob["ta_weights"]) == 5  # 3 conv + 2 FC layers carry TA
    assert all(len(w) == 4 for w in blob["ta_weights"].values())
    assert all(0.0 < x < 1.0 for w in blob["ta_weights"].values() for x in w)
    # a second invocation reuses every run (keyed by config hash) and rewrites the same table
    mtimes = [((out / r["run_dir"]) / "best.pt").stat().st_mtime_ns for r in runs]
    before = (out / "table.csv").read_text()
    assert main(argv) == 0
    assert "reused" in capsys.readouterr().out
    assert [((out / r["run_dir"]) / "best.pt").stat().st_mtime_ns for r in runs] == mtimes
    assert (out / "table.csv").read_text() == before
    assert main([*argv, "--plan"]) == 0
    assert "4 runs, 4 done, 0 to train" in capsys.readouterr().out


def test_plan_is_paired_and_keyed_by_config(tmp_path: Path) -> None:
    specs = plan_runs(PRESETS["tiny"], seeds=3, out=tmp_path)
    assert len(specs) == 6
    by = {(s.variant.key, s.seed): s for s in specs}
    assert {s.seed for s in specs} == {0, 1, 2}
    # same seed -> same data/optimisation config apart from the attention keys
    a, b = by[("none", 1)].cfg, by[("ta-paper", 1)].cfg
    assert a.data == b.data and a.optim == b.optim and a.run.seed == b.run.seed == 1
    assert a.model.neuron == b.model.neuron == "paper"  # pinned for every setting
    assert len({s.key for s in specs}) == 6
    assert all(s.run_dir.name.endswith(s.key[:10]) for s in specs)
    # the key ignores where the report lives
    again = plan_runs(PRESETS["tiny"], seeds=3, out=tmp_path / "elsewhere")
    assert [s.key for s in again] == [s.key for s in specs]


def test_bad_input_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["report", "--preset", "tiny", "--out", str(tmp_path), "--no-plots", "--seeds", "0"]
    assert main(argv) == 2
    assert "--seeds must be >= 1" in capsys.readouterr().err
    assert main(["report", "--out", str(tmp_path), "--no-plots", "--variants", "none,tcsx"]) == 2
    assert "unknown report setting 'tcsx'" in capsys.readouterr().err
