"""Limb motion for the synthetic gesture set: 11 classes, subjects, recordings.

A subject is a stick-and-capsule figure facing the camera: a static torso and head, and two
two-link arms (shoulder -> elbow -> hand). A gesture is a pair of hand paths ``(n, 2, 2)``
(time, [subject's right, left], [x, y]) in *subject pixels* (origin at the torso centre,
``x`` to the image right, ``y`` down, scale 1); elbows follow by inverse kinematics. The
subject's right arm is on the image left.

Classes follow the IBM DVS128 Gesture ids (1..11). "Time matters" by construction:

* 4/5 (right arm clockwise / counter-clockwise) are exact time reversals of each other,
  and 6/7 (left arm) are the mirror images of 5/4;
* 2/3 (waves) are two-handed sweeps in front of the body with a fast stroke and a slow
  return: 2 strokes fast toward the image right, 3 is its mirror image, which is also its
  exact time reversal, and both sweep the same (mirror-symmetric) area;
* the rest (clapping, arm roll, air drums, air guitar, other) differ in rhythm and path.

``pair_offset`` (pixels) moves the second member of each pair (3, 5, 7) so that pairs also
differ in space; 0 (the default) keeps them exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Class ids (1-based, as in the IBM ``gesture_mapping.csv``) and names.
GESTURE_CLASSES: dict[int, str] = {
    1: "hand_clapping",
    2: "right_hand_wave",
    3: "left_hand_wave",
    4: "right_arm_clockwise",
    5: "right_arm_counter_clockwise",
    6: "left_arm_clockwise",
    7: "left_arm_counter_clockwise",
    8: "arm_roll",
    9: "air_drums",
    10: "air_guitar",
    11: "other_gestures",
}

#: Pairs that only differ in time (reversal) or by a mirror that keeps the swept area.
TIME_PAIRS: tuple[tuple[int, int], ...] = ((2, 3), (4, 5), (6, 7))

# Body geometry in subject pixels (scale 1).
TORSO = ((0.0, -14.0), (0.0, 22.0), 13.0)  # capsule end a, end b, radius
HEAD = ((0.0, -35.0), (0.0, -35.0), 9.0)
SHOULDERS = np.array([[-17.0, -12.0], [17.0, -12.0]])  # [right (image left), left]
UPPER_ARM = 20.0
FOREARM = 21.0
ARM_RADIUS = (4.0, 3.5, 4.5)  # upper arm, forearm, hand
REST = np.array([[-20.0, 26.0], [20.0, 26.0]])
_MIRROR = np.array([-1.0, 1.0])


@dataclass(frozen=True)
class Subject:
    """Per-user appearance and motion style (fixed across that user's recordings).

    Attributes:
        scale: body size factor.
        speed: gesture tempo factor.
        amplitude: motion amplitude factor.
        offset: torso centre offset from the image centre, pixels ``(dx, dy)``.
        sleeve_contrast: log-intensity of sleeves and shirt relative to the background.
        skin_contrast: log-intensity of the hands relative to the background.
    """

    scale: float
    speed: float
    amplitude: float
    offset: tuple[float, float]
    sleeve_contrast: float
    skin_contrast: float

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        jitter: float = 1.0,
        tempo_jitter: float | None = None,
        amplitude_jitter: float | None = None,
        position_jitter: float | None = None,
    ) -> Subject:
        """Draw a subject.

        ``jitter`` scales the spread of body size; ``tempo_jitter``, ``amplitude_jitter`` and
        ``position_jitter`` those of the tempo, the motion amplitude and the torso position
        (``None``: same as ``jitter``). The draws are made in the same order whatever the
        spreads.
        """
        tj = jitter if tempo_jitter is None else tempo_jitter
        aj = jitter if amplitude_jitter is None else amplitude_jitter
        pj = jitter if position_jitter is None else position_jitter
        sign = 1.0 if rng.random() < 0.5 else -1.0
        return cls(
            scale=float(1.35 * (1.0 + jitter * rng.uniform(-0.12, 0.12))),
            speed=float(np.exp(tj * rng.uniform(-0.25, 0.25))),
            amplitude=float(1.0 + aj * rng.uniform(-0.2, 0.2)),
            offset=(float(pj * rng.uniform(-8, 8)), float(pj * rng.uniform(-4, 5))),
            sleeve_contrast=float(sign * rng.uniform(0.5, 1.0)),
            skin_contrast=float(rng.uniform(0.3, 0.7)),
        )


def _smooth(u: np.ndarray) -> np.ndarray:
    """Cosine ease from 0 to 1 on ``u`` in [0, 1] (zero velocity at both ends)."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(u, 0.0, 1.0))


def _sawtooth(u: np.ndarray, stroke: float = 0.25) -> np.ndarray:
    """Periodic fast stroke from -1 to +1 (fraction ``stroke`` of the period), slow return."""
    u = np.mod(u, 1.0)
    return np.where(
        u < stroke,
        -1.0 + 2.0 * _smooth(u / stroke),
        1.0 - 2.0 * _smooth((u - stroke) / (1 - stroke)),
    )


def _both(right: np.ndarray, left: np.ndarray) -> np.ndarray:
    return np.stack([right, left], axis=1)  # (n, 2 hands, 2 coords)


def _static(n: int, pos: np.ndarray) -> np.ndarray:
    return np.broadcast_to(pos, (n, 2)).copy()


def _xy(x: np.ndarray | float, y: np.ndarray | float, n: int) -> np.ndarray:
    return np.stack(
        np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float), np.empty(n))[:2], 1
    )


