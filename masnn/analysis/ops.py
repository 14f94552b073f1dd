r"""Operation counts: ACs on spiking inputs, MACs on real-valued inputs, attention MACs.

Paper: `Attention Spiking Neural Networks` (SM Table S1, Eq. 17-19) - https://arxiv.org/abs/2209.13929

A forward hook on every ``nn.Conv1d/2d/3d`` and ``nn.Linear`` outside the attention gates
classifies each call: the layer that takes the model input (the encoding layer,
``model.input_layer()`` for :class:`~masnn.models.SpikingClassifier`, or ``input_layer=``) is a
**MAC** layer by position (paper Eq. 17), whatever its values (binary event frames too); any
other layer is an **AC** layer when its input is binary (every value 0 or 1: spikes) and a
**MAC** layer otherwise. Per layer it accumulates:

* ``dense``: the layer's dense MACs, ``FL`` per sample per step times ``B * T`` (paper
  ``FL_conv = k_h k_w h_out w_out c_in c_out / groups``, ``FL_fc = in * out``);
* ``exact``: the synaptic operations actually triggered by non-zero inputs,
  ``sum_i [x_i != 0] * fanout(i)``. For a linear layer ``fanout = out_features``, so the count
  is ``nnz(x) * out_features``. For a convolution ``fanout(i) = F(position of i) *
  c_out / groups`` where ``F`` counts the output positions the input position reaches; ``F``
  is a transposed convolution of ones over the output grid, so padding borders, strides and
  dilations are exact (the same number as a ones-weight convolution of the binary input,
  SpikingJelly's ``SynOpCounter``, or NeuroBench's ``Effective_ACs`` with no zero weights);
* ``nnz`` and ``numel`` of the input, giving the paper's estimate
  ``T * FL * Phi = dense * nnz / numel`` (``Phi`` = the input firing rate, or the fraction of
  non-zero pixels of event frames).

Biases are not synaptic operations and are not counted. The attention gates (every kind in
the gate registry :data:`masnn.attention.GATES`, plug-ins included) are counted analytically
from their input shapes by their registered MAC count, under a named convention
(:data:`ATTN_CONVENTIONS`, formulas in ``docs/energy.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

from masnn.analysis.hooks import HookSet
from masnn.attention.gates import GATES, gate_internals, gate_of

#: Attention MAC conventions: ``paper_table5`` (one pass of the gate's learned map per step,
#: reproduces paper Table 5's +276,480 for CBAM-CA; a gate pooled over the window runs its map
#: once per sample, not ``T`` times) and ``full`` (pools, both MLP branches, sigmoid and the
#: element-wise gating).
ATTN_CONVENTIONS = ("paper_table5", "full")

CONNECTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def is_binary(x: Tensor) -> bool:
    """True if every value of ``x`` is 0 or 1 (bool tensors are binary)."""
    if x.dtype == torch.bool:
        return True
    if x.is_complex() or x.numel() == 0:
        return x.numel() == 0
    return bool(((x == 0) | (x == 1)).all())


def dense_macs(module: nn.Linear | _ConvNd, x: Tensor, out: Tensor) -> int:
    """Dense MACs of one call of a conv / linear ``module`` (all samples and folded steps)."""
    if isinstance(module, nn.Linear):
        return (out.numel() // module.out_features) * module.in_features * module.out_features
    k = math.prod(module.kernel_size)
    return out.numel() * (module.in_channels // module.groups) * k


def conv_fanout(module: _ConvNd, in_spatial: tuple[int, ...]) -> Tensor:
    """Output positions reached by each input position of a conv (float64, ``in_spatial``).

    Computed as a transposed convolution of ones over the output grid; exact at the borders,
    for any stride, dilation and zero padding.
    """
    d = len(in_spatial)
    padding = module.padding
    if isinstance(padding, str) or module.padding_mode != "zeros":
        return _fanout_by_ones_conv(module, in_spatial)
    k, s, dil = module.kernel_size, module.stride, module.dilation
    out_sp = [
        (in_spatial[i] + 2 * padding[i] - dil[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(d)
    ]
    base = [(out_sp[i] - 1) * s[i] - 2 * padding[i] + dil[i] * (k[i] - 1) + 1 for i in range(d)]
    opad = [in_spatial[i] - base[i] for i in range(d)]
    if any(p < 0 or p >= max(s[i], dil[i]) for i, p in enumerate(opad)):
        return _fanout_by_ones_conv(module, in_spatial)
    ones_out = torch.ones(1, 1, *out_sp, dtype=torch.float64)
    ones_k = torch.ones(1, 1, *k, dtype=torch.float64)
    fan = _CONV_T[d](ones_out, ones_k, stride=s, padding=padding, output_padding=opad, dilation=dil)
    return fan[0, 0]


def _fanout_by_ones_conv(module: _ConvNd, in_spatial: tuple[int, ...]) -> Tensor:
    """Fan-out map by differentiating a ones-weight conv (any padding mode, ``"same"``)."""
    d = len(in_spatial)
    x = torch.ones(1, 1, *in_spatial, dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        y = ones_conv(module, x, in_channels=1, out_channels=1)
        (fan,) = torch.autograd.grad(y.sum(), x)
    return fan.reshape(in_spatial) if d else fan


def ones_conv(
    module: _ConvNd, x: Tensor, *, in_channels: int | None = None, out_channels: int | None = None
) -> Tensor:
    """``module``'s convolution with all-ones weights, no bias, in float64 (the reference count).

    ``sum(ones_conv(m, spikes))`` is the exact AC count of ``m`` on binary ``spikes``.
    """
    d = x.dim() - 2
    cin = module.in_channels // module.groups if in_channels is None else in_channels
    cout = module.out_channels if out_channels is None else out_channels
    groups = module.groups if in_channels is None else 1
    w = torch.ones(cout, cin, *module.kernel_size, dtype=torch.float64)
    x = x.to(torch.float64)
    padding: Any = module.padding
    if module.padding_mode != "zeros":
        x = F.pad(x, module._reversed_padding_repeated_twice, mode=module.padding_mode)
        padding = 0
    return _CONV[d](x, w, None, module.stride, padding, module.dilation, groups)


@dataclass
class LayerOps:
    """Accumulated operation counts of one connection layer (all samples).

    Attributes:
        name: qualified module name.
        kind: ``"conv"`` or ``"linear"``.
        ac_calls / mac_calls: calls with binary / real-valued input.
        ac_dense / mac_dense: dense MACs of those calls.
        ac_exact / mac_exact: non-zero-input synaptic operations of those calls.
        ac_nnz / ac_numel, mac_nnz / mac_numel: non-zero and total input elements.
    """

    name: str
    kind: str
    ac_calls: int = 0
    ac_dense: int = 0
    ac_exact: float = 0.0
    ac_nnz: int = 0
    ac_numel: int = 0
    mac_calls: int = 0
    mac_dense: int = 0
    mac_exact: float = 0.0
    mac_nnz: int = 0
    mac_numel: int = 0

    @property
    def ac_paper(self) -> float:
        """The paper's AC estimate ``T * FL * Phi`` (``Phi`` = the mean input rate)."""
        return self.ac_dense * self.ac_nnz / self.ac_numel if self.ac_numel else 0.0

    @property
    def mac_paper(self) -> float:
        """The paper's encoding-layer MACs ``T * FL * Phi^0`` (``Phi^0`` = non-zero fraction)."""
        return self.mac_dense * self.mac_nnz / self.mac_numel if self.mac_numel else 0.0

    @property
    def input_rate(self) -> float:
        """Mean rate of the binary input (``Phi^{n-1}``)."""
        return self.ac_nnz / self.ac_numel if self.ac_numel else 0.0


