"""ImageNet-1K over the standard folder layout (torchvision ``ImageFolder``), static over T.

Layout (masnn never downloads; see ``docs/imagenet.md``)::

    <root>/train/<wnid>/*.JPEG     1,281,167 images, 1000 class folders
    <root>/val/<wnid>/*.JPEG       50,000 images, the same 1000 folders (the "test" split)

Transforms (SPEC §4.3, official ``train_amp.py`` / ``test.py``):

* training: ``RandomResizedCrop(image_size)`` -> ``AutoAugment(IMAGENET)`` -> ``ToTensor`` ->
  ``Normalize(mean, std)``;
* evaluation: ``Resize(resize)`` -> ``CenterCrop(crop)`` -> ``ToTensor`` -> ``Normalize``, with
  ``resize`` 256 for the 224 crop (Table 3) and 320 for the 288 crop (Table 2's ``*`` rows).

Each sample is one image repeated over ``T`` (direct encoding): ``(T, 3, H, W)``, a view
(``expand``) until the batch is stacked. Training augmentations are drawn from a generator
seeded by ``(seed, epoch, index)`` inside a forked RNG, so they are reproducible, independent
across DataLoader workers and exactly resumable, and they leave torch's global RNG alone.

Registered as ``data.dataset: imagenet`` (:func:`open_imagenet`) with the options
``image_size``, ``crop`` and ``resize`` (``data.options.crop: 288``). It returns
:class:`~masnn.data.registry.ReadySplits`: the transforms draw their own augmentations and the
validation share is carved per image, so training uses its views as they are.

torchvision is needed (the ``imagenet`` extra); without it the opener raises one line that
names the extra. Importing this module does not import torchvision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from masnn.data.registry import DataRequest, ReadySplits, register_dataset

#: Normalisation of the official code (torchvision's ImageNet statistics).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Evaluation crop -> resize of the shorter side (224 -> 256: Table 3; 288 -> 320: Table 2 *).
EVAL_RESIZE = {224: 256, 288: 320}
EXTRA_HINT = "pip install 'masnn[imagenet]'"
#: The registered options (``data.options``) and their defaults.
OPTIONS: dict[str, Any] = {"image_size": 224, "crop": 224, "resize": None}
#: Smallest training / evaluation crop accepted.
MIN_CROP = 8


def require_torchvision() -> Any:
    """Import torchvision, or raise one line naming the ``imagenet`` extra."""
    try:
        import torchvision
    except ImportError as exc:
        raise ImportError(
            f"data.dataset=imagenet needs torchvision, which is not installed ({exc}); "
            f"install the imagenet extra: {EXTRA_HINT}"
        ) from None
    return torchvision


def eval_resize(crop: int, resize: int | None = None) -> int:
    """The resize before ``CenterCrop(crop)``: ``resize`` if given, else 256 for 224, 320 for
    288, else ``round(crop * 8 / 7)`` (the 224/256 ratio)."""
    if resize is not None:
        if resize < crop:
            raise ValueError(f"data.options.resize={resize} must be >= data.options.crop={crop}")
        return int(resize)
    return EVAL_RESIZE.get(int(crop), round(crop * 8 / 7))


def train_transform(image_size: int = 224) -> Callable[[Any], Any]:
    """RandomResizedCrop -> AutoAugment (ImageNet policy) -> ToTensor -> Normalize."""
    tv = require_torchvision()
    t = tv.transforms
    return t.Compose(
        [
            t.RandomResizedCrop(image_size),
            t.AutoAugment(t.AutoAugmentPolicy.IMAGENET),
            t.ToTensor(),
            t.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def eval_transform(crop: int = 224, resize: int | None = None) -> Callable[[Any], Any]:
    """Resize(shorter side) -> CenterCrop -> ToTensor -> Normalize (see :func:`eval_resize`)."""
    tv = require_torchvision()
    t = tv.transforms
    return t.Compose(
        [
            t.Resize(eval_resize(crop, resize)),
            t.CenterCrop(crop),
            t.ToTensor(),
            t.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


class StaticImages:
    """Image files with labels, transformed and repeated over ``T`` (a torch ``Dataset``).

    Args:
        samples: ``(path, label)`` pairs.
        transform: PIL image -> ``(3, H, W)`` tensor.
        timesteps: ``T``.
        train: draw the transform's randomness from ``(seed, epoch, index)``.
        seed: base seed of those draws.

    Items are ``(x (T, 3, H, W), label)``.
    """

    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        transform: Callable[[Any], Any],
        timesteps: int,
        *,
        train: bool,
        seed: int = 0,
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.timesteps = int(timesteps)
        self.train = train
        self.seed = int(seed)
        self.epoch = 0
        self.labels = np.asarray([y for _, y in self.samples], np.int64)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (call before iterating)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        import torch
        from PIL import Image

        path, label = self.samples[i]
        try:
            with open(path, "rb") as f:
                img = Image.open(f).convert("RGB")
        except OSError as exc:
            raise OSError(f"{path}: cannot read image ({exc})") from None
        if self.train:
            s = np.random.SeedSequence([self.seed, self.epoch, i]).generate_state(1)[0]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(s))
                x = self.transform(img)
        else:
            x = self.transform(img)
        return x.unsqueeze(0).expand(self.timesteps, *x.shape), int(label)  # (T, 3, H, W)


def _scan(folder: Path) -> tuple[list[str], list[tuple[str, int]]]:
    tv = require_torchvision()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder} does not exist; ImageNet needs <root>/train/<class>/*.JPEG and "
            "<root>/val/<class>/*.JPEG (see docs/imagenet.md)"
        )
    try:
        ds = tv.datasets.ImageFolder(str(folder))
    except (FileNotFoundError, RuntimeError) as exc:  # no class folders / no images
        raise FileNotFoundError(f"{folder}: {exc}") from None
    return list(ds.classes), [(str(p), int(y)) for p, y in ds.samples]


def carve_val(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``range(n)`` into (train, held-out) indices; ``fraction`` 0 = none."""
    idx = np.arange(n)
    if fraction <= 0:
        return idx, idx[:0]
    n_val = min(n - 1, max(1, round(fraction * n)))
    perm = np.random.default_rng(seed).permutation(n)
    held = np.zeros(n, bool)
    held[perm[:n_val]] = True
    return idx[~held], idx[held]


