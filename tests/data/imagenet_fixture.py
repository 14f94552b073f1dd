"""A tiny ImageNet-layout folder: ``{train,val}/<wnid>/*.JPEG``, real JPEG files (PIL)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: 10 classes x (1 train + 1 val) = 20 images; 10 classes keep top-5 from being trivial.
CLASSES = tuple(f"n{1440764 + 37 * i:08d}" for i in range(10))


def make_image_folder(root: Path, per_class: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Write random-texture JPEGs of varied sizes (also non-square) and return ``root``."""
    from PIL import Image

    per_class = per_class or {"train": 1, "val": 1}
    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        for c, wnid in enumerate(CLASSES):
            d = root / split / wnid
            d.mkdir(parents=True, exist_ok=True)
            for k in range(n):
                h, w = int(rng.integers(40, 90)), int(rng.integers(40, 120))
                base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3)).astype(np.uint8)
                img = np.kron(base, np.ones((8, 8, 1), np.uint8))[:h, :w]  # blocky texture
                img[..., c % 3] = np.clip(img[..., c % 3].astype(int) + 25 * c, 0, 255)
                Image.fromarray(img).save(d / f"{wnid}_{split}_{k}.JPEG", quality=90)
    return root
