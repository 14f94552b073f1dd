"""MS-ResNet (membrane-shortcut spiking ResNet) with Att-Res-SNN residual attention.

Paper: `Attention Spiking Neural Networks` (§2.2 Eq. 15-16, Tables 3 and 7) -
https://arxiv.org/abs/2209.13929; official code ``Att_Res_SNN/models/resnet_2.py``.

The shortcut adds membrane-level (pre-LIF) tensors. One block::

    branch(x) = BN2(Conv3x3(LIF(BN1(Conv3x3_s(LIF(x))))))
    Att-Res-SNN-1:  out = A(branch(x)) + shortcut(x)    (A = CA/CSA on the residual branch)
    Att-Res-SNN-2:  out = A(branch(x) + shortcut(x))    (attention after the add, no ReLU)

``shortcut`` is the identity, or ``AvgPool2 -> Conv1x1 -> BN`` when the stride or the width
changes. Stem: ``Conv7x7/2 -> BN`` (no LIF, no max-pool); every stage's first block has stride
2 (overall stride 32). Head: ``LIF -> GAP -> mean over T -> Dropout(0.2) -> FC``. BN weights
start at 0.5 and each block's BN2 at 0.1, biases at 0 [code].

Attention ``A`` is the ``residual`` module of the model's attention plan
(``AttnPlan.build("residual", ...)``):
``placement="code"`` pools CA/SA over ``T`` and adds a ReLU (SA kernel 3, ``r_c = 8``);
``placement="paper"`` gates each step (SA kernel 7, no ReLU).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import Tensor, nn

from masnn.attention import AttnCfg, AttnPlan
from masnn.layers import SeqToBatch
from masnn.models._base import SpikingClassifier
from masnn.models._cfg import ModelCfg
from masnn.models._factory import register_model
from masnn.neurons import NeuronSpec

#: BatchNorm weight init of the official code (``thresh = 0.5``; BN2 gets ``0.2 * thresh``).
BN_INIT = 0.5
BN2_INIT = 0.1
ATT_RES_VARIANTS = (1, 2)


def _check_size(input_size: tuple[int, ...]) -> tuple[int, int, int]:
    size = tuple(int(s) for s in input_size)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"input_size must be (C, H, W) positive ints, got {input_size!r}")
    return size[0], size[1], size[2]


def _bn(channels: int, weight: float) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels)
    nn.init.constant_(bn.weight, weight)
    nn.init.zeros_(bn.bias)
    return bn


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False)
    # He init (fan_out) as torchvision's ResNet: the paper and SPEC state none [assumption].
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


class MSBasicBlock(nn.Module):
    """Membrane-shortcut basic block with optional residual attention (module docstring).

    Args:
        in_channels: input width.
        out_channels: output width.
        stride: stride of the first 3x3 conv (and of the shortcut's avg-pool).
        timesteps: ``T`` (passed to the attention plan).
        attn: the attention plan (its ``residual`` module is ``A``).
        att_res: 1 = attention on the branch before the add, 2 = after the add.
        neuron: the neuron of both LIFs.

    Shape:
        x_seq: ``(T, B, C_in, H, W)`` membrane input; output: ``(T, B, C_out, H/s, W/s)``.
    """

    checkpoint_block = True  # masnn.layers.checkpoint recomputes it as one unit

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        timesteps: int,
        *,
        attn: AttnPlan,
        att_res: int,
        neuron: NeuronSpec,
    ) -> None:
        super().__init__()
        self.att_res = att_res
        self.lif1 = neuron.build()
        self.conv1 = SeqToBatch(_conv(in_channels, out_channels, 3, stride))
        self.bn1 = SeqToBatch(_bn(out_channels, BN_INIT))
        self.lif2 = neuron.build()
        self.conv2 = SeqToBatch(_conv(out_channels, out_channels, 3, 1))
        self.bn2 = SeqToBatch(_bn(out_channels, BN2_INIT))
        self.attn = attn.build("residual", out_channels, timesteps, backend=neuron.backend)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = SeqToBatch(
                nn.Sequential(
                    # ceil_mode keeps odd sizes aligned with the stride-s 3x3 conv (same on even)
                    nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity(),
                    _conv(in_channels, out_channels, 1, 1),
                    _bn(out_channels, BN_INIT),
                )
            )

    def forward(self, x_seq: Tensor) -> Tensor:
        """Residual branch (+ attention) plus the membrane shortcut (see the class docstring)."""
        out = self.bn1(self.conv1(self.lif1(x_seq)))  # (T, B, C_out, H', W')
        out = self.bn2(self.conv2(self.lif2(out)))  # (T, B, C_out, H', W')
        identity = x_seq if self.shortcut is None else self.shortcut(x_seq)
        if self.attn is None:
            return out + identity
        if self.att_res == 1:
            return self.attn(out) + identity
        return self.attn(out + identity)


@dataclass(frozen=True)
class MSResNetArgs:
    """Args of MS-ResNet / Att-Res-SNN (``ms_resnet18/34/104``).

    Attributes:
        layers: blocks per stage (the depth).
        num_classes: ``K``.
        timesteps: ``T``.
        input_size: ``(C, H, W)``.
        attn: the residual attention (C/S gates only; ``relu=None`` follows
            :data:`ATT_RES_VARIANTS`' rule: the code's ReLU only with ``placement="code"``
            and ``att_res=1``).
        att_res: 1 = attention on the branch, 2 = after the shortcut add.
        neuron: the neuron of every LIF.
        drop_rate: dropout before the classifier.
        widths: stage widths.
    """

    layers: tuple[int, ...]
    num_classes: int
    timesteps: int
    input_size: tuple[int, int, int]
    attn: AttnCfg
    att_res: int
    neuron: NeuronSpec
    drop_rate: float
    widths: tuple[int, ...]


class MSResNet(SpikingClassifier):
    """MS-ResNet / Att-Res-SNN classifier (see the module docstring).

    Build through ``masnn.create_model("ms_resnet34", ...)``.

    Args:
        args: the :class:`MSResNetArgs`.

    Shape:
        x_seq: ``(T, B, 3, H, W)`` (static images: ``masnn.layout.repeat_over_time``);
        output: ``(B, K)``.
    """

    def __init__(self, args: MSResNetArgs) -> None:
        super().__init__()
        if args.att_res not in ATT_RES_VARIANTS:
            raise ValueError(
                f"att_res must be one of {list(ATT_RES_VARIANTS)}, got {args.att_res!r}"
            )
        if args.attn.reduction_t is not None:
            raise ValueError(
                "MS-ResNet uses no temporal attention (static images), so reduction_t must be "
                f"None; got {args.attn.reduction_t!r}"
            )
        if args.attn.relu is None:
            # The code's ReLU belongs to Att-Res-SNN-1 (branch only); after the add it would
            # clip the membrane shortcut, so Att-Res-SNN-2 has none.
            relu = args.attn.placement == "code" and args.att_res == 1
            args = replace(args, attn=replace(args.attn, relu=relu))
        layers, widths = tuple(args.layers), tuple(args.widths)
        if len(layers) != len(widths):
            raise ValueError(f"layers {layers} and widths {widths} must have the same length")
        self.args = args
        self.num_classes = args.num_classes
        self.timesteps = args.timesteps
        self.input_size = _check_size(args.input_size)
        stem_width = widths[0]
        self.stem = SeqToBatch(
            nn.Sequential(
                _conv(self.input_size[0], stem_width, 7, 2),
                _bn(stem_width, BN_INIT),
            )
        )
        plan, t, att_res, neuron = args.attn.resolve(), args.timesteps, args.att_res, args.neuron
        stages = []
        c_in = stem_width
        for depth, width in zip(layers, widths):
            blocks = [
                MSBasicBlock(
                    c_in if i == 0 else width,
                    width,
                    2 if i == 0 else 1,
                    t,
                    attn=plan,
                    att_res=att_res,
                    neuron=neuron,
                )
                for i in range(depth)
            ]
            stages.append(nn.Sequential(*blocks))
            c_in = width
        self.stages = nn.Sequential(*stages)
        self.lif = args.neuron.build()
        self.num_features = c_in
        self.drop = nn.Dropout(args.drop_rate)
        self.fc = nn.Linear(c_in, args.num_classes)

    def forward_features(self, x_seq: Tensor) -> Tensor:
        """Spikes of the last LIF, before global pooling.

        Shape:
            x_seq: ``(T, B, 3, H, W)``; output: ``(T, B, 512, H/32, W/32)``.
        """
        self._check_input(x_seq)
        out = self.stages(self.stem(x_seq))  # (T, B, 512, H/32, W/32) membrane
        return self.lif(out)

    def forward_head_seq(self, feat_seq: Tensor) -> Tensor:
        """Global average pool per step.

        Shape:
            feat_seq: ``(T, B, C, h, w)``; output: ``(T, B, C)``.
        """
        return feat_seq.mean(dim=(-2, -1))  # (T, B, C)

    def head_final(self, pooled: Tensor) -> Tensor:
        """Dropout and the classifier on the time-averaged pooled spikes.

        Shape:
            pooled: ``(B, C)``; output: ``(B, K)``.
        """
        return self.fc(self.drop(pooled))


_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 104: (3, 8, 32, 8)}


_PAPER = (
    "Yao et al., TPAMI 2023 (arXiv 2209.13929) §2.2, Tables 3/7; "
    "code Att_Res_SNN/models/resnet_2.py (ResNet_origin)"
)
MS_RESNET = MSResNetArgs(
    layers=_DEPTHS[18],
    num_classes=1000,
    timesteps=1,
    input_size=(3, 224, 224),
    attn=AttnCfg("csa", "paper", reduction_c=8),
    att_res=1,
    neuron=NeuronSpec("msresnet"),
    drop_rate=0.2,
    widths=(64, 128, 256, 512),
)
_SOURCES = dict(
    layers="paper",
    locations="paper",
    neuron_kwargs="code",
    reduction_t="paper",
    reduction_c="assumption",
    kernel_size="paper",
    num_classes="paper",
    timesteps="paper",
    input_size="paper",
    attn="paper",
    placement="paper",
    att_res="paper",
    neuron="code",
    **{"paper.reduction_c": "assumption", "paper.kernel_size": "paper"},
    attn_relu="paper",
    drop_rate="code",
    widths="code",
    **{"code.reduction_c": "code", "code.kernel_size": "code", "code.attn_relu": "code"},
)
_NOTES = (
    "reduction_c = 8 with placement='paper' is the code's value: the paper states no r_c for "
    "ImageNet (assumption).",
    "attn_relu (None) resolves to True only for placement='code' with att_res=1 (the code's "
    "ReLU on the branch); Att-Res-SNN-2 never gets the ReLU.",
    "Conv weights use He (fan_out) init (assumption; not stated).",
    "NASAR counts every LIF neuron (all_lif) as for the DVS three-layer net (assumption).",
)

for _depth in (18, 34, 104):
    register_model(
        ModelCfg(
            name=f"ms_resnet{_depth}",
            family="ms_resnet",
            paper=_PAPER,
            neuron_count="all_lif",
            args=replace(MS_RESNET, layers=_DEPTHS[_depth]),
            sources={**_SOURCES, "neuron_count": "assumption"},
            rules={"attn_relu": "placement == 'code' and att_res == 1"},
            notes=_NOTES,
        )
    )(MSResNet)
