"""Every assumption the exporters make about masnn's model internals, in one place.

The exporters otherwise use only the public model API (``masnn.create_model``, ``forward``,
``timesteps``, ``input_size``, ``streaming_blocker``, :class:`~masnn.models.StreamingModel`)
and module types (:class:`~masnn.neurons.LIF`, ``nn.Conv2d`` ...). When the model or attention
packages are refactored, this file is the one to adapt.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from masnn.attention.gates import gate_of
from masnn.export import ExportError
from masnn.neurons import LIF


def attention_modules(model: nn.Module) -> list[str]:
    """Dotted names of the outermost attention modules in ``model`` (anything defined in
    ``masnn.attention``), in module order."""
    names: list[str] = []
    for name, mod in model.named_modules():
        if type(mod).__module__.startswith("masnn.attention") and not any(
            name.startswith(n + ".") for n in names
        ):
            names.append(name)
    return names


def causal_blocker(model: nn.Module) -> str | None:
    """Why ``model`` has no per-step cell (non-causal attention), or ``None`` if it has one."""
    blocker = getattr(model, "streaming_blocker", None)
    if blocker is None:
        return f"{type(model).__name__} has no streaming contract (build it with create_model)"
    return blocker()


def window_bound(model: nn.Module) -> tuple[str, nn.Module, int] | None:
    """The first module built for one window length, as ``(name, module, T)``, or ``None``.

    A registered gate kind without a per-step form (TA) weighs the whole window with weights
    sized for the ``T`` it was built with (its ``timesteps``); every other layer runs at any
    ``T`` (pooled C/S gates pool over whatever window they get).
    """
    for name, mod in model.named_modules():
        kind = gate_of(mod)
        if kind is not None and not kind.per_step:
            t = getattr(mod, "timesteps", None)
            if t is not None:
                return name, mod, int(t)
    return None


def attn_name(model: nn.Module) -> str:
    """The model's attention name (``"none"`` without attention)."""
    cfg = getattr(getattr(model, "args", None), "attn", None)
    name = getattr(cfg, "name", None) or getattr(model, "attn", None) or "none"
    return str(name)


def model_timesteps(model: nn.Module) -> int | None:
    """The ``T`` the model was built for (TA needs exactly it), or ``None``."""
    t = getattr(model, "timesteps", None)
    return int(t) if t is not None else None


def model_input_size(model: nn.Module) -> tuple[int, int, int]:
    """``(C, H, W)`` of one frame."""
    size = getattr(model, "input_size", None)
    if size is None:
        raise ExportError(f"{type(model).__name__} has no input_size; build it with create_model")
    return tuple(int(s) for s in size)  # type: ignore[return-value]


def model_from_checkpoint(path: str | Path, overrides: list[str] | None = None) -> nn.Module:
    """Rebuild a trained model from a ``masnn train`` checkpoint (``best.pt``), in eval mode.

    The same rebuild as ``masnn eval`` (:func:`masnn.train.evaluate.rebuild_run`): the class
    count and frame size come from the run's dataset (the checkpoint stores the config, not the
    resolved model kwargs), so the data must be where the config says or be pointed to with
    ``data.*`` overrides.
    """
    from masnn.train.evaluate import rebuild_run

    return rebuild_run(path, overrides, command="export").model.eval()


# ----------------------------------------------------------------------------- NIR structure


@dataclass
class Op:
    """One primitive of a spiking network, in execution order.

    Attributes:
        kind: ``"conv"``, ``"linear"`` (each with an optional folded ``bn``), ``"avgpool"``,
            ``"maxpool"``, ``"gap"`` (global average pooling), ``"lif"``, ``"flatten"`` or
            ``"dropout"``.
        name: the dotted module name (for messages and node names).
        module: the module (``None`` for ``flatten`` and ``gap``).
        bn: the BatchNorm that follows a conv/linear, folded on export.
        inputs: the names of the ops whose outputs are summed into this one (``"input"`` is
            the network input); empty = the previous op (a chain).
    """

    kind: str
    name: str
    module: nn.Module | None
    bn: nn.Module | None = None
    inputs: tuple[str, ...] = ()


def _block_ops(prefix: str, block: Any) -> Iterator[Op]:
    """A ``SpikingConvBlock`` / ``SpikingLinearBlock``: weight -> BN -> [pool] -> LIF -> [pool].

    ``block`` is walked by attribute (``conv`` / ``fc``, ``bn``, ``pool``, ``neuron.lif``), the
    layout this module pins down for the exporters.
    """
    conv = getattr(block, "conv", None)
    if conv is not None:
        yield Op("conv", f"{prefix}.conv", conv, getattr(block, "bn", None))
        pool = getattr(block, "pool", None)
        after = bool(getattr(block, "pool_after_neuron", False))
        if pool is not None and not after:
            yield _pool_op(f"{prefix}.pool", pool)
        yield Op("lif", f"{prefix}.neuron.lif", block.neuron.lif)
        if pool is not None and after:
            yield _pool_op(f"{prefix}.pool", pool)
    else:
        yield Op("linear", f"{prefix}.fc", block.fc, getattr(block, "bn", None))
        yield Op("lif", f"{prefix}.neuron.lif", block.neuron.lif)


