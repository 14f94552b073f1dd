"""``data.shift``: the training view's random translation, drawn from the per-sample generator
after the window start (so the window draws are unchanged); evaluation views never shifted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from masnn.train.config import ConfigError, config_from_dict, load_config
from masnn.train.data import build_data
from tests.frames.test_augment import _expected
from tests.train.conftest import tiny_overrides


def test_bad_shifts_are_refused_before_training(gesture_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.shift must be >= 0"):
        config_from_dict({"data": {"shift": -2}})
    over = [*tiny_overrides(gesture_root, tmp_path), "data.ds=32", "data.shift=4"]
    with pytest.raises(
        ValueError, match=r"data\.shift=4 .* 4x4 pixels \(data\.ds=32\); allowed: 0\.\.3"
    ):
        build_data(load_config(None, over).data, 0, progress=False)


def test_training_view_only_reproducible_and_window_draw_unchanged(
    gesture_root: Path, tmp_path: Path
) -> None:
    base = tiny_overrides(gesture_root, tmp_path)
    plain = build_data(load_config(None, [*base, "data.shift=0"]).data, 0, progress=False)
    shifted = build_data(load_config(None, [*base, "data.shift=2"]).data, 0, progress=False)
    assert plain.val is not None and shifted.val is not None
    for view in ("val", "test"):  # evaluation views are never augmented
        a, b = getattr(plain, view), getattr(shifted, view)
        np.testing.assert_array_equal(a[0][0], b[0][0])
    moved = 0
    for epoch in (0, 3):
        plain.train.set_epoch(epoch)
        shifted.train.set_epoch(epoch)
        for i in range(len(plain.train)):
            x, label = plain.train[i]
            y, label2 = shifted.train[i]
            assert label == label2
            # same window start (drawn first), then one of the 25 translations of it
            rng = np.random.default_rng([0, epoch, int(shifted.train.indices[i])])
            _ = shifted.train.source.frames(int(shifted.train.indices[i]), train=True, rng=rng)
            dy, dx = (int(v) for v in rng.integers(-2, 3, size=2))
            np.testing.assert_array_equal(y, _expected(x, dy, dx))
            np.testing.assert_array_equal(y, shifted.train[i][0])  # same draw on re-read
            moved += (dy, dx) != (0, 0)
    assert moved > 0
