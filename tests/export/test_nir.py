"""NIR export: parameter mapping per neuron preset, refusals, and a round trip through snnTorch."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import masnn
from masnn.export import ExportError, to_nir
from masnn.neurons import LIF
from masnn.neurons.functional import lif_multistep
from tests.models._model_helpers import calibrate, event_counts

nir = pytest.importorskip("nir")

from masnn.export.nir import DEFAULT_DT, lif_to_nir_params, write_nir  # noqa: E402

T = 6
TINY = dict(channels=(4, 8, 8), hidden=16, timesteps=T)
# stage 1 has an identity shortcut (a block output fans into the next two sums), the others
# AvgPool -> Conv1x1 -> BN shortcuts
RES_TINY = dict(layers=(2, 1, 1, 1), widths=(8, 16, 16, 16), num_classes=5, input_size=(3, 32, 32))


def _nir_lif_reference(x_seq: torch.Tensor, q: dict[str, float], dt: float) -> torch.Tensor:
    """NIR's LIF, forward Euler at ``dt``, spike on ``v > v_th`` then ``v = v_reset``."""
    v = torch.zeros_like(x_seq[0], dtype=torch.float64)
    out = []
    for x in x_seq.double():
        v = v + dt / q["tau"] * (q["v_leak"] - v) + dt / q["tau"] * q["r"] * x
        s = (v > q["v_threshold"]).double()
        v = torch.where(s > 0, torch.full_like(v, q["v_reset"]), v)
        out.append(s)
    return torch.stack(out)


@pytest.mark.parametrize(
    ("preset", "kw"),
    [
        ("paper", {}),
        ("paper", {"beta": 0.5, "v_reset": 0.1}),
        ("biclab", {}),
        ("msresnet", {}),
        ("spikingjelly", {}),
        ("spikingjelly", {"tau": 3.0, "decay_input": False, "v_reset": -0.2}),
        ("plif", {}),
    ],
)
def test_lif_mapping_reproduces_masnn_dynamics(preset: str, kw: dict) -> None:
    lif = LIF(preset, **kw)
    q = lif_to_nir_params(lif, "lif", DEFAULT_DT)
    g = torch.Generator().manual_seed(0)
    x = torch.rand((40, 500), generator=g, dtype=torch.float64) * 1.5 - 0.2
    ref, _ = lif_multistep(x, None, lif.params(), lif.surrogate)
    got = _nir_lif_reference(x, q, DEFAULT_DT)
    # spikes agree except where the masnn membrane sits exactly at the threshold (>= vs >)
    assert ref.sum() > 0 and torch.equal(ref, got)


def test_paper_preset_values() -> None:
    q = lif_to_nir_params(LIF("paper"), "lif", 1e-3)
    assert q["tau"] == pytest.approx(1e-3 / 0.7) and q["r"] == pytest.approx(1 / 0.7)
    assert q["v_threshold"] == pytest.approx(0.3) and q["v_reset"] == 0 and q["v_leak"] == 0
    q = lif_to_nir_params(LIF("spikingjelly", tau=2.0), "lif", 1e-3)
    assert q["tau"] == pytest.approx(2e-3) and q["r"] == pytest.approx(1.0)


def test_refusals_name_the_module() -> None:
    m = masnn.create_model("ma_snn3_tiny", attn="csa", **TINY)
    with pytest.raises(ExportError, match=r"^features\.0\.neuron\.lif\.membrane_gate .*attention"):
        to_nir(m)
    m = masnn.create_model("ma_snn3_tiny", attn="tcsa", **TINY)
    with pytest.raises(ExportError, match=r"^features\.0\..*NIR has no node for attention"):
        to_nir(m)
    m = masnn.create_model(
        "ma_snn3_tiny", attn="none", neuron="spikingjelly", neuron_kwargs={"v_reset": None}, **TINY
    )
    with pytest.raises(ExportError, match=r"features\.0\.neuron\.lif: .*soft"):
        to_nir(m)
    m = masnn.create_model("ma_snn5", attn="none", channels=(4,) * 5, hidden=8, timesteps=2)
    with pytest.raises(ExportError, match=r"features\.0\.pool \(MaxPool2d\): NIR 1\.0 has no max"):
        to_nir(m)
    # MS-ResNet exports (residual adds are fan-ins, below); its attention and partial
    # (ceil-mode) pooling windows do not
    m = masnn.create_model("ms_resnet18", attn="csa", att_res=2, timesteps=2, **RES_TINY)
    with pytest.raises(ExportError, match=r"^stages\.0\.0\.attn \(MultiDimAttention\) .*attention"):
        to_nir(m)
    m = masnn.create_model(
        "ms_resnet18", attn="none", timesteps=2, **{**RES_TINY, "input_size": (3, 40, 40)}
    )
    with pytest.raises(
        ExportError, match=r"^stages\.2\.0\.shortcut\.module\.0: ceil-mode .* 5x5 map"
    ):
        to_nir(m)


