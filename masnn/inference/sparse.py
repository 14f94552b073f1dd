"""Event-driven sparse inference: ``masnn.inference.sparse(model)``.

CPU time that falls with the spike count. A layer whose input is binary spikes is computed
from the active inputs only: each spike adds its weight vectors (the conv taps it reaches, or
one linear column) to the output currents, so the work is proportional to the number of
spikes, with additions only (accumulates, no multiplies). Spikes travel between layers as
compact index lists per time step (``sparse_cpu.cpp`` documents the layouts).

Per layer:

* **BN folded** into the weights (:func:`masnn.inference.fast`), and a following average pool
  folded too (``conv(k, s) -> avgpool(P)`` is one conv with kernel ``k + s (P - 1)`` and stride
  ``s P``, weights averaged over the pool window): each spike touches fewer output positions.
* **The output side fused, attention included**: one kernel call per layer
  (``masnn_sparse_layer``) scatters a step's spikes into a private current frame, scales it by
  TA's weight of that frame (TA on the current, ``paper`` placement), runs the fused membrane
  kernel's step on it (charge, the per-step CA / ECA / SimAM and SA membrane gates, fire, reset:
  ``membrane_step`` of ``membrane_cpu.cpp``, the dense ``auto`` backend's arithmetic) and emits
  the next layer's index list. TA needs the whole window first: those layers scatter every
  frame (taking TA's pools on the way), get the weights from the model's TA module
  (``TemporalAttention.frame_weights``), then run the per-step pass. Gates without a fused form,
  hooked attention modules and a pool after the neuron run in torch (:attr:`SparseLayer.fused`,
  ``why_unfused``); ``conv_pre`` attention gates the input spikes (no longer binary): that layer
  runs dense.
* **Sparse or dense, per layer and per call**, by the measured input spike density against a
  threshold calibrated on this machine (:func:`calibrate`, stored as JSON under the user cache
  directory; :data:`DEFAULT_THRESHOLD` when uncalibrated). The dense route runs the fast
  path's folded conv and pooling in torch, then the same fused output side on its ``(C, H, W)``
  frames. The encoder layer (event counts, not spikes) is dense.

Numerics: float32. Spikes equal the dense fast path's wherever the membrane is not within
rounding distance of the threshold (the currents are sums in another order); see
``tests/inference/test_sparse.py``.

Streaming (causal models, :meth:`SparseInference.step`): one frame (or a chunk of frames) in,
the readout so far out, with explicit :class:`~masnn.models.streaming.StreamState`.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import platform
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from masnn.attention.temporal import TemporalAttention
from masnn.bench.timing import best_of
from masnn.inference.fast import InferenceOnly, fast
from masnn.layers.blocks import SpikingConvBlock, SpikingLinearBlock
from masnn.layers.seq import seq_apply
from masnn.models.streaming import StreamState
from masnn.neurons import LIF
from masnn.neurons.backends import NotSupportedByBackend
from masnn.neurons.backends.cpp import CParams, make_plan
from masnn.neurons.backends.cpp import forward_kernel as lif_forward
from masnn.neurons.backends.kernel_build import COMMON, cpu_flags, load_shared
from masnn.neurons.backends.kernel_build import ptr as _ptr
from masnn.neurons.backends.membrane import SOURCE as MEMBRANE_SOURCE
from masnn.neurons.backends.membrane import describe_gate, has_hooks, kernel_dims, kernel_weights
from masnn.readout import mean_over_time

_log = logging.getLogger("masnn.inference.sparse")

SOURCE = Path(__file__).with_name("sparse_cpu.cpp")
#: Input spike density at or below which a layer runs sparse when this machine is uncalibrated.
DEFAULT_THRESHOLD = 0.1
#: Densities :func:`calibrate` measures (the issue's synthetic range, 0.5 % - 30 %).
CALIBRATION_DENSITIES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)


class _Geom(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_int64)
        for n in ("cin", "h", "w", "cout", "ho", "wo", "kh", "kw", "sh", "sw", "ph", "pw")
    ]


@lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL:
    lib = load_shared(
        "masnn_sparse", (SOURCE, MEMBRANE_SOURCE, COMMON), "the sparse inference kernel"
    )
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    sigs = {
        "masnn_sparse_conv": [p, p, i64, i64, p, p, p, p, p, p, i32],
        "masnn_sparse_layer": [p, p, i64, p, i32, p, p, p, p, p, p, p, p, p, p, p, p, p, p, i32],
        "masnn_sparse_frame_stats": [p, i64, i64, p, p, i32],
        "masnn_sparse_compress": [p, i64, i64, i64, p, p, i32],
        "masnn_sparse_expand": [p, p, i64, i64, i64, p, i32],
    }
    for name, args in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = None, args
    return lib


def _threads() -> int:
    return torch.get_num_threads()


# ---------------------------------------------------------------------------------------------
# Spikes between layers


@dataclass
class Spikes:
    """One layer's output spikes, as index lists and/or a dense tensor.

    Attributes:
        shape: neurons per frame, ``(C, H, W)`` or ``(F,)``.
        steps: ``T``; ``batch``: ``B``.
        idx: ``(T, B, N)`` int32 channels-last indices (the first ``cnt[t, b]`` are valid).
        cnt: ``(T, B)`` int64 active counts.
        dense: ``(T, B, *shape)`` 0/1 float32 (any strides).
    """

    shape: tuple[int, ...]
    steps: int
    batch: int
    idx: Tensor | None = None
    cnt: Tensor | None = None
    dense: Tensor | None = None

    @property
    def numel(self) -> int:
        """Neurons per frame."""
        n = 1
        for s in self.shape:
            n *= s
        return n

    def density(self) -> float:
        """Fraction of active neurons over all frames."""
        total = self.steps * self.batch * self.numel
        if self.cnt is not None:
            return float(self.cnt.sum()) / total
        assert self.dense is not None
        return float(torch.count_nonzero(self.dense)) / total

    def channels_last(self) -> Tensor:
        """Dense ``(T, B, H, W, C)`` (or ``(T, B, F)``) contiguous."""
        if self.dense is None:
            self.to_dense()
        assert self.dense is not None
        d = self.dense if len(self.shape) == 1 else self.dense.permute(0, 1, 3, 4, 2)
        return d.contiguous()

    def to_index(self) -> Spikes:
        """Fill ``idx``/``cnt`` from ``dense`` (no-op when present)."""
        if self.idx is None:
            assert self.dense is not None
            x, c = self.dense.float(), 0  # c > 0: (C, H, W) frames, compressed channels-last
            if len(self.shape) == 3 and x.is_contiguous():
                c = self.shape[0]
            elif len(self.shape) == 3:
                x = self.channels_last().float()
            else:
                x = x.contiguous()
            self.idx = torch.empty((self.steps, self.batch, self.numel), dtype=torch.int32)
            self.cnt = torch.empty((self.steps, self.batch), dtype=torch.int64)
            _lib().masnn_sparse_compress(
                _ptr(x), self.steps * self.batch, self.numel, c, _ptr(self.idx), _ptr(self.cnt),
                _threads(),
            )  # fmt: skip
        return self

    def to_dense(self) -> Tensor:
        """The dense ``(T, B, *shape)`` spikes (a channels-last view for conv shapes)."""
        if self.dense is None:
            assert self.idx is not None and self.cnt is not None
            hwc = (*self.shape[1:], self.shape[0]) if len(self.shape) == 3 else self.shape
            out = torch.empty((self.steps, self.batch, *hwc), dtype=torch.float32)
            _lib().masnn_sparse_expand(
                _ptr(self.idx), _ptr(self.cnt), self.steps * self.batch, self.idx.shape[2],
                self.numel, _ptr(out), _threads(),
            )  # fmt: skip
            self.dense = out if len(self.shape) == 1 else out.permute(0, 1, 4, 2, 3)
        return self.dense


# ---------------------------------------------------------------------------------------------
# One layer


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def fold_avg_pool(weight: Tensor, stride: int, pool: int) -> Tensor:
    """Weights of ``conv(weight, stride) -> AvgPool2d(pool)`` as one conv of stride ``stride*pool``.

    Shape:
        weight: ``(Co, Ci, k, k)``; output: ``(Co, Ci, k + stride (pool - 1), ...)``.
    """
    co, ci, kh, kw = weight.shape
    ext = stride * (pool - 1)
    out = torch.zeros((co, ci, kh + ext, kw + ext), dtype=torch.float64)
    w = weight.double() / (pool * pool)
    for py in range(pool):
        for px in range(pool):
            out[:, :, stride * py : stride * py + kh, stride * px : stride * px + kw] += w
    return out.to(weight.dtype)


class SparseLayer(nn.Module):
    """A spiking conv or linear block prepared for sparse and dense execution.

    Args:
        block: a BN-folded :class:`SpikingConvBlock` or :class:`SpikingLinearBlock`.
        in_shape: neurons per input frame ``(C, H, W)`` (or ``(F,)``; a flattened conv output
            feeding a linear layer keeps its ``(C, H, W)``).
        encoder: the first layer (input is not spikes): always dense.

    Attributes:
        why_dense: why the layer never runs sparse (encoder, ``conv_pre`` attention), or
            ``None``.
        why_unfused: why its output side (TA on the current, LIF, membrane gates) runs in
            torch instead of the kernel, or ``None`` (:attr:`fused`).
        frame_gate: the TA module whose per-frame weight scales the current, or ``None``.
        threshold: the input density at or below which ``"auto"`` runs it sparse.
    """

    # set with object.__setattr__ (owned by the model, not children of this module)
    block: SpikingConvBlock | SpikingLinearBlock
    lif: LIF
    post_attn: nn.Module | None
    pool_after: nn.Module | None
    # buffers
    wt: Tensor
    bias: Tensor | None
    w_dense: Tensor
    lif_shape: tuple[int, ...]

    def __init__(
        self,
        block: SpikingConvBlock | SpikingLinearBlock,
        in_shape: tuple[int, ...],
        *,
        encoder: bool = False,
    ) -> None:
        super().__init__()
        # the model owns these modules; kept out of this module's children (no second copy in
        # repr / state_dict)
        object.__setattr__(self, "block", block)
        object.__setattr__(self, "lif", block.neuron.lif)
        object.__setattr__(self, "post_attn", block.neuron.post_attn)
        self.in_shape = tuple(in_shape)
        object.__setattr__(self, "pool_after", None)
        self.why_dense = "encoder (input is not binary spikes)" if encoder else None
        if isinstance(block, SpikingConvBlock):
            self._init_conv(block)
        else:
            self._init_linear(block)
        if block.pre_attn is not None:
            self.why_dense = "conv_pre attention gates the input spikes"
        self.cparams: CParams | None = None
        self.gate_w: tuple[Tensor | None, Tensor | None, Tensor | None] = (None, None, None)
        self.gate_simam: float | None = None
        self.frame_gate: TemporalAttention | None = None
        self.why_unfused = self._fuse()
        if self.why_unfused is not None:
            _log.info("%s: output side runs in torch (%s)", self.signature(), self.why_unfused)
        self.threshold = DEFAULT_THRESHOLD

    def _init_conv(self, block: SpikingConvBlock) -> None:
        conv = block.conv
        if len(self.in_shape) != 3 or self.in_shape[0] != conv.in_channels:
            raise ValueError(f"conv layer input {self.in_shape} does not match {conv}")
        if conv.groups != 1 or _pair(conv.dilation) != (1, 1) or isinstance(conv.padding, str):
            raise ValueError(f"sparse engine: unsupported conv {conv} (groups/dilation/padding)")
        if conv.padding_mode != "zeros":
            raise ValueError(f"sparse engine: unsupported padding_mode {conv.padding_mode!r}")
        c, h, w = self.in_shape
        (kh, kw), (sh, sw), (ph, pw) = (
            _pair(conv.kernel_size), _pair(conv.stride), _pair(conv.padding)
        )  # fmt: skip
        weight = conv.weight.detach()
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        pool = block.pool
        if pool is not None and block.pool_after_neuron:
            object.__setattr__(self, "pool_after", pool)
        elif pool is not None:
            ok = isinstance(pool, nn.AvgPool2d) and _pair(pool.kernel_size) == _pair(
                pool.stride or pool.kernel_size
            )
            ok = ok and _pair(pool.padding) == (0, 0) and not pool.ceil_mode
            ok = (
                ok
                and pool.divisor_override is None
                and _pair(pool.kernel_size)[0] == (_pair(pool.kernel_size)[1])
            )
            if not ok or sh != sw:
                raise ValueError(f"sparse engine: cannot fold {pool} after {conv}")
            p = _pair(pool.kernel_size)[0]
            weight = fold_avg_pool(weight, sh, p)
            kh, kw = weight.shape[2:]
            sh, sw = sh * p, sw * p
            ho, wo = ho // p, wo // p
        self.geom = _Geom(c, h, w, conv.out_channels, ho, wo, kh, kw, sh, sw, ph, pw)
        self.register_buffer("wt", weight.permute(1, 2, 3, 0).float().contiguous())
        bias = conv.bias.detach().float().contiguous() if conv.bias is not None else None
        self.register_buffer("bias", bias)
        self.lif_shape = (conv.out_channels, ho, wo)
        self.lif_shape3 = self.lif_shape
        if self.pool_after is not None:
            ho2 = int(self.pool_after(torch.zeros(1, 1, ho, wo)).shape[-2])
            wo2 = int(self.pool_after(torch.zeros(1, 1, ho, wo)).shape[-1])
            self.out_shape: tuple[int, ...] = (conv.out_channels, ho2, wo2)
        else:
            self.out_shape = self.lif_shape
        self.kind = "conv"

    def _init_linear(self, block: SpikingLinearBlock) -> None:
        fc = block.fc
        n = 1
        for s in self.in_shape:
            n *= s
        if n != fc.in_features:
            raise ValueError(f"linear layer input {self.in_shape} does not match {fc}")
        weight = fc.weight.detach()
        if len(self.in_shape) == 3:  # flattened (C, H, W): reorder columns to channels-last
            c, h, w = self.in_shape
            weight = weight.reshape(-1, c, h, w).permute(0, 2, 3, 1).reshape(-1, n)
        if block.bn is not None:
            raise ValueError("sparse engine: the linear block's BN must be folded first")
        self.register_buffer("w_dense", weight.float().contiguous())  # (F_out, F_in) HWC order
        self.register_buffer("wt", weight.t().float().contiguous())  # (F_in, F_out)
        bias = fc.bias.detach().float().contiguous() if fc.bias is not None else None
        self.register_buffer("bias", bias)
        self.geom = _Geom(n, 1, 1, fc.out_features, 1, 1, 1, 1, 1, 1, 0, 0)
        self.lif_shape = self.out_shape = (fc.out_features,)
        self.lif_shape3 = (fc.out_features, 1, 1)
        self.kind = "linear"

    def _fuse(self) -> str | None:
        """Prepare the fused output side (LIF, membrane gates, TA on the current); the reason
        when the layer cannot have it (its LIF, gates and pooling then run in torch)."""
        if self.pool_after is not None:
            return "a pool after the neuron (its output spikes are pooled in torch)"
        try:
            plan = make_plan(
                torch.zeros(1, 1), None, self.lif.params(), self.lif.surrogate, None,
                dtypes=(torch.float32,),
            )  # fmt: skip
            gate = self.lif.membrane_gate
            if gate is not None:
                if self.kind != "conv":
                    raise NotSupportedByBackend("a membrane gate on a linear layer")
                spec = describe_gate(gate, torch.zeros((1, 1, *self.lif_shape)))
                w = kernel_weights(spec)
                self.gate_w = cast(
                    "tuple[Tensor | None, Tensor | None, Tensor | None]",
                    tuple(None if t is None else t.detach().float().contiguous() for t in w),
                )
                self.gate_simam = spec.simam
            if self.post_attn is not None:
                describe = getattr(self.post_attn, "fused_frame_gate", None)
                if describe is None:
                    raise NotSupportedByBackend(
                        f"{type(self.post_attn).__name__} on the current has no fused form"
                    )
                self.frame_gate = describe()
        except NotSupportedByBackend as exc:
            return str(exc)
        self.cparams = CParams(**plan.scalars)
        return None

    @property
    def fused(self) -> bool:
        """Whether the output side (TA on the current, LIF, membrane gates) runs in the kernel
        (else in torch, :attr:`why_unfused` says why)."""
        return self.why_unfused is None

    def _hooked(self) -> bool:
        """Hooks on the attention modules must see their tensors: such calls run in torch."""
        mods = [m for m in (self.lif.membrane_gate, self.post_attn) if isinstance(m, nn.Module)]
        return any(has_hooks(m) for m in mods)

    def signature(self) -> str:
        """The layer's geometry, the key of its calibrated threshold."""
        g = self.geom
        return (
            f"{self.kind}:{g.cin}x{g.h}x{g.w}->{g.cout}x{g.ho}x{g.wo}:"
            f"k{g.kh}x{g.kw}s{g.sh}x{g.sw}p{g.ph}x{g.pw}"
        )

    # -- currents -------------------------------------------------------------------------
    def _dense_current(self, s: Spikes) -> Tensor:
        x = s.to_dense().float()
        if self.kind == "linear":
            flat = x if x.dim() == 3 else x.permute(0, 1, 3, 4, 2).reshape(s.steps, s.batch, -1)
            if self.block.pre_attn is not None:  # TA: pools over all features, one gate per
                flat = self.block.pre_attn(flat)  # step: the feature order does not matter
            return F.linear(flat, self.w_dense, self.bias)  # (T, B, F_out)
        if self.block.pre_attn is not None:  # conv_pre attention gates the input spikes
            x = self.block.pre_attn(x)
        assert isinstance(self.block, SpikingConvBlock)
        return seq_apply(self.block._current, x)  # (T, B, C, H', W')

    def _sparse_current(
        self, s: Spikes, channels_last: bool = False, pools: tuple[Tensor, Tensor] | None = None
    ) -> Tensor:
        """Gather-accumulate currents ``(T, B, C, H', W')`` (channels-last strides), or the
        contiguous ``(T, B, H', W', C)`` buffer with ``channels_last``; ``pools``: ``(T, B)``
        tensors filled with each frame's mean and max on the way (TA's pools)."""
        s.to_index()
        assert s.idx is not None and s.cnt is not None
        g = self.geom
        out = torch.empty((s.steps, s.batch, g.ho, g.wo, g.cout), dtype=torch.float32)
        avg, mx = pools if pools is not None else (None, None)
        _lib().masnn_sparse_conv(
            _ptr(s.idx), _ptr(s.cnt), s.steps * s.batch, s.idx.shape[2], _ptr(self.wt),
            _ptr(self.bias), ctypes.byref(g), _ptr(out), _ptr(avg), _ptr(mx), _threads(),
        )  # fmt: skip
        if self.kind == "linear":
            return out.view(s.steps, s.batch, g.cout)
        return out if channels_last else out.permute(0, 1, 4, 2, 3)

    # -- the layer ----------------------------------------------------------------------------
    def use_sparse(self, s: Spikes) -> bool:
        """Whether this call runs sparse (input density at or below the threshold)."""
        return self.why_dense is None and s.density() <= self.threshold

    def forward(
        self, s: Spikes, v0: Tensor | None = None, mode: str = "auto", need_dense: bool = False
    ) -> tuple[Spikes, Tensor]:
        """Spikes in, spikes and the last membrane out.

        Args:
            s: input spikes.
            v0: initial membrane ``(B, *lif_shape)`` (zeros when ``None``).
            mode: ``"auto"`` (by density), ``"sparse"`` or ``"dense"`` (forced).
            need_dense: also produce the dense output (the readout layer).
        """
        sparse = self.use_sparse(s) if mode == "auto" else mode == "sparse"
        if sparse and self.why_dense is not None:
            raise ValueError(f"layer {self.signature()} cannot run sparse: {self.why_dense}")
        T, B = s.steps, s.batch
        if self.fused and not self._hooked():
            return self._fused(s, v0, sparse, need_dense)
        # torch's attention and LIF run on the standard layout (as in the dense path)
        cur = self._sparse_current(s).contiguous() if sparse else self._dense_current(s)
        if self.post_attn is not None:
            cur = self.post_attn(cur)
        spikes, v = self.lif(cur, state=v0, return_state=True)
        if self.pool_after is not None:
            spikes = seq_apply(self.pool_after, spikes)
        return Spikes(self.out_shape, T, B, dense=spikes), v

    def _frame_scale(self, cur: Tensor | None, pools: tuple[Tensor, Tensor]) -> Tensor:
        """TA's weight per frame ``(T, B)``, from ``pools`` (each frame's mean and max), taken
        here from the currents ``cur`` ``(T, B, ...)`` unless already filled (``cur=None``)."""
        assert self.frame_gate is not None
        avg, mx = pools
        if cur is not None:
            T, B = cur.shape[:2]
            _lib().masnn_sparse_frame_stats(
                _ptr(cur), T * B, cur[0, 0].numel(), _ptr(avg), _ptr(mx), _threads()
            )
        return self.frame_gate.frame_weights(avg, mx).float().contiguous()

    def _fused(
        self, s: Spikes, v0: Tensor | None, sparse: bool, need_dense: bool
    ) -> tuple[Spikes, Tensor]:
        """The output side in one kernel (``masnn_sparse_layer``): index lists out."""
        assert self.cparams is not None  # fused layers have their kernel scalars
        T, B = s.steps, s.batch
        g = self.geom
        n = g.ho * g.wo * g.cout
        v0c = None if v0 is None else v0.float().contiguous()  # (B, C, H, W) / (B, F)
        idx = torch.empty((T, B, n), dtype=torch.int32)
        cnt = torch.empty((T, B), dtype=torch.int64)
        v = torch.empty((B, n), dtype=torch.float32)
        dense = torch.empty((T, B, n), dtype=torch.float32) if need_dense else None
        lib = _lib()
        gated = self.lif.membrane_gate is not None
        # one pass (scatter into a private frame per step) unless TA needs the whole window's
        # currents first, or too few samples to split: then the currents first, over frames
        one_pass = sparse and self.frame_gate is None and _threads() <= B
        cur: Tensor | None = None
        chw = 1
        pools = None
        if self.frame_gate is not None:
            pools = (torch.empty((T, B)), torch.empty((T, B)))
        scale = None
        if sparse and not one_pass:  # TA's pools are taken by the scatter
            cur, chw = self._sparse_current(s, channels_last=True, pools=pools), 0
            scale = None if pools is None else self._frame_scale(None, pools)
        elif not sparse:
            cur = self._dense_current(s).float().contiguous()
            scale = None if pools is None else self._frame_scale(cur, pools)
        if cur is not None and not gated and _threads() > B:
            # a plain LIF and few samples: the fused LIF over neurons, then compress
            if not chw and cur.dim() == 5:
                cur = cur.permute(0, 1, 4, 2, 3).contiguous()
            if scale is not None:  # TA's X <- g X
                cur = scale.view(T, B, *([1] * (cur.dim() - 2))) * cur
            spikes, v_flat, _ = lif_forward(cur.view(T, B * n),
                                            None if v0c is None else v0c.view(-1),
                                            self.cparams, save_u=False)  # fmt: skip
            v.copy_(v_flat.view(B, n))
            lib.masnn_sparse_compress(
                _ptr(spikes), T * B, n, g.cout, _ptr(idx), _ptr(cnt), _threads()
            )
            if dense is not None:
                dense.copy_(spikes.view(T, B, n))
        else:
            if cur is None:
                s.to_index()
                assert s.idx is not None and s.cnt is not None
            d = kernel_dims((T, B, *self.lif_shape3), *self.gate_w, self.gate_simam)
            lib.masnn_sparse_layer(
                _ptr(s.idx) if cur is None else None, _ptr(s.cnt) if cur is None else None,
                0 if s.idx is None else s.idx.shape[2], _ptr(cur), chw, _ptr(scale),
                _ptr(self.wt), _ptr(self.bias), ctypes.byref(g), ctypes.byref(d),
                *(_ptr(w) for w in self.gate_w), ctypes.byref(self.cparams), _ptr(v0c),
                _ptr(idx), _ptr(cnt), _ptr(v), _ptr(dense), _threads(),
            )  # fmt: skip
        out = Spikes(self.out_shape, T, B, idx=idx, cnt=cnt)
        if dense is not None:
            out.dense = dense.view(T, B, *self.out_shape)
        return out, v.view(B, *self.lif_shape)

    def extra_repr(self) -> str:
        route = f"dense ({self.why_dense})" if self.why_dense else f"sparse<={self.threshold:g}"
        return f"{self.signature()}, {route}, fused={self.fused}"


