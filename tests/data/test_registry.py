"""The dataset registry, the one frame path, and the validation split (``carve_validation``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from masnn.data import DATASETS, DVS128Gesture, carve_validation, register_dataset
from masnn.data.gait import walk_blocks
from masnn.data.gesture import user_of
from masnn.frames import FrameCfg, RandomShift
from masnn.layout import repeat_over_time
from masnn.train.config import ConfigError, DataCfg, load_config
from masnn.train.data import build_data, data_request, make_loader
from masnn.train.runner import train
from tests.data.ibm_fixture import make_ibm
from tests.data.test_gait import make_gait
from tests.train.conftest import TINY_MODEL

# ----------------------------------------------------------------------------- carve_validation


def test_carve_validation_holds_out_whole_groups_and_is_seeded() -> None:
    groups = ["u1"] * 3 + ["u2"] * 2 + ["u3"] * 4 + ["u4"] + ["u5"] * 2
    tr, va, held = carve_validation(groups, 0.4, seed=3)
    assert len(held) == 2 and held == sorted(held)  # round(0.4 * 5) groups
    assert sorted(tr.tolist() + va.tolist()) == list(range(len(groups)))
    assert {groups[i] for i in va} == set(held)
    assert not {groups[i] for i in tr} & set(held)
    # the same seed gives the same split, and the unstratified draw is the one every earlier
    # run used (one permutation of the sorted groups from default_rng(seed))
    assert carve_validation(groups, 0.4, seed=3)[2] == held
    perm = np.random.default_rng(3).permutation(5)
    assert held == sorted(f"u{i + 1}" for i in perm[:2])
    draws = {tuple(carve_validation(groups, 0.4, seed=s)[2]) for s in range(20)}
    assert len(draws) > 3


def test_carve_validation_edges() -> None:
    groups = ["a", "a", "b"]
    tr, va, held = carve_validation(groups, 0.0, seed=0)
    assert tr.tolist() == [0, 1, 2] and va.size == 0 and held == []
    assert len(carve_validation(groups, 0.01, seed=0)[2]) == 1  # at least one group
    assert len(carve_validation(groups, 0.99, seed=0)[2]) == 1  # never all of them
    with pytest.raises(ValueError, match="1 group"):
        carve_validation(["a", "a"], 0.5, seed=0)


def test_carve_validation_strata() -> None:
    # three subjects (= classes), four blocks each: validation takes one block of every subject
    groups = [f"s{s}/b{b}" for s in range(3) for b in range(4) for _ in range(2)]
    strata = [g.split("/")[0] for g in groups]
    tr, va, held = carve_validation(groups, 0.25, seed=1, strata=strata)
    assert sorted(h.split("/")[0] for h in held) == ["s0", "s1", "s2"]
    assert len(va) == 6 and {strata[i] for i in va} == {"s0", "s1", "s2"}
    # a stratum with a single group keeps it; none with two is an error
    assert carve_validation(["x", "y", "z"], 0.5, 0, strata=["p", "q", "q"])[2] in (["y"], ["z"])
    with pytest.raises(ValueError, match="no stratum"):
        carve_validation(["x", "y"], 0.5, 0, strata=["p", "q"])


# ----------------------------------------------------------------------------- Gait split


def test_gait_validation_takes_consecutive_walks_of_every_subject(tmp_path: Path) -> None:
    make_gait(tmp_path / "gait", subjects=("1", "2", "10"), per=10)
    cfg = DataCfg(
        dataset="dvs128_gait", root=str(tmp_path / "gait"), cache_dir=str(tmp_path / "c"),
        timesteps=2, dt_ms=100, ds=8, val_fraction=0.2,
    )  # fmt: skip
    data = build_data(cfg, seed=0, progress=False)
    src = data.train.source
    assert data.split_info["val_split_by"] == "walk block"
    assert "share subjects" in data.split_info["val_note"]
    for label, subject in enumerate(("1", "2", "10")):
        walks = [i for i in range(len(src)) if src.labels[i] == label]  # file order
        held = [walks.index(i) for i in data.val.indices if src.labels[i] == label]
        # every subject (= class) is in validation, with one run of consecutive walks
        assert len(held) == 2 and held[1] == held[0] + 1, (subject, held)
    # walk order is natural: walk10 follows walk9
    groups, strata = walk_blocks([f"7/walk{k}" for k in (10, 1, 9, 2)], blocks=2)
    assert groups == ["7/block1", "7/block0", "7/block1", "7/block0"] and set(strata) == {"7"}


# ----------------------------------------------------------------------------- one frame path


def test_training_frames_are_the_datasets_own_frames(tmp_path: Path) -> None:
    root = make_ibm(tmp_path / "DvsGesture")
    cfg = DataCfg(
        dataset="dvs128_gesture", root=str(root), cache_dir=str(tmp_path / "c"),
        timesteps=3, dt_ms=0.5, ds=2, test_clips=2, val_fraction=0.0,
    )  # fmt: skip
    data = build_data(cfg, seed=5, progress=False)
    want = FrameCfg(mode="window", timesteps=3, dt_ms=0.5, ds=2, clips=2, short="pad")
    src = data.train.source
    assert isinstance(src, DVS128Gesture) and src.frame_cfg == want
    assert data.test.source.frame_cfg == want
    # a test sample: the dataset's own (clips, T, C, H, W) frames, unchanged
    x, y = data.test[1]
    ds_x, ds_y = data.test.source[1]
    assert x.shape == (2, 3, 2, 64, 64) and y == ds_y
    np.testing.assert_array_equal(x, ds_x)
    # a training sample: the dataset's frames with the per-(seed, epoch, index) window draw,
    # then (data.shift, default 2) one translation drawn from the same generator
    data.train.set_epoch(2)
    idx = int(data.train.indices[0])
    rng = np.random.default_rng([5, 2, idx])
    own = src.frames(idx, train=True, rng=rng)
    np.testing.assert_array_equal(data.train[0][0], RandomShift(cfg.shift)(own, rng))
    unshifted = build_data(replace(cfg, shift=0), seed=5, progress=False)
    unshifted.train.set_epoch(2)
    np.testing.assert_array_equal(unshifted.train[0][0], own)


# ----------------------------------------------------------------------------- plug-in dataset


class StaticImages:
    """A non-event dataset: random grey images, repeated over T (like ImageNet's encoding)."""

    num_classes = 3

    def __init__(self, n: int, timesteps: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 1, 8, 8, generator=g)
        self.timesteps = timesteps
        self._labels = np.arange(n) % 3

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    @property
    def class_names(self) -> tuple[str, ...]:
        return ("dark", "mid", "bright")

    def __len__(self) -> int:
        return len(self._labels)

    def frame_shape(self) -> tuple[int, int, int, int]:
        return (self.timesteps, 1, 8, 8)

    def frames(self, index: int, *, train: bool | None = None, rng: Any = None) -> torch.Tensor:
        return repeat_over_time(self.images[index : index + 1], self.timesteps)[:, 0]


@register_dataset("test_static_images", needs_root=False, options={"images": 6})
def _open_static(req):  # type: ignore[no-untyped-def]
    from masnn.data import DatasetSplits, ValidationGroups

    n, t = int(req.options["images"]), req.frames.timesteps
    train_set, test_set = StaticImages(n, t, 0), StaticImages(3, t, 1)
    groups = ValidationGroups([f"img{i // 2}" for i in range(n)], "image pair", "pairs held out")
    return DatasetSplits(train_set, test_set, Path("."), groups)


def test_a_dataset_registered_outside_the_package_trains(tmp_path: Path) -> None:
    assert "test_static_images" in DATASETS
    cfg = DataCfg(dataset="test_static_images", timesteps=2, options={"images": 12})
    data = build_data(cfg, seed=0, progress=False)
    assert data.in_shape == (1, 8, 8) and data.class_names[2] == "bright"
    assert len(data.train) + len(data.val) == 12 and len(data.test) == 3
    x, y = next(iter(make_loader(data.train, [[0, 1, 2]], 0)))
    assert tuple(x.shape) == (2, 3, 1, 8, 8) and y.tolist() == data.train.labels[:3].tolist()
    over = [
        "data.dataset=test_static_images", "data.timesteps=2", "data.options={images: 12}",
        "run.epochs=1", "run.batch_size=4", "run.progress=false", "run.threads=1",
        f"run.out_dir={tmp_path / 'runs'}", *TINY_MODEL,
    ]  # fmt: skip
    m = train(load_config(None, over), quiet=True)
    assert m["test"]["samples"] == 3
    with pytest.raises(ValueError, match=r"data\.options\.imgs.*did you mean 'images'"):
        build_data(DataCfg(dataset="test_static_images", options={"imgs": 1}), seed=0)


class ReadyView(torch.utils.data.Dataset):
    """A dataset's own view: it draws its own augmentation from (seed, epoch, index)."""

    def __init__(self, images: torch.Tensor, timesteps: int, *, train: bool, seed: int) -> None:
        self.images, self.timesteps, self.train, self.seed = images, timesteps, train, seed
        self.labels = np.arange(len(images)) % 3
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i]
        flip = self.train and np.random.default_rng([self.seed, self.epoch, i]).random() < 0.5
        if flip:  # a flip drawn from (seed, epoch, index)
            x = x.flip(-1)
        return x.unsqueeze(0).expand(self.timesteps, *x.shape), int(self.labels[i])


