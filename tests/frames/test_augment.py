"""RandomShift: an exact integer translation with zero fill, one draw per clip."""

from __future__ import annotations

import numpy as np
import pytest

from masnn.frames import RandomShift


def _expected(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The translation written pixel by pixel (out[y, x] = in[y - dy, x - dx], else 0)."""
    h, w = x.shape[-2:]
    out = np.zeros_like(x)
    for y in range(h):
        for xx in range(w):
            if 0 <= y - dy < h and 0 <= xx - dx < w:
                out[..., y, xx] = x[..., y - dy, xx - dx]
    return out


@pytest.mark.parametrize("seed", range(12))
def test_shift_is_an_exact_translation_with_zero_fill(seed: int) -> None:
    x = np.random.default_rng(seed).random((3, 2, 7, 5)).astype(np.float32)
    aug = RandomShift(3)
    y = aug(x, np.random.default_rng([seed, 1]))
    dy, dx = (int(v) for v in np.random.default_rng([seed, 1]).integers(-3, 4, size=2))
    assert y.dtype == x.dtype and y.shape == x.shape
    np.testing.assert_array_equal(y, _expected(x, dy, dx))
    assert x.base is None or not np.shares_memory(x, y)


def test_every_offset_is_drawn_and_zero_draws_nothing() -> None:
    x = np.zeros((1, 1, 9, 9), np.float32)
    x[0, 0, 4, 4] = 1.0
    seen = set()
    rng = np.random.default_rng(0)
    for _ in range(400):
        y = RandomShift(2)(x, rng)
        (yy,), (xx,) = np.nonzero(y[0, 0])
        seen.add((int(yy) - 4, int(xx) - 4))
    assert seen == {(a, b) for a in range(-2, 3) for b in range(-2, 3)}
    rng = np.random.default_rng(5)
    state = rng.bit_generator.state
    assert RandomShift(0)(x, rng) is x and rng.bit_generator.state == state


def test_bad_shifts_fail_in_one_line() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        RandomShift(-1)
    with pytest.raises(TypeError, match="int"):
        RandomShift(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"data\.shift=4 .*4x6 pixels; allowed: 0\.\.3"):
        RandomShift(4)(np.zeros((2, 4, 6), np.float32), np.random.default_rng(0))