# ---------------------------------------------------------------------------------------------
# The engine


class SparseInference(InferenceOnly):
    """The prepared model returned by :func:`sparse`; call it like the model in eval mode.

    Attributes:
        layers: the :class:`SparseLayer` list, in order.
        last_routes: after a call, ``"sparse"``/``"dense"`` per layer with its input density.
    """

    entry = "masnn.inference.sparse"
    model: Any  # a SpikingClassifier of the ma_snn3 / ma_snn5 families (checked below)
    layers: nn.ModuleList

    def __init__(self, model: nn.Module, thresholds: dict[str, float] | None = None) -> None:
        super().__init__()
        self.model = model
        features = getattr(model, "features", None)
        heads = [getattr(model, n, None) for n in ("fc1", "fc2")]
        if not (
            isinstance(features, nn.Sequential)
            and all(isinstance(b, SpikingConvBlock) for b in features)
            and all(isinstance(h, SpikingLinearBlock) for h in heads)
        ):
            raise ValueError(
                f"sparse engine: {type(model).__name__} is not supported (it runs the ma_snn3 "
                "and ma_snn5 families: conv blocks then two linear blocks); use "
                "masnn.inference.fast(model)"
            )
        shape: tuple[int, ...] = tuple(self.model.input_size)
        layers = []
        for i, b in enumerate([*features, *heads]):
            layer = SparseLayer(b, shape, encoder=i == 0)
            layers.append(layer)
            shape = layer.out_shape
        self.layers = nn.ModuleList(layers)
        self.set_thresholds(thresholds)
        self.last_routes: list[tuple[str, float]] = []

    def sparse_layers(self) -> list[SparseLayer]:
        """The :class:`SparseLayer` list, in order (``self.layers``, typed)."""
        return [cast(SparseLayer, m) for m in self.layers]

    def set_thresholds(self, thresholds: dict[str, float] | None = None) -> None:
        """Per-layer thresholds: ``thresholds`` (signature -> density), else the stored
        calibration for this machine, else :data:`DEFAULT_THRESHOLD`."""
        stored = load_thresholds() if thresholds is None else thresholds
        for layer in self.sparse_layers():
            layer.threshold = float(stored.get(layer.signature(), DEFAULT_THRESHOLD))

    def _run(
        self, x_seq: Tensor, v_in: tuple[Tensor | None, ...] | None, mode: str
    ) -> tuple[Tensor, list[Tensor]]:
        """Per-step head output ``(T, B, D)`` and every layer's last membrane."""
        self.model._check_input(x_seq)
        if x_seq.device.type != "cpu":
            raise ValueError(
                f"the sparse engine runs on the CPU; got input on {x_seq.device} (use .cpu())"
            )
        T, B = x_seq.shape[:2]
        s = Spikes(tuple(x_seq.shape[2:]), T, B, dense=x_seq.float())
        vs, routes = [], []
        n = len(self.layers)
        for i, layer in enumerate(self.sparse_layers()):
            d = s.density() if i else float("nan")
            sp = layer.why_dense is None and (
                d <= layer.threshold if mode == "auto" else mode == "sparse"
            )
            routes.append(("sparse" if sp else "dense", d))
            s, v = layer(
                s, None if v_in is None else v_in[i], "sparse" if sp else "dense", i == n - 1
            )
            vs.append(v)
        self.last_routes = routes
        return s.to_dense(), vs

    def forward(self, x_seq: Tensor, mode: str = "auto") -> Tensor:
        """Classify a sequence (the model's forward contract).

        Args:
            x_seq: ``(T, B, C, H, W)``.
            mode: ``"auto"`` (per layer by density), ``"sparse"`` (every layer that can) or
                ``"dense"``.

        Returns:
            ``(B, K)`` class scores.
        """
        if mode not in ("auto", "sparse", "dense"):
            raise ValueError(f"mode must be 'auto', 'sparse' or 'dense', got {mode!r}")
        with torch.inference_mode():
            head, _ = self._run(x_seq, None, mode)
            return self.model.head_final(mean_over_time(head))

    # -- streaming ------------------------------------------------------------------------------
    def init_state(self, batch_size: int) -> StreamState:
        """Zero streaming state for ``batch_size`` streams (refuses non-causal models)."""
        reason = self.model.streaming_blocker()
        if reason is not None:
            raise ValueError(f"{type(self.model).__name__} cannot stream: {reason}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        layers = self.sparse_layers()
        vs = tuple(torch.zeros((batch_size, *la.lif_shape)) for la in layers)
        return StreamState(vs, torch.zeros(batch_size, layers[-1].out_shape[0]), 0)

    def step(
        self, frames: Tensor, state: StreamState, mode: str = "auto"
    ) -> tuple[Tensor, StreamState]:
        """Consume one frame ``(B, C, H, W)`` or a chunk ``(T', B, C, H, W)``.

        Returns:
            ``(output, state)``: the readout over all frames seen so far ``(B, K)`` (after the
            model's ``T`` frames it equals ``self(x_seq)``) and the new state.
        """
        if frames.dim() == 4:
            frames = frames.unsqueeze(0)
        with torch.inference_mode():
            head, vs = self._run(frames, state.v, mode)
            acc = state.acc + head.sum(0)
            t = state.t + frames.shape[0]
            return self.model.head_final(acc / t), StreamState(tuple(vs), acc, t)


def sparse(model: nn.Module, thresholds: dict[str, float] | None = None) -> SparseInference:
    """An event-driven inference copy of ``model`` (see the module docstring).

    Args:
        model: a trained ``ma_snn3`` / ``ma_snn5`` family model (not modified; the engine
            runs on the CPU whatever the model's device).
        thresholds: per-layer density thresholds (signature -> density); default: the stored
            calibration of this machine (:func:`calibrate`), else :data:`DEFAULT_THRESHOLD`.

    Returns:
        A :class:`SparseInference` with the model's forward contract.

    Raises:
        ValueError: an unsupported architecture.
        BuildError: the kernel could not be compiled.

    Example:
        >>> from masnn import create_model
        >>> m = create_model("ma_snn3_tiny", attn="none", timesteps=2)
        >>> sparse(m)(torch.zeros(2, 1, 2, 32, 32)).shape
        torch.Size([1, 11])
    """
    _lib()
    return SparseInference(fast(model).model.cpu().float(), thresholds).eval()


# ---------------------------------------------------------------------------------------------
# Calibration


def thresholds_path() -> Path:
    """``$MASNN_SPARSE_THRESHOLDS``, else ``$XDG_CACHE_HOME/masnn/sparse_thresholds.json``."""
    env = os.environ.get("MASNN_SPARSE_THRESHOLDS")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "masnn" / "sparse_thresholds.json"


def machine_key() -> str:
    """The calibration's key: CPU model/features and the thread count."""
    h = hashlib.sha256(f"{platform.machine()} {cpu_flags()}".encode()).hexdigest()[:12]
    return f"{platform.machine()}-{h}-threads{torch.get_num_threads()}"


def load_thresholds(path: Path | None = None) -> dict[str, float]:
    """This machine's stored thresholds (signature -> density); ``{}`` when uncalibrated."""
    path = path or thresholds_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        return {str(k): float(v) for k, v in data.get(machine_key(), {}).items()}
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise ValueError(f"{path}: not a sparse-threshold file ({exc}); delete it") from None


def _store(thresholds: dict[str, float], path: Path) -> None:
    data: dict[str, Any] = {}
    if path.is_file():
        data = json.loads(path.read_text())
    data.setdefault(machine_key(), {}).update(thresholds)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".thresholds-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def random_spikes(shape: tuple[int, ...], steps: int, batch: int, density: float,
                  seed: int = 0) -> Spikes:  # fmt: skip
    """Synthetic Bernoulli spikes of the given density (benchmarks, calibration)."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand((steps, batch, *shape), generator=g) < density).float()
    return Spikes(tuple(shape), steps, batch, dense=x)


def time_layer(layer: SparseLayer, s: Spikes, mode: str, repeats: int = 3) -> float:
    """Best-of-``repeats`` seconds of one layer call on ``s`` (index lists prepared for sparse,
    the dense tensor for dense, as the neighbouring layers would hand them over)."""
    if mode == "sparse":
        s = Spikes(s.shape, s.steps, s.batch, dense=s.dense).to_index()
        s.dense = None
    else:
        s = Spikes(s.shape, s.steps, s.batch, dense=s.to_dense())
    with torch.inference_mode():
        return best_of(lambda: layer(s, None, mode), repeats)


def crossover(densities: list[float], t_sparse: list[float], t_dense: list[float]) -> float:
    """The density where sparse stops being faster.

    Least-squares fits (robust to a noisy point): the sparse time as a line in the density,
    the dense time as a constant (its work does not depend on the density). The crossing is
    clipped to the measured range: ``0`` if sparse never wins, the largest measured density if
    it always does (no extrapolation).
    """
    n = len(densities)
    if n < 2 or len(t_sparse) != n or len(t_dense) != n:
        raise ValueError("crossover needs >= 2 densities with one sparse and one dense time each")
    md = sum(densities) / n
    ms = sum(t_sparse) / n
    var = sum((d - md) ** 2 for d in densities)
    slope = sum((d - md) * (t - ms) for d, t in zip(densities, t_sparse)) / var
    icpt = ms - slope * md
    dense = sum(t_dense) / n
    lo, hi = min(densities), max(densities)
    if icpt + slope * lo >= dense:
        return 0.0
    if slope <= 0 or icpt + slope * hi <= dense:
        return hi
    return (dense - icpt) / slope


def calibrate(
    engine: SparseInference,
    *,
    steps: int | None = None,
    batch: int = 8,
    densities: tuple[float, ...] = CALIBRATION_DENSITIES,
    repeats: int = 3,
    store: bool = True,
) -> dict[str, float]:
    """Measure each layer's sparse/dense crossover density on this machine and use it.

    For every layer that can run sparse, times both routes on synthetic spikes at
    ``densities`` and takes the crossover (:func:`crossover`). The thresholds are set on
    ``engine`` and, with ``store``, saved to :func:`thresholds_path` under :func:`machine_key`.
    Timings on a busy machine are noisy: calibrate on a quiet one.

    Returns:
        signature -> crossover density.
    """
    T = steps or int(getattr(engine.model, "timesteps", 8))
    out: dict[str, float] = {}
    for layer in engine.sparse_layers():
        if layer.why_dense is not None or layer.signature() in out:
            continue
        ts, td = [], []
        for d in densities:
            s = random_spikes(layer.in_shape, T, batch, d)
            ts.append(time_layer(layer, s, "sparse", repeats))
            td.append(time_layer(layer, s, "dense", repeats))
        out[layer.signature()] = crossover(list(densities), ts, td)
        _log.info("%s: crossover %.3f", layer.signature(), out[layer.signature()])
    if store:
        _store(out, thresholds_path())
    engine.set_thresholds({**load_thresholds(), **out} if store else out)
    return out


__all__ = [
    "DEFAULT_THRESHOLD",
    "SparseInference",
    "SparseLayer",
    "Spikes",
    "calibrate",
    "crossover",
    "fold_avg_pool",
    "load_thresholds",
    "machine_key",
    "random_spikes",
    "sparse",
    "thresholds_path",
    "time_layer",
]
