"""Surrogate-gradient spike functions, each paired with its smooth primitive.

A spike is ``Θ(x)`` with ``x = u - v_th``. The forward pass is the Heaviside step (``x >= 0``,
or ``x > 0`` with ``strict=True``); the backward pass is the derivative of a smooth
*primitive* ``g(x)`` that approximates the step:

=============  =========================================  ======================================
name           primitive g(x)                              g'(x)
=============  =========================================  ======================================
``rect``       ``clamp(x / w + 1/2, 0, 1)``                ``1/w`` if ``|x| < w/2`` else 0
``sigmoid``    ``sigmoid(alpha x)``                        ``alpha s (1 - s)``, ``s = g(x)``
``atan``       ``atan(pi/2 alpha x) / pi + 1/2``           ``alpha / 2 / (1 + (pi/2 alpha x)^2)``
=============  =========================================  ======================================

``rect`` with ``width = 0.5`` (height 2) is the official MA-SNN DVS surrogate; ``width = 1``
(height 1 on ``0 < u < 1`` around ``v_th = 0.5``) is the MS-ResNet one. ``sigmoid`` (alpha 4)
and ``atan`` (alpha 2) follow SpikingJelly's defaults. Hyper-parameters are plain floats, never
tensors, so they stay out of ``state_dict``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from masnn._registry import Registry


def _rect_primitive(x: Tensor, width: float) -> Tensor:
    return torch.clamp(x / width + 0.5, 0.0, 1.0)


def _rect_grad(x: Tensor, width: float) -> Tensor:
    return (x.abs() < width / 2).to(x.dtype) / width


def _sigmoid_primitive(x: Tensor, alpha: float) -> Tensor:
    return torch.sigmoid(alpha * x)


def _sigmoid_grad(x: Tensor, alpha: float) -> Tensor:
    s = torch.sigmoid(alpha * x)
    return alpha * s * (1.0 - s)


def _atan_primitive(x: Tensor, alpha: float) -> Tensor:
    return torch.atan(math.pi / 2 * alpha * x) / math.pi + 0.5


def _atan_grad(x: Tensor, alpha: float) -> Tensor:
    return (alpha / 2) / (1.0 + (math.pi / 2 * alpha * x) ** 2)


class _SpikeFn(torch.autograd.Function):
    """Heaviside forward, ``grad_fn(x, param)`` backward."""

    @staticmethod
    def forward(
        x: Tensor, grad_fn: Callable[[Tensor, float], Tensor], param: float, strict: bool
    ) -> Tensor:
        return (x > 0).to(x.dtype) if strict else (x >= 0).to(x.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, grad_fn, param, _ = inputs
        ctx.save_for_backward(x)
        ctx.grad_fn, ctx.param = grad_fn, param

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        (x,) = ctx.saved_tensors
        return grad_out * ctx.grad_fn(x, ctx.param), None, None, None


@dataclass(frozen=True)
class SurrogateKind:
    """A registered surrogate family: its primitive, its closed-form derivative, its parameter."""

    primitive: Callable[[Tensor, float], Tensor]
    grad: Callable[[Tensor, float], Tensor]
    param_name: str
    default: float


SURROGATES: Registry[SurrogateKind] = Registry("surrogate")
SURROGATES.add("rect", SurrogateKind(_rect_primitive, _rect_grad, "width", 0.5))
SURROGATES.add("sigmoid", SurrogateKind(_sigmoid_primitive, _sigmoid_grad, "alpha", 4.0))
SURROGATES.add("atan", SurrogateKind(_atan_primitive, _atan_grad, "alpha", 2.0))


@dataclass(frozen=True)
class Surrogate:
    """A spike function: Heaviside forward, surrogate backward.

    Args:
        name: one of ``SURROGATES.names()`` (``"rect"``, ``"sigmoid"``, ``"atan"``).
        param: the family's parameter (``width`` for rect, ``alpha`` otherwise); ``None`` means
            the family default.
        strict: fire on ``x > 0`` instead of ``x >= 0``.

    Example:
        >>> sg = Surrogate("rect", 0.5)
        >>> sg(torch.tensor([-0.1, 0.0, 0.2])).tolist()
        [0.0, 1.0, 1.0]
    """

    name: str = "rect"
    param: float | None = None
    strict: bool = False
    kind: SurrogateKind = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        kind = SURROGATES.get(self.name)
        param = kind.default if self.param is None else float(self.param)
        if not math.isfinite(param) or param <= 0:
            raise ValueError(f"surrogate {self.name!r}: {kind.param_name} must be > 0, got {param}")
        object.__setattr__(self, "param", param)
        object.__setattr__(self, "kind", kind)

    def __deepcopy__(self, memo: dict[int, Any]) -> Surrogate:
        # immutable: a copied model shares it, so backends still recognise the registered kind
        return self

    def __call__(self, x: Tensor) -> Tensor:
        """Spikes ``Θ(x)`` with the surrogate gradient."""
        return _SpikeFn.apply(x, self.kind.grad, self.param, self.strict)

    def primitive(self, x: Tensor) -> Tensor:
        """The smooth function whose derivative is the surrogate gradient."""
        return self.kind.primitive(x, self.param)  # type: ignore[arg-type]

    def grad(self, x: Tensor) -> Tensor:
        """The closed-form surrogate gradient ``g'(x)`` used in the backward pass."""
        return self.kind.grad(x, self.param)  # type: ignore[arg-type]


def make_surrogate(spec: str | Surrogate | None, *, strict: bool = False, **kw: float) -> Surrogate:
    """Build a :class:`Surrogate` from a name (``"rect"``, ``"atan:2.0"``) or pass one through."""
    if isinstance(spec, Surrogate):
        return spec
    if spec is None:
        spec = "rect"
    if not isinstance(spec, str):
        raise TypeError(f"surrogate must be a name or a Surrogate, got {type(spec).__name__}")
    name, _, p = spec.partition(":")
    if name not in SURROGATES:
        SURROGATES.get(name)  # raises KeyError with the allowed names
    param = float(p) if p else kw.get(SURROGATES.get(name).param_name)
    return Surrogate(name, param, strict)
