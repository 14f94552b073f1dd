"""``BatchNorm2d -> LIF`` as one op where that is exact (:func:`fused_bn_lif`).

In ``Conv -> BN -> LIF`` (a :class:`~masnn.layers.SpikingConvBlock` without a pool before the
neuron) the fused CPU LIF kernel applies BN's per-channel affine map as it reads its input and
computes BN's backward reductions in its own backward pass
(:mod:`masnn.neurons.backends.bn_lif`): BN's full-size output and the separate reduction pass
over the LIF's gradient disappear. Everything else stays on the plain modules; the reason is
logged once (INFO, logger ``masnn.layers``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from masnn.layers.pool import update_running_stats
from masnn.neurons.backends import NotSupportedByBackend
from masnn.neurons.backends.bn_lif import BNArgs, bn_lif_unsupported, lif_bn_cpp
from masnn.neurons.backends.kernel_build import log_once
from masnn.neurons.backends.membrane import has_hooks
from masnn.neurons.lif import LIF

if TYPE_CHECKING:
    from masnn.layers.blocks import AttnLIF

_log = logging.getLogger("masnn.layers")


def _unfusable(y_seq: Tensor, bn: nn.Module, neuron: AttnLIF) -> str | None:
    """Why ``neuron(bn(y_seq))`` cannot run fused (``None``: it can)."""
    if type(bn) is not nn.BatchNorm2d:
        return f"{type(bn).__name__} is not a plain nn.BatchNorm2d"
    lif = neuron.lif
    if type(lif) is not LIF:
        return f"{type(lif).__name__} is not a plain masnn LIF"
    if neuron.post_attn is not None:
        return "conv_post gates (or ReLU) act between BatchNorm and the neuron"
    if lif.membrane_gate is not None:
        return "membrane gates run in the gated kernel"
    if y_seq.dtype not in (torch.float32, torch.float64):
        return f"dtype {y_seq.dtype}"
    if torch.is_autocast_enabled(y_seq.device.type):
        return "autocast is enabled"
    if torch.jit.is_scripting() or torch.onnx.is_in_onnx_export():
        return "scripting or exporting"
    if has_hooks(bn) or has_hooks(neuron):
        return "a hook on the BatchNorm or the neuron (hooks see the modules' outputs)"
    batch_stats = bn.training or bn.running_mean is None or bn.running_var is None
    if batch_stats and y_seq.numel() // y_seq.shape[2] <= 1:
        return "one value per channel (nn.BatchNorm2d raises)"
    return bn_lif_unsupported(lif.backend, y_seq)


def fused_bn_lif(y_seq: Tensor, bn: nn.BatchNorm2d, neuron: AttnLIF) -> Tensor | None:
    """``neuron(seq_apply(bn, y_seq))`` as one op when that is exact to float rounding; else
    ``None`` (the caller runs the two modules).

    Fused: ``bn`` a plain ``nn.BatchNorm2d`` (training or eval; its running statistics are
    updated as the module does: momentum or the cumulative average, unbiased variance), a
    neuron without ``conv_post`` or membrane gates whose backend runs the fused CPU kernel
    (``"auto"`` on CPU, ``"cpp"``), float32/float64 input, no autocast, no hook on either
    module (nor a global one), not tracing, compiling, scripting or exporting.

    Args:
        y_seq: the conv output ``(T, B, C, H, W)``.
        bn: the block's BatchNorm (statistics over ``T * B``, ``H``, ``W``).
        neuron: the block's :class:`~masnn.layers.AttnLIF`.

    Returns:
        The spikes ``(T, B, C, H, W)``, or ``None``.
    """
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return None  # traced graphs record the modules' own operations (no log call traced)
    reason = _unfusable(y_seq, bn, neuron)
    if reason is not None:
        log_once(_log, logging.INFO, f"BatchNorm + LIF not fused: {reason}")
        return None
    lif = neuron.lif
    batch_stats = bn.training or bn.running_mean is None or bn.running_var is None
    args = BNArgs(bn.weight, bn.bias, bn.eps, batch_stats, bn.running_mean, bn.running_var)
    try:
        spikes, _, mean, var = lif_bn_cpp(y_seq, None, lif.params(), lif.surrogate, args)
    except NotSupportedByBackend as exc:  # e.g. a preset parameter the kernel does not take
        log_once(_log, logging.INFO, f"BatchNorm + LIF not fused: {exc}")
        return None
    if bn.training:
        assert mean is not None and var is not None
        update_running_stats(bn, mean, var, y_seq.numel() // y_seq.shape[2])
    return spikes
