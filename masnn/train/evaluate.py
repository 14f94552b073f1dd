"""Evaluate a saved checkpoint exactly as the trainer evaluated it; rebuild a trained model."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from masnn.train import checkpoint as ckpt_io
from masnn.train.build import (
    account,
    build_model,
    check_finite_weights,
    evaluate_split,
    format_accounting,
    load_weights,
)
from masnn.train.config import (
    TrainConfig,
    apply_overrides,
    config_from_dict,
    migrate_saved_config,
)
from masnn.train.data import DataBundle, build_data
from masnn.train.distributed import DistInfo
from masnn.train.setup import torch_globals_restored


def evaluate_checkpoint(
    path: str, *, split: str = "test", overrides: list[str] | None = None, engine: str = "model"
) -> dict[str, Any]:
    """Rebuild data and model from the checkpoint's config and evaluate ``split``.

    ``engine``: ``"model"`` (the model itself), ``"fast"`` (:func:`masnn.inference.fast`) or
    ``"sparse"`` (:func:`masnn.inference.sparse`; accuracy only, the accounting uses the model).

    Returns:
        ``{"stats": EvalStats as dict, "accounting": {...}, "summary": str, "epoch": int,
        "class_names": [...]}``.

    Raises:
        CheckpointError: unreadable, damaged (checksum), non-finite weights, or weights that
            do not fit the model its config builds (names the first differing key).
    """
    with torch_globals_restored():
        return _evaluate_checkpoint(path, split, overrides, engine)


@dataclass
class RebuiltRun:
    """A run rebuilt from its checkpoint: the trained model, its config, its data."""

    model: nn.Module
    cfg: TrainConfig
    data: DataBundle
    state: dict[str, Any]


def rebuild_run(
    path: str | os.PathLike[str], overrides: list[str] | None = None, *, command: str = "eval"
) -> RebuiltRun:
    """Rebuild a run's data and trained model from its checkpoint, as the trainer built them.

    The one rebuild behind ``masnn eval`` and the exporters' ``model_from_checkpoint``: the
    saved config (migrated from older masnn versions) with ``data.*`` ``overrides`` applied
    (e.g. ``data.root`` when the data moved, ``data.options.crop``), the dataset (class count
    and frame size come from it), the model, and the checked weights. The run's init file
    (``model.kwargs.pretrained``) is neither needed nor read: the checkpoint holds the weights.

    Args:
        path: the run's ``best.pt`` or ``checkpoint.pt``.
        overrides: ``data.*`` ``key=value`` strings.
        command: the caller's name in the message refusing a non-``data.*`` override.

    Raises:
        CheckpointError: unreadable, damaged (checksum), non-finite weights, or weights that
            do not fit the model its config builds (names the first differing key).
        ValueError: an override outside ``data.*``.
    """
    state = ckpt_io.load_checkpoint(path)
    check_finite_weights(state["model"], path)
    raw = migrate_saved_config(state["config"])
    if overrides:
        bad = [o for o in overrides if not o.startswith("data.")]
        if bad:
            raise ValueError(f"{command} only accepts data.* overrides, got {bad}")
        raw = apply_overrides(raw, overrides)
    cfg = config_from_dict(raw)
    for key in ("pretrained", "pretrained_sha256"):
        cfg.model.kwargs.pop(key, None)
    data = build_data(cfg.data, cfg.run.seed, progress=False)
    model = build_model(cfg, data)
    load_weights(model, state["model"], path, cfg.to_dict(), state["config"])
    return RebuiltRun(model, cfg, data, state)


def _evaluate_checkpoint(
    path: str, split: str, overrides: list[str] | None, engine: str = "model"
) -> dict[str, Any]:
    run = rebuild_run(path, overrides, command="eval")
    model, cfg, data, state = run.model, run.cfg, run.data, run.state
    # the run's numerics: same thread count and algorithms as the trainer used
    if cfg.run.threads is not None:
        torch.set_num_threads(cfg.run.threads)
    if cfg.run.deterministic:
        torch.use_deterministic_algorithms(True)
    gpu = torch.cuda.is_available() and engine != "sparse"  # the sparse engine is CPU-only
    device = torch.device("cuda" if gpu else "cpu")
    model.to(device)
    ds = data.test if split == "test" else data.val
    if ds is None:
        raise ValueError("this run has no validation split (data.val_fraction=0)")
    stats = evaluate_split(_engine(model, engine), ds, cfg, data, DistInfo(), device)
    acc = account(model, data, cfg, device) if split == "test" else {}
    summary = format_accounting(acc) if acc else ""
    return {
        "stats": asdict(stats),
        "accounting": acc,
        "summary": summary,
        "epoch": state["epoch"],
        "class_names": list(data.class_names),
        "split_info": data.split_info,
    }


def _engine(model: torch.nn.Module, engine: str) -> torch.nn.Module:
    """The model wrapped by the chosen inference engine (``masnn eval --engine``)."""
    if engine == "model":
        return model
    from masnn import inference

    if engine not in ("fast", "sparse"):
        raise ValueError(f"unknown engine {engine!r}; allowed: ['model', 'fast', 'sparse']")
    return getattr(inference, engine)(model)


class _Shapes:
    """The data-side facts ``build_model`` needs, taken from a checkpoint (no data loaded)."""

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int]) -> None:
        self.num_classes = num_classes
        self.in_shape = in_shape


def load_model(path: str | os.PathLike[str], *, map_location: str = "cpu") -> nn.Module:
    """Rebuild a trained model from a run's ``best.pt`` (or ``checkpoint.pt``) alone.

    ``T``, the class count, the input size and the architecture come from the checkpoint; no
    dataset is read. The model is returned in eval mode.

    Raises:
        CheckpointError: unreadable/damaged file, non-finite weights, a checkpoint written
            before masnn recorded its input size, or weights that do not fit the model.
    """
    state = ckpt_io.load_checkpoint(path)
    check_finite_weights(state["model"], path)
    cfg = config_from_dict(migrate_saved_config(state["config"]))
    if "num_classes" not in state or "in_shape" not in state:
        raise ckpt_io.CheckpointError(
            f"{path}: written by an older masnn without the model's input size; use "
            "masnn eval (which rebuilds the data) or retrain"
        )
    c, h, w = (int(v) for v in state["in_shape"])
    shapes = _Shapes(int(state["num_classes"]), (c, h, w))
    model = build_model(cfg, shapes)  # type: ignore[arg-type]
    load_weights(model, state["model"], path, cfg.to_dict())
    model.class_names = list(state.get("class_names", []))  # type: ignore[assignment]
    return model.to(map_location).eval()
