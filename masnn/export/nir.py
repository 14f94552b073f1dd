r"""NIR export (Neuromorphic Intermediate Representation, ``nir`` on PyPI) of vanilla models.

NIR describes neurons in continuous time; masnn's LIF is discrete. With a time step ``dt``
(default ``1e-4`` s, the value snnTorch's and Norse's NIR importers assume), the forward-Euler
step of NIR's ``LIF`` (``tau dv/dt = (v_leak - v) + r I``, spike when ``v > v_threshold``,
then ``v = v_reset``) is

.. math:: v[t] = v'[t-1] + \frac{dt}{\tau}\,(v_{leak} - v'[t-1]) + \frac{dt}{\tau}\,r\,I[t]

and masnn's step (:mod:`masnn.neurons.functional`) maps onto it in two families:

* paper / official / MS-ResNet neurons (leak ``k = 0``, post-reset decay ``delta``):
  ``tau = dt / (1 - delta)``, ``r = g / (1 - delta)``, ``v_leak = 0`` and
  ``v_reset = v_reset / delta`` (masnn decays the reset value before the next charge; NIR
  resets after it). The paper preset (``beta = 0.3``) is ``tau = dt / 0.7``, ``r = 1 / 0.7``.
* SpikingJelly ``LIFNode`` / PLIF (``delta = 1``, charge-time leak ``k = 1/tau_SJ``):
  ``tau = dt / k``, ``v_leak = v_rest``, ``r = g / k``, ``v_reset`` unchanged (PLIF at its
  current learned ``tau``).

Refused, each with the module and the reason: attention gates (NIR has no node for them),
soft reset (NIR's LIF resets hard), a neuron with both ``k > 0`` and ``delta < 1``, max pooling
(NIR 1.0 has sum and average pooling only, so ``ma_snn5`` does not export) and ceil-mode
average pooling with partial windows (MS-ResNet shortcuts on an odd-sized map). masnn fires at
``U >= v_th`` (MS-ResNet: ``>``) where NIR says ``>``; the two differ only for a membrane
exactly at the threshold.

The graph is per frame, batch-free, ``Input (C, H, W) -> ... -> Output``: convolutions and
linear layers carry their BatchNorm folded in (eval statistics), dropout is dropped. The
sequential nets (``ma_snn3*``) are a chain ending in the output LIF; MS-ResNet (``ms_resnet*``)
is a graph: NIR sums the inputs of a node, so each membrane shortcut add is a node with two or
more incoming edges (an identity shortcut passes every term of its input sum on), and the head
is ``LIF -> AvgPool2d (global) -> Flatten -> Affine``. The readout is not part of NIR: masnn's
output is the mean over ``T`` of the output (spikes averaged over each class's ``groups``
neurons for the sequential nets; the affine classifier's output for MS-ResNet, which equals
masnn's classifier on the time-averaged pooled spikes); it is in the graph's metadata.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from masnn.export import EXPORTERS, Exporter, ExportError
from masnn.export._model import (
    Op,
    attention_modules,
    fold_bn,
    model_input_size,
    network_ops,
    readout_groups,
)
from masnn.neurons import LIF
from masnn.version import __version__

#: Default time step (s) of the continuous-time NIR neurons; snnTorch's importer assumes it.
DEFAULT_DT = 1e-4


def _nir() -> Any:
    try:
        import nir
    except ImportError as err:
        raise ImportError(
            f"NIR export needs 'nir': pip install 'masnn[export]'; import failed with: {err}"
        ) from None
    return nir


def _scalar(v: object) -> float:
    return float(v.detach()) if isinstance(v, torch.Tensor) else float(v)  # type: ignore[arg-type]


def lif_to_nir_params(lif: LIF, name: str, dt: float = DEFAULT_DT) -> dict[str, float]:
    """NIR ``LIF`` parameters ``tau, r, v_leak, v_threshold, v_reset`` of a masnn LIF layer.

    Raises:
        ExportError: the neuron has no NIR equivalent (soft reset, leak and decay combined).
    """
    p = lif.params()
    k, g, delta = _scalar(p.leak), _scalar(p.input_gain), _scalar(p.decay)
    if p.v_reset is None:
        raise ExportError(
            f"{name}: neuron {lif.neuron!r} resets softly (subtracts v_th); NIR's LIF resets "
            "to v_reset (hard), so it cannot be exported"
        )
    v_reset = _scalar(p.v_reset)
    if k == 0.0:
        if not 0.0 < delta < 1.0:
            raise ExportError(
                f"{name}: neuron {lif.neuron!r} has decay {delta:g}; a NIR LIF needs a decay "
                "in (0, 1) (use an IF neuron model for decay 1)"
            )
        return {
            "tau": dt / (1.0 - delta),
            "r": g / (1.0 - delta),
            "v_leak": 0.0,
            "v_threshold": _scalar(p.v_th),
            "v_reset": v_reset / delta,
        }
    if delta != 1.0 or not 0.0 < k <= 1.0:
        raise ExportError(
            f"{name}: neuron {lif.neuron!r} has both a charge-time leak ({k:g}) and a post-reset "
            f"decay ({delta:g}); NIR's LIF has one leak"
        )
    return {
        "tau": dt / k,
        "r": g / k,
        "v_leak": _scalar(p.v_rest),
        "v_threshold": _scalar(p.v_th),
        "v_reset": v_reset,
    }


@torch.no_grad()
def to_nir(model: nn.Module, *, dt: float = DEFAULT_DT) -> Any:
    """Convert a vanilla model (``ma_snn3*`` or ``ms_resnet*``, ``attn="none"``) to a ``nir.NIRGraph``.

    Args:
        model: a model from ``masnn.create_model`` without attention.
        dt: the simulation time step the continuous-time parameters are written for.

    Returns:
        The graph: nodes ``input``, one per primitive (named after the masnn module, dots as
        underscores), ``output``; edges from every summed input of a node (a chain for the
        sequential nets, fan-ins at MS-ResNet's shortcut adds); ``metadata`` with ``dt``, ``readout``,
        ``groups``, ``timesteps``, ``masnn_version`` and ``threshold`` (``">="`` or ``">"``).

    Raises:
        ExportError: attention (naming the module), a neuron NIR cannot express, max pooling,
            partial pooling windows, or a model of another family.
    """
    nir = _nir()
    if not (dt > 0 and math.isfinite(dt)):
        raise ValueError(f"dt must be a positive number, got {dt}")
    attn = attention_modules(model)
    if attn:
        raise ExportError(
            f"{attn[0]} ({type(model.get_submodule(attn[0])).__name__}) is an attention gate; "
            "NIR has no node for attention, so only attn='none' models export to NIR"
        )
    ops = network_ops(model)
    nodes: dict[str, Any] = {
        "input": nir.Input(input_type={"input": np.array(model_input_size(model))})
    }
    shapes: dict[str, tuple[int, ...]] = {"input": tuple(model_input_size(model))}
    produced: dict[str, tuple[str, ...]] = {"input": ("input",)}  # op name -> node keys
    prev: tuple[str, ...] = ("input",)  # node keys whose sum is the previous op's output
    edges: list[tuple[str, str]] = []
    strict = None
    for op in ops:
        srcs = tuple(k for n in op.inputs for k in produced[n]) if op.inputs else prev
        in_shapes = {shapes[k] for k in srcs}
        if len(in_shapes) != 1:
            raise ExportError(
                f"{op.name}: its summed inputs {list(srcs)} have different shapes "
                f"{sorted(in_shapes)}"
            )
        shape = in_shapes.pop()
        if op.kind == "dropout":  # identity at inference
            produced[op.name] = prev = srcs
            continue
        key = op.name.replace(".", "_")
        nodes[key], shape = _node(nir, op, shape, dt)
        if op.kind == "lif":
            lif_strict = bool(op.module.surrogate.strict)  # type: ignore[union-attr]
            strict = lif_strict if strict is None else strict
        shapes[key] = shape
        produced[op.name] = prev = (key,)
        edges += [(s, key) for s in srcs]
    nodes["output"] = nir.Output(output_type={"output": np.array(shapes[prev[0]])})
    edges += [(s, "output") for s in prev]
    spiking_out = ops[-1].kind == "lif"
    meta = {
        "dt": float(dt),
        "readout": (
            "mean over T of the output spikes, averaged over each class's groups neurons"
            if spiking_out
            else "mean over T of the output (an affine classifier on pooled spikes: equal to "
            "masnn's classifier on the time-averaged pooled spikes)"
        ),
        "groups": readout_groups(model),
        "timesteps": int(getattr(model, "timesteps", 0) or 0),
        "threshold": ">" if strict else ">=",
        "masnn_version": __version__,
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def _node(nir: Any, op: Op, shape: tuple[int, ...], dt: float) -> tuple[Any, tuple[int, ...]]:
    """The NIR node of one primitive on an input of ``shape``, and its output shape."""
    mod = op.module
    if op.kind == "conv":
        assert isinstance(mod, nn.Conv2d)
        if mod.padding_mode != "zeros" or isinstance(mod.padding, str):
            raise ExportError(f"{op.name}: only numeric zero padding is exported")
        wt, b = fold_bn(mod.weight, mod.bias, op.bn)
        node = nir.Conv2d(
            input_shape=shape[1:],
            weight=wt.astype(np.float32),
            stride=tuple(mod.stride),
            padding=tuple(mod.padding),
            dilation=tuple(mod.dilation),
            groups=mod.groups,
            bias=b.astype(np.float32),
        )
        return node, _conv_out(shape, mod)
    if op.kind == "linear":
        assert isinstance(mod, nn.Linear)
        wt, b = fold_bn(mod.weight, mod.bias, op.bn)
        return nir.Affine(weight=wt.astype(np.float32), bias=b.astype(np.float32)), (
            mod.out_features,
        )
    if op.kind in ("avgpool", "gap"):
        if op.kind == "gap":  # global average pooling: one window over the whole map
            ks = st = (shape[1], shape[2])
            pd: tuple[int, int] = (0, 0)
        else:
            assert isinstance(mod, nn.AvgPool2d)
            ks, st, pd = (_pair(v) for v in (mod.kernel_size, mod.stride, mod.padding))
            # ceil mode adds a partial window only where the size does not divide evenly
            uneven = any((s + 2 * p - k) % t for s, k, t, p in zip(shape[1:], ks, st, pd))
            if (mod.ceil_mode and uneven) or (any(pd) and not mod.count_include_pad):
                raise ExportError(
                    f"{op.name}: ceil-mode average pooling over a {shape[1]}x{shape[2]} map has "
                    "partial windows, which NIR's AvgPool2d (floor mode) does not have; use an "
                    "input size that stays even through the network"
                )
        node = nir.AvgPool2d(kernel_size=np.array(ks), stride=np.array(st), padding=np.array(pd))
        out = ((s + 2 * p - k) // t + 1 for s, k, t, p in zip(shape[1:], ks, st, pd))
        return node, (shape[0], *out)
    if op.kind == "maxpool":
        raise ExportError(
            f"{op.name} (MaxPool2d): NIR 1.0 has no max-pooling node (sum and average "
            "pooling only), so this network cannot be exported"
        )
    if op.kind == "flatten":
        node = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
        return node, (int(np.prod(shape)),)
    if op.kind == "lif":
        assert isinstance(mod, LIF)
        if mod.membrane_gate is not None:
            raise ExportError(f"{op.name}.membrane_gate: NIR has no node for attention")
        q = lif_to_nir_params(mod, op.name, dt)
        return nir.LIF(**{k: np.full(shape, v, dtype=np.float32) for k, v in q.items()}), shape
    raise ExportError(f"{op.name}: unknown primitive {op.kind!r}")  # pragma: no cover


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _conv_out(shape: tuple[int, ...], conv: nn.Conv2d) -> tuple[int, ...]:
    out = [conv.out_channels]
    padding = conv.padding
    if isinstance(padding, str):  # "same" / "valid": not produced by masnn's models
        raise ExportError(f"{conv}: string padding {padding!r} is not supported")
    for s, k, st, p, d in zip(shape[1:], conv.kernel_size, conv.stride, padding, conv.dilation):
        out.append((s + 2 * p - d * (k - 1) - 1) // st + 1)
    return tuple(out)


def write_nir(model: nn.Module, path: str | Path, *, dt: float = DEFAULT_DT) -> Path:
    """:func:`to_nir` and write the graph to ``path`` (NIR's HDF5 file), atomically."""
    nir = _nir()
    graph = to_nir(model, dt=dt)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".nir", dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        nir.write(tmp, graph)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _write(
    model: nn.Module, path: Path, *, timesteps: int | None = None, step: bool = False
) -> list[Path]:
    if step or timesteps is not None:
        raise ExportError(
            "--step and --timesteps are ONNX options; a NIR graph is per step (any T)"
        )
    return [write_nir(model, path)]


EXPORTERS.add(
    "nir",
    Exporter(
        "nir", "NIR graph of a vanilla (attn='none') ma_snn3 / ms_resnet model", ".nir", _write
    ),
)
