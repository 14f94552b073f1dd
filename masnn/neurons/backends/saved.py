"""May a fused kernel's backward overwrite a tensor it saved? (:func:`consumable`)

A hand-written backward that writes its input gradient into the buffer of a tensor it saved
(and needs no more) skips a fresh full-size allocation, whose page faults cost about as much
as the pass itself on CPU. That is safe only when no second backward will read the tensor
(the graph is not retained) and nothing else holds it: no Python reference (a hook's list), no
other autograd node, no view of its storage. Those counts are compared with the ones a probe
sees for a tensor nothing else holds, measured once, at import, at the same call depth.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import Tensor


def _holders(t: Tensor) -> tuple[int, int, int]:
    """Python references, tensor references and storage references of ``t``."""
    return (
        sys.getrefcount(t),
        t._use_count(),  # type: ignore[attr-defined]
        torch._C._storage_Use_Count(t.untyped_storage()._cdata),
    )


class _HoldersProbe(torch.autograd.Function):
    """A saved tensor nothing else holds, unpacked in backward: ``_holders`` as measured there
    (through :func:`_probed`: the call depth of :func:`consumable`'s)."""

    seen: tuple[int, int, int] | None = None

    @staticmethod
    def forward(ctx: Any, t: Tensor) -> Tensor:
        ctx.save_for_backward(t)
        return t.sum()

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> Tensor:
        (t,) = ctx.saved_tensors
        _HoldersProbe.seen = _probed(t)
        return g.expand(t.shape)


def _probed(t: Tensor) -> tuple[int, int, int]:
    """:func:`_holders` one call deep, as :func:`consumable` calls it."""
    return _holders(t)


def _measure() -> tuple[int, int, int]:
    with torch.inference_mode(False), torch.enable_grad():
        x = torch.zeros(4, requires_grad=True)
        _HoldersProbe.apply(x * 1.0).backward()
    assert _HoldersProbe.seen is not None
    return _HoldersProbe.seen


def consumable(t: Tensor) -> bool:
    """Whether a backward may overwrite its saved ``t``: the graph is not retained (no second
    backward will read ``t``) and nothing else holds ``t`` (no Python reference, no other
    autograd node, no view of its storage), compared with a probe's counts in the same
    position (:class:`_HoldersProbe`). Anything unexpected answers ``False``."""
    counts = _holders(t)
    if torch._C._autograd._get_current_graph_task_keep_graph():
        return False
    return all(c <= b for c, b in zip(counts, _BASELINE))


#: The probe's counts, measured at import (outside any backward or saved-tensor hooks).
_BASELINE = _measure()
