"""Opt-in activation checkpointing of spiking blocks, exact with neuron and BN state.

``enable_checkpointing(model)`` makes every spiking block (conv, linear, MS-ResNet basic
block) keep only its input during the forward pass and recompute its internals (conv, BN,
attention, the LIF's time loop) during backward, one block at a time: the activation memory
of training drops to about one tensor per block plus the largest block's internals.

Exact, not approximate: the recomputation runs the same operations on the same input (the
fused LIF is deterministic; dropout replays its random numbers, ``preserve_rng_state``), and
train-mode BatchNorm updates its running statistics once, not twice (during recomputation it
writes to scratch copies). Outputs, gradients and BN statistics equal the plain model's bit
for bit (``tests/memory``).

Why blocks, not time blocks: every masnn block sees all ``T`` steps at once, by design:
train-mode BN normalises over ``T * B`` and temporal attention mixes the steps, so cutting
the network into time blocks would change the result. Inside a block, the fused LIF already
saves only its pre-reset membrane per step (the reference saves about six tensors per step).

Forward hooks on recomputed modules (e.g. a ``SpikeMonitor`` during training) run again
during backward; count spikes under ``torch.no_grad()`` (evaluation), where nothing is
recomputed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

_ATTR = "_masnn_checkpointed"


@contextlib.contextmanager
def _bn_stats_scratch(module: nn.Module) -> Iterator[None]:
    """Train-mode BNs of ``module`` update scratch copies of their running statistics."""
    saved = []
    for m in module.modules():
        bn = isinstance(m, nn.modules.batchnorm._BatchNorm)
        if bn and m.training and m.track_running_stats and m.running_mean is not None:
            saved.append((m, m.running_mean, m.running_var, m.num_batches_tracked))
            m.running_mean = m.running_mean.clone()
            m.running_var = m.running_var.clone()
            m.num_batches_tracked = m.num_batches_tracked.clone()
    try:
        yield
    finally:
        for m, mean, var, n in saved:
            m.running_mean, m.running_var, m.num_batches_tracked = mean, var, n


def _checkpointed_forward(module: nn.Module, forward: Any, *args: Any, **kwargs: Any) -> Any:
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)

    def contexts() -> tuple[Any, Any]:
        return contextlib.nullcontext(), _bn_stats_scratch(module)

    return checkpoint(
        forward, *args, use_reentrant=False, context_fn=contexts, preserve_rng_state=True, **kwargs
    )


def checkpointable_blocks(model: nn.Module) -> list[nn.Module]:
    """The outermost spiking blocks of ``model``: :class:`SpikingConvBlock`,
    :class:`SpikingLinearBlock` and any module class that sets ``checkpoint_block = True``
    (MS-ResNet's basic block)."""
    from masnn.layers.blocks import SpikingConvBlock, SpikingLinearBlock

    kinds = (SpikingConvBlock, SpikingLinearBlock)
    out: list[nn.Module] = []

    def walk(m: nn.Module) -> None:
        for child in m.children():
            if isinstance(child, kinds) or getattr(type(child), "checkpoint_block", False):
                out.append(child)
            else:
                walk(child)

    walk(model)
    return out


def enable_checkpointing(model: nn.Module) -> int:
    """Checkpoint every spiking block of ``model`` in place; returns how many.

    The model's structure and ``state_dict`` are unchanged (the blocks' ``forward`` is wrapped
    on the instance); :func:`disable_checkpointing` undoes it. Idempotent.
    """
    n = 0
    for block in checkpointable_blocks(model):
        if not getattr(block, _ATTR, False):
            block.forward = partial(_checkpointed_forward, block, block.forward)
            setattr(block, _ATTR, True)
        n += 1
    return n


def disable_checkpointing(model: nn.Module) -> None:
    """Undo :func:`enable_checkpointing`."""
    for block in checkpointable_blocks(model):
        if getattr(block, _ATTR, False):
            del block.forward
            delattr(block, _ATTR)
