"""Shared checks of the ONNX tests: graph metadata and a step cell streamed against masnn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from masnn.models import StreamingModel


def graph_meta(path: Path) -> dict[str, str]:
    """The ``masnn.*`` metadata properties of an exported graph."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def stream_cell_against_masnn(m: Any, path: Path, x: torch.Tensor, in_shape: Any = None) -> None:
    """Run the exported step cell over ``x`` beside :class:`StreamingModel`: the output and
    every explicit membrane within 1e-5 at each step, and after the last step the full-window
    output (same argmax)."""
    from masnn.export.onnx import run_onnx, step_state

    batch = x.shape[1]
    stream = StreamingModel(m)
    ref_state = stream.init_state(batch) if in_shape is None else stream.init_state(batch, in_shape)
    state = step_state(m, batch)
    assert len(state) == 2 + len(ref_state.v)
    outs: list[np.ndarray] = []
    for frame in x:
        outs = run_onnx(path, frame, *state)
        with torch.no_grad():
            ref_out, ref_state = stream.step(frame, ref_state)
        state = tuple(torch.from_numpy(o) for o in outs[1:])
        assert np.abs(outs[0] - ref_out.numpy()).max() <= 1e-5
        for v, v_ref in zip(state[2:], ref_state.v):  # the explicit membranes
            assert v.shape == v_ref.shape and torch.allclose(v, v_ref, atol=1e-5)
    assert float(state[1]) == x.shape[0]
    with torch.no_grad():
        ref = m(x).numpy()
    assert np.abs(outs[0] - ref).max() <= 1e-5  # after T steps: the full-window output
    assert np.array_equal(outs[0].argmax(1), ref.argmax(1))
