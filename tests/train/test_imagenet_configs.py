"""configs/imagenet_*.yaml: rows of configs/PAPER_TABLE.md, the model they build, 2 steps."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from masnn.models import create_model
from masnn.train.config import load_config
from masnn.train.runner import build_model
from tests.train.test_configs import CONFIGS, table_rows

IMAGENET = sorted(CONFIGS.glob("imagenet_*.yaml"))
TARGETS = {  # paper Tables 2, 3 and 7 (SPEC §7)
    "imagenet_ms18_vanilla": "61.70 %", "imagenet_ms18_ca": "63.42 %",
    "imagenet_ms18_csa": "63.97 %", "imagenet_ms34_vanilla": "64.13 %",
    "imagenet_ms34_ca": "67.96 %", "imagenet_ms34_csa": "69.15 %",
    "imagenet_ms104_vanilla": "71.57 %", "imagenet_ms104_ca": "72.03 %",
    "imagenet_ms104_csa": "73.82 %", "imagenet_ms18_csa2": "63.49 %",
    "imagenet_ms34_csa2": "68.36 %", "imagenet_ms104_csa_t4": "77.08 %",
}  # fmt: skip


def test_the_twelve_rows_exist() -> None:
    assert sorted(p.stem for p in IMAGENET) == sorted(TARGETS)


@pytest.mark.parametrize("path", IMAGENET, ids=lambda p: p.stem)
def test_raw_yaml_matches_the_table(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    row = table_rows()[path.stem]
    a, m = raw["model"]["attn"], raw["model"]
    att_res = m["kwargs"]["att_res"]
    placement = "–" if a["name"] == "none" else f"{a['placement']} (residual, att_res {att_res})"
    expect = {
        "T": str(raw["data"]["timesteps"]),
        "attn": a["name"],
        "r_c": str(a.get("reduction_c", "–")),
        "kernel": str(a.get("kernel_size", "–")),
        "placement": placement,
        "optimiser": raw["optim"]["name"],
        "lr": str(raw["optim"]["lr"]),
        "batch": str(raw["run"]["batch_size"]),
        "epochs": str(raw["run"]["epochs"]),
        "loss": raw["loss"]["name"],
        "target (%)": TARGETS[path.stem],
        "source": "imagenet",
    }
    assert {k: row[k] for k in expect} == expect
    assert raw["notes"].split("->")[-1].strip() == TARGETS[path.stem]
    assert row["paper row"] in raw["notes"]
    assert raw["data"]["dataset"] == "imagenet" and raw["loss"]["label_smoothing"] == 0.1
    depth = path.stem.split("_")[1][2:]
    assert m["name"] == f"ms_resnet{depth}" and m["neuron"] == "msresnet"
    if a["name"] != "none":  # the official code's CSA: r_c 8, SA 3x3, ReLU only on the branch
        assert (a["placement"], a["reduction_c"], a["kernel_size"]) == ("code", 8, 3)
        assert a["relu"] is (att_res == 1)
    t4 = path.stem.endswith("_t4")
    assert raw["data"]["options"]["crop"] == (288 if t4 else 224)
    assert raw["data"]["timesteps"] == (4 if t4 else 1)
    if t4:  # starts from the T = 1 run of the same network
        assert m["kwargs"]["pretrained"] == "runs/imagenet_ms104_csa/best.pt"


def test_pretrained_in_model_kwargs_starts_a_t4_model(tmp_path: Path) -> None:
    """The config path of the fine-tune: ``model.kwargs.pretrained`` -> create_model."""
    small = {"widths": (8, 8, 16, 16), "num_classes": 10, "input_size": (3, 32, 32)}
    t1 = create_model("ms_resnet18", attn="csa", placement="code", timesteps=1, **small)
    from masnn.train.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "best.pt", epoch=1, config={}, model=t1.state_dict())
    cfg = load_config(
        None,
        [
            "model.name=ms_resnet18",
            "model.attn={name: csa, placement: code}",
            "data.timesteps=4",
            f"model.kwargs={{widths: [8, 8, 16, 16], pretrained: {tmp_path / 'best.pt'}}}",
        ],
    )
    data = SimpleNamespace(num_classes=10, in_shape=(3, 32, 32))
    t4 = build_model(cfg, data)
    assert t4.timesteps == 4 and t4.pretrained["path"] == str(tmp_path / "best.pt")
    for k, v in t1.state_dict().items():
        assert torch.equal(t4.state_dict()[k], v), k


@pytest.mark.parametrize("path", IMAGENET, ids=lambda p: p.stem)
def test_configs_load_and_build_the_paper_models(path: Path) -> None:
    cfg = load_config(path)
    cfg.model.kwargs.pop("pretrained", None)
    model = build_model(cfg, SimpleNamespace(num_classes=1000, in_shape=(3, 224, 224)))
    args = model.model_args
    raw = yaml.safe_load(path.read_text())["model"]
    assert args["att_res"] == raw["kwargs"]["att_res"]
    if raw["attn"]["name"] != "none":
        assert args["reduction_c"] == 8 and args["kernel_size"] == 3
        assert args["attn_relu"] is raw["attn"]["relu"]


@pytest.mark.imagenet
@pytest.mark.parametrize("path", IMAGENET, ids=lambda p: p.stem)
def test_runs_two_steps_on_a_tiny_image_folder(path: Path, tmp_path: Path) -> None:
    pytest.importorskip("torchvision", reason="needs the imagenet extra")
    from masnn.train.runner import train
    from tests.data.imagenet_fixture import make_image_folder

    root = make_image_folder(tmp_path / "img", {"train": 1, "val": 1})
    raw = load_config(path)
    kwargs = {k: v for k, v in raw.model.kwargs.items() if k != "pretrained"}
    kwargs["widths"] = [8, 8, 8, 8]
    if "pretrained" in raw.model.kwargs:  # a T = 1 checkpoint of the same (shrunk) network
        t1 = create_model(raw.model.name, attn="csa", placement="code", num_classes=10,
                          widths=(8, 8, 8, 8), input_size=(3, 32, 32))  # fmt: skip
        from masnn.train.checkpoint import save_checkpoint

        save_checkpoint(tmp_path / "t1.pt", epoch=1, config={}, model=t1.state_dict())
        kwargs["pretrained"] = str(tmp_path / "t1.pt")
    over = [
        f"data.root={root}", "data.options.image_size=32", "data.options.crop=32", "data.workers=0",
        "data.val_fraction=0", "run.batch_size=4", "run.eval_batch_size=5", "run.epochs=1",
        "run.max_steps_per_epoch=2", "run.amp=none", f"run.out_dir={tmp_path / 'runs'}",
        "run.progress=false", f"model.kwargs={kwargs}",
    ]  # fmt: skip
    m = train(load_config(path, over), quiet=True)
    assert m["test"]["samples"] == 10
