r"""Spiking layers with attention: input current -> (attention) -> LIF -> spikes.

Paper: `Attention Spiking Neural Networks` (Eq. 3-5, 14) - https://arxiv.org/abs/2209.13929

* :class:`AttnLIF`: the neuron layer. ``X -> [conv_post gates, ReLU] -> LIF(membrane gates)``.
* :class:`SpikingConvBlock`: ``[conv_pre gates] -> Conv2d -> BatchNorm2d -> [pool] -> AttnLIF
  -> [pool]``, BN statistics shared over time (folded ``T*B``).
* :class:`SpikingLinearBlock`: ``[conv_pre TA] -> Linear -> BatchNorm1d -> AttnLIF(TA only)``,
  as the official FC layers.

Every block takes ``attn=`` (an :class:`~masnn.attention.AttnCfg`, or the
:class:`~masnn.attention.AttnPlan` it resolves to; resolved once, here) and ``neuron=`` (a
:class:`~masnn.neurons.NeuronSpec`); see ``docs/placements.md``.
"""

from __future__ import annotations

from torch import Tensor, nn

from masnn.attention.checks import positive_int
from masnn.attention.plan import AttnCfg, AttnPlan, as_plan
from masnn.layers.bn_lif import fused_bn_lif
from masnn.layers.pool import AvgPool2d, fused_bn_avg_pool
from masnn.layout import seq_apply
from masnn.neurons.spec import NeuronSpec

_POOLS = {"avg": AvgPool2d, "max": nn.MaxPool2d}  # AvgPool2d: keeps no input for backward
_NONE = AttnCfg()
_PAPER = NeuronSpec()


class AttnLIF(nn.Module):
    """LIF neurons with the sequence-level and membrane attention of one layer.

    Args:
        channels: ``C`` of the input current (``F`` with ``fc=True``).
        timesteps: ``T`` (TA's width; the input must have it when TA is used).
        attn: the layer's attention; its ``conv_post`` gates (and ReLU) act on ``X``, its
            ``membrane`` gates on ``U[t]``. ``conv_pre`` gates need a conv and live in
            :class:`SpikingConvBlock` / :class:`SpikingLinearBlock`.
        neuron: the neuron (preset, backend, the preset's kwargs).
        fc: input is ``(T, B, F)``; only temporal gates are allowed.

    Submodules: ``post_attn`` (sequence-level gates on ``X``, or ``None``) and ``lif`` (a
    :class:`~masnn.neurons.LIF` whose ``membrane_gate`` holds the membrane gates). Forward
    hooks on ``post_attn`` see the gated current; hooks on ``lif.membrane_gate`` see the gated
    membrane ``U[t]`` of every step.

    Shape:
        x_seq: ``(T, B, C, H, W)`` (or ``(T, B, F)`` with ``fc``); output: spikes, same shape.

    Example:
        >>> import torch
        >>> layer = AttnLIF(8, 4, attn=AttnCfg("tcsa"))
        >>> layer(torch.rand(4, 2, 8, 5, 6)).shape
        torch.Size([4, 2, 8, 5, 6])
    """

    def __init__(
        self,
        channels: int,
        timesteps: int,
        *,
        attn: AttnCfg | AttnPlan = _NONE,
        neuron: NeuronSpec = _PAPER,
        fc: bool = False,
    ) -> None:
        super().__init__()
        self.channels = positive_int("channels", channels)
        self.timesteps = positive_int("timesteps", timesteps)
        self.fc = bool(fc)
        plan = as_plan(attn)
        if self.fc and plan.only("t").kinds != plan.kinds:
            raise ValueError(
                f"fully connected layers take only temporal attention; got attn={plan.name!r}, "
                "allowed: ['none', 'ta'] (SpikingLinearBlock keeps the TA part of any name)"
            )
        if plan.at("conv_pre"):
            raise ValueError(
                "location 'conv_pre' gates the input spikes before the conv; use "
                "SpikingConvBlock (AttnLIF allows 'conv_post' and 'membrane')"
            )
        if not isinstance(neuron, NeuronSpec):
            raise TypeError(f"neuron must be a masnn.neurons.NeuronSpec, got {neuron!r}")
        self.attn = plan
        self.post_attn = plan.build("conv_post", channels, timesteps, backend=neuron.backend)
        self.lif = neuron.build(plan.build("membrane", channels, timesteps))

    def forward(self, x_seq: Tensor) -> Tensor:
        """Gate the input current, then run the LIF loop (see the class docstring)."""
        rank = 3 if self.fc else 5
        if x_seq.dim() != rank or x_seq.shape[2] != self.channels:
            want = "(T, B, F)" if self.fc else "(T, B, C, H, W)"
            raise ValueError(
                f"AttnLIF expects {want} input with {'F' if self.fc else 'C'}={self.channels}, "
                f"got shape {tuple(x_seq.shape)}"
            )
        if self.post_attn is not None:
            x_seq = self.post_attn(x_seq)  # (T, B, C, H, W)
        return self.lif(x_seq)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, timesteps={self.timesteps}, fc={self.fc}"


