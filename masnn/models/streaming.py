"""Exact streaming inference: one frame in, the readout so far out, O(neurons) explicit state.

A model whose every layer is causal per step (conv, BN in eval mode, pooling, LIF, and gates
that pool one frame at a time, e.g. ``placement="paper"`` CA/SA/ECA/SimAM at any location) can be
run one frame at a time; the model decides it from its built modules
(:meth:`~masnn.models._base.SpikingClassifier.streaming_blocker`, reading the gate registry).
:class:`StreamingModel` runs the model's own ``forward_features`` / ``forward_head_seq`` on a
one-step sequence and threads each :class:`~masnn.neurons.LIF` layer's membrane through
explicit state (forward hooks pass ``state=`` in and take the final membrane out), so there is
no second copy of any layer. The state is one membrane tensor per LIF layer plus the running
sum of the per-step head output; per-step cost does not depend on ``t``.

After ``T`` steps the output equals ``model(x_seq)`` in eval mode: identical spikes, and the
same readout ``head_final(sum_t / T)``.

Models with temporal attention (TA weighs all ``T`` frames of the window) or with gates pooled
over all ``T`` (the official code's placement) are not causal and are refused, naming the module.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from masnn.neurons import LIF


class StreamState(NamedTuple):
    """Explicit streaming state.

    Attributes:
        v: post-reset membrane of every LIF layer, in ``named_modules`` order, each
            ``(B, *neuron_shape)``.
        acc: running sum over steps of the per-step head output, ``(B, D)``.
        t: number of frames consumed.
    """

    v: tuple[Tensor, ...]
    acc: Tensor
    t: int


class StreamingModel:
    """Step-by-step inference over a causal :class:`~masnn.models._base.SpikingClassifier`.

    Args:
        model: a model from ``masnn.create_model``; it must be in eval mode when stepping.

    Raises:
        ValueError: the model's attention is not causal (the message says why), or the model
            has no LIF layer / no streaming contract.

    Example:
        >>> import torch, masnn
        >>> m = masnn.create_model("ma_snn3_tiny", attn="csa", timesteps=3).eval()
        >>> s = StreamingModel(m)
        >>> x = torch.rand(3, 2, 2, 32, 32)
        >>> state = s.init_state(2, (2, 32, 32))
        >>> for frame in x:
        ...     out, state = s.step(frame, state)
        >>> torch.allclose(out, m(x), atol=1e-6)
        True
    """

    def __init__(self, model: nn.Module) -> None:
        blocker = getattr(model, "streaming_blocker", None)
        if blocker is None:
            raise ValueError(
                f"{type(model).__name__} has no streaming contract (forward_features, "
                "forward_head_seq, head_final); build models with masnn.create_model"
            )
        reason = blocker()
        if reason is not None:
            raise ValueError(f"{type(model).__name__} cannot stream: {reason}")
        self.model = model
        self.lifs: tuple[tuple[str, LIF], ...] = tuple(
            (n, m) for n, m in model.named_modules() if isinstance(m, LIF)
        )
        if not self.lifs:
            raise ValueError(f"{type(model).__name__} has no LIF layer to stream")

    def _run(self, frame: Tensor, v_in: tuple[Tensor | None, ...]) -> tuple[Tensor, list[Tensor]]:
        if self.model.training:
            raise ValueError(
                "streaming equals the sequence forward only in eval mode (BatchNorm running "
                "statistics, no dropout); call model.eval() first"
            )
        if frame.dim() != 4:
            raise ValueError(f"step() takes one frame (B, C, H, W), got {tuple(frame.shape)}")
        v_out: list[Tensor | None] = [None] * len(self.lifs)
        calls = [0] * len(self.lifs)
        handles = []
        for i, (_, lif) in enumerate(self.lifs):

            def pre(mod: nn.Module, args: tuple, kwargs: dict, i: int = i) -> tuple:
                calls[i] += 1
                return args[:1], {**kwargs, "state": v_in[i], "return_state": True}

            def post(mod: nn.Module, args: tuple, kwargs: dict, out: tuple, i: int = i) -> Tensor:
                spikes, v = out
                v_out[i] = v
                return spikes

            handles.append(lif.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(lif.register_forward_hook(post, with_kwargs=True))
        try:
            x_seq = frame.unsqueeze(0)  # (1, B, C, H, W)
            feat = self.model.forward_features(x_seq)  # (1, B, ...)
            head = self.model.forward_head_seq(feat)[0]  # (B, D)
        finally:
            for h in handles:
                h.remove()
        bad = [self.lifs[i][0] for i, c in enumerate(calls) if c != 1]
        if bad:
            raise RuntimeError(f"LIF layers {bad} were not called exactly once per step")
        return head, v_out  # type: ignore[return-value]

    @torch.no_grad()
    def init_state(
        self, batch_size: int, frame_size: tuple[int, int, int] | None = None
    ) -> StreamState:
        """Zero state for ``batch_size`` streams of frames of ``frame_size`` ``(C, H, W)``.

        Shapes are found by one probe step on a zero frame (default size: the model's
        ``input_size``).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        size = tuple(frame_size or self.model.input_size)
        p = next(self.model.parameters())
        frame = torch.zeros((batch_size, *size), dtype=p.dtype, device=p.device)
        head, v = self._run(frame, (None,) * len(self.lifs))
        return StreamState(tuple(torch.zeros_like(t) for t in v), torch.zeros_like(head), 0)

    def step(self, frame: Tensor, state: StreamState) -> tuple[Tensor, StreamState]:
        """Consume one frame.

        Args:
            frame: the next frame of every stream.
            state: from :meth:`init_state` or the previous :meth:`step`.

        Returns:
            ``(output, state)``: the readout over the frames seen so far (after ``T`` frames it
            equals ``model(x_seq)``) and the new state.

        Shape:
            frame: ``(B, C, H, W)``; output: ``(B, K)``.
        """
        head, v = self._run(frame, state.v)
        acc = state.acc + head
        t = state.t + 1
        return self.model.head_final(acc / t), StreamState(tuple(v), acc, t)

    def run(self, x_seq: Tensor) -> Tensor:
        """Stream a whole sequence; the per-step outputs, stacked.

        Shape:
            x_seq: ``(T, B, C, H, W)``; output: ``(T, B, K)``.
        """
        state = self.init_state(x_seq.shape[1], tuple(x_seq.shape[2:]))
        outs = []
        for frame in x_seq:  # (B, C, H, W)
            out, state = self.step(frame, state)
            outs.append(out)
        return torch.stack(outs)  # (T, B, K)
