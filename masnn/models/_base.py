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

from masnn.attention.gates import gate_internals, gate_of
from masnn.readout import mean_over_time


class SpikingClassifier(nn.Module, abc.ABC):
    """Base class: input checks, the forward composition and the streaming contract.

    Subclasses set ``num_classes``, ``timesteps``, ``input_size`` and ``args`` (the args
    dataclass they were built from) and implement :meth:`forward_features` and
    :meth:`forward_head_seq` (and, if needed, :meth:`head_final`).
    """

    num_classes: int
    timesteps: int
    input_size: tuple[int, int, int]
    args: object

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
        """Why this model cannot run one frame at a time, or ``None`` if it can.

        Decided from the built modules: every registered gate must be causal per step
        (:meth:`masnn.attention.GateKind.is_causal`); the first one that is not is named.
        """
        for name, mod in self.named_modules():
            kind = gate_of(mod)
            if kind is None or kind.is_causal(mod):
                continue
            if not kind.per_step:
                what = "temporal attention" if kind.slot == "t" else "a gate"
                why = f"is {what} with no per-step form ({kind.name!r} weighs all T frames)"
            elif not kind.causal_per_step:
                why = f"is not causal per step ({kind.name!r})"
            else:
                why = f"pools over all T steps of the window ({kind.name!r}, per_step=False)"
            return (
                f"module {name!r} ({type(mod).__name__}) {why}, so step t depends on future "
                "frames (non-causal); only per-step gates can stream (e.g. placement='paper' "
                "without temporal attention)"
            )
        return None

    def input_layer(self) -> str:
        """Name of the connection layer that takes the model input (paper Eq. 17: a MAC layer).

        The first ``nn.Conv*d`` / ``nn.Linear`` in module order outside the attention gates.
        """
        inside = gate_internals(self)
        for name, mod in self.named_modules():
            if (
                isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
                and id(mod) not in inside
            ):
                return name
        raise ValueError(f"{type(self).__name__} has no conv/linear layer")


def out_size(size: int, pools: Sequence[int]) -> int:
    """Spatial size after a chain of floor-mode poolings of the given factors."""
    for p in pools:
        size //= p
    return size