def _vanilla(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = masnn.create_model("ma_snn3_tiny", attn="none", **TINY)
    return calibrate(m, event_counts((T, 4, 2, 32, 32), seed=seed + 1))


def test_graph_structure_and_file_round_trip(tmp_path: Path) -> None:
    m = _vanilla()
    g = to_nir(m)
    kinds = [type(n).__name__ for n in g.nodes.values()]
    assert kinds == [
        "Input", "Conv2d", "LIF", "Conv2d", "AvgPool2d", "LIF", "Conv2d", "AvgPool2d", "LIF",
        "Flatten", "Affine", "LIF", "Affine", "LIF", "Output",
    ]  # fmt: skip
    assert g.metadata["dt"] == DEFAULT_DT and g.metadata["groups"] == 1
    # BN folded: the conv node computes bn(conv(x)) in eval mode
    x = torch.rand(3, 2, 32, 32)
    node = g.nodes["features_0_conv"]
    y = torch.nn.functional.conv2d(
        x, torch.from_numpy(node.weight), torch.from_numpy(node.bias), padding=1
    )
    with torch.no_grad():
        ref = m.features[0].bn(m.features[0].conv(x))
    assert torch.allclose(y, ref, atol=1e-5)
    path = write_nir(m, tmp_path / "m.nir")
    back = nir.read(str(path))
    assert sorted(back.nodes) == sorted(g.nodes) and sorted(back.edges) == sorted(g.edges)
    assert back.metadata["threshold"] == ">="
    assert np.array_equal(back.nodes["fc2_fc"].weight, g.nodes["fc2_fc"].weight)


def run_snntorch(graph: object, x_seq: torch.Tensor) -> torch.Tensor:
    """Output spikes ``(T, B, K)`` of the graph imported into snnTorch, one sample at a time
    (NIR shapes are batch-free), a fresh import (zero state) per sample."""
    pytest.importorskip("snntorch")
    pytest.importorskip("nirtorch")
    from snntorch.import_nir import import_from_nir

    outs = []
    with torch.no_grad():
        for b in range(x_seq.shape[1]):
            net = import_from_nir(graph)
            outs.append(torch.stack([net(frame)[0] for frame in x_seq[:, b]]))
    return torch.stack(outs, dim=1)


def test_snntorch_round_trip_identical_output_spikes(capsys: pytest.CaptureFixture[str]) -> None:
    m = _vanilla()
    x = event_counts((T, 4, 2, 32, 32), seed=5)
    got = run_snntorch(to_nir(m), x)
    spikes: list[torch.Tensor] = []
    h = m.fc2.neuron.lif.register_forward_hook(lambda mod, a, o: spikes.append(o))
    with torch.no_grad():
        y = m(x)
    h.remove()
    assert spikes[0].sum() > 0
    assert torch.equal(got, spikes[0])
    assert torch.equal(got.mean(0), y)  # the masnn readout of the imported net's spikes
    capsys.readouterr()  # snnTorch's importer prints


def _resnet(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = masnn.create_model("ms_resnet18", attn="none", timesteps=4, **RES_TINY)
    g = torch.Generator().manual_seed(seed + 1)
    return calibrate(m, torch.rand((4, 4, 3, 32, 32), generator=g))


def test_ms_resnet_graph_sums_the_membrane_shortcuts() -> None:
    g = to_nir(_resnet())
    ins: dict[str, set[str]] = {}
    for a, b in g.edges:
        ins.setdefault(b, set()).add(a)
    assert type(g.nodes["stem_module_0"]).__name__ == "Conv2d"
    # stage 1, block 0: branch + (AvgPool -> Conv1x1 -> BN) shortcut of the stem output
    assert ins["stages_0_0_lif1"] == {"stem_module_0"}
    assert ins["stages_0_0_shortcut_module_0"] == {"stem_module_0"}
    assert ins["stages_0_1_lif1"] == {"stages_0_0_conv2_module", "stages_0_0_shortcut_module_1"}
    # block 1 has an identity shortcut: its output is the sum of three terms
    three = {"stages_0_1_conv2_module", "stages_0_0_conv2_module", "stages_0_0_shortcut_module_1"}
    assert ins["stages_1_0_lif1"] == ins["stages_1_0_shortcut_module_0"] == three
    assert ins["lif"] == {"stages_3_0_conv2_module", "stages_3_0_shortcut_module_1"}
    assert [ins[k] for k in ("gap", "flatten", "fc", "output")] == [
        {"lif"},
        {"gap"},
        {"flatten"},
        {"fc"},
    ]
    gap = g.nodes["gap"]  # global average pooling over the 1x1 map left at 32x32 input
    assert type(gap).__name__ == "AvgPool2d" and list(gap.kernel_size) == [1, 1]
    assert g.metadata["threshold"] == ">" and "affine classifier" in g.metadata["readout"]
    # BN folded into the 1x1 shortcut conv
    m = _resnet()
    x = torch.rand(2, 8, 16, 16)
    node = g.nodes["stages_0_0_shortcut_module_1"]
    y = torch.nn.functional.conv2d(x, torch.from_numpy(node.weight), torch.from_numpy(node.bias))
    sc = m.stages[0][0].shortcut.module
    with torch.no_grad():
        assert torch.allclose(y, sc[2](sc[1](x)), atol=1e-5)


def test_ms_resnet_snntorch_round_trip(capsys: pytest.CaptureFixture[str]) -> None:
    m = _resnet()
    g = torch.Generator().manual_seed(5)
    x = torch.rand((4, 3, 3, 32, 32), generator=g)
    got = run_snntorch(to_nir(m), x)  # (T, B, K): the classifier on each step's pooled spikes
    spikes: list[torch.Tensor] = []
    h = m.lif.register_forward_hook(lambda mod, a, o: spikes.append(o))
    with torch.no_grad():
        y = m(x)
        per_step = m.fc(spikes[0].mean(dim=(-2, -1)))  # masnn's classifier, step by step
    h.remove()
    assert 0 < float(spikes[0].mean()) < 1
    assert torch.allclose(got, per_step, atol=1e-5)  # identical last-layer spikes
    assert torch.allclose(got.mean(0), y, atol=1e-5)  # the readout: mean over T
    assert torch.equal(got.mean(0).argmax(1), y.argmax(1))
    capsys.readouterr()


@pytest.mark.parametrize(
    ("name", "attn", "placement", "att_res", "module"),
    [
        ("ma_snn3_tiny", "tcsa", "code", 1, "features.0.neuron.post_attn"),
        ("ma_snn3_tiny", "csa", "code", 1, "features.0.neuron.post_attn"),
        ("ma_snn5", "tcsa", "paper", 1, "features.0.neuron.post_attn"),
        ("ma_snn5", "tcsa", "code", 1, "features.0.neuron.post_attn"),
        ("ma_snn5", "csa", "paper", 1, "features.0.neuron.lif.membrane_gate"),
        ("ma_snn5", "csa", "code", 1, "features.0.neuron.post_attn"),
        ("ms_resnet18", "csa", "paper", 1, "stages.0.0.attn"),
        ("ms_resnet18", "csa", "code", 1, "stages.0.0.attn"),
        ("ms_resnet18", "csa", "code", 2, "stages.0.0.attn"),
    ],
)
def test_every_attention_variant_refused_naming_the_module(
    name: str, attn: str, placement: str, att_res: int, module: str
) -> None:
    """The NIR column of docs/deployment.md's matrix: no attention variant exports."""
    kw: dict = dict(timesteps=2)
    if name == "ms_resnet18":
        kw.update(RES_TINY, att_res=att_res)
    elif name == "ma_snn5":
        kw.update(channels=(4,) * 5, hidden=8, input_size=(2, 32, 32))
    else:
        kw.update(channels=(4, 8, 8), hidden=16)
    m = masnn.create_model(name, attn=attn, placement=placement, **kw)
    with pytest.raises(ExportError, match=rf"^{re.escape(module)} .*NIR has no node for attention"):
        to_nir(m)
