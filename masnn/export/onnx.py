"""ONNX export: the full-window graph of any model and the per-step cell of causal models.

* :func:`to_onnx` writes ``x (T, B, C, H, W) -> y (B, K)``, the model's own ``forward`` in eval
  mode (BatchNorm running statistics, no dropout) traced by ``torch.export`` (the dynamo
  exporter). The batch axis is dynamic; ``T`` is fixed at export time because the LIF loop is
  unrolled (and temporal attention is built for one ``T``).
* :func:`to_onnx_step` writes one step of a causal model (``attn`` in ``none/ca/sa/csa`` with
  ``placement="paper"``) with explicit state, the graph of
  :class:`~masnn.models.StreamingModel.step`::

      (frame (B, C, H, W), acc (B, D), t (), v0 ... v{n-1})
          -> (y (B, K), acc_next, t_next, v0_next ... v{n-1}_next)

  Start from zeros (``t = 0``); after ``T`` steps ``y`` equals the full-window output. The
  ``v{i}`` are the membranes of the LIF layers in module order; their names and shapes are in
  the file's metadata (``masnn.state``).

Both need ``onnx`` and ``onnxscript`` (the ``export`` extra); :func:`check_onnx` also needs
``onnxruntime``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from masnn.export import EXPORTERS, Exporter, ExportError
from masnn.export._model import (
    attn_name,
    causal_blocker,
    lif_modules,
    model_input_size,
    model_timesteps,
    window_bound,
)
from masnn.version import __version__

#: The opset the files are written with.
OPSET = 18


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as err:
        raise ImportError(
            f"ONNX export needs {module!r}: pip install 'masnn[export]' "
            f"(onnx, onnxscript, onnxruntime); import failed with: {err}"
        ) from None


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's progress prints and optional-package warnings."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(open(os.devnull, "w")):  # noqa: SIM115
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)


def _export(
    module: nn.Module,
    args: tuple[Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic: dict[str, Any],
    meta: dict[str, str],
) -> Path:
    """Trace ``module`` with the dynamo exporter, add metadata, write ``path`` atomically."""
    onnx = _require("onnx")
    _require("onnxscript")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        with torch.no_grad(), _quiet():
            torch.onnx.export(
                module,
                args,
                tmp,
                dynamo=True,
                opset_version=OPSET,
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=dynamic,
                external_data=False,
            )
        proto = onnx.load(tmp)
        for k, v in {"masnn.version": __version__, **meta}.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.save(proto, tmp)
        os.replace(tmp, path)
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(
            f"ONNX export of {type(module).__name__} failed: {_summary(exc)}"
        ) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _summary(exc: BaseException) -> str:
    """One line out of the exporter's multi-paragraph errors (its 'Exception summary')."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in str(exc).splitlines()]
    lines = [ln for ln in lines if ln]
    for ln in lines:
        if ln.startswith("<class '"):
            return ln
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


class _Window(nn.Module):
    """``x_seq -> model(x_seq)``, a positional wrapper with stable argument names."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def to_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    timesteps: int | None = None,
    batch_size: int = 2,
) -> Path:
    """Write the full-window inference graph ``x (T, B, C, H, W) -> y (B, K)``.

    Args:
        model: a model from ``masnn.create_model`` (exported in eval mode; its mode is
            restored afterwards).
        path: the ``.onnx`` file to write (atomically).
        timesteps: ``T`` of the graph (default: the model's; models with temporal attention
            accept only their own).
        batch_size: the batch of the example input used for tracing (the batch axis of the
            file is dynamic whatever it is).

    Returns:
        The written path. Its metadata holds ``masnn.version``, ``masnn.model``,
        ``masnn.timesteps`` and ``masnn.layout``.

    Raises:
        ExportError: the model cannot be exported (the message says why).
        ImportError: ``onnx``/``onnxscript`` are missing.
    """
    t_model = model_timesteps(model)
    t = int(timesteps if timesteps is not None else (t_model or 0))
    if t < 1:
        raise ExportError("to_onnx needs timesteps >= 1 (the model does not define T)")
    bound = window_bound(model)
    if bound is not None and t != bound[2]:
        name, mod, t_bound = bound
        raise ExportError(
            f"module {name!r} ({type(mod).__name__}) is built for T={t_bound} (it weighs the "
            f"whole window with weights sized for T); export with timesteps={t_bound}, not {t}"
        )
    c, h, w = model_input_size(model)
    p = next(model.parameters())
    x = torch.rand((t, max(2, int(batch_size)), c, h, w), dtype=p.dtype, device=p.device)
    meta = _meta(model, t, layout="TBCHW", graph="window")
    batch = torch.export.Dim("batch", min=1)
    with _eval_mode(model):
        return _export(_Window(model), (x,), Path(path), ["x"], ["y"], {"x": {1: batch}}, meta)


class _StepCell(nn.Module):
    """One :meth:`StreamingModel.step` with the state as flat tensors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        from masnn.models import StreamingModel

        self.model = model
        self.stream = StreamingModel(model)

    def forward(self, frame: Tensor, acc: Tensor, t: Tensor, *v: Tensor) -> tuple[Tensor, ...]:
        from masnn.models import StreamState

        # the step counter travels as a 0-d tensor in the graph (StreamState types it int)
        out, st = self.stream.step(frame, StreamState(tuple(v), acc, cast(int, t)))
        return (out, st.acc, cast(Tensor, st.t), *st.v)


