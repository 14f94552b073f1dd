"""ONNX export checked against onnxruntime on CPU: full window (dynamic batch) and per-step cell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import masnn
from masnn.export import ExportError, to_onnx, to_onnx_step
from masnn.models import StreamingModel
from tests.export._onnx_checks import graph_meta, stream_cell_against_masnn
from tests.models._model_helpers import calibrate, event_counts

pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from masnn.export.onnx import run_onnx  # noqa: E402

T = 4
TINY = dict(channels=(4, 8, 8), hidden=16, timesteps=T)


def _tiny(attn: str, placement: str = "paper", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = masnn.create_model("ma_snn3_tiny", attn=attn, placement=placement, **TINY)
    return calibrate(m, event_counts((T, 4, 2, 32, 32), seed=seed + 1))


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
    meta = graph_meta(path)
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
    meta = graph_meta(path)
    assert meta["masnn.graph"] == "step"
    x = event_counts((T, 3, 2, 32, 32), seed=7)
    names = [i.name for i in onnx.load(str(path)).graph.input]
    n_v = len(StreamingModel(m).init_state(3, (2, 32, 32)).v)
    assert names[:3] == ["frame", "acc", "t"] and len(names) == 3 + n_v
    stream_cell_against_masnn(m, path, x, (2, 32, 32))


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
