"""Model helpers: default-resolution rules, neuron and FLOP counting by hooks.

Counting conventions (paper §6.1-6.2):

* neurons: every :class:`~masnn.neurons.LIF` output element per sample per step, at the
  resolution the LIF sees (post-pool for the three-layer net, pre-pool for Fang's net).
* FLOPs: ``k_h k_w h_out w_out c_in c_out / groups`` per conv (``h_out, w_out`` = the conv
  output, before any pooling) and ``in * out`` per linear layer, per sample per step;
  the layers inside attention gates (any kind in ``masnn.attention.GATES``) are left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from masnn.attention.gates import gate_internals
from masnn.neurons import LIF

#: Temporal reduction ratio of the official Gesture config (T = 60 -> hidden 12) [code].
DEFAULT_REDUCTION_T = 5


def reduction_t_rule(timesteps: int, base: int = DEFAULT_REDUCTION_T) -> int:
    """Default TA reduction ratio at ``T`` steps: ``min(base, T)``, so ``T // r_t >= 1``.

    At ``T >= 5`` this is the code's ``r_t = 5`` (hidden ``T // 5``: 12 at ``T = 60``,
    3 at ``T = 16``); below, the hidden width is 1.
    """
    return max(1, min(int(base), int(timesteps)))


def example_input(
    timesteps: int, batch_size: int, input_size: Sequence[int], *, seed: int = 0
) -> Tensor:
    """A deterministic non-negative random input ``(T, B, C, H, W)`` (event-count-like)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand((timesteps, batch_size, *input_size), generator=g)


def _input(model: nn.Module, x_or_shape: Tensor | Sequence[int]) -> Tensor:
    if isinstance(x_or_shape, Tensor):
        return x_or_shape
    dtype = next(model.parameters()).dtype
    return torch.rand(tuple(x_or_shape), dtype=dtype)


@torch.no_grad()
def count_neurons(
    model: nn.Module, x_or_shape: Tensor | Sequence[int], convention: str | None = None
) -> dict[str, int]:
    """Neurons per LIF layer (per sample, per step), measured with forward hooks.

    Args:
        model: any module containing :class:`~masnn.neurons.LIF` layers.
        x_or_shape: an input ``(T, B, C, H, W)`` or its shape (a random input is built).
        convention: ``"all_lif"`` (every LIF), ``"conv_only"`` (LIF layers with spatial
            output ``(T, B, C, H, W)``), or ``None`` = the model's registered
            ``default_cfg.neuron_count`` (``"all_lif"`` if it has none).

    Returns:
        ``{qualified LIF name: neurons}`` in call order; ``sum(...values())`` is the network's
        neuron count under ``convention``.
    """
    if convention is None:
        cfg = getattr(model, "default_cfg", None)
        convention = cfg.neuron_count if cfg is not None else "all_lif"
    if convention not in ("all_lif", "conv_only"):
        raise ValueError(f"unknown convention {convention!r}; allowed: ['all_lif', 'conv_only']")
    counts: dict[str, int] = {}
    handles = []
    for name, mod in model.named_modules():
        if isinstance(mod, LIF):

            def hook(m: nn.Module, args: object, out: object, name: str = name) -> None:
                spikes = out[0] if isinstance(out, tuple) else out
                if convention == "conv_only" and spikes.dim() != 5:
                    return
                t, b = spikes.shape[:2]
                counts[name] = counts.get(name, 0) + spikes.numel() // (t * b)

            handles.append(mod.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        model(_input(model, x_or_shape))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return counts


@torch.no_grad()
def layer_flops(model: nn.Module, x_or_shape: Tensor | Sequence[int]) -> dict[str, int]:
    """Dense MACs per conv / linear layer, per sample and per step (paper §6.2 ``FL``).

    Args:
        model: the network (attention sub-modules are skipped).
        x_or_shape: an input ``(T, B, C, H, W)`` or its shape.

    Returns:
        ``{qualified layer name: MACs}`` in call order.
    """
    inside = gate_internals(model)
    x = _input(model, x_or_shape)
    steps_batch = x.shape[0] * x.shape[1]
    flops: dict[str, int] = {}
    handles = []
    for name, mod in model.named_modules():
        if not isinstance(mod, (nn.Conv2d, nn.Linear)) or id(mod) in inside:
            continue

        def hook(m: nn.Module, args: tuple[Tensor, ...], out: Tensor, name: str = name) -> None:
            if isinstance(m, nn.Conv2d):
                kh, kw = m.kernel_size
                per = kh * kw * out.shape[-2] * out.shape[-1] * m.in_channels * m.out_channels
                per //= m.groups
                flops[name] = flops.get(name, 0) + per * (out.numel() // out[0].numel())
            else:
                rows = out.numel() // out.shape[-1]
                flops[name] = flops.get(name, 0) + m.in_features * m.out_features * rows

        handles.append(mod.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return {k: v // steps_batch for k, v in flops.items()}


class TimeSharedDropout(nn.Module):
    """Dropout whose mask is drawn once per sequence and shared by all ``T`` steps.

    As SpikingJelly's multi-step ``layer.Dropout`` in Fang et al.'s network: a unit dropped
    at one step is dropped at every step. Identity in eval mode.

    Shape:
        x_seq: ``(T, B, ...)``; output: same.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x_seq: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x_seq
        keep = torch.empty_like(x_seq[0]).bernoulli_(1.0 - self.p) / (1.0 - self.p)
        return x_seq * keep  # (T, B, ...) * (B, ...)

    def extra_repr(self) -> str:
        return f"p={self.p}"
