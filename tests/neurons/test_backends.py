"""Every neuron backend equals the reference ``"torch"`` loop, for every preset and surrogate.

Stated tolerances:

* spikes: identical on every neuron whose reference membrane stays >= 1e-3 from threshold at
  every step (the contract of every backend); the CPU kernel is also bit-exact everywhere
  (it repeats the reference's operations in order, without fused multiply-adds).
* gradients (input, streamed state ``v0``, learnable PLIF ``w``, through the last membrane):
  float64 ``rtol=1e-9, atol=1e-11``; float32 ``rtol=1e-4, atol=1e-5`` (summation order only);
  the float32 PLIF ``w`` under float64 input ``rtol=1e-6`` (one float32 rounding).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from masnn.neurons import LIF, NEURON_BACKENDS, lif_multistep
from masnn.neurons.backends import NotSupportedByBackend
from masnn.neurons.functional import charge
from masnn.neurons.presets import NEURON_PRESETS
from tests._kernel_fallback import assert_warned_once, run_without_compiler

FUSED = [b for b in NEURON_BACKENDS.names() if b not in ("torch", "triton")]
PRESETS = NEURON_PRESETS.names()
SURROGATES = [None, "rect:0.7", "sigmoid:4", "atan:2"]  # None = the preset's own
MARGIN = 1e-3
REPO = Path(__file__).resolve().parents[2]


def _lifs(preset: str, surrogate: str | None, backend: str, **kw: object) -> tuple[LIF, LIF]:
    if surrogate is not None:
        kw["surrogate"] = surrogate
    ref, other = LIF(preset, backend="torch", **kw), LIF(preset, backend=backend, **kw)
    if ref.w is not None:  # a learnable tau away from its init, shared by both
        with torch.no_grad():
            ref.w.fill_(0.3)
            other.w.fill_(0.3)
    return ref, other


def _far_from_threshold(lif: LIF, x: torch.Tensor, v0: torch.Tensor | None) -> torch.Tensor:
    """Per-neuron mask: the reference membrane stays >= MARGIN from v_th at every step."""
    p = lif.params()
    v = torch.zeros_like(x[0]) if v0 is None else v0
    far = torch.ones_like(x[0], dtype=torch.bool)
    with torch.no_grad():
        for xt in x:
            u = charge(xt, v, p)
            far &= (u - p.v_th).abs() >= MARGIN
            _, v = lif_multistep(xt[None], v, p, lif.surrogate)
    return far


def _inputs(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * 0.6 + 0.2).to(dtype)


def _run(lif: LIF, x: torch.Tensor, v0: torch.Tensor | None, gs: torch.Tensor, gv: torch.Tensor):  # type: ignore[no-untyped-def]
    x = x.detach().clone().requires_grad_()
    v0 = None if v0 is None else v0.detach().clone().requires_grad_()
    if lif.w is not None:
        lif.w.grad = None
    s, v = lif(x, state=v0, return_state=True)
    ((s * gs).sum() + (v * gv).sum()).backward()
    grads = {"x": x.grad, "v0": None if v0 is None else v0.grad}
    if lif.w is not None:
        grads["w"] = lif.w.grad
    return s, v, grads


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_backend_equals_reference(
    preset: str, surrogate: str | None, backend: str, dtype: torch.dtype
) -> None:
    ref, other = _lifs(preset, surrogate, backend)
    x = _inputs((9, 2, 151), dtype, seed=1)  # 151 neurons per sample: not a multiple of a block
    v0 = _inputs((2, 151), dtype, seed=2) * 0.5
    gs, gv = _inputs(x.shape, dtype, seed=3), _inputs(v0.shape, dtype, seed=4)
    s_ref, v_ref, g_ref = _run(ref, x, v0, gs, gv)
    s_new, v_new, g_new = _run(other, x, v0, gs, gv)
    far = _far_from_threshold(ref, x.to(dtype), v0)
    assert far.float().mean() > 0.5  # the mask leaves most neurons in the comparison
    assert torch.equal(s_ref[:, far], s_new[:, far])
    assert s_new.dtype == dtype and s_new.shape == x.shape and v_new.shape == v0.shape
    if backend in ("cpp", "auto"):  # the CPU kernel: bit-exact forward
        assert torch.equal(s_ref, s_new) and torch.equal(v_ref, v_new)
    tol = dict(rtol=1e-9, atol=1e-11) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    for name, g in g_ref.items():
        t = tol if g.dtype == dtype else dict(rtol=1e-6, atol=1e-7)  # float32 w, float64 input
        torch.testing.assert_close(g_new[name], g, **t, msg=lambda m, n=name: f"d{n}: {m}")


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("preset", PRESETS)
def test_odd_shapes_noncontiguous_and_no_grad(preset: str, backend: str) -> None:
    ref, other = _lifs(preset, None, backend)
    base = _inputs((3, 7, 5, 2, 4), torch.float32, seed=5)
    x = base.permute(2, 4, 1, 0, 3)  # (5, 4, 7, 3, 2): T = 5, non-contiguous
    assert not x.is_contiguous()
    gs = _inputs((5, 4, 7, 3, 2, 2), torch.float32, seed=6)[..., 0]  # non-contiguous grad
    assert not gs.is_contiguous()
    gv = torch.zeros(x.shape[1:])
    s_ref, v_ref, g_ref = _run(ref, x, None, gs, gv)
    s_new, v_new, g_new = _run(other, x, None, gs, gv)
    assert torch.equal(s_ref, s_new) and torch.equal(v_ref, v_new)
    for name, g in g_ref.items():
        if g is not None:
            torch.testing.assert_close(g_new[name], g, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # the inference path (no saved state) gives the same spikes
        assert torch.equal(other(x), s_ref)
    for shape in [(1, 1), (4, 1), (2, 1, 1)]:  # one neuron, one step
        xs = _inputs(shape, torch.float32, seed=7)
        assert torch.equal(ref(xs), other(xs))


@pytest.mark.parametrize("backend", FUSED)
def test_gradient_only_through_last_membrane_and_learnable_tau(backend: str) -> None:
    """Spikes unused (no spike gradient) and an input that needs no gradient (PLIF tau only)."""
    ref, other = _lifs("plif", None, backend)
    x = _inputs((6, 3, 11), torch.float64, seed=8)
    outs = []
    for lif in (ref, other):
        lif.w.grad = None
        _, v = lif(x, return_state=True)
        v.sum().backward()
        outs.append(lif.w.grad.clone())
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", FUSED)
def test_result_does_not_depend_on_thread_count(backend: str) -> None:
    _, lif = _lifs("plif", "sigmoid:4", backend)
    x = _inputs((5, 4, 3000), torch.float32, seed=9)
    gs = _inputs(x.shape, torch.float32, seed=10)
    results = []
    old = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(_run(lif, x, None, gs, torch.zeros(x.shape[1:])))
    finally:
        torch.set_num_threads(old)
    for s, v, g in results[1:]:
        assert torch.equal(s, results[0][0]) and torch.equal(v, results[0][1])
        assert torch.equal(g["x"], results[0][2]["x"]) and torch.equal(g["w"], results[0][2]["w"])


@pytest.mark.parametrize("backend", FUSED)
def test_membrane_gate_runs_the_reference(backend: str) -> None:
    """A gate inside the step loop: ``cpp`` refuses it; ``auto`` runs the reference."""
    gate = torch.nn.Identity()
    x = _inputs((4, 2, 6), torch.float32, seed=11)
    ref = LIF("paper", backend="torch", membrane_gate=gate)
    lif = LIF("paper", backend=backend, membrane_gate=gate)
    if backend == "auto":
        assert torch.equal(lif(x), ref(x))
    else:
        with pytest.raises(NotSupportedByBackend, match="membrane gate"):
            lif(x)


@pytest.mark.parametrize("backend", FUSED)
def test_bad_shapes_raise_like_the_reference(backend: str) -> None:
    lif = LIF("paper", backend=backend)
    with pytest.raises(ValueError, match="v0 has shape"):
        lif(torch.zeros(3, 2, 4), state=torch.zeros(2, 5))
    with pytest.raises(ValueError, match="time-major"):
        lif(torch.zeros(3))


def test_half_precision_and_default_backend() -> None:
    assert LIF("paper").backend == "auto"
    x = _inputs((4, 3, 8), torch.float32, seed=12)
    assert torch.equal(LIF("paper")(x.bfloat16()), LIF("paper", backend="torch")(x.bfloat16()))


def test_nasar_is_the_same_under_every_backend() -> None:
    from masnn import create_model
    from masnn.analysis import SpikeMonitor

    stats = {}
    for backend in NEURON_BACKENDS.names():
        if backend == "triton":
            continue
        torch.manual_seed(0)
        model = create_model("ma_snn3_tiny", attn="none", timesteps=4, backend=backend).eval()
        x = (torch.rand(4, 2, 2, 32, 32, generator=torch.Generator().manual_seed(0)) < 0.2).float()
        with torch.no_grad(), SpikeMonitor(model) as mon:
            model(x)
        stats[backend] = mon.stats()
    ref = stats.pop("torch")
    assert ref.nasar > 0
    for s in stats.values():
        assert s.nasar == ref.nasar
        assert s.layers.keys() == ref.layers.keys()


_FALLBACK = """
import logging, torch
from masnn.neurons import LIF
from masnn.neurons.backends.kernel_build import BuildError
logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
x = torch.randn(5, 3, 7)
assert torch.equal(LIF("paper")(x), LIF("paper", backend="torch")(x))
try:
    LIF("paper", backend="cpp")(x)
