"""The common skeleton of the classifiers: features -> per-step head -> readout over time.

``forward(x_seq) = forward_head(forward_features(x_seq))`` with
``forward_head(f) = head_final(mean_over_time(forward_head_seq(f)))``. Everything up to
``forward_head_seq`` is evaluated step by step (its output at step ``t`` depends on frames
``<= t`` only, for causal attention), which is what :mod:`masnn.models.streaming` relies on.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from torch import Tensor, nn

from masnn.readout import mean_over_time

#: Attention names whose gates act per step on the membrane (causal within the window).
CAUSAL_ATTN = ("none", "ca", "sa", "csa")


class SpikingClassifier(nn.Module, abc.ABC):
    """Base class: input checks, the forward composition and the streaming contract.

    Subclasses set ``num_classes``, ``timesteps``, ``input_size``, ``attn``, ``placement`` and
    implement :meth:`forward_features` and :meth:`forward_head_seq` (and, if needed,
    :meth:`head_final`).
    """

    num_classes: int
    timesteps: int
    input_size: tuple[int, int, int]
    attn: str
    placement: str

    def _check_input(self, x_seq: Tensor) -> None:
        if x_seq.dim() != 5 or x_seq.shape[2] != self.input_size[0]:
            raise ValueError(
                f"{type(self).__name__} expects (T, B, {self.input_size[0]}, H, W) time-major "
                f"input, got shape {tuple(x_seq.shape)}"
            )

    @abc.abstractmethod
    def forward_features(self, x_seq: Tensor) -> Tensor:
        """The last spiking feature sequence (before the head).

        Shape:
            x_seq: ``(T, B, C, H, W)``; output: ``(T, B, ...)`` spikes.
        """

    @abc.abstractmethod
    def forward_head_seq(self, feat_seq: Tensor) -> Tensor:
        """Per-step head output, before the readout over time.

        Shape:
            feat_seq: ``(T, B, ...)``; output: ``(T, B, D)``.
        """

    def head_final(self, pooled: Tensor) -> Tensor:
        """Map the time-pooled head output to class scores (identity by default).

        Shape:
            pooled: ``(B, D)``; output: ``(B, K)``.
        """
        return pooled

    def forward_head(self, feat_seq: Tensor, pre_logits: bool = False) -> Tensor:
        """Head and readout: ``head_final(mean_over_time(forward_head_seq(feat_seq)))``.

        Args:
            feat_seq: the output of :meth:`forward_features`.
            pre_logits: return the time-pooled head output, before ``head_final``.

        Shape:
            feat_seq: ``(T, B, ...)``; output: ``(B, K)``.
        """
        pooled = mean_over_time(self.forward_head_seq(feat_seq))  # (B, D)
        return pooled if pre_logits else self.head_final(pooled)

    def forward(self, x_seq: Tensor) -> Tensor:
        """Classify a sequence; starts from zero membrane on every call.

        Shape:
            x_seq: ``(T, B, C, H, W)``; output: ``(B, K)``.
        """
        self._check_input(x_seq)
        return self.forward_head(self.forward_features(x_seq))

    def streaming_blocker(self) -> str | None:
        """Why this model cannot run one frame at a time, or ``None`` if it can."""
        if self.attn == "none":
            return None
        if self.attn not in CAUSAL_ATTN:
            return (
                f"attn={self.attn!r} contains temporal attention (TA), whose gate weighs all T "
                "frames of the window, so step t depends on future frames (non-causal); "
                f"streaming supports attn in {list(CAUSAL_ATTN)} with placement='paper'"
            )
        if self.placement != "paper":
            return (
                f"placement={self.placement!r} pools the CA/SA gates over all T steps of the "
                "window (official-code Conv-POST), so step t depends on future frames "
                "(non-causal); use placement='paper' (per-step gates on the membrane)"
            )
        return None


def out_size(size: int, pools: Sequence[int]) -> int:
    """Spatial size after a chain of floor-mode poolings of the given factors."""
    for p in pools:
        size //= p
    return size
