"""Motion model: exact time-reversal and mirror pairs, inverse kinematics."""

from __future__ import annotations

import numpy as np
import pytest

from masnn.synth import gesture as G


def _params(cid: int, seed: int = 0) -> dict[str, float]:
    subject = G.Subject.draw(np.random.default_rng(seed))
    return G.draw_gesture_params(cid, np.random.default_rng(seed + 1), subject)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rotation_pairs_are_exact_reversals_and_mirrors(seed: int) -> None:
    dur = 2.0
    t = np.linspace(0, dur, 201)
    prm = _params(4, seed)
    cw, ccw = G.gesture_paths(4, t, dur, prm), G.gesture_paths(5, t, dur, prm)
    np.testing.assert_allclose(ccw, cw[::-1], atol=1e-9)  # 5 = 4 played backwards
    np.testing.assert_allclose(G.gesture_paths(7, t, dur, prm), G.mirror(cw), atol=1e-9)
    np.testing.assert_allclose(G.gesture_paths(6, t, dur, prm), G.mirror(ccw), atol=1e-9)
    assert np.abs(cw - ccw).max() > 5  # and they are not the same motion


def test_waves_mirror_is_a_time_reversal() -> None:
    dur = 2.0
    t = np.linspace(0, dur, 401)
    prm = _params(2)
    left = G.gesture_paths(3, t, dur, prm)
    np.testing.assert_allclose(left, G.mirror(G.gesture_paths(2, t, dur, prm)), atol=1e-9)
    # mirror(p)(t) = p(q - u): the same wave played backwards with a shifted phase
    f = 1.3 * prm["speed"]
    shifted = dict(prm, phase=2 * np.pi * (0.25 - prm["phase"] / (2 * np.pi) - f * dur))
    backwards = G.gesture_paths(2, t, dur, shifted)[::-1]
    np.testing.assert_allclose(left, backwards, atol=1e-6)
    # both sweep the same, mirror-symmetric, range of hand positions
    hands = G.gesture_paths(2, t, dur, prm)
    assert hands[:, 0, 0].min() == pytest.approx(-hands[:, 1, 0].max(), abs=0.05)


def test_pair_offset_separates_pairs() -> None:
    t = np.linspace(0, 2.0, 50)
    prm = _params(4)
    a = G.gesture_paths(5, t, 2.0, prm, pair_offset=6.0)
    b = G.gesture_paths(5, t, 2.0, prm)
    np.testing.assert_allclose(a[:, 0, 1], b[:, 0, 1] - 6.0)
    np.testing.assert_allclose(a[:, 1], b[:, 1])  # the resting hand does not move


def test_elbows_inverse_kinematics() -> None:
    rng = np.random.default_rng(0)
    hands = G.SHOULDERS + rng.uniform(-30, 30, (100, 2, 2))
    el = G.elbows(hands)
    reach = np.linalg.norm(hands - G.SHOULDERS, axis=-1)
    ok = (reach > 2) & (reach < G.UPPER_ARM + G.FOREARM - 0.5)
    np.testing.assert_allclose(np.linalg.norm(el - G.SHOULDERS, axis=-1), G.UPPER_ARM)
    np.testing.assert_allclose(np.linalg.norm(hands - el, axis=-1)[ok], G.FOREARM, rtol=1e-6)
    np.testing.assert_allclose(G.elbows(G.mirror(hands)), G.mirror(el), atol=1e-9)


def test_recording_plan_and_paths_are_continuous() -> None:
    rng = np.random.default_rng(5)
    subject = G.Subject.draw(rng)
    segs, total = G.plan_recording(rng, subject, 2.0)
    assert sorted(s.class_id for s in segs) == list(range(1, 12))
    assert all(b.start > a.end for a, b in zip(segs, segs[1:]))
    t = np.arange(0, total, 0.01)
    hands = G.recording_hands(segs, t)
    assert np.abs(np.diff(hands, axis=0)).max() < 6.0  # < 6 px per 10 ms: no teleporting


def test_unknown_class_raises() -> None:
    with pytest.raises(ValueError, match="class_id must be one of"):
        G.draw_gesture_params(
            12, np.random.default_rng(0), G.Subject.draw(np.random.default_rng(0))
        )


def test_subject_spreads_are_independent_and_default_to_jitter() -> None:
    """Each spread scales only its own attribute; ``None`` follows ``jitter`` (same draws)."""
    rng = lambda: np.random.default_rng(7)  # noqa: E731
    base = G.Subject.draw(rng(), 2.5)
    assert G.Subject.draw(rng(), 2.5, 2.5, 2.5, 2.5) == base
    pos = G.Subject.draw(rng(), 2.5, position_jitter=1.0)
    assert pos.offset == pytest.approx((base.offset[0] / 2.5, base.offset[1] / 2.5))
    assert (pos.scale, pos.speed, pos.amplitude) == (base.scale, base.speed, base.amplitude)
    tempo = G.Subject.draw(rng(), 2.5, tempo_jitter=1.0)
    assert np.log(tempo.speed) == pytest.approx(np.log(base.speed) / 2.5)
    assert (tempo.scale, tempo.amplitude, tempo.offset) == (base.scale, base.amplitude, base.offset)
    amp = G.Subject.draw(rng(), 2.5, amplitude_jitter=0.0)
    assert amp.amplitude == 1.0 and amp.speed == base.speed
    still = G.Subject.draw(rng(), 0.0)
    assert (still.scale, still.speed, still.amplitude, still.offset) == (1.35, 1.0, 1.0, (0.0, 0.0))