except BuildError as exc:
    print("cpp raised:", exc)
"""


def test_failed_build_falls_back_to_the_reference_with_a_warning(tmp_path: Path) -> None:
    res = run_without_compiler(tmp_path, _FALLBACK)
    assert_warned_once(res, "fused LIF kernel unavailable")
    assert "cpp raised: C++ compiler" in res.stdout


def test_broken_compiler_output_is_reported(tmp_path: Path) -> None:
    """A compiler that runs but fails: the build error names the command; nothing is cached."""
    fake = tmp_path / "fakecxx"
    fake.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo fake 1.0; exit 0; fi\n"
                    "echo 'fatal error: simulated' >&2; exit 1\n")  # fmt: skip
    fake.chmod(0o755)
    env = {
        **os.environ,
        "MASNN_CXX": str(fake),
        "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext"),
        "PYTHONPATH": str(REPO),
    }
    res = subprocess.run(
        [sys.executable, "-c", _FALLBACK], env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert "simulated" in res.stderr and "fused LIF kernel unavailable" in res.stderr
    assert not any((tmp_path / "ext").rglob("*.so"))


def test_cache_is_reused_and_keyed(tmp_path: Path) -> None:
    """A second process reuses the cached library (no compile); the key names the CPU/compiler."""
    code = (
        "import logging; logging.basicConfig(level=logging.INFO);"
        "from masnn.neurons.backends.kernel_build import load_library; print(load_library()._name)"
    )
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "compiling the fused LIF kernel" in first.stderr
    assert "compiling" not in second.stderr
    assert first.stdout == second.stdout and str(tmp_path) in first.stdout
    assert Path(first.stdout.strip()).parent.name.startswith("masnn_lif_")


def test_unsupported_configurations_raise() -> None:
    from masnn.neurons.backends.cpp import lif_cpp

    lif = LIF("paper")
    x = torch.randn(3, 2)
    with pytest.raises(NotSupportedByBackend, match="dtype"):
        lif_cpp(x.half(), None, lif.params(), lif.surrogate)
    p = lif.params()._replace(v_th=torch.tensor(0.3, requires_grad=True))
    with pytest.raises(NotSupportedByBackend, match="v_th"):
        lif_cpp(x, None, p, lif.surrogate)
    p = lif.params()._replace(leak=torch.full((2,), 0.1))
    with pytest.raises(NotSupportedByBackend, match="leak"):
        lif_cpp(x, None, p, lif.surrogate)
    # auto runs the reference for these
    auto = NEURON_BACKENDS.get("auto")
    s, _ = auto(x, None, p, lif.surrogate)
    assert torch.equal(s, lif_multistep(x, None, p, lif.surrogate)[0])


def test_compiler_without_openmp_gets_a_portable_build(tmp_path: Path) -> None:
    """A compiler that refuses ``-fopenmp``: single-threaded portable build, same results."""
    fake = tmp_path / "noomp"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = -fopenmp ] && '
                    '{ echo "unsupported option -fopenmp" >&2; exit 1; }; done\nexec g++ "$@"\n')  # fmt: skip
    fake.chmod(0o755)
    code = (
        "import torch; from masnn.neurons import LIF; x = torch.randn(5, 3, 700);"
        "print(torch.equal(LIF('paper', backend='cpp')(x), LIF('paper', backend='torch')(x)))"
    )
    env = {
        **os.environ,
        "MASNN_CXX": str(fake),
        "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext"),
        "PYTHONPATH": str(REPO),
    }
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "True"
    assert "built without OpenMP" in res.stderr and "unsupported option -fopenmp" in res.stderr