def build_imagenet(
    root: str | Path,
    *,
    timesteps: int,
    image_size: int = 224,
    crop: int = 224,
    resize: int | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> ReadySplits:
    """ImageNet train / held-out validation / test (= the official ``val`` folder) splits.

    Args:
        root: the directory holding ``train/`` and ``val/``.
        timesteps: ``T`` (each image is repeated ``T`` times).
        image_size: the training crop (``RandomResizedCrop``).
        crop: the evaluation crop (224 or 288 in the paper).
        resize: the evaluation resize; ``None`` = :func:`eval_resize`'s rule.
        val_fraction: share of the *training* images held out for model selection (seeded,
            evaluated with the evaluation transform); the official ``val`` folder is the test
            split and is never used for selection.
        seed: seed of the held-out draw and of the augmentations.

    Raises:
        ImportError: torchvision missing (the message names the ``imagenet`` extra).
        FileNotFoundError: a missing split folder.
        ValueError: the two splits' class folders differ (the first difference is named).
    """
    root = Path(root).expanduser()
    classes, train_samples = _scan(root / "train")
    test_classes, test_samples = _scan(root / "val")
    if test_classes != classes:
        diff = sorted(set(classes) ^ set(test_classes)) or ["(order)"]
        raise ValueError(
            f"{root}: train/ and val/ have different class folders (first difference: "
            f"{diff[0]!r}; {len(classes)} vs {len(test_classes)} classes)"
        )
    tr_idx, val_idx = carve_val(len(train_samples), val_fraction, seed)
    ev = eval_transform(crop, resize)
    train = StaticImages(
        [train_samples[i] for i in tr_idx],
        train_transform(image_size),
        timesteps,
        train=True,
        seed=seed,
    )
    val = (
        StaticImages([train_samples[i] for i in val_idx], ev, timesteps, train=False)
        if len(val_idx)
        else None
    )
    test = StaticImages(test_samples, ev, timesteps, train=False)
    return ReadySplits(
        train=train,
        val=val,
        test=test,
        num_classes=len(classes),
        in_shape=(3, image_size, image_size),
        class_names=tuple(classes),
        root=root,
        split_info={
            "train_samples": len(train),
            "val_samples": 0 if val is None else len(val),
            "test_samples": len(test),
            "val_groups": [],
            "val_split_by": "image",
            "val_note": (
                f"validation: a seeded random {val_fraction:.0%} of the training images "
                "(ImageNet's own val folder is the test split)"
                if val is not None
                else "no validation split: selection uses the last epoch"
            ),
            "eval_crop": int(crop),
            "eval_resize": eval_resize(crop, resize),
        },
    )


def check_options(options: Mapping[str, Any]) -> None:
    """The registered options' values: integer crops ``>= 8``, ``resize`` ``None`` or ``>= crop``.

    Raises:
        ValueError: one line naming ``data.options.KEY`` and what it must be.
    """
    for key in ("image_size", "crop"):
        v = options[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < MIN_CROP:
            raise ValueError(f"data.options.{key}={v!r} must be an integer >= {MIN_CROP}")
    resize = options["resize"]
    if resize is not None and (isinstance(resize, bool) or not isinstance(resize, int)):
        raise ValueError(f"data.options.resize={resize!r} must be an integer or null")
    eval_resize(options["crop"], resize)


@register_dataset("imagenet", options=OPTIONS, check=check_options)
def open_imagenet(req: DataRequest) -> ReadySplits:
    """ImageNet-1K from ``data.root`` (``train/`` and ``val/`` class folders; the ``imagenet``
    extra), with ``data.options`` ``image_size`` / ``crop`` / ``resize``."""
    if req.root is None:
        raise ValueError("imagenet needs data.root (masnn never downloads; see docs/imagenet.md)")
    return build_imagenet(
        req.root,
        timesteps=req.frames.timesteps,
        image_size=req.options["image_size"],
        crop=req.options["crop"],
        resize=req.options["resize"],
        val_fraction=req.val_fraction,
        seed=req.seed,
    )


__all__ = [
    "EVAL_RESIZE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MIN_CROP",
    "OPTIONS",
    "StaticImages",
    "build_imagenet",
    "carve_val",
    "check_options",
    "eval_resize",
    "eval_transform",
    "open_imagenet",
    "require_torchvision",
    "train_transform",
]
