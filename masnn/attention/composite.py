r"""Ordered composition of the T, C and S gates, at the sequence level or on the membrane.

Paper: `Attention Spiking Neural Networks` (Eq. 14) - https://arxiv.org/abs/2209.13929

The order is always T -> C -> S, each gate seeing the tensor the previous one refined:

.. math::

    Y = g_t(X) \odot X, \quad Y \leftarrow g_c(Y) \odot Y, \quad Y \leftarrow g_s(Y) \odot Y,
    \quad [\,Y \leftarrow \mathrm{ReLU}(Y)\,]

Two containers, because the two kinds of location see different tensors:

* :class:`MultiDimAttention` is a sequence module ``(T, B, ...) -> same`` (locations
  ``conv_pre``, ``conv_post`` and ``residual``). ``relu=True`` adds the official code's
  trailing ReLU (not in the paper).
* :class:`MembraneAttention` is the per-step gate of the ``membrane`` location: the LIF loop
  calls it on ``U[t] = H[t-1] + X[t]`` before firing, and the gated ``U`` is what leaks on
  (see :mod:`masnn.neurons.functional`). It holds only C and S gates (TA cannot act on a
  membrane that has already been integrated).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from masnn.attention.channel import ChannelAttention, EfficientChannelAttention, SimAM
from masnn.attention.pooled import fused_pooled_attention, reference_chain
from masnn.attention.spatial import SpatialAttention
from masnn.attention.temporal import TemporalAttention
from masnn.neurons.backends import NotSupportedByBackend, reference_forced
from masnn.neurons.backends.membrane import FusedMembraneGate
from masnn.neurons.lif import at_least_fp32


class MultiDimAttention(nn.Module):
    """Sequence-level attention: ``ta`` -> ``ca`` -> ``sa`` -> optional ReLU.

    Args:
        ta: a temporal gate or ``None``.
        ca: a channel gate (CBAM, ECA or SimAM) or ``None``.
        sa: a spatial gate or ``None``.
        relu: apply ``ReLU`` after the gates (official code; ``attn="none", attn_relu=True``
            is the ReLU-only control).
        backend: the model's neuron backend name: ``"torch"`` runs the reference gates (each
            gate's own forward), any other the fused CPU kernel where it applies
            (:mod:`masnn.attention.pooled`: TA, and CA / SA pooled over the window), else the
            reference.

    Shape:
        x_seq: ``(T, B, C, H, W)`` (or ``(T, B, F)`` with only ``ta``); output: same shape and
        dtype (float32 for half-precision input: gates are computed in fp32, autocast or not).
    """

    def __init__(
        self,
        ta: nn.Module | None = None,
        ca: nn.Module | None = None,
        sa: nn.Module | None = None,
        relu: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.ta, self.ca, self.sa = ta, ca, sa
        self.relu = nn.ReLU() if relu else None
        if not isinstance(backend, str):
            raise TypeError(f"backend must be a str, got {backend!r}")
        self.backend = backend

    def forward(self, x_seq: Tensor) -> Tensor:
        """Apply the gates in T -> C -> S order, then the optional ReLU."""
        spatial = self.ca is not None or self.sa is not None
        if x_seq.dim() != 5 and (spatial or x_seq.dim() != 3):
            raise ValueError(
                "MultiDimAttention expects a (T, B, C, H, W) sequence"
                + ("" if spatial else " or (T, B, F)")
                + f", got shape {tuple(x_seq.shape)}"
            )
        # Gates run in fp32 even under autocast (half-precision input is upcast once, here).
        with torch.autocast(x_seq.device.type, enabled=False):
            out = at_least_fp32(x_seq)
            # the one dispatch site of the fused pooled gates (None: the reference runs)
            if self.backend != "torch" and not (
                torch.compiler.is_compiling() or torch.jit.is_tracing() or reference_forced()
            ):
                fused = fused_pooled_attention(
                    out, self.ta, self.ca, self.sa, self.relu is not None
                )
                if fused is not None:
                    return fused
            return reference_chain(out, (self.ta, self.ca, self.sa), self.relu)

    def extra_repr(self) -> str:
        return "" if self.backend == "auto" else f"backend={self.backend!r}"

    def fused_frame_gate(self) -> TemporalAttention:
        """The TA gate, for kernels that scale each frame's current by it (the event-driven
        engine, :mod:`masnn.inference.sparse`): only a lone :class:`TemporalAttention`
        (``X <- g_t(X) X``, the ``paper`` placement's ``conv_post``) is one weight per frame.

        Raises:
            NotSupportedByBackend: channel / spatial gates or the ReLU on the current, or a
                TA subclass / plug-in.
        """
        if self.ca is not None or self.sa is not None or self.relu is not None:
            raise NotSupportedByBackend(
                "fused current gate: only a lone TA is one weight per frame (C/S gates or the "
                "ReLU on the current run in torch)"
            )
        if type(self.ta) is not TemporalAttention:
            raise NotSupportedByBackend(
                f"fused current gate: {type(self.ta).__name__} has no per-frame form"
            )
        return self.ta


class MembraneAttention(nn.Module):
    """Per-step membrane gate (paper Eq. 14): ``ca`` -> ``sa`` on ``U[t]``.

    Pass it as ``LIF(membrane_gate=...)``; :class:`masnn.layers.AttnLIF` does this for you.
    Both gates must be built with ``per_step=True``.

    Args:
        ca: a channel gate or ``None``.
        sa: a spatial gate or ``None``.

    Shape:
        u: one step ``(B, C, H, W)``; output: same shape and dtype.
    """

    def __init__(self, ca: nn.Module | None = None, sa: nn.Module | None = None) -> None:
        super().__init__()
        for g in (ca, sa):
            if g is not None and not getattr(g, "per_step", True):
                raise ValueError("membrane gates are per step; build them with per_step=True")
        self.ca, self.sa = ca, sa

    def fused_gate(self) -> FusedMembraneGate:
        """The weights the fused CPU kernel needs (:mod:`masnn.neurons.backends.membrane`).

        Raises:
            NotSupportedByBackend: a gate the kernel does not implement exactly (a plug-in
                or subclass, a CA MLP / ECA conv / SA conv changed from the built form); the
                LIF then runs the reference loop.
        """
        ca: tuple[Tensor, Tensor] | None = None
        sa: Tensor | None = None
        eca: Tensor | None = None
        simam: float | None = None
        if type(self.ca) is SimAM:
            simam = self.ca.lam
        elif type(self.ca) is EfficientChannelAttention and _plain_conv1d(self.ca.conv):
            eca = self.ca.conv.weight
            assert isinstance(eca, Tensor)
        elif self.ca is not None:
            if type(self.ca) is not ChannelAttention or not _plain_mlp(self.ca.mlp):
                raise NotSupportedByBackend(
                    f"fused LIF: membrane gate {type(self.ca).__name__} has no fused kernel"
                )
            w0, w1 = self.ca.mlp[0].weight, self.ca.mlp[2].weight
            assert isinstance(w0, Tensor) and isinstance(w1, Tensor)
            ca = (w0, w1)
        if self.sa is not None:
            if type(self.sa) is not SpatialAttention or not _plain_conv(self.sa.conv):
                raise NotSupportedByBackend(
                    f"fused LIF: membrane gate {type(self.sa).__name__} has no fused kernel"
                )
            sa = self.sa.conv.weight
            assert isinstance(sa, Tensor)
        if not (self.ca is None or type(self.ca.gate) is nn.Sigmoid) or not (
            self.sa is None or type(self.sa.gate) is nn.Sigmoid
        ):
            raise NotSupportedByBackend("fused LIF: a membrane gate's sigmoid was replaced")
        return FusedMembraneGate(ca, sa, eca, simam)

    def forward(self, u: Tensor) -> Tensor:
        """Gate one step of membrane potential (see the class docstring)."""
        if u.dim() != 4:
            raise ValueError(
                f"MembraneAttention gates one step (B, C, H, W), got shape {tuple(u.shape)}"
            )
        for gate in (self.ca, self.sa):
            if gate is not None:
                u = gate(u)  # (B, C, H, W)
        return u


def _plain_mlp(mlp: nn.Module) -> bool:
    """``Linear(C, h, bias=False) -> ReLU -> Linear(h, C, bias=False)``, as built."""
    return (
        type(mlp) is nn.Sequential
        and len(mlp) == 3
        and type(mlp[0]) is nn.Linear
        and type(mlp[1]) is nn.ReLU
        and type(mlp[2]) is nn.Linear
        and mlp[0].bias is None
        and mlp[2].bias is None
    )


def _plain_conv(conv: nn.Module) -> bool:
    """``Conv2d(2, 1, k, padding=k // 2, bias=False)``, stride 1, zero padding, as built."""
    if type(conv) is not nn.Conv2d:
        return False
    k = conv.kernel_size
    return (
        conv.bias is None
        and k[0] == k[1]
        and k[0] % 2 == 1
        and conv.padding == (k[0] // 2, k[0] // 2)
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and conv.in_channels == 2
        and conv.out_channels == 1
    )


def _plain_conv1d(conv: nn.Module) -> bool:
    """ECA's ``Conv1d(1, 1, k, padding=k // 2, bias=False)``, stride 1, zero padding."""
    if type(conv) is not nn.Conv1d:
        return False
    k = conv.kernel_size[0]
    return (
        conv.bias is None
        and k % 2 == 1
        and conv.padding == (k // 2,)
        and conv.stride == (1,)
        and conv.dilation == (1,)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and conv.in_channels == 1
        and conv.out_channels == 1
    )
