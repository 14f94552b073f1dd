"""The inference fast path: ``masnn.inference.fast(model)``.

A copy of the model, prepared once for evaluation:

* every ``conv -> BatchNorm`` (and ``linear -> BatchNorm1d``) pair is folded into one conv with
  the BN's running statistics (``W' = W gamma / sqrt(var + eps)``, ``b' = (b - mean) gamma /
  sqrt(var + eps) + beta``): one pass over each layer's output instead of two;
* every LIF runs the ``"auto"`` backend (the fused kernel, which under no-grad stores no
  membrane history: spikes and the running membrane only);
* no autograd state: parameters are frozen and ``forward`` runs under
  ``torch.inference_mode`` (no graph, no saved tensors, version counters off), so each layer's
  spikes are freed as soon as the next layer has consumed them.

The forward contract is the model's eval forward (same input, same output shape); outputs
equal it up to the rounding of the folded weights (exactly, in float64, away from threshold;
see ``tests/inference``).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from masnn.layers.blocks import SpikingConvBlock, SpikingLinearBlock
from masnn.neurons import LIF, NEURON_BACKENDS


@torch.no_grad()
def fold_bn(layer: nn.Conv2d | nn.Linear, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Fold an eval-mode BN that follows ``layer`` into ``layer``'s weight and bias (in place)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fold_bn: the BatchNorm has no running statistics (track_running_stats)")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    w = layer.weight
    layer.weight.copy_(w * scale.reshape(-1, *([1] * (w.dim() - 1))).to(w.dtype))
    if layer.bias is None:
        layer.bias = nn.Parameter(torch.zeros(w.shape[0], dtype=w.dtype, device=w.device))
    layer.bias.copy_((layer.bias * scale + shift).to(w.dtype))


def _fold_sequential(seq: nn.Sequential) -> int:
    n, mods = 0, list(seq._modules.items())
    for (_, a), (name_b, b) in zip(mods, mods[1:]):
        if isinstance(a, (nn.Conv2d, nn.Linear)) and isinstance(b, nn.modules.batchnorm._BatchNorm):
            fold_bn(a, b)
            seq._modules[name_b] = nn.Identity()
            n += 1
    return n


def fold_all_bn(model: nn.Module) -> int:
    """Fold every known ``conv -> BN`` pair of ``model`` in place; returns how many were folded.

    Known pairs: :class:`SpikingConvBlock` (``conv``, ``bn``), :class:`SpikingLinearBlock`
    (``fc``, ``bn``), MS-ResNet blocks (``conv1``/``bn1``, ``conv2``/``bn2``) and consecutive
    entries of any ``nn.Sequential``. Other BNs stay as they are (still correct).
    """
    from masnn.layers.seq import SeqToBatch

    n = 0
    for m in list(model.modules()):
        if isinstance(m, SpikingConvBlock):
            fold_bn(m.conv, m.bn)
            m.bn = nn.Identity()  # type: ignore[assignment]  # BN folded into the conv
            n += 1
        elif isinstance(m, SpikingLinearBlock) and m.bn is not None:
            fold_bn(m.fc, m.bn)
            m.bn = None
            n += 1
        elif isinstance(m, nn.Sequential):
            n += _fold_sequential(m)
        for i in (1, 2):
            conv, bn = getattr(m, f"conv{i}", None), getattr(m, f"bn{i}", None)
            if isinstance(conv, SeqToBatch) and isinstance(bn, SeqToBatch):
                c, b = conv.module, bn.module
                if isinstance(c, nn.Conv2d) and isinstance(b, nn.modules.batchnorm._BatchNorm):
                    fold_bn(c, b)
                    setattr(m, f"bn{i}", nn.Identity())
                    n += 1
    return n


class InferenceOnly(nn.Module):
    """An inference engine around ``self.model``: it refuses training mode and forwards
    attribute lookups it does not have to the wrapped model."""

    entry = "masnn.inference"

    def train(self, mode: bool = True) -> InferenceOnly:
        if mode:
            raise RuntimeError(f"{self.entry}(model) is for inference only")
        return super().train(False)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["model"], name)


class FastInference(InferenceOnly):
    """The prepared copy returned by :func:`fast`; call it like the model in eval mode."""

    entry = "masnn.inference.fast"

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.folded = fold_all_bn(model)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.inference_mode():
            return self.model(*args, **kwargs)


def fast(model: nn.Module) -> FastInference:
    """An inference-only copy of ``model``: BN folded into convs, fused LIF, no autograd state.

    Args:
        model: a masnn model (any module; its BNs use their running statistics).

    Returns:
        A :class:`FastInference` module with the model's forward contract (eval mode). The
        original model is not modified.

    Example:
        >>> from masnn import create_model
        >>> m = create_model("ma_snn3_tiny", attn="none", timesteps=2)
        >>> fm = fast(m)
        >>> fm(torch.zeros(2, 1, 2, 32, 32)).shape
        torch.Size([1, 11])
    """
    cfg = getattr(model, "default_cfg", None)  # immutable registry metadata: shared, not copied
    m = copy.deepcopy(model, memo={} if cfg is None else {id(cfg): cfg}).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    auto = NEURON_BACKENDS.get("auto")
    for mod in m.modules():
        if isinstance(mod, LIF):
            mod.backend, mod._impl = "auto", auto
    return FastInference(m).eval()