def mirror(paths: np.ndarray) -> np.ndarray:
    """Mirror hand paths about the body axis (``x -> -x``, right and left hands swapped)."""
    return paths[:, ::-1, :] * _MIRROR


def _base_paths(kind: str, t: np.ndarray, prm: dict[str, float]) -> np.ndarray:
    """Hand paths of a primitive motion at times ``t`` (seconds from the gesture start)."""
    n = t.size
    sp, am, ph = prm["speed"], prm["amplitude"], prm["phase"]
    rest_l = _static(n, REST[1])
    if kind == "clap":
        g = np.abs(np.sin(np.pi * 1.8 * sp * t + ph))
        x = 2.5 + 15.0 * am * g
        return _both(_xy(-x, -4.0, n), _xy(x, -4.0, n))
    if kind == "wave":  # fast stroke toward the image right, slow return; both hands
        p = 10.0 * am * _sawtooth(1.3 * sp * t + ph / (2 * np.pi))
        return _both(_xy(-14.0 + p, -14.0, n), _xy(14.0 + p, -14.0, n))
    if kind == "circle_cw":  # right hand, clockwise on screen (y points down)
        th = ph + 2 * np.pi * 1.1 * sp * t
        r = 14.0 * am
        return _both(_xy(-21.0 + r * np.cos(th), -4.0 + r * np.sin(th), n), rest_l)
    if kind == "roll":
        th = ph + 2 * np.pi * 1.6 * sp * t
        r = 6.0 * am
        c, s = r * np.cos(th), r * np.sin(th)
        return _both(_xy(-5.0 + c, 2.0 + s, n), _xy(5.0 - c, 2.0 - s, n))
    if kind == "drums":
        a = np.pi * 2.2 * sp * t + ph
        yr = 2.0 + 10.0 * am * (1.0 - np.abs(np.sin(a)))
        yl = 2.0 + 10.0 * am * (1.0 - np.abs(np.cos(a)))
        return _both(_xy(-13.0, yr, n), _xy(13.0, yl, n))
    if kind == "guitar":
        a = 2 * np.pi * 3.5 * sp * t + ph
        b = 2 * np.pi * 0.6 * sp * t + prm["phase2"]
        right = _xy(-4.0 + 2.0 * np.sin(a / 3), 12.0 + 6.0 * am * np.sin(a), n)
        left = _xy(28.0 + 4.0 * am * np.sin(b), -10.0 + 2.0 * np.sin(b), n)
        return _both(right, left)
    if kind == "other":
        out = np.empty((n, 2, 2))
        for h in range(2):
            for c in range(2):  # type: ignore[assignment]
                acc = prm[f"base{h}{c}"] + np.zeros(n)
                for k in range(3):
                    f, a, p = prm[f"f{h}{c}{k}"], prm[f"a{h}{c}{k}"], prm[f"p{h}{c}{k}"]  # type: ignore[assignment]
                    acc = acc + am * a * np.sin(2 * np.pi * f * sp * t + p)
                out[:, h, c] = acc
        return out
    raise ValueError(f"unknown motion kind {kind!r}")


# class id -> (primitive, reverse in time, mirror, which member of a pair)
_CLASS_RECIPES: dict[int, tuple[str, bool, bool, bool]] = {
    1: ("clap", False, False, False),
    2: ("wave", False, False, False),
    3: ("wave", False, True, True),  # mirror image == exact time reversal of 2
    4: ("circle_cw", False, False, False),
    5: ("circle_cw", True, False, True),
    6: ("circle_cw", True, True, False),  # mirror of 5
    7: ("circle_cw", False, True, True),  # mirror of 4 == reversal of 6
    8: ("roll", False, False, False),
    9: ("drums", False, False, False),
    10: ("guitar", False, False, False),
    11: ("other", False, False, False),
}


def draw_gesture_params(
    class_id: int, rng: np.random.Generator, subject: Subject
) -> dict[str, float]:
    """Per-sample motion parameters (tempo and amplitude jitter around the subject, phases)."""
    if class_id not in GESTURE_CLASSES:
        raise ValueError(f"class_id must be one of {sorted(GESTURE_CLASSES)}, got {class_id}")
    prm = {
        "speed": subject.speed * float(rng.uniform(0.9, 1.1)),
        "amplitude": subject.amplitude * float(rng.uniform(0.9, 1.1)),
        "phase": float(rng.uniform(0, 2 * np.pi)),
        "phase2": float(rng.uniform(0, 2 * np.pi)),
    }
    if class_id == 11:
        for h, side in ((0, -1.0), (1, 1.0)):
            prm[f"base{h}0"] = side * float(rng.uniform(8, 24))
            prm[f"base{h}1"] = float(rng.uniform(-14, 14))
            for c in range(2):
                for k in range(3):
                    prm[f"f{h}{c}{k}"] = float(rng.uniform(0.3, 1.5))
                    prm[f"a{h}{c}{k}"] = float(rng.uniform(2.0, 7.0))
                    prm[f"p{h}{c}{k}"] = float(rng.uniform(0, 2 * np.pi))
    return prm