def _pool_op(name: str, pool: nn.Module) -> Op:
    if isinstance(pool, nn.AvgPool2d):
        return Op("avgpool", name, pool)
    if isinstance(pool, nn.MaxPool2d):
        return Op("maxpool", name, pool)
    raise ExportError(f"{name}: unsupported pooling {type(pool).__name__}")


def network_ops(model: nn.Module) -> list[Op]:
    """The primitives of a registered network in execution order, with their inputs.

    ``ma_snn3*`` / ``ma_snn5`` are chains (:func:`sequential_ops`); ``ms_resnet*`` is a graph
    whose residual adds are fan-ins (:func:`residual_ops`).

    Raises:
        ExportError: a model of another family (the message names the supported ones).
    """
    family = getattr(getattr(model, "default_cfg", None), "family", None)
    if family in ("ma_snn3", "ma_snn5") and hasattr(model, "features"):
        return sequential_ops(model)
    if family == "ms_resnet" and hasattr(model, "stages"):
        return residual_ops(model)
    raise ExportError(
        f"{type(model).__name__} (family {family!r}) has no NIR mapping; NIR export supports "
        "the ma_snn3, ma_snn5 and ms_resnet families built with masnn.create_model"
    )


def sequential_ops(model: nn.Module) -> list[Op]:
    """The primitives of a sequential DVS network (``ma_snn3*``, ``ma_snn5``), a chain."""
    ops: list[Op] = []
    for i, block in enumerate(model.get_submodule("features").children()):
        ops.extend(_block_ops(f"features.{i}", block))
    ops.append(Op("flatten", "flatten", None))
    for name in ("drop1", "fc1", "drop2", "fc2"):
        mod = getattr(model, name, None)
        if mod is None:
            continue
        if name.startswith("drop"):
            ops.append(Op("dropout", name, mod))
        else:
            ops.extend(_block_ops(name, mod))
    return ops


def residual_ops(model: Any) -> list[Op]:  # an MSResNet; its submodules read untyped
    """The primitives of an MS-ResNet (``ms_resnet*``) as a graph.

    The membrane shortcut adds pre-LIF tensors: each block's output is the sum of its
    branch (``conv2`` with ``bn2`` folded) and its shortcut (the block's input, or
    ``AvgPool -> Conv1x1 -> BN``), so the consumers of a block output take every term of
    that sum as an input (an identity shortcut passes its input's terms on). Attention is
    refused before this is called (``attention_modules``).
    """
    stem = model.stem.module  # Sequential(Conv7x7/2, BN)
    ops: list[Op] = [Op("conv", "stem.module.0", stem[0], stem[1], ("input",))]
    terms: tuple[str, ...] = ("stem.module.0",)  # the summands of the current membrane input
    for si, stage in enumerate(model.stages):
        for bi, blk in enumerate(stage):
            p = f"stages.{si}.{bi}"
            ops += [
                Op("lif", f"{p}.lif1", blk.lif1, inputs=terms),
                Op("conv", f"{p}.conv1.module", blk.conv1.module, blk.bn1.module),
                Op("lif", f"{p}.lif2", blk.lif2),
                Op("conv", f"{p}.conv2.module", blk.conv2.module, blk.bn2.module),
            ]
            branch = f"{p}.conv2.module"
            if blk.shortcut is None:
                terms = (branch, *terms)
                continue
            pool, conv, bn = blk.shortcut.module  # Sequential(AvgPool | Identity, Conv1x1, BN)
            src = terms
            if isinstance(pool, nn.AvgPool2d):
                ops.append(Op("avgpool", f"{p}.shortcut.module.0", pool, inputs=src))
                src = (f"{p}.shortcut.module.0",)
            elif not isinstance(pool, nn.Identity):
                raise ExportError(f"{p}.shortcut.module.0: unsupported {type(pool).__name__}")
            ops.append(Op("conv", f"{p}.shortcut.module.1", conv, bn, inputs=src))
            terms = (branch, f"{p}.shortcut.module.1")
    ops += [
        Op("lif", "lif", model.lif, inputs=terms),
        Op("gap", "gap", None),  # global average pooling (per step; masnn averages over T after)
        Op("flatten", "flatten", None),
        Op("dropout", "drop", model.drop),
        Op("linear", "fc", model.fc),
    ]
    return ops


def readout_groups(model: nn.Module) -> int:
    """Output neurons per class (``ma_snn5``'s voting); the readout is the group's mean rate."""
    voting: Any = getattr(model, "voting", None)
    return int(voting or getattr(getattr(model, "args", None), "voting", 1))


def lif_modules(model: nn.Module) -> list[tuple[str, LIF]]:
    """``(name, LIF)`` of every LIF layer, in ``named_modules`` order (the streaming order)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LIF)]


@torch.no_grad()
def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: Any) -> Any:
    """``(W', b')`` of ``bn(W x + b)`` in eval mode (running statistics), as float64 numpy.

    ``bn`` is a ``BatchNorm1d`` / ``BatchNorm2d`` (or ``None``).
    """
    w = weight.detach().double()
    b = torch.zeros(w.shape[0], dtype=torch.float64) if bias is None else bias.detach().double()
    if bn is not None:
        scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
        shift = bn.bias.detach().double() - bn.running_mean.double() * scale
        w = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
        b = b * scale + shift
    return w.numpy(), b.numpy()
