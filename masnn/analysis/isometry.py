r"""Block dynamical isometry of spiking ResNets (paper §7.1, Theorem 1), by random probes.

Paper: `Attention Spiking Neural Networks` (§7.1, Theorem 1, Table 8) -
https://arxiv.org/abs/2209.13929

For a residual block ``f_j`` with input ``x`` (``n`` elements) and output ``y`` (``m``
elements), ``J_j = dy/dx`` (through the surrogate gradients of the spike function, i.e. the
Jacobian that backpropagation uses), with the normalised trace :math:`\phi(A) = \mathrm{tr}(A)/m`:

.. math::

    \phi(JJ^T) = \frac{1}{m}\,\mathbb{E}_v \lVert J^T v\rVert^2,\qquad
    \varphi(JJ^T) = \phi\big((JJ^T)^2\big) - \phi(JJ^T)^2,\quad
    \phi\big((JJ^T)^2\big) = \frac{1}{m}\,\mathbb{E}_v \lVert J J^T v\rVert^2

for Rademacher probes ``v`` (``E[v v^T] = I``; Hutchinson's estimator). ``J^T v`` is one
vector-Jacobian product; ``J (J^T v)`` is the derivative of the (linear in ``u``) map
``u -> J^T u`` built with ``create_graph=True`` (the double-backward trick), so no forward-mode
support of the spike function is needed. Block dynamical isometry means ``phi ~ 1`` and
``varphi ~ 0`` for every block.

The gradient-norm ratio of block ``j`` is :math:`\lVert\partial L/\partial x_j\rVert /
\lVert\partial L/\partial y_j\rVert` for one backward pass of a classification loss (paper
§8.1, testable property 2: slightly above 1 for Att-Res-SNN-1 and no exponential drift with
depth). The model's parameters, gradients and BatchNorm statistics are left as they were.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from masnn.neurons.backends import reference_only


@dataclass(frozen=True)
class BlockIsometry:
    """Estimates for one residual block.

    Attributes:
        index: position among the model's residual blocks (0 = nearest the input).
        name: qualified module name.
        phi: :math:`\\phi(JJ^T)` (normalised trace).
        varphi: :math:`\\varphi(JJ^T)` (its spread; 0 for an isometry up to scale).
        phi_se: standard error of ``phi`` over the probes.
        grad_ratio: ``||dL/dx_in|| / ||dL/dx_out||`` of one backward pass.
        downsample: the block changes width or resolution (its shortcut is a 1x1 conv).
    """

    index: int
    name: str
    phi: float
    varphi: float
    phi_se: float
    grad_ratio: float
    downsample: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def residual_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's residual blocks (``MSBasicBlock``; modules with an ``att_res`` attribute)."""
    return [(n, m) for n, m in model.named_modules() if n and hasattr(m, "att_res")]


def _rademacher(shape: torch.Size, gen: torch.Generator, like: Tensor) -> Tensor:
    v = torch.randint(0, 2, shape, generator=gen, dtype=torch.int8).to(like.device)
    return (2 * v - 1).to(like.dtype)


def jacobian_moments(
    f: Callable[[Tensor], Tensor], x: Tensor, *, probes: int = 8, seed: int = 0
) -> tuple[float, float, float]:
    """``(phi(JJ^T), varphi(JJ^T), standard error of phi)`` of ``f`` at ``x`` by random probes.

    Args:
        f: a function of one tensor (a block); it is called once.
        x: the point (detached here).
        probes: Rademacher probes (the estimates are exact in expectation).
        seed: the probes' generator seed.
    """
    if probes < 1:
        raise ValueError(f"probes must be >= 1, got {probes}")
    gen = torch.Generator().manual_seed(seed)
    with torch.enable_grad(), reference_only():  # J J^T v differentiates a gradient again
        xi = x.detach().requires_grad_(True)
        y = f(xi)
        m = y.numel()
        u = torch.zeros_like(y, requires_grad=True)
        (jt_u,) = torch.autograd.grad(y, xi, u, create_graph=True)  # J^T u, linear in u
        first, second = [], []
        for _ in range(probes):
            v = _rademacher(y.shape, gen, y)
            (w,) = torch.autograd.grad(y, xi, v, retain_graph=True)  # J^T v
            (jw,) = torch.autograd.grad(jt_u, u, w, retain_graph=True, allow_unused=True)
            jw = torch.zeros_like(y) if jw is None else jw  # J J^T v
            first.append(float(w.double().pow(2).sum()) / m)
            second.append(float(jw.double().pow(2).sum()) / m)
    phi = sum(first) / probes
    phi2 = sum(second) / probes
    var = sum((a - phi) ** 2 for a in first) / max(probes - 1, 1)
    return phi, phi2 - phi * phi, (var / probes) ** 0.5


