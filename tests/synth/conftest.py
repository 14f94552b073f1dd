"""Shared fixtures: a tiny synthetic set generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from masnn.synth import SynthGestureCfg, generate_synth_gesture, synth_config


def tiny_cfg(**kw: object) -> SynthGestureCfg:
    """Two users (one per split), one lighting, short gestures: a set in about a second."""
    base = dict(
        size="tiny",
        train_users=1,
        test_users=1,
        lightings=("led",),
        gesture_s=1.0,
        classes=(1, 4, 5),
    )
    base.update(kw)
    return synth_config("small", **base)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth_tiny")
    generate_synth_gesture(out, seed=3, cfg=tiny_cfg(), workers=1)
    return out
