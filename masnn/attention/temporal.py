r"""Temporal attention (TA, "when"): one weight per time step, from the whole window.

Paper: `Attention Spiking Neural Networks` (Eq. 6-8) - https://arxiv.org/abs/2209.13929

.. math::

    g_t(X) = \sigma\big(W_1\,\mathrm{ReLU}(W_0\,\mathrm{AvgPool}(X))
             + W_1\,\mathrm{ReLU}(W_0\,\mathrm{MaxPool}(X))\big) \in (0, 1)^{T},
    \qquad X_{TA} = g_t(X) \odot X

The pools run over every axis but time (``C, H, W``, or ``F`` for fully connected layers),
per sample; ``W_0 \in R^{h \times T}``, ``W_1 \in R^{T \times h}``, ``h = max(1, T // r_t)``,
no biases. TA needs all ``T`` frames before step 0 can be weighted, so it is **not causal**
within the window; its weights are bound to the training ``T``.
"""

from __future__ import annotations

from torch import Tensor, nn

from masnn.attention.checks import bottleneck_mlp, positive_int
from masnn.attention.gates import GateKind, mlp_hidden, register_gate


class TemporalAttention(nn.Module):
    """CBAM-style gate over the time axis (equations in the module docstring).

    Args:
        timesteps: ``T``, the window length the MLP is built for.
        reduction: ``r_t``; the hidden size is ``max(1, T // r_t)``.

    The gate is the output of the submodule ``gate`` (a sigmoid), shaped ``(T, B, 1, ...)``;
    a forward hook on it observes the TA weights over time.

    Shape:
        x_seq: ``(T, B, C, H, W)`` or ``(T, B, F)``; output: same shape and dtype.
    """

    def __init__(self, timesteps: int, reduction: int = 5) -> None:
        super().__init__()
        self.timesteps = positive_int("timesteps", timesteps)
        self.reduction = positive_int("reduction_t", reduction)
        self.mlp = bottleneck_mlp(self.timesteps, self.reduction)
        self.gate = nn.Sigmoid()

    def forward(self, x_seq: Tensor) -> Tensor:
        """Weight every frame by its TA gate (see the class docstring)."""
        if x_seq.dim() < 3:
            raise ValueError(
                "TemporalAttention expects (T, B, C, H, W) or (T, B, F), "
                f"got shape {tuple(x_seq.shape)}"
            )
        if x_seq.shape[0] != self.timesteps:
            raise ValueError(
                f"TemporalAttention was built for T={self.timesteps} time steps, "
                f"got T={x_seq.shape[0]} (input shape {tuple(x_seq.shape)})"
            )
        t, b = x_seq.shape[:2]
        flat = x_seq.reshape(t, b, -1)  # (T, B, C*H*W)
        g = self.frame_weights(flat.mean(dim=2), flat.amax(dim=2), x_seq.dim() - 2)
        return g * x_seq  # (T, B, 1, 1, 1) * (T, B, C, H, W)

    def frame_weights(self, avg: Tensor, mx: Tensor, feature_dims: int = 0) -> Tensor:
        """The gate ``g_t`` from each frame's pools (what :meth:`forward` multiplies by).

        The event-driven engine (:mod:`masnn.inference.sparse`) computes the pools inside its
        kernel and scales each frame's current by this gate there.

        Args:
            avg: ``(T, B)`` mean of every frame over all axes but time.
            mx: ``(T, B)`` max of every frame over the same axes.
            feature_dims: trailing singleton axes of the result (``x.dim() - 2``).

        Returns:
            ``(T, B, 1, ...)`` weights in ``(0, 1)``.
        """
        if avg.shape != mx.shape or avg.dim() != 2 or avg.shape[0] != self.timesteps:
            raise ValueError(
                f"TemporalAttention.frame_weights: pools must be (T={self.timesteps}, B), got "
                f"{tuple(avg.shape)} and {tuple(mx.shape)}"
            )
        t, b = avg.shape
        logits = (self.mlp(avg.transpose(0, 1)) + self.mlp(mx.transpose(0, 1))).transpose(0, 1)
        return self.gate(logits.reshape(t, b, *([1] * feature_dims)))  # (T, B, 1, ...)

    def extra_repr(self) -> str:
        return f"timesteps={self.timesteps}, reduction={self.reduction}"


def _ta_macs(module: TemporalAttention, x: Tensor) -> dict[str, float]:
    t, b = x.shape[:2]
    feat = x[0, 0].numel()
    h = mlp_hidden(module)
    paper = 2 * t * h  # one pass of the MLP per sample (the gate pools the whole window)
    full = 2 * t * feat + 2 * (2 * t * h) + 2 * t + t * feat
    return {"paper_table5": b * paper, "full": b * full}


register_gate(
    GateKind(
        "ta",
        "t",
        TemporalAttention,
        lambda c, t, hp, ps: TemporalAttention(t, hp.reduction_t),
        _ta_macs,
        per_step=False,  # weighs all T frames: no per-step form, never causal
        causal_per_step=False,
    )
)