def block_isometry(
    model: nn.Module,
    x: Tensor,
    *,
    target: Tensor | None = None,
    probes: int = 8,
    seed: int = 0,
    blocks: Sequence[tuple[str, nn.Module]] | None = None,
) -> list[BlockIsometry]:
    """Estimate ``phi(JJ^T)``, ``varphi(JJ^T)`` and the gradient-norm ratio of every block.

    Args:
        model: a spiking ResNet (``masnn.create_model("ms_resnet18", ...)``), in the mode to
            study (``train()`` = batch statistics, as at the start of training).
        x: an input batch ``(T, B, C, H, W)``.
        target: labels for the cross-entropy loss of the gradient ratio (default: seeded random
            labels).
        probes: Rademacher probes per block.
        seed: seed of the probes and the random labels.
        blocks: ``(name, module)`` pairs (default: :func:`residual_blocks`).

    Returns:
        One :class:`BlockIsometry` per block, input side first.
    """
    blks = list(blocks) if blocks is not None else residual_blocks(model)
    if not blks:
        raise ValueError(f"{type(model).__name__} has no residual block (a module with att_res)")
    saved = copy.deepcopy(model.state_dict())  # BN running statistics change in train mode
    grads = [p.grad for p in model.parameters()]
    seen_in: dict[str, Tensor] = {}
    seen_out: dict[str, Tensor] = {}

    def hook(name: str) -> Callable[..., None]:
        def fn(module: nn.Module, args: Any, out: Tensor) -> None:
            seen_in[name], seen_out[name] = args[0], out

        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in blks]
    try:
        with torch.enable_grad():
            out = model(x.detach())
            if target is None:
                gen = torch.Generator().manual_seed(seed)
                target = torch.randint(0, out.shape[-1], (out.shape[0],), generator=gen)
            loss = F.cross_entropy(out.float(), target.to(out.device))
            tensors: list[Tensor] = []
            index: dict[int, int] = {}
            for n, _ in blks:
                for t in (seen_in[n], seen_out[n]):
                    if id(t) not in index and t.requires_grad:
                        index[id(t)] = len(tensors)
                        tensors.append(t)
            g = torch.autograd.grad(loss, tensors, allow_unused=True)
        for h in handles:
            h.remove()
        handles = []

        def norm(t: Tensor) -> float:
            k = index.get(id(t))
            gi = None if k is None else g[k]
            return 0.0 if gi is None else float(gi.double().norm())

        res = []
        for i, (n, mod) in enumerate(blks):
            phi, varphi, se = jacobian_moments(mod, seen_in[n], probes=probes, seed=seed + i)
            g_out = norm(seen_out[n])
            ratio = norm(seen_in[n]) / g_out if g_out > 0 else float("nan")
            down = getattr(mod, "shortcut", None) is not None
            res.append(BlockIsometry(i, n, phi, varphi, se, ratio, down))
        return res
    finally:
        for h in handles:
            h.remove()
        model.load_state_dict(saved)
        for p, gr in zip(model.parameters(), grads):
            p.grad = gr


def isometry_sweep(
    depths: Sequence[int] = (18, 34, 104),
    timesteps: Sequence[int] = (1, 4),
    att_res: Sequence[int] = (1, 2),
    *,
    attn: str = "csa",
    placement: str = "paper",
    widths: Sequence[int] = (8, 16, 32, 64),
    size: int = 32,
    batch: int = 4,
    probes: int = 4,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """:func:`block_isometry` at initialisation over depth x T x Att-Res-SNN variant.

    Models are ``ms_resnet{depth}`` with ``widths`` (narrow, so that 104 layers run on a CPU),
    ``attn`` at the residual location, 10 classes, ``size x size`` Gaussian images repeated over
    ``T``, in train mode (batch statistics). Each row carries ``cum_ratio``, the product of the
    gradient-norm ratios from the output side down to the block (the gradient's growth from the
    head to that block).
    """
    from masnn.models import create_model

    rows: list[dict[str, Any]] = []
    for depth in depths:
        for t in timesteps:
            for ar in att_res:
                torch.manual_seed(seed)
                model = create_model(
                    f"ms_resnet{depth}",
                    num_classes=10,
                    timesteps=t,
                    input_size=(3, size, size),
                    attn=attn,
                    placement=placement,
                    att_res=ar,
                    widths=tuple(widths),
                )
                model.train()
                gen = torch.Generator().manual_seed(seed)
                img = torch.randn(batch, 3, size, size, generator=gen)
                x = img.unsqueeze(0).expand(t, *img.shape).contiguous()
                res = block_isometry(model, x, probes=probes, seed=seed)
                cum = 1.0
                cums = []
                for b in reversed(res):
                    cum *= b.grad_ratio
                    cums.append(cum)
                for b, c in zip(res, reversed(cums)):
                    rows.append(
                        {
                            "model": f"ms_resnet{depth}",
                            "timesteps": t,
                            "att_res": ar,
                            "attn": attn,
                            **b.to_dict(),
                            "cum_ratio": c,
                        }
                    )
    return rows


__all__ = [
    "BlockIsometry",
    "block_isometry",
    "isometry_sweep",
    "jacobian_moments",
    "residual_blocks",
]
