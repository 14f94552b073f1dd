"""The Triton LIF equals the reference: on a CUDA GPU when there is one, else on CPU tensors
through Triton's interpreter (``TRITON_INTERPRET=1``). Skipped when Triton is not installed.

Tolerances (float32): spikes identical where the reference membrane stays >= 1e-3 from
threshold; last membrane ``atol=1e-5``; gradients ``rtol=1e-4, atol=1e-5`` (the GPU may fuse
multiply-adds).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from masnn.neurons import LIF, NEURON_BACKENDS
from tests.neurons.test_backends import PRESETS, SURROGATES, _far_from_threshold, _inputs, _lifs

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="triton is not installed"
)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Triton reads TRITON_INTERPRET when it is first imported and configured (torch may import it
# earlier in a test session), so on CPU the kernel tests run in a fresh interpreter process.
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
kernel_test = pytest.mark.skipif(
    DEVICE == "cpu" and not INTERPRETED, reason="run by test_kernels_in_the_interpreter"
)
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(DEVICE == "cuda" or INTERPRETED, reason="runs the kernels directly")
def test_kernels_in_the_interpreter() -> None:
    run_in_interpreter(__file__)


def run_in_interpreter(test_file: str) -> None:
    """Run ``test_file``'s kernel tests in a fresh process with ``TRITON_INTERPRET=1``."""
    path = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path}
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file],
        env=env, capture_output=True, text=True, timeout=900, cwd=REPO,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert " passed" in res.stdout and "failed" not in res.stdout


def _run(lif: LIF, x, v0, gs, gv):  # type: ignore[no-untyped-def]
    x = x.to(DEVICE).requires_grad_()
    v0 = v0.to(DEVICE).requires_grad_()
    lif = lif.to(DEVICE)
    if lif.w is not None:
        lif.w.grad = None
    s, v = lif(x, state=v0, return_state=True)
    ((s * gs.to(DEVICE)).sum() + (v * gv.to(DEVICE)).sum()).backward()
    grads = {"x": x.grad.cpu(), "v0": v0.grad.cpu()}
    if lif.w is not None:
        grads["w"] = lif.w.grad.cpu()
    return s.detach().cpu(), v.detach().cpu(), grads


@kernel_test
@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize("preset", PRESETS)
def test_triton_equals_reference(preset: str, surrogate: str | None) -> None:
    ref, tri = _lifs(preset, surrogate, "triton")
    x = _inputs((7, 2, 151), torch.float32, seed=1)
    v0 = _inputs((2, 151), torch.float32, seed=2) * 0.5
    gs, gv = _inputs(x.shape, torch.float32, seed=3), _inputs(v0.shape, torch.float32, seed=4)
    s_ref, v_ref, g_ref = _run(ref, x, v0, gs, gv)
    s_tri, v_tri, g_tri = _run(tri, x, v0, gs, gv)
    far = _far_from_threshold(ref.cpu(), x, v0)
    assert far.float().mean() > 0.5
    assert torch.equal(s_ref[:, far], s_tri[:, far])
    torch.testing.assert_close(v_tri[far], v_ref[far], rtol=0, atol=1e-5)
    for name, g in g_ref.items():
        torch.testing.assert_close(
            g_tri[name], g, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"d{n}: {m}"
        )


@kernel_test
def test_triton_no_grad_and_noncontiguous() -> None:
    ref, tri = _lifs("paper", None, "triton")
    x = _inputs((3, 5, 4, 6), torch.float32, seed=5).permute(2, 0, 3, 1).to(DEVICE)
    with torch.no_grad():
        assert torch.equal(tri(x).cpu(), ref(x.cpu()))


def test_auto_uses_triton_only_for_cuda() -> None:
    from masnn.neurons.backends.auto import fused_backend

    assert fused_backend("cpu") in (NEURON_BACKENDS.get("cpp"), None)
    if DEVICE == "cuda":
        assert fused_backend("cuda") is NEURON_BACKENDS.get("triton")
