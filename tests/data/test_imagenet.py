"""ImageNet path: transforms, the folder dataset, training, both evaluation crops, DDP top-k.

Tests marked ``imagenet`` need torchvision (the ``imagenet`` extra) and run in CI's ImageNet
stage (``pytest -m imagenet`` in a venv with torch 2.14.1 + torchvision 0.29.1); the others
(the missing-extra message, the resize rule, the held-out split) run in the default suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from masnn.data.imagenet import EVAL_RESIZE, carve_val, eval_resize, require_torchvision
from masnn.train.config import ConfigError, load_config
from masnn.train.data import DataBundle, build_data
from masnn.train.distributed import DistInfo
from masnn.train.runner import build_model, evaluate_split
from tests.data.imagenet_fixture import CLASSES, make_image_folder

HERE = Path(__file__).resolve().parent
SMALL = ["model.name=ms_resnet18", "model.kwargs={widths: [8, 8, 16, 16]}"]


def eval_overrides(root: Path, out: Path, crop: int = 224) -> list[str]:
    return [
        "data.dataset=imagenet",
        f"data.root={root}",
        "data.timesteps=2",
        f"data.options.crop={crop}",
        "data.options.image_size=48",
        "data.val_fraction=0",
        "run.batch_size=4",
        "run.eval_batch_size=3",
        "loss.name=ce",
        f"run.out_dir={out / 'runs'}",
        "run.progress=false",
        *SMALL,
        "model.attn={name: csa, placement: code}",
    ]


def small_model(data: DataBundle) -> nn.Module:
    """A seeded ms_resnet18 (narrow) in eval mode: same weights in every process."""
    torch.manual_seed(3)
    cfg = load_config(None, [*SMALL, "data.timesteps=2", "model.attn={name: csa, placement: code}"])
    m = build_model(cfg, data)
    with torch.no_grad():  # spread the BN statistics so the logits differ between images
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.2)
                mod.bias.normal_(0, 0.3)
    return m.eval()


# ---------------------------------------------------------------- no torchvision needed


def test_missing_torchvision_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import fails as if not installed
    with pytest.raises(
        ImportError, match=r"install the imagenet extra: pip install 'masnn\[imagenet\]'"
    ):
        require_torchvision()
    from masnn.cli import main

    (tmp_path / "data").mkdir()
    rc = main(
        ["train", "--set", "data.dataset=imagenet", f"data.root={tmp_path / 'data'}",
         f"run.out_dir={tmp_path}"]
    )  # fmt: skip
    assert rc == 2


def test_missing_torchvision_cli_message_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    code = (
        "import sys; sys.modules['torchvision'] = None; from masnn.cli import main; "
        f"sys.exit(main(['train', '--set', 'data.dataset=imagenet', 'data.root={tmp_path / 'data'}', "
        f"'run.out_dir={tmp_path}']))"
    )
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1])}
    env.pop("MASNN_TRACEBACK", None)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "masnn[imagenet]" in lines[0] and "torchvision" in lines[0]


def test_eval_resize_rule() -> None:
    assert EVAL_RESIZE == {224: 256, 288: 320}
    assert eval_resize(224) == 256 and eval_resize(288) == 320
    assert eval_resize(112) == 128 and eval_resize(288, 300) == 300
    with pytest.raises(
        ValueError, match="data.options.resize=200 must be >= data.options.crop=224"
    ):
        eval_resize(224, 200)
    with pytest.raises(
        ConfigError, match="data.options.resize=256 must be >= data.options.crop=288"
    ):
        load_config(
            None,
            ["data.dataset=imagenet", "data.root=x", "data.options.crop=288",
             "data.options.resize=256"],
        )  # fmt: skip
    # masnn eval --crop on a DVS checkpoint: refused, not silently ignored
    with pytest.raises(
        ConfigError, match="data.options.crop: unknown option for dataset 'synth_gesture'"
    ):
        load_config(None, ["data.options.crop=288"])
    with pytest.raises(ConfigError, match=r"data.options.image_size=4 must be an integer >= 8"):
        load_config(None, ["data.dataset=imagenet", "data.root=x", "data.options.image_size=4"])


@pytest.mark.parametrize("key", ["image_size", "crop", "resize"])
def test_old_flat_imagenet_keys_fail_with_the_new_form(key: str) -> None:
    """``data.crop`` & co. became options of the registered dataset; the old keys fail in one
    line that shows the new form (like the old flat attention keys)."""
    over = ["data.dataset=imagenet", "data.root=x", f"data.{key}=288"]
    with pytest.raises(ConfigError) as info:
        load_config(None, over)
    msg = str(info.value)
    assert "\n" not in msg
    assert f"data.{key} moved to data.options.{key}" in msg
    assert "options: {image_size: 224, crop: 288" in msg and "--set data.options.crop=288" in msg


def test_saved_flat_imagenet_keys_migrate_to_options() -> None:
    """A checkpoint's saved config (older masnn) moves the flat keys; other datasets drop them."""
    from masnn.train.config import config_from_dict, migrate_saved_config

    saved = {"data": {"dataset": "imagenet", "root": "x", "image_size": 40, "crop": 288,
                      "resize": None}}  # fmt: skip
    cfg = config_from_dict(migrate_saved_config(saved))
    assert cfg.data.options == {"image_size": 40, "crop": 288, "resize": None}
    dvs = {"data": {"dataset": "synth_gesture", "image_size": 224, "crop": 224, "resize": None}}
    assert config_from_dict(migrate_saved_config(dvs)).data.options == {}


