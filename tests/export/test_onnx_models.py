"""ONNX export of every family with its attention variants, checked in onnxruntime on CPU.

The matrix of ``docs/deployment.md`` ("What exports"; ``test_onnx.py`` holds the ``ma_snn3_tiny``
rows): ``ma_snn5`` (TCSA and CSA, paper and code placement) and ``ms_resnet18``
(Att-Res-SNN-1/-2, paper and code placement), the
full-window graph exported at batch 2 and run at batch 3, and the per-step cell of the causal
variants. Networks are narrow and ``T = 2`` so each export takes seconds; the rows marked
``slow`` (``pytest -m slow``) complete the matrix, the default rows cover every code path once
(TA, membrane gates, pooled gates with ReLU, both residual variants, the step cell of both
families).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import masnn
from masnn.export import ExportError, to_onnx, to_onnx_step
from tests.export._onnx_checks import graph_meta, stream_cell_against_masnn
from tests.models._model_helpers import calibrate, event_counts, record_spikes

pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from masnn.export.onnx import run_onnx  # noqa: E402

T = 2
EXPORT_BATCH, RUN_BATCH = 2, 3
slow = pytest.mark.slow


def _build(family: str, attn: str, placement: str, att_res: int = 1) -> torch.nn.Module:
    """A narrow, calibrated (BN statistics of real-format input) model that spikes in every
    LIF layer, in eval mode."""
    torch.manual_seed(0)
    if family == "ma_snn3_tiny":
        m = masnn.create_model(
            "ma_snn3_tiny",
            attn=attn,
            placement=placement,
            channels=(4, 8, 8),
            hidden=16,
            num_classes=5,
            timesteps=T,
            neuron_kwargs={"v_th": 0.05},
        )
    elif family == "ma_snn5":
        m = masnn.create_model(
            "ma_snn5",
            attn=attn,
            placement=placement,
            channels=(8,) * 5,
            hidden=16,
            voting=2,
            num_classes=5,
            timesteps=T,
            input_size=(2, 32, 32),
            # a low threshold keeps all seven layers firing behind the gates at T = 2
            neuron_kwargs={"v_th": 0.05},
        )
    else:
        m = masnn.create_model(
            "ms_resnet18",
            attn=attn,
            placement=placement,
            att_res=att_res,
            layers=(2, 1, 1, 1),  # stage 1 has an identity shortcut, the others 1x1 convs
            widths=(8, 16, 16, 16),
            reduction_c=4,
            num_classes=5,
            timesteps=T,
            input_size=(3, 32, 32),
            neuron_kwargs={"v_th": 0.05},  # every layer fires, also behind Att-Res-SNN-2 gates
        )
    return calibrate(m, _input(m, 4, seed=1, steps=T))


def _input(m: Any, batch: int, seed: int, steps: int = T) -> torch.Tensor:
    c, h, w = m.input_size
    if c == 2:  # DVS: event counts
        return event_counts((steps, batch, c, h, w), seed=seed)
    g = torch.Generator().manual_seed(seed)
    return torch.rand((steps, batch, c, h, w), generator=g)


WINDOW = [  # family, attention, placement, att_res, the T of the graph
    pytest.param("ma_snn3_tiny", "csa", "paper", 1, T, id="ma_snn3_tiny-csa-paper", marks=slow),
    pytest.param("ma_snn5", "none", "paper", 1, T, id="ma_snn5-none"),
    pytest.param("ma_snn5", "tcsa", "paper", 1, T, id="ma_snn5-tcsa-paper"),
    pytest.param("ma_snn5", "tcsa", "code", 1, T, id="ma_snn5-tcsa-code", marks=slow),
    pytest.param("ma_snn5", "csa", "paper", 1, T, id="ma_snn5-csa-paper", marks=slow),
    pytest.param("ma_snn5", "csa", "code", 1, T + 1, id="ma_snn5-csa-code-T3", marks=slow),
    pytest.param("ms_resnet18", "none", "paper", 1, T, id="ms_resnet18-none"),
    pytest.param("ms_resnet18", "csa", "paper", 1, T, id="ms_resnet18-csa-paper-res1", marks=slow),
    pytest.param("ms_resnet18", "csa", "paper", 2, T, id="ms_resnet18-csa-paper-res2"),
    # pooled (code) gates have no T-sized weights: built for T = 2, exported and run at T = 3
    pytest.param("ms_resnet18", "csa", "code", 1, T + 1, id="ms_resnet18-csa-code-res1-T3"),
    pytest.param("ms_resnet18", "csa", "code", 2, T, id="ms_resnet18-csa-code-res2", marks=slow),
]


@pytest.mark.parametrize(("family", "attn", "placement", "att_res", "steps"), WINDOW)
def test_window_graph_matches_masnn(
    family: str, attn: str, placement: str, att_res: int, steps: int, tmp_path: Path
) -> None:
    m = _build(family, attn, placement, att_res)
    path = to_onnx(m, tmp_path / "m.onnx", timesteps=steps, batch_size=EXPORT_BATCH)
    meta = graph_meta(path)
    assert meta["masnn.model"] == family and meta["masnn.attn"] == attn
    assert meta["masnn.timesteps"] == str(steps) and meta["masnn.graph"] == "window"
    x = _input(m, RUN_BATCH, seed=2, steps=steps)  # another batch size than the one traced
    spikes, handles = record_spikes(m)
    with torch.no_grad():
        ref = m(x).numpy()
    for h in handles:
        h.remove()
    # every LIF layer fires, so the comparison covers the whole graph
    assert spikes and all(float(s.sum()) > 0 for s in spikes)
    (y,) = run_onnx(path, x)
    assert y.shape == ref.shape == (RUN_BATCH, 5)
    assert np.abs(y - ref).max() <= 1e-5  # identical spikes (rates are multiples of 1/T)
    assert np.array_equal(y.argmax(1), ref.argmax(1))


STEP = [
    pytest.param("ma_snn3_tiny", "none", "paper", 1, id="ma_snn3_tiny-none", marks=slow),
    pytest.param("ma_snn5", "csa", "paper", 1, id="ma_snn5-csa-paper"),
    pytest.param("ma_snn5", "none", "paper", 1, id="ma_snn5-none", marks=slow),
    pytest.param("ms_resnet18", "csa", "paper", 1, id="ms_resnet18-csa-paper-res1"),
    pytest.param("ms_resnet18", "csa", "paper", 2, id="ms_resnet18-csa-paper-res2", marks=slow),
    pytest.param("ms_resnet18", "none", "paper", 1, id="ms_resnet18-none", marks=slow),
]


@pytest.mark.parametrize(("family", "attn", "placement", "att_res"), STEP)
def test_step_cell_matches_streaming(
    family: str, attn: str, placement: str, att_res: int, tmp_path: Path
) -> None:
    m = _build(family, attn, placement, att_res)
    assert m.streaming_blocker() is None
    path = to_onnx_step(m, tmp_path / "cell.onnx", batch_size=EXPORT_BATCH)
    assert graph_meta(path)["masnn.graph"] == "step"
    x = _input(m, RUN_BATCH, seed=4)
    stream_cell_against_masnn(m, path, x)


@pytest.mark.parametrize(
    ("family", "attn", "placement", "att_res", "module", "why"),
    [
        ("ma_snn5", "tcsa", "paper", 1, "features.0.neuron.post_attn.ta", "weighs all T"),
        ("ma_snn5", "tcsa", "code", 1, "features.0.neuron.post_attn.ta", "weighs all T"),
        ("ma_snn5", "csa", "code", 1, "features.0.neuron.post_attn.ca", "pools over all T"),
        ("ms_resnet18", "csa", "code", 1, "stages.0.0.attn.ca", "pools over all T"),
        ("ms_resnet18", "csa", "code", 2, "stages.0.0.attn.ca", "pools over all T"),
    ],
)
def test_non_causal_step_cell_refused_naming_the_module(
    family: str, attn: str, placement: str, att_res: int, module: str, why: str, tmp_path: Path
) -> None:
    m = _build(family, attn, placement, att_res)
    with pytest.raises(ExportError, match=rf"no per-step ONNX cell: module '{module}' .*{why}"):
        to_onnx_step(m, tmp_path / "c.onnx")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_temporal_attention_refuses_another_T_naming_the_module(tmp_path: Path) -> None:
    m = _build("ma_snn5", "tcsa", "paper")
    with pytest.raises(
        ExportError,
        match=r"module 'features\.0\.neuron\.post_attn\.ta' \(TemporalAttention\) is built "
        r"for T=2 .*timesteps=2, not 3",
    ):
        to_onnx(m, tmp_path / "w.onnx", timesteps=T + 1)
    assert not list(tmp_path.iterdir())
