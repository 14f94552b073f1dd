"""The Triton LIF with per-step membrane attention equals the reference loop.

``backend="triton"`` runs CA / ECA / SimAM, SA and CA -> SA at ``membrane`` in the kernels of
:mod:`masnn.neurons.backends.triton_membrane`; ``"torch"`` runs the reference
``charge -> gate -> fire -> reset`` loop. On a CUDA GPU the kernels run there, else on CPU
tensors through Triton's interpreter (``TRITON_INTERPRET=1``, in a fresh process, as
``test_triton.py``). Skipped when Triton is not installed. Cases, helpers and the contract are
those of the CPU kernel (``test_membrane_fused.py``); stated tolerances (float32 only):

* spikes: identical wherever the reference's gated membrane stays >= 1e-3 from threshold,
  each sample compared up to and including its first step with a near-threshold neuron (the
  gates couple every neuron of a sample);
* gradients (input, streamed state ``v0``, every gate weight, TA weights before the loop, PLIF
  ``w``) and the last membrane, on inputs whose spikes agree everywhere: ``rtol=1e-4,
  atol=1e-5`` (the pools sum in another order than torch; a GPU may round the MLP / conv
  differently).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import masnn.neurons.backends.membrane as membrane
import masnn.neurons.backends.triton_membrane as tm
from masnn.attention import AttnCfg
from masnn.attention.channel import ChannelAttention
from masnn.attention.composite import MembraneAttention
from masnn.layers import AttnLIF
from masnn.neurons import LIF
from masnn.neurons.backends import NotSupportedByBackend
from tests.neurons.test_membrane_fused import _compared, _inputs, _run, _scale
from tests.neurons.test_membrane_fused import _pair as _fused_pair
from tests.neurons.test_triton import run_in_interpreter

HAS_TRITON = importlib.util.find_spec("triton") is not None
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Triton reads TRITON_INTERPRET when it is first imported: on CPU the kernel tests run in a
# fresh interpreter process (test_kernels_in_the_interpreter).
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
kernel_test = pytest.mark.skipif(
    not HAS_TRITON or (DEVICE == "cpu" and not INTERPRETED),
    reason="triton is not installed" if not HAS_TRITON else "run by the interpreter test",
)
REPO = Path(__file__).resolve().parents[2]
TOL = dict(rtol=1e-4, atol=1e-5)
CASES = (
    [("paper", n) for n in ("ca", "sa", "csa", "tcsa", "eca", "simam")]
    + [(p, "csa") for p in ("biclab", "msresnet", "spikingjelly", "plif")]
    + [
        ("plif", "eca"),
        ("spikingjelly", "simam"),
        ("plif:soft", "csa"),
        ("spikingjelly:soft", "sa"),
    ]
)  # ":soft": v_reset=None, the soft reset


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.skipif(DEVICE == "cuda" or INTERPRETED, reason="runs the kernels directly")
def test_kernels_in_the_interpreter() -> None:
    run_in_interpreter(__file__)


@pytest.fixture(autouse=True)
def _full_fp32() -> Iterator[None]:
    """On a GPU, SA's / ECA's convs in full float32 (cuDNN may use TF32 by default): the
    reference they are compared with runs on the CPU."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """Counts forward calls of the Triton gated kernels and of the CPU gated kernel."""
    seen: dict[str, list[int]] = {"triton": [], "cpp": []}
    for key, mod in (("triton", tm), ("cpp", membrane)):
        real = mod._forward

        def spy(*args: object, _real=real, _key=key, **kw: object):  # type: ignore[no-untyped-def]
            seen[_key].append(1)
            return _real(*args, **kw)

        monkeypatch.setattr(mod, "_forward", spy)
    return seen


def _pair(preset: str, name: str, c: int, t: int, k: int = 3) -> tuple[AttnLIF, AttnLIF]:
    preset, _, soft = preset.partition(":")
    kw: dict[str, object] = {"v_reset": None} if soft else {}
    ref, new = _fused_pair(preset, name, c, t, torch.float32, k=k, backend="triton", **kw)
    return ref, new.to(DEVICE)


def _run_on(layer: AttnLIF, dev: str, *tensors: torch.Tensor):  # type: ignore[no-untyped-def]
    """``_run`` on ``dev``, results back on the CPU."""
    s, v, grads = _run(layer, *(t.to(dev) for t in tensors))
    back = {n: None if g is None else g.cpu() for n, g in grads.items()}
    return s.detach().cpu(), v.detach().cpu(), back


def _check(ref: AttnLIF, new: AttnLIF, x: torch.Tensor, v0: torch.Tensor, gs: torch.Tensor,
           gv: torch.Tensor) -> None:  # fmt: skip
    s_ref, v_ref, g_ref = _run_on(ref, "cpu", x, v0, gs, gv)
    s_new, v_new, g_new = _run_on(new, DEVICE, x, v0, gs, gv)
    mask = _compared(ref, x, v0)
    assert mask.float().mean() > 0.3
    assert torch.equal(s_ref[mask], s_new[mask])
    assert s_new.shape == x.shape and v_new.shape == v0.shape
    # these inputs land no membrane within rounding of threshold: all spikes agree, so the
    # gradients are comparable
    assert torch.equal(s_ref, s_new)
    torch.testing.assert_close(v_new, v_ref, **TOL)
    assert set(g_new) == set(g_ref)
    for n, g in g_ref.items():
        assert g is not None and g_new[n] is not None, n
        torch.testing.assert_close(g_new[n], g, **TOL, msg=lambda m, n=n: f"d{n}: {m}")


@kernel_test
@pytest.mark.parametrize(("preset", "name"), CASES)
def test_triton_membrane_equals_reference(
    preset: str, name: str, calls: dict[str, list[int]]
) -> None:
    T, B, C, H, W = 5, 3, 4, 3, 5
    C = 8 if name == "eca" else C  # ECA's adaptive 1-D kernel: 3 at C = 8 (1 at C = 4)
    ref, new = _pair(preset, name, C, T)
    x = _inputs((T, B, C, H, W), torch.float32, seed=1) * _scale(ref)
    v0 = _inputs((B, C, H, W), torch.float32, seed=2) * 0.3 * _scale(ref)
    gs = _inputs(x.shape, torch.float32, seed=3)
    gv = _inputs(v0.shape, torch.float32, seed=4)
    with torch.no_grad():
        s_ref = ref(x)
    assert 0.03 < s_ref.mean() < 0.6  # the neurons fire: resets and surrogates are exercised
    _check(ref, new, x, v0, gs, gv)
    assert calls["triton"] == [1] and not calls["cpp"]
    with torch.no_grad():  # the inference path (one membrane buffer, nothing saved)
        assert torch.equal(new(x.to(DEVICE)).cpu(), s_ref)


@kernel_test
def test_several_blocks_large_kernel_ties_noncontiguous(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows and pixel blocks split into several loop iterations / programs (small blocks), a
    7 x 7 SA conv on a 3 x 5 map, non-contiguous input and gradient, and constant regions
    (ties in both max pools, shared like torch's ``amax``)."""
    monkeypatch.setattr(tm, "ROW_BLOCK", 8)
    monkeypatch.setattr(tm, "PIX_BLOCK", 8)
    T, B, C, H, W = 4, 2, 5, 3, 5
    ref, new = _pair("paper", "csa", C, T, k=7)
    base = _inputs((C, W, B, T, H), torch.float32, seed=7) * _scale(ref)
    x = base.permute(3, 2, 0, 4, 1)  # (T, B, C, H, W), non-contiguous
    assert not x.is_contiguous()
    gs = _inputs((T, B, C, H, W, 2), torch.float32, seed=8)[..., 0]
    v0 = torch.zeros(B, C, H, W)
    _check(ref, new, x, v0, gs, v0)
    ties = torch.full((T, B, C, H, W), 0.2) * _scale(ref)
    ties[:, 1, :, 1:, :] = 0.35 * _scale(ref)  # ties inside a channel and across channels
    _check(ref, new, ties, v0, gs, v0)
    r1, n1 = _pair("paper", "sa", C, T)  # no channel gate: ties across the channels too
    _check(r1, n1, ties * _scale(r1) / _scale(ref), v0, gs, v0)
    for name in ("simam", "eca"):  # the SimAM / ECA row passes over several blocks
        c = 8 if name == "eca" else C
        r2, n2 = _pair("plif", name, c, 3)
        x2 = _inputs((3, B, c, H, W), torch.float32, seed=9) * _scale(r2)
        g2 = _inputs(x2.shape, torch.float32, seed=10)
        _check(r2, n2, x2, torch.zeros(x2.shape[1:]), g2, torch.zeros(x2.shape[1:]))
    for shape in [(1, 1, C, 1, 1), (3, 1, C, 1, 2)]:  # one pixel, one step, one sample
        xs = _inputs(shape, torch.float32, seed=11)
        for name in ("csa", "simam"):
            r3, n3 = _pair("biclab", name, C, shape[0])
            with torch.no_grad():
                assert torch.equal(n3(xs.to(DEVICE)).cpu(), r3(xs))