def test_imagenet_is_a_registered_dataset_importing_no_torchvision() -> None:
    code = (
        "import sys, masnn.data, masnn.train.data; from masnn.data import DATASETS; "
        "e = DATASETS.get('imagenet'); "
        "print(sorted(e.options), e.needs_root, 'torchvision' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0] == "['crop', 'image_size', 'resize'] True False"


def test_held_out_split_is_seeded_and_disjoint() -> None:
    tr, va = carve_val(1000, 0.01, seed=4)
    assert len(va) == 10 and not set(tr) & set(va) and sorted([*tr, *va]) == list(range(1000))
    assert np.array_equal(va, carve_val(1000, 0.01, seed=4)[1])
    assert not np.array_equal(va, carve_val(1000, 0.01, seed=5)[1])
    assert len(carve_val(10, 0.0, 0)[1]) == 0


# ---------------------------------------------------------------- torchvision (imagenet stage)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torchvision", reason="needs the imagenet extra (CI's imagenet stage)")
    return make_image_folder(tmp_path_factory.mktemp("imagenet"))


@pytest.mark.imagenet
def test_transform_shapes_and_normalisation(image_root: Path) -> None:
    from PIL import Image

    from masnn.data.imagenet import IMAGENET_MEAN, eval_transform, train_transform

    img = Image.open(next((image_root / "train").rglob("*.JPEG"))).convert("RGB")
    assert train_transform(224)(img).shape == (3, 224, 224)
    assert train_transform(32)(img).shape == (3, 32, 32)
    for crop in (224, 288):
        x = eval_transform(crop)(img)
        assert x.shape == (3, crop, crop)
    flat = Image.new("RGB", (300, 260), tuple(int(255 * m) for m in IMAGENET_MEAN))
    x = eval_transform(224)(flat)  # the mean colour normalises to ~0
    assert x.abs().max() < 0.03
    names = [type(t).__name__ for t in train_transform().transforms]
    assert names == ["RandomResizedCrop", "AutoAugment", "ToTensor", "Normalize"]
    assert "IMAGENET" in str(train_transform().transforms[1].policy)
    names = [type(t).__name__ for t in eval_transform(288).transforms]
    assert names == ["Resize", "CenterCrop", "ToTensor", "Normalize"]
    assert eval_transform(288).transforms[0].size == 320


@pytest.mark.imagenet
def test_dataset_repeats_the_image_over_t_and_augments_reproducibly(image_root: Path) -> None:
    from masnn.data.imagenet import build_imagenet

    s = build_imagenet(image_root, timesteps=3, image_size=40, crop=48, val_fraction=0.2, seed=1)
    assert s.num_classes == 10 and s.class_names == CLASSES and s.in_shape == (3, 40, 40)
    assert (len(s.train), len(s.val), len(s.test)) == (8, 2, 10)
    assert s.split_info["eval_crop"] == 48 and s.split_info["eval_resize"] == 55
    x, y = s.train[0]
    assert x.shape == (3, 3, 40, 40) and 0 <= y < 10
    assert torch.equal(x[0], x[2])  # the static image, repeated over T
    xt, _ = s.test[4]
    assert xt.shape == (3, 3, 48, 48)
    assert torch.equal(xt, s.test[4][0])  # evaluation is deterministic
    rng = torch.get_rng_state()
    a = s.train[1][0]
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is left alone
    assert torch.equal(a, s.train[1][0])  # same (seed, epoch, index): same augmentation
    s.train.set_epoch(1)
    assert not torch.equal(a, s.train[1][0])  # a new epoch draws new augmentations
    assert sorted(set(s.test.labels.tolist())) == list(range(10))


@pytest.mark.imagenet
def test_layout_errors_name_the_folder(image_root: Path, tmp_path: Path) -> None:
    from masnn.data.imagenet import build_imagenet

    with pytest.raises(FileNotFoundError, match=r"nowhere/train does not exist"):
        build_imagenet(tmp_path / "nowhere", timesteps=1)
    bad = tmp_path / "bad"
    shutil.copytree(image_root, bad)
    shutil.rmtree(bad / "val" / CLASSES[3])
    with pytest.raises(ValueError, match=f"first difference: '{CLASSES[3]}'"):
        build_imagenet(bad, timesteps=1)


@pytest.mark.imagenet
def test_two_training_steps_then_eval_at_both_crops(
    image_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from masnn.cli import main
    from masnn.train.runner import train

    over = eval_overrides(image_root, tmp_path) + [
        "data.timesteps=1",
        "data.options.crop=56",
        "run.epochs=1",
        "run.max_steps_per_epoch=2",
        "data.workers=2",
        "optim.name=sgd",
        "optim.lr=0.1",
        "run.name=t",
    ]
    cfg = load_config(None, over)
    m = train(cfg, quiet=True)
    assert m["test"]["samples"] == 10 and 0 <= m["test"]["acc"] <= m["test"]["acc_top5"] <= 1
    hist = json.loads((tmp_path / "runs" / "t" / "metrics.json").read_text())
    assert hist["test"]["correct_top5"] == round(10 * m["test"]["acc_top5"])
    best = tmp_path / "runs" / "t" / "best.pt"
    assert main(["eval", str(best), "--crop", "224"]) == 0  # Resize 256 -> CenterCrop 224
    out = capsys.readouterr().out
    assert "test accuracy" in out and "top-5" in out and "/10)" in out
    assert main(["eval", str(best), "--crop", "288", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["split_info"]["eval_crop"] == 288 and res["split_info"]["eval_resize"] == 320
    assert res["stats"]["samples"] == 10
    assert res["stats"]["correct"] <= res["stats"]["correct_top5"]


@pytest.mark.imagenet
def test_crop_288_reaches_the_model(image_root: Path, tmp_path: Path) -> None:
    cfg = load_config(None, eval_overrides(image_root, tmp_path, crop=288))
    data = build_data(cfg.data, cfg.run.seed, progress=False)
    seen: list[tuple[int, ...]] = []
    model = small_model(data)
    model.register_forward_pre_hook(lambda mod, args: seen.append(tuple(args[0].shape)))
    stats = evaluate_split(model, data.test, cfg, data, DistInfo(), torch.device("cpu"))
    assert stats.samples == 10
    assert seen[0] == (2, 3, 3, 288, 288)  # (T, B = eval batch, 3, crop, crop)


@pytest.mark.imagenet
def test_top1_top5_under_two_gloo_ranks_equal_one_process(image_root: Path, tmp_path: Path) -> None:
    from tests.train.test_ddp import free_port, run_torchrun

    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1]), "OMP_NUM_THREADS": "1"}
    cmd = [
        torchrun, "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={free_port()}",
        str(HERE / "_imagenet_ddp_worker.py"), str(image_root), str(tmp_path),
    ]  # fmt: skip
    proc = run_torchrun(cmd, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    torch.set_num_threads(1)
    cfg = load_config(None, eval_overrides(image_root, tmp_path))
    data = build_data(cfg.data, cfg.run.seed, progress=False)
    ref = evaluate_split(small_model(data), data.test, cfg, data, DistInfo(), torch.device("cpu"))
    assert ref.samples == 10 and ref.correct_top5 < 10  # top-5 of 10 classes is not trivial
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    s0, s1 = ranks[0]["shard"], ranks[1]["shard"]
    assert not set(s0) & set(s1) and sorted(s0 + s1) == list(range(10))
    for r in ranks:  # each rank reports the whole set, equal to one process
        st = r["stats"]
        assert (st["correct"], st["correct_top5"], st["samples"]) == (
            ref.correct, ref.correct_top5, ref.samples,
        )  # fmt: skip
        assert st["confusion"] == ref.confusion
        assert st["loss"] == pytest.approx(ref.loss, rel=1e-6)


@pytest.mark.imagenet
def test_t1_run_fine_tunes_at_t4_and_eval_needs_no_init_file(
    image_root: Path, tmp_path: Path
) -> None:
    """The 77.08 % recipe in small: a T = 1 run's best.pt starts a T = 4 run."""
    from masnn.train.checkpoint import load_checkpoint
    from masnn.train.evaluate import evaluate_checkpoint
    from masnn.train.runner import train

    base = eval_overrides(image_root, tmp_path) + [
        "data.options.crop=48", "run.epochs=1", "run.max_steps_per_epoch=1",
    ]  # fmt: skip
    train(load_config(None, [*base, "data.timesteps=1", "run.name=t1"]), quiet=True)
    t1 = tmp_path / "runs" / "t1" / "best.pt"
    w1 = load_checkpoint(t1)["model"]
    kw = f"model.kwargs={{widths: [8, 8, 16, 16], pretrained: {t1}}}"
    cfg = load_config(None, [*base, "data.timesteps=4", kw, "optim.lr=1e-12", "run.name=t4"])
    m = train(cfg, quiet=True)
    assert m["test"]["samples"] == 10
    w4 = load_checkpoint(tmp_path / "runs" / "t4" / "best.pt")["model"]
    for k, v in w1.items():  # started from the T = 1 weights (lr ~ 0: still equal)
        if k.endswith("num_batches_tracked"):
            assert int(w4[k]) == int(v) + 1
        elif "running" not in k:
            torch.testing.assert_close(w4[k], v, rtol=0, atol=1e-6)
    t1.rename(tmp_path / "moved.pt")  # masnn eval of the T = 4 run does not read the init file
    res = evaluate_checkpoint(str(tmp_path / "runs" / "t4" / "best.pt"))
    assert res["stats"]["samples"] == 10
