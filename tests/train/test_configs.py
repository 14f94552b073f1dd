"""Every config in configs/: strict load, matches configs/PAPER_TABLE.md, runs 2 steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from masnn.models import create_model
from masnn.train.config import load_config
from masnn.train.runner import train
from tests.train.conftest import tiny_overrides

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ALL_YAMLS = sorted(CONFIGS.glob("*.yaml"))
# ImageNet configs are checked by tests/train/test_imagenet_configs.py (other data, torchvision)
YAMLS = [p for p in ALL_YAMLS if not p.stem.startswith("imagenet_")]


def table_rows() -> dict[str, dict[str, str]]:
    lines = (CONFIGS / "PAPER_TABLE.md").read_text().splitlines()
    rows = [ln for ln in lines if ln.startswith("| ")]
    header = [h.strip() for h in rows[0].strip("|").split("|")]
    out = {}
    for ln in rows[1:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        if set(cells[0]) <= {"-"}:
            continue
        out[cells[0]] = dict(zip(header, cells))
    return out


def test_every_yaml_has_a_table_row_and_back() -> None:
    assert len(YAMLS) >= 20
    assert sorted(table_rows()) == sorted(p.stem for p in ALL_YAMLS)


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
def test_hyper_parameters_match_the_table(path: Path) -> None:
    cfg = load_config(path)
    row = table_rows()[path.stem]
    a = cfg.model.attn
    placement = a.placement
    loc = a.locations
    if loc:
        ((slot, where),) = loc.items()
        placement += f" ({slot}: {where})"
    expect = {
        "dt (ms)": str(cfg.data.dt_ms),
        "T": str(cfg.data.timesteps),
        "attn": a.name,
        "r_t": str(a.reduction_t),
        "r_c": str(a.reduction_c),
        "kernel": str(a.kernel_size),
        "placement": placement,
        "optimiser": cfg.optim.name,
        "lr": str(cfg.optim.lr),
        "batch": str(cfg.run.batch_size),
        "epochs": str(cfg.run.epochs),
        "loss": cfg.loss.name,
    }
    assert {k: row[k] for k in expect} == expect
    if cfg.data.dataset != "imagenet":  # the paper's DVS recipe: no spatial augmentation
        assert cfg.data.shift == 0
    # the built model resolves to the same hyper-parameters (registry defaults cannot drift)
    k = 20 if cfg.data.dataset == "dvs128_gait" else 11
    size = (2, 128 // cfg.data.ds, 128 // cfg.data.ds)
    model = create_model(
        cfg.model.name,
        num_classes=k,
        timesteps=cfg.data.timesteps,
        input_size=size,
        attn=a,
        neuron=cfg.model.neuron,
        **cfg.model.kwargs,
    )
    args = model.model_args
    fields = {"attn": "name", "attn_relu": "relu", "locations": "locations"}
    for key in ("attn", "placement", "reduction_t", "reduction_c", "kernel_size", "attn_relu"):
        assert args[key] == getattr(a, fields.get(key, key)), key
    assert args["locations"] == a.locations
    # the target number is the one the YAML's notes cite, and the source tag is a known one
    if "->" in cfg.notes:
        assert row["target (%)"] == cfg.notes.split("->")[-1].strip()
        assert row["paper row"] in cfg.notes
    else:
        assert row["target (%)"] == "–"
    assert row["source"] in ("gesture3", "gait3", "five", "code", "control")
    assert f"**{row['source']}**" in (CONFIGS / "PAPER_TABLE.md").read_text()


SHRINK = {
    "ma_snn3": ["model.kwargs.channels=[4, 8, 8]", "model.kwargs.hidden=16", "data.ds=8"],
    "ma_snn5": ["model.kwargs.channels=[4, 4, 4, 4, 4]", "model.kwargs.hidden=16", "data.ds=4"],
}


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
def test_runs_two_steps_on_a_tiny_fixture(
    path: Path, gesture_root: Path, gait_root: Path, tmp_path: Path
) -> None:
    raw = load_config(path)
    gait = raw.data.dataset == "dvs128_gait"
    root = gait_root if gait else gesture_root
    over = tiny_overrides(root, tmp_path, dataset=raw.data.dataset)
    over += SHRINK[raw.model.name] + ["run.batch_size=4", "data.val_fraction=0"]
    cfg = load_config(path, over)
    assert cfg.model == raw.model.__class__(
        **{**raw.model.__dict__, "kwargs": {**raw.model.kwargs, **cfg.model.kwargs}}
    )
    m = train(cfg, quiet=True)
    assert m["test"]["samples"] == (20 if gait else 11)