class SpikingConvBlock(nn.Module):
    """``[conv_pre attention] -> Conv2d -> BatchNorm2d -> [pool] -> AttnLIF -> [pool]``.

    The three-layer MA-SNN net is ``Conv -> BN -> AvgPool -> [Att] -> LIF`` (``pool="avg"``);
    Fang et al.'s five-layer net is ``Conv(bias=False) -> BN -> LIF -> MaxPool``
    (``pool="max", pool_after_neuron=True, bias=False``).

    Args:
        in_channels: input channels (``conv_pre`` gates are built for these).
        out_channels: conv output channels (``conv_post``/``membrane`` gates).
        timesteps: ``T``.
        conv_kernel: conv kernel size.
        stride: conv stride.
        padding: conv padding.
        bias: conv bias.
        pool: ``None``, ``"avg"`` or ``"max"``.
        pool_size: pool kernel and stride.
        pool_after_neuron: pool the spikes (after the LIF) instead of the current.
        attn: the block's attention (every location).
        neuron: the neuron.

    Submodules: ``pre_attn`` (or ``None``), ``conv``, ``bn``, ``pool`` (or ``None``) and
    ``neuron`` (the :class:`AttnLIF`, whose ``lif`` is the :class:`~masnn.neurons.LIF`).

    Without a pool between BN and the neuron, BN and the LIF run as one op where that is exact
    (:func:`masnn.layers.bn_lif.fused_bn_lif`: no gate between them, no hooks, the fused CPU
    kernel); with an average pool, BN and the pool do (:func:`masnn.layers.pool.fused_bn_avg_pool`).

    Shape:
        x_seq: ``(T, B, C_in, H, W)``; output: spikes ``(T, B, C_out, H', W')``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        timesteps: int,
        *,
        conv_kernel: int = 3,
        stride: int = 1,
        padding: int = 1,
        bias: bool = True,
        pool: str | None = None,
        pool_size: int = 2,
        pool_after_neuron: bool = False,
        attn: AttnCfg | AttnPlan = _NONE,
        neuron: NeuronSpec = _PAPER,
    ) -> None:
        super().__init__()
        self.in_channels = positive_int("in_channels", in_channels)
        positive_int("out_channels", out_channels)
        if pool is not None and pool not in _POOLS:
            raise ValueError(f"unknown pool {pool!r}; allowed: [None, 'avg', 'max']")
        plan = as_plan(attn)
        # conv_pre gates see the input spikes, so they are built for in_channels
        self.pre_attn = plan.build(
            "conv_pre", in_channels, timesteps, backend=getattr(neuron, "backend", "auto")
        )
        self.conv = nn.Conv2d(
            in_channels, out_channels, conv_kernel, stride=stride, padding=padding, bias=bias
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.pool = None if pool is None else _POOLS[pool](pool_size)
        self.pool_after_neuron = bool(pool_after_neuron)
        self.neuron = AttnLIF(out_channels, timesteps, attn=plan.drop("conv_pre"), neuron=neuron)

    def _current(self, x: Tensor) -> Tensor:
        y = self.conv(x)  # (T*B, C_out, H, W)
        if self.pool is not None and not self.pool_after_neuron:
            fused = fused_bn_avg_pool(y, self.bn, self.pool)  # training: BN + AvgPool as one op
            return fused if fused is not None else self.pool(self.bn(y))  # (T*B, C_out, H', W')
        return self.bn(y)

    def forward(self, x_seq: Tensor) -> Tensor:
        """Spikes of the block (see the class docstring)."""
        if x_seq.dim() != 5 or x_seq.shape[2] != self.in_channels:
            raise ValueError(
                f"SpikingConvBlock expects (T, B, C, H, W) input with C={self.in_channels}, "
                f"got shape {tuple(x_seq.shape)}"
            )
        if self.pre_attn is not None:
            x_seq = self.pre_attn(x_seq)  # (T, B, C_in, H, W)
        if self.pool is None or self.pool_after_neuron:
            y = seq_apply(self.conv, x_seq)  # (T, B, C_out, H, W)
            fused = fused_bn_lif(y, self.bn, self.neuron)  # BN read inside the LIF kernel
            spikes = fused if fused is not None else self.neuron(seq_apply(self.bn, y))
        else:
            spikes = self.neuron(seq_apply(self._current, x_seq))  # (T, B, C_out, H', W')
        if self.pool is not None and self.pool_after_neuron:
            spikes = seq_apply(self.pool, spikes)  # (T, B, C_out, H', W')
        return spikes


class SpikingLinearBlock(nn.Module):
    """``[conv_pre TA] -> Linear -> BatchNorm1d -> [TA + ReLU] -> LIF``: the official FC layers.

    Only the temporal part of ``attn`` is used, as in the official code (FC layers get TA when
    the name contains ``t``), at the location the plan gives TA: ``conv_post`` (on the
    current, the official FC layers) or ``conv_pre`` (on the input spikes, before the linear
    map; paper Table 4's TA Conv-PRE row). The ReLU follows the placement when TA is on
    (``code``: yes, ``paper``: no). With ``AttnCfg("none", relu=True)`` (the ReLU-only control)
    the ReLU is applied here too, matching the FC layers of the official TA/TCA/TSA/TCSA runs;
    names without ``t`` (``ca``, ``sa``, ``csa``, ``eca``, ``simam``) give FC layers with
    neither attention nor ReLU, exactly as the official CA/SA/CSA runs.

    Args:
        in_features: input features.
        out_features: output features (neurons).
        timesteps: ``T``.
        bias: linear bias.
        bn: add a BatchNorm1d (statistics shared over time).
        attn: the attention (only its temporal gates are used).
        neuron: the neuron.

    Submodules: ``pre_attn`` (TA at ``conv_pre``, or ``None``), ``fc``, ``bn`` (or ``None``),
    ``neuron`` (an :class:`AttnLIF` with ``fc=True``).

    Shape:
        x_seq: ``(T, B, F_in)``; output: spikes ``(T, B, F_out)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        timesteps: int,
        *,
        bias: bool = True,
        bn: bool = True,
        attn: AttnCfg | AttnPlan = _NONE,
        neuron: NeuronSpec = _PAPER,
    ) -> None:
        super().__init__()
        self.in_features = positive_int("in_features", in_features)
        positive_int("out_features", out_features)
        plan = as_plan(attn).only("t")
        self.pre_attn = plan.build(
            "conv_pre", in_features, timesteps, backend=getattr(neuron, "backend", "auto")
        )
        self.fc = nn.Linear(in_features, out_features, bias=bias)
        self.bn = nn.BatchNorm1d(out_features) if bn else None
        self.neuron = AttnLIF(
            out_features, timesteps, attn=plan.drop("conv_pre"), neuron=neuron, fc=True
        )

    def _current(self, x: Tensor) -> Tensor:
        x = self.fc(x)  # (T*B, F_out)
        return x if self.bn is None else self.bn(x)

    def forward(self, x_seq: Tensor) -> Tensor:
        """Spikes of the block (see the class docstring)."""
        if x_seq.dim() != 3 or x_seq.shape[2] != self.in_features:
            raise ValueError(
                f"SpikingLinearBlock expects (T, B, F) input with F={self.in_features}, "
                f"got shape {tuple(x_seq.shape)}"
            )
        if self.pre_attn is not None:
            x_seq = self.pre_attn(x_seq)  # (T, B, F_in)
        return self.neuron(seq_apply(self._current, x_seq))  # (T, B, F_out)