def step_state(model: nn.Module, batch_size: int) -> tuple[Tensor, ...]:
    """Zero state ``(acc, t, v0, ...)`` of the per-step cell for ``batch_size`` streams."""
    from masnn.models import StreamingModel

    with _eval_mode(model):
        s = StreamingModel(model).init_state(batch_size, model_input_size(model))
    return (s.acc, torch.zeros((), dtype=s.acc.dtype, device=s.acc.device), *s.v)


def to_onnx_step(model: nn.Module, path: str | Path, *, batch_size: int = 2) -> Path:
    """Write the per-step cell of a causal model (module docstring), explicit state in/out.

    Args:
        model: a causal model (``model.streaming_blocker()`` is ``None``).
        path: the ``.onnx`` file to write (atomically).
        batch_size: the batch of the tracing example (the batch axis is dynamic).

    Returns:
        The written path; metadata ``masnn.state`` lists ``[name, LIF layer, shape]`` of every
        state input.

    Raises:
        ExportError: the model is not causal (the message says which attention and why).
    """
    reason = causal_blocker(model)
    if reason is not None:
        raise ExportError(f"{type(model).__name__} has no per-step ONNX cell: {reason}")
    b = max(2, int(batch_size))
    c, h, w = model_input_size(model)
    p = next(model.parameters())
    frame = torch.rand((b, c, h, w), dtype=p.dtype, device=p.device)
    state = step_state(model, b)
    n = len(state) - 2
    v_names = [f"v{i}" for i in range(n)]
    ins = ["frame", "acc", "t", *v_names]
    outs = ["y", "acc_next", "t_next", *[f"{s}_next" for s in v_names]]
    batch = torch.export.Dim("batch", min=1)
    dynamic = {
        "frame": {0: batch},
        "acc": {0: batch},
        "t": None,
        "v": tuple({0: batch} for _ in range(n)),
    }
    lifs = [name for name, _ in lif_modules(model)]
    info = [[nm, lif, list(s.shape[1:])] for nm, lif, s in zip(v_names, lifs, state[2:])]
    meta = _meta(model, model_timesteps(model) or 0, layout="BCHW", graph="step")
    meta["masnn.state"] = json.dumps(info)
    with _eval_mode(model):
        cell = _StepCell(model)
        return _export(cell, (frame, *state), Path(path), ins, outs, dynamic, meta)


def _meta(model: nn.Module, t: int, *, layout: str, graph: str) -> dict[str, str]:
    cfg = getattr(model, "default_cfg", None)
    return {
        "masnn.model": getattr(cfg, "name", type(model).__name__),
        "masnn.attn": attn_name(model),
        "masnn.timesteps": str(t),
        "masnn.layout": layout,
        "masnn.graph": graph,
    }


def run_onnx(path: str | Path, *inputs: Tensor) -> list[Any]:
    """Run an exported file in onnxruntime on CPU; returns the outputs as numpy arrays."""
    ort = _require("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    feed = {n: x.detach().cpu().numpy() for n, x in zip(names, inputs)}
    return sess.run(None, feed)


def check_onnx(model: nn.Module, path: str | Path, x_seq: Tensor) -> float:
    """Max absolute difference between the full-window file in onnxruntime and ``model``."""
    with _eval_mode(model), torch.no_grad():
        ref = model(x_seq).cpu().numpy()
    (y,) = run_onnx(path, x_seq)
    return float(abs(y - ref).max())


def _write(
    model: nn.Module, path: Path, *, timesteps: int | None = None, step: bool = False
) -> list[Path]:
    out = [to_onnx(model, path, timesteps=timesteps)]
    if step:
        out.append(to_onnx_step(model, path.with_name(path.stem + ".step.onnx")))
    return out


EXPORTERS.add(
    "onnx",
    Exporter(
        "onnx",
        "ONNX full-window graph (dynamic batch); --step adds the per-step cell (causal models)",
        ".onnx",
        _write,
        options=("timesteps", "step"),
    ),
)