def _ready_check(options: dict[str, Any]) -> None:
    if options["images"] < 4:
        raise ValueError(f"data.options.images={options['images']} must be >= 4")


@register_dataset("test_ready_images", needs_root=False, options={"images": 8}, check=_ready_check)
def _open_ready(req):  # type: ignore[no-untyped-def]
    from masnn.data import ReadySplits

    n, t = int(req.options["images"]), req.frames.timesteps
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n + 3, 1, 8, 8, generator=g)
    n_val = round(req.val_fraction * n)
    held = np.random.default_rng(req.seed).permutation(n)[:n_val]
    keep = np.setdiff1d(np.arange(n), held)
    return ReadySplits(
        train=ReadyView(images[keep], t, train=True, seed=req.seed),
        val=ReadyView(images[np.sort(held)], t, train=False, seed=req.seed) if n_val else None,
        test=ReadyView(images[n:], t, train=False, seed=req.seed),
        num_classes=3,
        in_shape=(1, 8, 8),
        class_names=("a", "b", "c"),
        root=Path("."),
        split_info={
            "train_samples": len(keep), "val_samples": n_val, "test_samples": 3,
            "val_groups": [], "val_split_by": "image", "val_note": f"{n_val} images held out",
        },
    )  # fmt: skip


def test_a_dataset_with_its_own_splits_trains_through_build_data(tmp_path: Path) -> None:
    """The ReadySplits contract (ImageNet's kind), registered outside the package."""
    from masnn.data import ReadySplits

    assert "test_ready_images" in DATASETS
    cfg = DataCfg(
        dataset="test_ready_images", timesteps=2, val_fraction=0.25, options={"images": 12}
    )
    data = build_data(cfg, seed=4, progress=False)
    assert isinstance(DATASETS.get("test_ready_images").open(data_request(cfg)), ReadySplits)
    assert (len(data.train), len(data.val), len(data.test)) == (9, 3, 3)
    assert data.split_info["val_note"] == "3 images held out" and data.in_shape == (1, 8, 8)
    assert isinstance(data.train, ReadyView) and data.train.seed == 4  # used as built
    x, y = next(iter(make_loader(data.train, [[0, 1, 2]], 0)))
    assert tuple(x.shape) == (2, 3, 1, 8, 8) and y.tolist() == data.train.labels[:3].tolist()
    over = [
        "data.dataset=test_ready_images", "data.timesteps=2", "data.options={images: 12}",
        "data.val_fraction=0.25", "run.epochs=1", "run.batch_size=4", "run.progress=false",
        "run.threads=1", f"run.out_dir={tmp_path / 'runs'}", *TINY_MODEL,
    ]  # fmt: skip
    m = train(load_config(None, over), quiet=True)
    assert m["test"]["samples"] == 3
    # its options are checked when the config loads: unknown key, and the dataset's own check
    with pytest.raises(ConfigError, match=r"data\.options\.imgs.*did you mean 'images'"):
        load_config(None, ["data.dataset=test_ready_images", "data.options={imgs: 5}"])
    with pytest.raises(ConfigError, match=r"data\.options\.images=2 must be >= 4"):
        load_config(None, ["data.dataset=test_ready_images", "data.options={images: 2}"])


def test_split_info_of_ready_splits_is_checked() -> None:
    from masnn.data import ReadySplits

    @register_dataset("test_ready_bad", needs_root=False)
    def _bad(req):  # type: ignore[no-untyped-def]
        v = ReadyView(torch.zeros(4, 1, 2, 2), 1, train=False, seed=0)
        return ReadySplits(v, None, v, 3, (1, 2, 2), ("a", "b", "c"), Path("."), {})

    try:
        with pytest.raises(
            ValueError, match=r"'test_ready_bad': split_info lacks \['train_samples'"
        ):
            build_data(DataCfg(dataset="test_ready_bad"), seed=0, progress=False)
    finally:
        DATASETS.remove("test_ready_bad")


def test_unknown_dataset_and_missing_root_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown dataset 'dvs128_gestur'.*did you mean"):
        load_config(None, ["data.dataset=dvs128_gestur"])
    with pytest.raises(ConfigError, match=r"data\.root is required"):
        load_config(None, ["data.dataset=dvs128_gait"])
    assert user_of("user07_fluorescent_led.aedat") == "user07"
