r"""Spiking layers with attention: input current -> (attention) -> LIF -> spikes.

Paper: `Attention Spiking Neural Networks` (Eq. 3-5, 14) - https://arxiv.org/abs/2209.13929

* :class:`AttnLIF`: the neuron layer. ``X -> [conv_post gates, ReLU] -> LIF(membrane gates)``.
* :class:`SpikingConvBlock`: ``[conv_pre gates] -> Conv2d -> BatchNorm2d -> [pool] -> AttnLIF
  -> [pool]``, BN statistics shared over time (folded ``T*B``).
* :class:`SpikingLinearBlock`: ``Linear -> BatchNorm1d -> AttnLIF(TA only)``, as the official
  FC layers.

Attention is configured by ``attn=`` (a name from ``masnn.attention.ATTENTION``),
``placement=`` (``"paper"`` or ``"code"``) and optionally ``locations=`` (slot -> location,
e.g. ``{"c": "conv_post"}``); see ``docs/placements.md``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from masnn.attention.checks import positive_int
from masnn.attention.factory import (
    SLOT_OF,
    build_placed,
    name_of,
    resolve_config,
    resolve_locations,
)
from masnn.layout import seq_apply
from masnn.neurons.lif import LIF

_POOLS = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


class AttnLIF(nn.Module):
    """LIF neurons with the sequence-level and membrane attention of one layer.

    Args:
        channels: ``C`` of the input current (``F`` with ``fc=True``).
        timesteps: ``T`` (TA's width; the input must have it when TA is used).
        attn: attention name (``"none"``, ``"ta"``, ..., ``"tcsa"``, ``"eca"``, ``"simam"``).
        placement: ``"paper"`` (TA on ``X``; CA/SA on ``U[t]``) or ``"code"`` (all on ``X``,
            pooled over the window, then ReLU).
        locations: per-slot overrides (``"t"``/``"c"``/``"s"`` -> ``"conv_post"`` or
            ``"membrane"``); ``conv_pre`` needs a conv and lives in :class:`SpikingConvBlock`.
        neuron: a neuron preset (``masnn.neurons.NEURON_PRESETS``).
        reduction_t: TA's ``r_t`` (``None`` = the placement's).
        reduction_c: CA's ``r_c`` (``None`` = the placement's).
        kernel_size: SA's kernel (``None`` = the placement's).
        attn_relu: ReLU on ``X`` after the sequence-level gates (``None`` = the placement's;
            with ``attn="none"``, ``True`` is the ReLU-only control).
        fc: input is ``(T, B, F)``; only ``"none"`` and ``"ta"`` are allowed.
        backend: the LIF backend.
        **neuron_kwargs: passed to :class:`masnn.neurons.LIF` (e.g. ``v_th=0.5``).

    Submodules: ``post_attn`` (sequence-level gates on ``X``, or ``None``) and ``lif`` (a
    :class:`~masnn.neurons.LIF` whose ``membrane_gate`` holds the membrane gates). Forward
    hooks on ``post_attn`` see the gated current; hooks on ``lif.membrane_gate`` see the gated
    membrane ``U[t]`` of every step.

    Shape:
        x_seq: ``(T, B, C, H, W)`` (or ``(T, B, F)`` with ``fc``); output: spikes, same shape.

    Example:
        >>> import torch
        >>> layer = AttnLIF(8, 4, attn="tcsa")
        >>> layer(torch.rand(4, 2, 8, 5, 6)).shape
        torch.Size([4, 2, 8, 5, 6])
    """

    def __init__(
        self,
        channels: int,
        timesteps: int,
        *,
        attn: str | None = "none",
        placement: str = "paper",
        locations: dict[str, str] | None = None,
        neuron: str = "paper",
        reduction_t: int | None = None,
        reduction_c: int | None = None,
        kernel_size: int | None = None,
        attn_relu: bool | None = None,
        fc: bool = False,
        backend: str = "torch",
        **neuron_kwargs: Any,
    ) -> None:
        super().__init__()
        self.channels = positive_int("channels", channels)
        self.timesteps = positive_int("timesteps", timesteps)
        self.fc = bool(fc)
        cfg = resolve_config(attn, placement)
        if self.fc and any(SLOT_OF[k] != "t" for k in cfg.spec.kinds):
            raise ValueError(
                f"fully connected layers take only temporal attention; got attn={attn!r}, "
                "allowed: ['none', 'ta'] (SpikingLinearBlock keeps the TA part of any name)"
            )
        placed = build_placed(
            attn,
            channels,
            timesteps,
            placement,
            locations=locations,
            reduction_t=reduction_t,
            reduction_c=reduction_c,
            kernel_size=kernel_size,
            attn_relu=attn_relu,
        )
        if placed.conv_pre is not None:
            raise ValueError(
                "location 'conv_pre' gates the input spikes before the conv; use "
                "SpikingConvBlock (AttnLIF allows 'conv_post' and 'membrane')"
            )
        self.attn = cfg.spec
        self.post_attn = placed.conv_post
        self.lif = LIF(neuron, backend=backend, membrane_gate=placed.membrane, **neuron_kwargs)

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
        attn: attention name; ``placement``, ``locations`` and the hyper-parameters as in
            :class:`AttnLIF` (``locations`` may also say ``"conv_pre"`` here).
        neuron: a neuron preset; ``backend`` and ``**neuron_kwargs`` go to the LIF.

    Submodules: ``pre_attn`` (or ``None``), ``conv``, ``bn``, ``pool`` (or ``None``) and
    ``neuron`` (the :class:`AttnLIF`, whose ``lif`` is the :class:`~masnn.neurons.LIF`).

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
        attn: str | None = "none",
        placement: str = "paper",
        locations: dict[str, str] | None = None,
        neuron: str = "paper",
        reduction_t: int | None = None,
        reduction_c: int | None = None,
        kernel_size: int | None = None,
        attn_relu: bool | None = None,
        backend: str = "torch",
        **neuron_kwargs: Any,
    ) -> None:
        super().__init__()
        self.in_channels = positive_int("in_channels", in_channels)
        positive_int("out_channels", out_channels)
        if pool is not None and pool not in _POOLS:
            raise ValueError(f"unknown pool {pool!r}; allowed: [None, 'avg', 'max']")
        hp: dict[str, Any] = {
            "reduction_t": reduction_t,
            "reduction_c": reduction_c,
            "kernel_size": kernel_size,
        }
        cfg = resolve_config(attn, placement, attn_relu=attn_relu, **hp)
        where = resolve_locations(attn, placement, locations)
        pre = tuple(k for k in cfg.spec.kinds if where[SLOT_OF[k]] == "conv_pre")
        rest = tuple(k for k in cfg.spec.kinds if k not in pre)
        rest_locs = {s: loc for s, loc in where.items() if loc != "conv_pre"}
        self.pre_attn = None
        if pre:  # conv_pre gates see the input spikes, so they are built for in_channels
            self.pre_attn = build_placed(
                name_of(pre),
                in_channels,
                timesteps,
                placement,
                locations={SLOT_OF[k]: "conv_pre" for k in pre},
                attn_relu=False,
                **hp,
            ).conv_pre
        self.conv = nn.Conv2d(
            in_channels, out_channels, conv_kernel, stride=stride, padding=padding, bias=bias
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.pool = None if pool is None else _POOLS[pool](pool_size)
        self.pool_after_neuron = bool(pool_after_neuron)
        self.neuron = AttnLIF(
            out_channels,
            timesteps,
            attn=name_of(rest),
            placement=placement,
            locations=rest_locs,
            neuron=neuron,
            attn_relu=cfg.attn_relu,
            backend=backend,
            **hp,
            **neuron_kwargs,
        )

    def _current(self, x: Tensor) -> Tensor:
        x = self.bn(self.conv(x))  # (T*B, C_out, H, W)
        if self.pool is not None and not self.pool_after_neuron:
            x = self.pool(x)  # (T*B, C_out, H', W')
        return x

    def forward(self, x_seq: Tensor) -> Tensor:
        """Spikes of the block (see the class docstring)."""
        if x_seq.dim() != 5 or x_seq.shape[2] != self.in_channels:
            raise ValueError(
                f"SpikingConvBlock expects (T, B, C, H, W) input with C={self.in_channels}, "
                f"got shape {tuple(x_seq.shape)}"
            )
        if self.pre_attn is not None:
            x_seq = self.pre_attn(x_seq)  # (T, B, C_in, H, W)
        x_seq = seq_apply(self._current, x_seq)  # (T, B, C_out, H', W')
        spikes = self.neuron(x_seq)
        if self.pool is not None and self.pool_after_neuron:
            spikes = seq_apply(self.pool, spikes)  # (T, B, C_out, H', W')
        return spikes


class SpikingLinearBlock(nn.Module):
    """``Linear -> BatchNorm1d -> [TA + ReLU] -> LIF``: the official FC layers.

    Only the temporal part of ``attn`` is used, as in the official code (FC layers get TA when
    the name contains ``t``). The ReLU follows the placement when TA is on (``code``: yes,
    ``paper``: no). With ``attn="none", attn_relu=True`` (the ReLU-only control) the ReLU is
    applied here too, matching the FC layers of the official TA/TCA/TSA/TCSA runs; names
    without ``t`` (``ca``, ``sa``, ``csa``, ``eca``, ``simam``) give FC layers with neither
    attention nor ReLU, exactly as the official CA/SA/CSA runs.

    Args:
        in_features: input features.
        out_features: output features (neurons).
        timesteps: ``T``.
        bias: linear bias.
        bn: add a BatchNorm1d (statistics shared over time).
        attn: attention name (only its TA part is used).
        placement: ``"paper"`` or ``"code"``.
        reduction_t: TA's ``r_t`` (``None`` = the placement's).
        attn_relu: see above (``None`` = the placement's).
        neuron: a neuron preset; ``backend`` and ``**neuron_kwargs`` go to the LIF.

    Submodules: ``fc``, ``bn`` (or ``None``), ``neuron`` (an :class:`AttnLIF` with ``fc=True``).

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
        attn: str | None = "none",
        placement: str = "paper",
        reduction_t: int | None = None,
        attn_relu: bool | None = None,
        neuron: str = "paper",
        backend: str = "torch",
        **neuron_kwargs: Any,
    ) -> None:
        super().__init__()
        self.in_features = positive_int("in_features", in_features)
        positive_int("out_features", out_features)
        cfg = resolve_config(attn, placement, reduction_t=reduction_t, attn_relu=attn_relu)
        has_t = "ta" in cfg.spec.kinds
        if has_t:
            relu = cfg.attn_relu
        elif not cfg.spec.kinds:
            relu = cfg.attn_relu  # "none": False unless the ReLU-only control asks for it
        else:
            relu = False  # CA/SA-only names: the official FC layers have no attention, no ReLU
        self.fc = nn.Linear(in_features, out_features, bias=bias)
        self.bn = nn.BatchNorm1d(out_features) if bn else None
        self.neuron = AttnLIF(
            out_features,
            timesteps,
            attn="ta" if has_t else "none",
            placement=placement,
            neuron=neuron,
            reduction_t=reduction_t,
            attn_relu=relu,
            fc=True,
            backend=backend,
            **neuron_kwargs,
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
        return self.neuron(seq_apply(self._current, x_seq))  # (T, B, F_out)
