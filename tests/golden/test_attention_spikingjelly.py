"""``placement="code"`` equals SpikingJelly 2.0.0's ``MultiDimensionalAttention`` (same weights).

Two layers of evidence: the committed goldens (``attention_spikingjelly.json``, made by
``make_attention_golden.py``) are always checked; when SpikingJelly is installed the live
module is also compared on random weights and non-square inputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import masnn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import make_attention_golden as mk  # noqa: E402

GOLDEN = json.loads((HERE / "attention_spikingjelly.json").read_text())


def _code_attn(name: str, c: int, t: int, r_t: int, r_c: int, k: int) -> torch.nn.Module:
    m = masnn.create_attn(
        name, c, t, "code", location="conv_post", reduction_t=r_t, reduction_c=r_c, kernel_size=k
    )
    assert m is not None
    return m


@pytest.mark.golden
@pytest.mark.parametrize("key", sorted(GOLDEN["outputs"]))
def test_code_placement_matches_committed_spikingjelly_golden(key: str) -> None:
    name, k = key.rsplit("_k", 1)
    shape = GOLDEN["shape"]
    w = {n: torch.tensor(v["data"]).reshape(v["shape"]) for n, v in GOLDEN["weights"].items()}
    x = torch.tensor(GOLDEN["input"]).reshape(shape)
    m = _code_attn(name, shape[2], shape[0], GOLDEN["reduction_t"], GOLDEN["reduction_c"], int(k))
    mk.load_into_masnn(m, w, int(k))
    with torch.no_grad():
        out = m(x)
    expected = torch.tensor(GOLDEN["outputs"][key]).reshape(shape)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_golden_covers_every_subset_and_kernel() -> None:
    names = {k.rsplit("_k", 1)[0] for k in GOLDEN["outputs"]}
    assert names == {"ta", "ca", "sa", "tca", "tsa", "csa", "tcsa"}
    assert {k for k in GOLDEN["outputs"] if k.endswith("_k7")} == {
        "sa_k7",
        "tsa_k7",
        "csa_k7",
        "tcsa_k7",
    }


@pytest.mark.parametrize("name,ut,uc,us", mk.SUBSETS)
@pytest.mark.parametrize("k", mk.KERNELS)
def test_code_placement_matches_live_spikingjelly(name: str, ut: bool, uc: bool, us: bool, k: int):
    pytest.importorskip("spikingjelly")
    att = mk.spikingjelly_attention()
    if att is None:
        pytest.skip("spikingjelly is installed but its attention module does not import")
    t, b, c, h, w_ = 6, 3, 12, 5, 7
    r_t, r_c = 3, 4
    g = torch.Generator().manual_seed(k * 10 + len(name))
    ours = _code_attn(name, c, t, r_t, r_c, k)
    for p in ours.parameters():
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    theirs = att.MultiDimensionalAttention(
        t, c, r_t, r_c, kernel_size=k, use_temporal=ut, use_channel=uc, use_spatial=us
    )
    w = {n: p.detach() for n, p in ours.named_parameters()}
    w = {n.replace("sa.", f"sa{k}."): v for n, v in w.items()}
    mk.load_into_spikingjelly(theirs, w, k)
    ours, theirs = ours.double(), theirs.double()  # float64: compare gradients tightly
    x = torch.randn(t, b, c, h, w_, generator=g, dtype=torch.float64, requires_grad=True)
    out = ours(x)
    ref = theirs(x)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    (gx,) = torch.autograd.grad(out.square().sum(), x)
    (gr,) = torch.autograd.grad(ref.square().sum(), x)
    torch.testing.assert_close(gx, gr, rtol=1e-10, atol=1e-12)
    n_ours = sum(p.numel() for p in ours.parameters())
    assert n_ours == sum(p.numel() for p in theirs.parameters())
