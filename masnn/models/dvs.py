"""Plain convolutional SNNs for DVS data (DVS128 Gesture / Gait): MA-SNN's two backbones.

Paper: `Attention Spiking Neural Networks` (§5, Table 1) - https://arxiv.org/abs/2209.13929

* ``ma_snn3``: the three-layer net of TA-SNN (official code ``DVSGestures/CNN/Networks/
  Att_SNN.py``)::

      [T, B, 2, 32, 32] -> Conv64 -> Conv128 + AvgPool2 -> Conv128 + AvgPool2   (each:
      conv -> BN -> pool -> attention -> LIF) -> flatten -> FC256 -> FC K (each: linear ->
      BN1d -> TA -> LIF) -> firing rate over T   [B, K]

  Attention in every conv layer, TA also in both FC layers (the FC layers take only the TA
  part of ``attn``, at TA's location: ``conv_post`` or ``conv_pre``). 106,763 neurons at K = 11 (Gesture), 106,772 at K = 20 (Gait).

* ``ma_snn5``: Fang et al.'s five-layer PLIF net (ICCV 2021), the paper's "five-layer"
  rows; not in the official repo::

      [T, B, 2, 128, 128] -> 5 x (Conv128 3x3 -> BN -> [attention] -> PLIF -> MaxPool2)
      -> flatten 2048 -> Dropout -> FC 512 -> PLIF -> Dropout -> FC 10K -> PLIF
      -> firing rate over T -> vote over groups of 10   [B, K]

  2,793,472 conv neurons at 128 x 128 (NASAR counts conv neurons only).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import Tensor, nn

from masnn.attention import AttnCfg
from masnn.layers import SpikingConvBlock, SpikingLinearBlock
from masnn.models._base import SpikingClassifier, out_size
from masnn.models._cfg import ModelCfg
from masnn.models._factory import register_model
from masnn.models._utils import TimeSharedDropout
from masnn.neurons import NeuronSpec
from masnn.readout import vote


def _check_channels(name: str, channels: tuple[int, ...], n: int) -> tuple[int, ...]:
    channels = tuple(int(c) for c in channels)
    if len(channels) != n or min(channels) < 1:
        raise ValueError(f"{name} must be {n} positive ints, got {channels!r}")
    return channels


def _check_size(input_size: tuple[int, ...], pools: tuple[int, ...]) -> tuple[int, int, int]:
    size = tuple(int(s) for s in input_size)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"input_size must be (C, H, W) positive ints, got {input_size!r}")
    if out_size(size[1], pools) < 1 or out_size(size[2], pools) < 1:
        raise ValueError(f"input_size {size} is too small for pooling factors {pools}")
    return size  # type: ignore[return-value]


@dataclass(frozen=True)
class MaSNN3Args:
    """Args of the three-layer net (``ma_snn3`` and its variants); base of :class:`MaSNN5Args`.

    Attributes:
        num_classes: ``K``.
        timesteps: ``T``.
        input_size: ``(C, H, W)`` of one frame.
        channels: the conv widths (three; five for ``ma_snn5``).
        hidden: the first FC layer's width.
        attn: the attention of every layer (FC layers keep its temporal part; ``ma_snn5``'s
            FC layers have none).
        neuron: the neuron of every layer.
    """

    num_classes: int
    timesteps: int
    input_size: tuple[int, int, int]
    channels: tuple[int, ...]
    hidden: int
    attn: AttnCfg
    neuron: NeuronSpec


@dataclass(frozen=True)
class MaSNN5Args(MaSNN3Args):
    """Args of Fang et al.'s five-layer net (``ma_snn5``): :class:`MaSNN3Args` plus

    Attributes:
        voting: output neurons per class.
        drop_rate: dropout before each FC layer (mask shared over time).
        bias: conv and linear biases.
    """

    voting: int = 10
    drop_rate: float = 0.5
    bias: bool = False


class MaSNN3(SpikingClassifier):
    """The three-layer MA-SNN for Gesture/Gait (module docstring); ``create_model("ma_snn3")``.

    Args:
        args: the :class:`MaSNN3Args`.

    Shape:
        x_seq: ``(T, B, C, H, W)`` event counts; output: ``(B, K)`` output firing rates.
    """

    def __init__(self, args: MaSNN3Args) -> None:
        super().__init__()
        pools = (1, 2, 2)
        self.args = args
        self.num_classes, self.timesteps = args.num_classes, args.timesteps
        self.input_size = _check_size(args.input_size, pools)
        channels = _check_channels("channels", args.channels, 3)
        plan, neuron, t = args.attn.resolve(), args.neuron, args.timesteps
        blocks = []
        c_in = self.input_size[0]
        for c, p in zip(channels, pools):
            pool = "avg" if p > 1 else None
            blocks.append(
                SpikingConvBlock(c_in, c, t, pool=pool, pool_size=p, attn=plan, neuron=neuron)
            )
            c_in = c
        self.features = nn.Sequential(*blocks)
        h, w = (out_size(s, pools) for s in self.input_size[1:])
        self.num_features = c_in * h * w
        hidden, k = args.hidden, args.num_classes
        self.fc1 = SpikingLinearBlock(self.num_features, hidden, t, attn=plan, neuron=neuron)
        self.fc2 = SpikingLinearBlock(hidden, k, t, attn=plan, neuron=neuron)

    def forward_features(self, x_seq: Tensor) -> Tensor:
        """Spikes of the last conv layer.

        Shape:
            x_seq: ``(T, B, C, H, W)``; output: ``(T, B, C3, H/4, W/4)``.
        """
        self._check_input(x_seq)
        return self.features(x_seq)

    def forward_head_seq(self, feat_seq: Tensor) -> Tensor:
        """Output-layer spikes per step.

        Shape:
            feat_seq: ``(T, B, C3, h, w)``; output: ``(T, B, K)``.
        """
        return self.fc2(self.fc1(feat_seq.flatten(2)))  # (T, B, C3*h*w) -> (T, B, K)


class MaSNN5(SpikingClassifier):
    """Fang et al.'s five-layer net with MA-SNN attention (module docstring).

    Args:
        args: the :class:`MaSNN5Args`.

    Shape:
        x_seq: ``(T, B, C, H, W)``; output: ``(B, K)`` voted output firing rates.
    """

    def __init__(self, args: MaSNN5Args) -> None:
        super().__init__()
        pools = (2,) * 5
        self.args = args
        self.num_classes, self.timesteps = args.num_classes, args.timesteps
        self.input_size = _check_size(args.input_size, pools)
        channels = _check_channels("channels", args.channels, 5)
        if args.voting < 1:
            raise ValueError(f"voting must be >= 1, got {args.voting}")
        self.voting = args.voting
        plan, neuron, t, bias = args.attn.resolve(), args.neuron, args.timesteps, args.bias
        blocks = []
        c_in = self.input_size[0]
        for c in channels:
            blocks.append(
                SpikingConvBlock(
                    c_in,
                    c,
                    t,
                    bias=bias,
                    pool="max",
                    pool_size=2,
                    pool_after_neuron=True,
                    attn=plan,
                    neuron=neuron,
                )
            )
            c_in = c
        self.features = nn.Sequential(*blocks)
        h, w = (out_size(s, pools) for s in self.input_size[1:])
        self.num_features = c_in * h * w
        fc = dict(bias=bias, bn=False, neuron=neuron)  # no attention in the FC layers
        self.drop1 = TimeSharedDropout(args.drop_rate)
        self.fc1 = SpikingLinearBlock(self.num_features, args.hidden, t, **fc)
        self.drop2 = TimeSharedDropout(args.drop_rate)
        self.fc2 = SpikingLinearBlock(args.hidden, args.num_classes * args.voting, t, **fc)

    def forward_features(self, x_seq: Tensor) -> Tensor:
        """Spikes of the last conv block (after its max-pool).

        Shape:
            x_seq: ``(T, B, C, H, W)``; output: ``(T, B, 128, H/32, W/32)``.
        """
        self._check_input(x_seq)
        return self.features(x_seq)

    def forward_head_seq(self, feat_seq: Tensor) -> Tensor:
        """Output-layer spikes per step (``voting`` neurons per class).

        Shape:
            feat_seq: ``(T, B, C, h, w)``; output: ``(T, B, K * voting)``.
        """
        out = self.fc1(self.drop1(feat_seq.flatten(2)))  # (T, B, hidden)
        return self.fc2(self.drop2(out))  # (T, B, K * voting)

    def head_final(self, pooled: Tensor) -> Tensor:
        """Voting: the mean firing rate of each class's group.

        Shape:
            pooled: ``(B, K * voting)``; output: ``(B, K)``.
        """
        return vote(pooled, self.voting)


_RULES = {
    "reduction_t": "r_t = 5 at every T; the TA hidden width is max(1, T // r_t) "
    "(12 at T = 60, 3 at T = 16, 1 below T = 10)",
    "reduction_c, kernel_size, attn_relu": "the placement's (masnn.attention.PLACEMENTS)",
}
_DVS3_SOURCES = {
    "num_classes": "paper",
    "timesteps": "paper",
    "input_size": "paper",
    "channels": "code",
    "hidden": "code",
    "attn": "paper",
    "placement": "paper",
    "locations": "paper",
    "neuron": "paper",
    "reduction_t": "code",
    "reduction_c": "derived",
    "kernel_size": "paper",
    "attn_relu": "paper",
    "backend": "code",
    "neuron_kwargs": "paper",
    "code.reduction_c": "code",
    "code.kernel_size": "code",
    "code.attn_relu": "code",
    "code.neuron": "code",
}

MA_SNN3 = MaSNN3Args(
    num_classes=11,
    timesteps=60,
    input_size=(2, 32, 32),
    channels=(64, 128, 128),
    hidden=256,
    attn=AttnCfg("tcsa", "paper", reduction_t=5),
    neuron=NeuronSpec("paper"),
)

register_model(
    ModelCfg(
        name="ma_snn3",
        family="ma_snn3",
        paper="Yao et al., TPAMI 2023 (arXiv 2209.13929) Table 1 three-layer rows; "
        "code MA_SNN/DVSGestures/CNN/Networks/Att_SNN.py",
        neuron_count="all_lif",
        args=MA_SNN3,
        neuron_by_placement={"paper": "paper", "code": "biclab"},
        sources=_DVS3_SOURCES,
        rules=_RULES,
        notes=(
            "r_c = 16 is derived from paper Table 5 (+4,608 CA params); the code uses 8.",
            "The paper neuron's values (u_th = beta = 0.3) are the code's; see neurons/presets.",
            "Gait: num_classes=20 (106,772 neurons, matching Table 1).",
        ),
    )
)(MaSNN3)

register_model(
    ModelCfg(
        name="ma_snn3_tiny",
        family="ma_snn3",
        paper="ma_snn3 narrowed for CPU training (not a paper configuration)",
        neuron_count="all_lif",
        args=replace(
            MA_SNN3,
            timesteps=16,
            channels=(16, 32, 32),
            hidden=128,
            attn=replace(MA_SNN3.attn, reduction_c=8),
        ),
        neuron_by_placement={"paper": "paper", "code": "biclab"},
        sources={
            **_DVS3_SOURCES,
            "timesteps": "assumption",
            "channels": "assumption",
            "hidden": "assumption",
            "reduction_c": "assumption",
        },
        rules=_RULES,
        notes=(
            "A CPU-sized ma_snn3 for the main job (docs/training.md); r_c = 8 keeps >= 2 units.",
        ),
    )
)(MaSNN3)

register_model(
    ModelCfg(
        name="ma_snn5",
        family="ma_snn5",
        paper="Yao et al., TPAMI 2023 (arXiv 2209.13929) Table 1 five-layer rows; backbone of "
        "Fang et al., ICCV 2021 (PLIF), DVS128 Gesture network",
        neuron_count="conv_only",
        args=MaSNN5Args(
            num_classes=11,
            timesteps=20,
            input_size=(2, 128, 128),
            channels=(128,) * 5,
            hidden=512,
            voting=10,
            drop_rate=0.5,
            bias=False,
            attn=AttnCfg("tcsa", "paper", reduction_t=5),
            neuron=NeuronSpec("plif"),
        ),
        sources={
            "num_classes": "paper",
            "timesteps": "paper",
            "input_size": "derived",
            "channels": "derived",
            "hidden": "code",
            "voting": "code",
            "drop_rate": "code",
            "bias": "code",
            "attn": "paper",
            "placement": "assumption",
            "locations": "assumption",
            "neuron": "assumption",
            "neuron_kwargs": "assumption",
            "reduction_t": "assumption",
            "reduction_c": "assumption",
            "kernel_size": "assumption",
            "attn_relu": "assumption",
            "code.reduction_c": "code",
            "code.kernel_size": "code",
            "code.attn_relu": "code",
        },
        rules=_RULES,
        notes=(
            "Not in the official repo: the architecture follows Fang et al. (PLIF), whose "
            "code is cited ('code' tags here refer to it); 2,793,472 conv neurons at 128x128 "
            "match paper Table 1 (derived).",
            "How MA-SNN inserted TCSA and which neuron it used are not stated: we put the "
            "attention in every conv block with the paper placement and keep the PLIF "
            "neuron (assumptions); the FC layers have no attention.",
            "Dropout masks are shared over time (SpikingJelly multi-step Dropout), p = 0.5.",
        ),
    )
)(MaSNN5)
