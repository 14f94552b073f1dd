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

from masnn.neurons.lif import at_least_fp32


class MultiDimAttention(nn.Module):
    """Sequence-level attention: ``ta`` -> ``ca`` -> ``sa`` -> optional ReLU.

    Args:
        ta: a temporal gate or ``None``.
        ca: a channel gate (CBAM, ECA or SimAM) or ``None``.
        sa: a spatial gate or ``None``.
        relu: apply ``ReLU`` after the gates (official code; ``attn="none", attn_relu=True``
            is the ReLU-only control).

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
    ) -> None:
        super().__init__()
        self.ta, self.ca, self.sa = ta, ca, sa
        self.relu = nn.ReLU() if relu else None

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
            for gate in (self.ta, self.ca, self.sa):
                if gate is not None:
                    out = gate(out)  # (T, B, C, H, W)
            return out if self.relu is None else self.relu(out)


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