@kernel_test
def test_triton_refuses_what_it_does_not_fuse() -> None:
    from masnn.attention.spatial import SpatialAttention

    class MyCA(ChannelAttention):
        """A subclass: the kernel cannot know what it changed."""

    x = _inputs((3, 2, 8, 3, 3), torch.float32, seed=11).to(DEVICE)
    gate = MembraneAttention(ca=MyCA(8, 2)).to(DEVICE)
    with pytest.raises(NotSupportedByBackend, match="no fused kernel"):
        LIF("paper", backend="triton", membrane_gate=gate)(x)
    sa = MembraneAttention(sa=SpatialAttention(3)).to(DEVICE)
    with pytest.raises(NotSupportedByBackend, match="float32"):
        LIF("paper", backend="triton", membrane_gate=sa.double())(x.double())
    h = sa.sa.gate.register_forward_hook(lambda m, a, out: None)
    try:
        with pytest.raises(NotSupportedByBackend, match="hooks"):
            LIF("paper", backend="triton", membrane_gate=sa.float())(x)
    finally:
        h.remove()


def test_auto_on_a_cpu_tensor_keeps_the_cpu_kernel(calls: dict[str, list[int]]) -> None:
    """Also under ``TRITON_INTERPRET=1`` (the interpreter run of this file): ``auto`` sends a
    CPU tensor to the C++ kernel, never to Triton; a CUDA tensor goes to Triton."""
    torch.manual_seed(0)
    layer = AttnLIF(4, 3, attn=AttnCfg("csa", reduction_c=2, kernel_size=3))
    assert layer.lif.backend == "auto"
    x = _inputs((3, 2, 4, 3, 3), torch.float32, seed=12)
    layer(x).sum().backward()
    assert not calls["triton"]
    assert calls["cpp"] == [1]
    if DEVICE == "cuda" and HAS_TRITON:
        layer.to(DEVICE)(x.to(DEVICE)).sum().backward()
        assert calls["triton"] == [1]


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.skipif(INTERPRETED, reason="the interpreter replaces the compiler")
def test_kernels_compile_for_a_gpu() -> None:
    """Triton's compiler (no GPU needed: its own ptxas) builds every gated kernel for sm_90,
    for each channel gate with and without SA and both settings of every flag, without
    contracted multiply-adds: what the interpreter cannot check (typing of loop-carried
    values, constexpr branches, returned tuples)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import ASTSource

    from masnn.neurons.backends import _triton_membrane_kernels as kern

    def build(fn, warps: int = 4, **consts: object) -> None:  # type: ignore[no-untyped-def]
        sig = {
            n: "constexpr" if n in consts else "*fp32" if n.endswith("_ptr")
            else "i32" if n in ("C", "HW", "BC") else "fp32"
            for n in fn.arg_names
        }  # fmt: skip
        try:
            k = triton.compile(
                ASTSource(fn, sig, consts),
                target=GPUTarget("cuda", 90, 32),
                options={"enable_fp_fusion": False, "num_warps": warps},
            )
        except Exception as exc:  # a Triton without its bundled ptxas: nothing to check here
            if "ptxas" in str(exc).lower():
                pytest.skip(f"Triton cannot assemble here: {str(exc)[:80]}")
            raise
        assert k.asm["cubin"] and "fma.rn" not in k.asm["ptx"]

    for i, (ca, sa) in enumerate((c, s) for c in range(4) for s in (False, True)):
        if ca == 0 and not sa:
            continue
        on = i % 2 == 0  # alternate every flag between the combinations
        lif = dict(HARD=on, STRICT=not on, HAS_LEAK=on, HAS_GAIN=not on, HAS_DECAY=on,
                   HAS_VRESET=not on)  # fmt: skip
        bwd = dict(DETACH=not on, SG=i % 3)
        for apply, chg in ((False, True), (True, True), (True, False)):
            build(kern.row_forward, 1 if on else 4, APPLY=apply, CHARGE=chg, HAS_V0=on, CA=ca,
                  HAS_SA=sa, **lif, BLOCK=64)  # fmt: skip
        if sa:
            build(kern.sa_pool, CA=ca, BLOCK=64)
            build(kern.sa_backward, HAS_GS=on, CA=ca, HARD=on, STRICT=on, **bwd, BLOCK=64)
        for first in (False, True):
            rows = dict(FIRST=first, HAS_V0=not on, CA=ca, HAS_SA=sa, NEED_K=True, NEED_G=on,
                        **lif, BLOCK=64)  # fmt: skip
            build(kern.row_backward, HAS_GS=not on, **rows, **bwd)
            if ca in (1, 2):
                build(kern.row_finish, **rows)
