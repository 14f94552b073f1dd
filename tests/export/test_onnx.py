"""ONNX export checked against onnxruntime on CPU: full window (dynamic batch) and per-step cell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import masnn
from masnn.export import ExportError, to_onnx, to_onnx_step
from masnn.models import StreamingModel
from tests.models._model_helpers import calibrate, event_counts

pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from masnn.export.onnx import run_onnx, step_state  # noqa: E402

T = 4
TINY = dict(channels=(4, 8, 8), hidden=16, timesteps=T)


def _tiny(attn: str, placement: str = "paper", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = masnn.create_model("ma_snn3_tiny", attn=attn, placement=placement, **TINY)
    return calibrate(m, event_counts((T, 4, 2, 32, 32), seed=seed + 1))


def _meta(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


@pytest.mark.parametrize(
    ("attn", "placement"), [("none", "paper"), ("tcsa", "paper"), ("csa", "code")]
)
def test_window_graph_matches_torch_for_any_batch(
    attn: str, placement: str, tmp_path: Path
) -> None:
    m = _tiny(attn, placement)
    t = 6 if attn == "none" else T  # a model without TA exports at any T
    path = to_onnx(m, tmp_path / "m.onnx", timesteps=t)
    assert path.is_file() and not m.training
    meta = _meta(path)
    assert meta["masnn.model"] == "ma_snn3_tiny" and meta["masnn.timesteps"] == str(t)
    assert meta["masnn.layout"] == "TBCHW" and meta["masnn.attn"] == attn
    for b in (1, 5):  # the batch axis is dynamic
        x = event_counts((t, b, 2, 32, 32), seed=10 + b)
        with torch.no_grad():
            ref = m(x).numpy()
        (y,) = run_onnx(path, x)
        assert y.shape == ref.shape == (b, 11)
        assert ref.max() > 0  # the output layer spikes, so the comparison means something
        assert np.abs(y - ref).max() <= 1e-5  # rates of identical spikes: equal


def test_step_cell_streams_the_window(tmp_path: Path) -> None:
    m = _tiny("csa")
    path = to_onnx_step(m, tmp_path / "cell.onnx")
    meta = _meta(path)
    assert meta["masnn.graph"] == "step"
    x = event_counts((T, 3, 2, 32, 32), seed=7)
    stream = StreamingModel(m)
    ref_state = stream.init_state(3, (2, 32, 32))
    state = step_state(m, 3)
    names = [i.name for i in onnx.load(str(path)).graph.input]
    assert names[:3] == ["frame", "acc", "t"] and len(names) == 3 + len(ref_state.v)
    for frame in x:
        outs = run_onnx(path, frame, *state)
        with torch.no_grad():
            ref_out, ref_state = stream.step(frame, ref_state)
        state = tuple(torch.from_numpy(o) for o in outs[1:])
        assert np.abs(outs[0] - ref_out.numpy()).max() <= 1e-5
        for v, v_ref in zip(state[2:], ref_state.v):  # explicit membranes
            assert torch.allclose(v, v_ref, atol=1e-5)
    assert float(state[1]) == T
    with torch.no_grad():
        assert np.abs(outs[0] - m(x).numpy()).max() <= 1e-5  # after T steps: the window output


def test_what_cannot_be_exported_says_why(tmp_path: Path) -> None:
    m = _tiny("tcsa")
    with pytest.raises(ExportError, match=r"no per-step ONNX cell: .*temporal attention"):
        to_onnx_step(m, tmp_path / "c.onnx")
    with pytest.raises(ExportError, match="built for T=4"):
        to_onnx(m, tmp_path / "w.onnx", timesteps=6)
    code = _tiny("csa", "code")
    with pytest.raises(ExportError, match="pools over all T steps"):
        to_onnx_step(code, tmp_path / "c.onnx")
    assert not list(tmp_path.iterdir())  # nothing half-written