@dataclass
class AttnOps:
    """Accumulated MACs of one attention gate under each convention (all samples)."""

    name: str
    kind: str
    calls: int = 0
    macs: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ATTN_CONVENTIONS, 0.0))


def attention_macs(kind: str, module: nn.Module, x: Tensor) -> dict[str, float]:
    """MACs of one call of an attention gate on input ``x``, per convention (all samples).

    ``x`` is a sequence ``(T, B, C, H, W)`` (``(T, B, F)`` for TA), or one step
    ``(B, C, H, W)`` for the per-step membrane gates. The count is the gate kind's registered
    one (:attr:`masnn.attention.GateKind.macs`); formulas in ``docs/energy.md``.
    """
    return dict(GATES.get(kind).macs(module, x))


def connection_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every conv / linear layer outside the attention gates."""
    inside = gate_internals(model)
    return [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, CONNECTIONS) and id(m) not in inside
    ]


class OpsCounter(HookSet):
    """Count ACs, MACs and attention MACs of ``model`` while inside a ``with`` block.

    Args:
        model: the network. Its forward input is read by a pre-hook for the batch size
            (time-major ``(T, B, ...)``: ``B = x.shape[1]``).
        batch_size: override ``B`` (samples per forward), e.g. for batch-first models.
        input_layer: name of the layer that takes the model input (a MAC layer by position);
            ``None`` = ``model.input_layer()`` when the model has one, else no layer is one by
            position (every layer is classified by its input's values).

    Hooks are removed on exit, also on an exception; the model is not modified.

    Example:
        >>> import torch
        >>> fc = nn.Linear(4, 3)
        >>> with OpsCounter(fc, batch_size=1) as ops:
        ...     _ = fc(torch.tensor([[1.0, 0.0, 1.0, 0.0]]))
        >>> ops.layers[next(iter(ops.layers))].ac_exact
        6.0
    """

    def __init__(
        self, model: nn.Module, *, batch_size: int | None = None, input_layer: str | None = None
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"OpsCounter needs an nn.Module, got {type(model).__name__}")
        if batch_size is not None and (isinstance(batch_size, bool) or batch_size < 1):
            raise ValueError(f"batch_size must be an int >= 1 or None, got {batch_size!r}")
        self.model = model
        self.batch_size = batch_size
        finder = getattr(model, "input_layer", None)
        if input_layer is None and callable(finder):
            input_layer = finder()
        if input_layer is not None and input_layer not in dict(model.named_modules()):
            raise ValueError(f"input_layer {input_layer!r} is not a module of the model")
        self.input_layer = input_layer
        self.samples = 0
        self.layers: dict[str, LayerOps] = {}
        self.attention: dict[str, AttnOps] = {}
        self._fanout: dict[tuple[int, tuple[int, ...]], Tensor] = {}
        self._seen: set[str] = set()

    def _install(self) -> None:  # enter/exit/close from HookSet
        root = type(self.model).__name__
        self._handles.append(self.model.register_forward_pre_hook(self._begin))
        self._handles.append(self.model.register_forward_hook(self._end, always_call=True))
        for name, mod in self.model.named_modules():
            kind = gate_of(mod)
            if kind is not None:
                self.attention[name or root] = AttnOps(name or root, kind.name)
                self._handles.append(mod.register_forward_hook(self._attn_hook(name or root)))
        for name, mod in connection_layers(self.model):
            lk = "linear" if isinstance(mod, nn.Linear) else "conv"
            self.layers[name or root] = LayerOps(name or root, lk)
            is_input = name == self.input_layer
            self._handles.append(mod.register_forward_hook(self._conn_hook(name or root, is_input)))

    def _begin(self, module: nn.Module, args: Any) -> None:
        self._depth += 1
        if self._depth > 1:
            return
        self._seen.clear()
        if self.batch_size is not None:
            self.samples += self.batch_size
            return
        x = args[0] if args else None
        if not isinstance(x, Tensor) or x.dim() < 2:
            raise ValueError(
                "OpsCounter reads B from a time-major (T, B, ...) input; pass batch_size= for "
                f"other inputs (got {type(x).__name__})"
            )
        self.samples += int(x.shape[1])

    def _end(self, module: nn.Module, args: Any, out: Any) -> None:
        self._depth = max(0, self._depth - 1)

    def _conn_hook(self, name: str, is_input: bool) -> Callable[..., None]:
        def hook(module: nn.Linear | _ConvNd, args: tuple[Any, ...], out: Tensor) -> None:
            self._count(self.layers[name], module, args[0], out, is_input)

        return hook

    def _attn_hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], out: Tensor) -> None:
            rec = self.attention[name]
            b = int(
                args[0].shape[1] if rec.kind == "ta" or args[0].dim() == 5 else args[0].shape[0]
            )
            for conv, v in attention_macs(rec.kind, module, args[0]).items():
                rec.macs[conv] += v
            const = GATES.get(rec.kind).per_forward
            if const and name not in self._seen:
                for conv, v in const.items():
                    rec.macs[conv] += v * b
            self._seen.add(name)
            rec.calls += 1

        return hook

    @torch.no_grad()
    def _count(
        self, rec: LayerOps, module: nn.Linear | _ConvNd, x: Tensor, out: Tensor, is_input: bool
    ) -> None:
        x = x.detach()
        dense = dense_macs(module, x, out)
        exact = self._exact(module, x)
        nnz = int(torch.count_nonzero(x))
        if not is_input and is_binary(x):
            rec.ac_calls += 1
            rec.ac_dense += dense
            rec.ac_exact += exact
            rec.ac_nnz += nnz
            rec.ac_numel += x.numel()
        else:
            rec.mac_calls += 1
            rec.mac_dense += dense
            rec.mac_exact += exact
            rec.mac_nnz += nnz
            rec.mac_numel += x.numel()

    def _exact(self, module: nn.Linear | _ConvNd, x: Tensor) -> float:
        nz = x != 0
        if isinstance(module, nn.Linear):
            return float(nz.sum(dtype=torch.float64)) * module.out_features
        d = len(module.kernel_size)
        if x.dim() == d + 1:  # unbatched input
            nz = nz.unsqueeze(0)
        spatial = tuple(nz.shape[2:])
        key = (id(module), spatial)
        fan = self._fanout.get(key)
        if fan is None:
            fan = self._fanout[key] = conv_fanout(module, spatial).to(x.device)
        count_map = nz.sum(dim=(0, 1), dtype=torch.float64)  # (*spatial)
        return float((count_map * fan).sum()) * (module.out_channels // module.groups)


__all__ = [
    "ATTN_CONVENTIONS",
    "AttnOps",
    "LayerOps",
    "OpsCounter",
    "attention_macs",
    "connection_layers",
    "conv_fanout",
    "dense_macs",
    "is_binary",
    "ones_conv",
]
