"""The benchmarked networks, built the same way in masnn and in each peer library.

``ma_snn3`` (vanilla): ``[Conv3x3 -> BN2d -> [AvgPool2] -> LIF] x 3 (64, 128, 128) -> flatten
-> Linear 256 -> BN1d -> LIF -> Linear K -> BN1d -> LIF -> mean over T``. Each peer uses its
own multi-step LIF (SpikingJelly ``LIFNode``, snnTorch ``Leaky`` stepped over ``T``, Norse
``LIF``); the convolutions and BN run on ``T * B`` merged. ``floor`` keeps only the
convolutions, pools and linear layers (no BN, neuron or attention): the cost no SNN library
can go below. ``ma_snn5``: Fang et al.'s 5-block 128 x 128 PLIF net (vanilla).

Peers are imported here only, on demand (benchmark-only dependencies).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import Tensor, nn

from masnn.layers.seq import seq_apply

CHANNELS3 = (64, 128, 128)


class _Merged(nn.Module):
    """Apply a per-frame module on ``(T*B, ...)``."""

    def __init__(self, *mods: nn.Module) -> None:
        super().__init__()
        self.body = nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Tensor:
        return seq_apply(self.body, x)


class _Rate(nn.Module):
    """``(T, B, ...) -> (B, K)``: the network, then the mean over T."""

    def __init__(self, *mods: nn.Module, voting: int = 1) -> None:
        super().__init__()
        self.net = nn.Sequential(*mods)
        self.voting = voting

    def forward(self, x: Tensor) -> Tensor:
        rate = self.net(x).mean(0)  # (B, K * voting)
        return rate.view(rate.shape[0], -1, self.voting).mean(-1)


class _Flatten(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(2)


def _ma_snn3_layers(
    neuron: Callable[[], nn.Module],
    attn: Callable[[int], nn.Module] | None,
    in_ch: int,
    hw: int,
    classes: int,
    bn: bool = True,
) -> list[nn.Module]:
    layers: list[nn.Module] = []
    c_in = in_ch
    for c, p in zip(CHANNELS3, (1, 2, 2)):
        mods: list[nn.Module] = [nn.Conv2d(c_in, c, 3, padding=1)]
        if bn:
            mods.append(nn.BatchNorm2d(c))
        if p > 1:
            mods.append(nn.AvgPool2d(p))
            hw //= p
        layers.append(_Merged(*mods))
        if attn is not None:
            layers.append(attn(c))
        layers.append(neuron())
        c_in = c
    layers.append(_Flatten())
    for f_in, f_out in ((c_in * hw * hw, 256), (256, classes)):
        mods = [nn.Linear(f_in, f_out)] + ([nn.BatchNorm1d(f_out)] if bn else [])
        layers += [_Merged(*mods), neuron()]
    return layers


class _Identity(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


class _SnnTorchLIF(nn.Module):
    """snnTorch ``Leaky`` (single-step) looped over ``T``."""

    def __init__(self) -> None:
        super().__init__()
        import snntorch

        self.cell = snntorch.Leaky(beta=0.5, threshold=1.0)

    def forward(self, x: Tensor) -> Tensor:
        mem = torch.zeros_like(x[0])
        out = []
        for xt in x:
            spk, mem = self.cell(xt, mem)
            out.append(spk)
        return torch.stack(out)


class _NorseLIF(nn.Module):
    """Norse ``LIF`` (multi-step over the leading time axis)."""

    def __init__(self) -> None:
        super().__init__()
        from norse.torch import LIF

        self.cell = LIF()

    def forward(self, x: Tensor) -> Tensor:
        return self.cell(x)[0]


def neuron_factory(lib: str) -> Callable[[], nn.Module]:
    """A multi-step LIF module of ``lib`` (time-major in, spikes out)."""
    if lib.startswith("masnn"):
        from masnn.neurons import LIF

        backend = lib.partition(":")[2] or "auto"
        return lambda: LIF("paper", backend=backend)
    if lib.startswith("sj"):
        from spikingjelly.activation_based import neuron, surrogate

        return lambda: neuron.LIFNode(
            tau=2.0, surrogate_function=surrogate.Sigmoid(), step_mode="m"
        )
    if lib == "snntorch":
        return _SnnTorchLIF
    if lib == "norse":
        return _NorseLIF
    if lib == "floor":
        return _Identity
    raise ValueError(f"unknown library {lib!r}; allowed: masnn[:backend], sj, snntorch, norse")


def _sj_attention(timesteps: int) -> Callable[[int], nn.Module]:
    from spikingjelly.activation_based.layer.attention import MultiDimensionalAttention

    # TCSA at the official code's placement: after pool, before LIF (r_t 5, r_c 8, k 3)
    return lambda c: MultiDimensionalAttention(timesteps, c, 5, 8, kernel_size=3)


def build_ma_snn3(lib: str, variant: str, timesteps: int, classes: int = 11) -> nn.Module:
    """``ma_snn3`` for input ``(T, B, 2, 32, 32)`` in ``lib``; variants: ``vanilla``,
    ``tcsa-code``, ``tcsa-paper``, ``csa-paper`` (masnn and, for ``tcsa-code``, SpikingJelly).
    The paper placement's CA / SA gate the membrane inside the LIF loop (on ``masnn`` =
    ``auto``: the fused membrane kernel on CPU, its Triton counterpart on CUDA;
    ``masnn:torch``: the reference loop)."""
    if lib.startswith("masnn"):
        from masnn import create_model

        backend = lib.partition(":")[2] or "auto"
        attn = {"vanilla": "none", "tcsa-code": "tcsa", "tcsa-paper": "tcsa", "csa-paper": "csa"}[
            variant
        ]
        placement = "code" if variant == "tcsa-code" else "paper"
        return create_model(
            "ma_snn3",
            timesteps=timesteps,
            attn=attn,
            placement=placement,
            num_classes=classes,
            backend=backend,
        )
    if variant not in ("vanilla", "tcsa-code") or (variant == "tcsa-code" and lib[:2] != "sj"):
        raise ValueError(f"{lib} has no {variant!r} ma_snn3")
    sj_attn = _sj_attention(timesteps) if variant == "tcsa-code" else None
    layers = _ma_snn3_layers(neuron_factory(lib), sj_attn, 2, 32, classes, bn=lib != "floor")
    net = _Rate(*layers)
    # torch.compile returns a callable wrapping the module (an nn.Module at runtime)
    return cast(nn.Module, torch.compile(net)) if lib == "sj-compile" else net


def build_ma_snn5(lib: str, timesteps: int, classes: int = 11) -> nn.Module:
    """Fang et al.'s 5-block 128 x 128 PLIF net (vanilla), masnn or SpikingJelly."""
    if lib.startswith("masnn"):
        from masnn import create_model

        backend = lib.partition(":")[2] or "auto"
        return create_model(
            "ma_snn5", timesteps=timesteps, attn="none", num_classes=classes, backend=backend
        )
    if lib[:2] != "sj":
        raise ValueError(f"{lib} has no ma_snn5")
    from spikingjelly.activation_based import neuron, surrogate

    def plif() -> nn.Module:
        return neuron.ParametricLIFNode(
            init_tau=2.0,
            detach_reset=True,
            surrogate_function=surrogate.ATan(),
            step_mode="m",
        )

    layers: list[nn.Module] = []
    c_in = 2
    for _ in range(5):
        layers += [_Merged(nn.Conv2d(c_in, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128))]
        layers += [plif(), _Merged(nn.MaxPool2d(2))]
        c_in = 128
    layers += [_Flatten(), _Merged(nn.Dropout(0.5), nn.Linear(128 * 4 * 4, 512, bias=False))]
    layers += [plif(), _Merged(nn.Dropout(0.5), nn.Linear(512, classes * 10, bias=False)), plif()]
    net = _Rate(*layers, voting=10)
    return cast(nn.Module, torch.compile(net)) if lib == "sj-compile" else net