def gesture_paths(
    class_id: int,
    t: np.ndarray,
    duration: float,
    params: dict[str, float],
    pair_offset: float = 0.0,
) -> np.ndarray:
    """Hand paths ``(n, 2, 2)`` of one gesture at times ``t`` in ``[0, duration]`` seconds.

    Args:
        class_id: 1..11 (see :data:`GESTURE_CLASSES`).
        t: sample times in seconds from the gesture start.
        duration: gesture length in seconds (time reversal maps ``t`` to ``duration - t``).
        params: from :func:`draw_gesture_params`.
        pair_offset: pixels by which the second member of each time pair is moved up.
    """
    kind, reverse, mirrored, second = _CLASS_RECIPES[class_id]
    tt = duration - np.asarray(t, float) if reverse else np.asarray(t, float)
    paths = _base_paths(kind, tt, params)
    if mirrored:
        paths = mirror(paths)
    if second and pair_offset:
        moving = np.ptp(paths, axis=0).max(axis=1) > 0  # only the moving hands
        paths = paths.copy()
        paths[:, moving, 1] -= pair_offset
    return paths


def elbows(hands: np.ndarray) -> np.ndarray:
    """Elbow positions ``(n, 2, 2)`` by two-link inverse kinematics (elbows bend outward)."""
    v = hands - SHOULDERS  # (n, 2, 2)
    d = np.linalg.norm(v, axis=-1, keepdims=True)
    d_c = np.clip(d, abs(UPPER_ARM - FOREARM) + 1e-3, UPPER_ARM + FOREARM - 1e-3)
    u = v / np.maximum(d, 1e-9)
    cos_g = (UPPER_ARM**2 + d_c**2 - FOREARM**2) / (2 * UPPER_ARM * d_c)
    g = np.arccos(np.clip(cos_g, -1.0, 1.0))[..., 0] * np.array([1.0, -1.0])  # mirror for left
    c, s = np.cos(g), np.sin(g)
    ux, uy = u[..., 0], u[..., 1]
    rot = np.stack([c * ux - s * uy, s * ux + c * uy], axis=-1)
    return SHOULDERS + UPPER_ARM * rot


@dataclass(frozen=True)
class Segment:
    """One labelled gesture inside a recording (times in seconds from recording start)."""

    class_id: int
    start: float
    end: float
    params: dict[str, float]


def plan_recording(
    rng: np.random.Generator,
    subject: Subject,
    gesture_s: float,
    classes: tuple[int, ...] = tuple(GESTURE_CLASSES),
) -> tuple[list[Segment], float]:
    """Order the classes randomly and place them with rest transitions between them.

    Returns:
        The segments and the total recording length in seconds.
    """
    order = rng.permutation(np.asarray(classes))
    t = float(rng.uniform(0.3, 0.6))
    segs = []
    for cid in order.tolist():
        t += float(rng.uniform(0.25, 0.45))  # transition into the gesture
        dur = gesture_s * float(rng.uniform(0.92, 1.08))
        segs.append(Segment(int(cid), t, t + dur, draw_gesture_params(int(cid), rng, subject)))
        t += dur
    return segs, t + 0.4


def recording_hands(
    segments: list[Segment], times: np.ndarray, pair_offset: float = 0.0
) -> np.ndarray:
    """Hand paths ``(n, 2, 2)`` of a whole recording; transitions ease between poses."""
    out = np.empty((times.size, 2, 2))
    knots_t, knots_p = [0.0], [REST]
    for seg in segments:
        inside = (times >= seg.start) & (times < seg.end)
        ends = gesture_paths(
            seg.class_id,
            np.array([0.0, seg.end - seg.start]),
            seg.end - seg.start,
            seg.params,
            pair_offset,
        )
        if inside.any():
            out[inside] = gesture_paths(
                seg.class_id,
                times[inside] - seg.start,
                seg.end - seg.start,
                seg.params,
                pair_offset,
            )
        knots_t += [seg.start, seg.end]
        knots_p += [ends[0], ends[1]]
    knots_t.append(np.inf)
    knots_p.append(REST)
    # transitions: between the end of one gesture (or rest) and the start of the next
    for i in range(0, len(knots_t) - 1, 2):
        a, b = knots_t[i], knots_t[i + 1]
        mask = (times >= a) & (times < b)
        if not mask.any():
            continue
        dur = 0.35 if np.isinf(b) else b - a
        w = _smooth((times[mask] - a) / max(dur, 1e-9))[:, None, None]
        out[mask] = (1 - w) * knots_p[i] + w * knots_p[i + 1]
    return out
