"""Evaluate a saved checkpoint exactly as the trainer evaluated it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch

from masnn.train import checkpoint as ckpt_io
from masnn.train.config import apply_overrides, config_from_dict, migrate_saved_config
from masnn.train.data import build_data
from masnn.train.distributed import DistInfo


def evaluate_checkpoint(
    path: str, *, split: str = "test", overrides: list[str] | None = None, engine: str = "model"
) -> dict[str, Any]:
    """Rebuild data and model from the checkpoint's config and evaluate ``split``.

    ``engine``: ``"model"`` (the model itself), ``"fast"`` (:func:`masnn.inference.fast`) or
    ``"sparse"`` (:func:`masnn.inference.sparse`; accuracy only, the accounting uses the model).

    Returns:
        ``{"stats": EvalStats as dict, "accounting": {...}, "summary": str, "epoch": int,
        "class_names": [...]}``.
    """
    from masnn.train.runner import torch_globals_restored

    with torch_globals_restored():
        return _evaluate_checkpoint(path, split, overrides, engine)


def _evaluate_checkpoint(
    path: str, split: str, overrides: list[str] | None, engine: str = "model"
) -> dict[str, Any]:
    from masnn.train.runner import account, build_model, evaluate_split, format_accounting

    state = ckpt_io.load_checkpoint(path)
    raw = migrate_saved_config(state["config"])
    if overrides:
        bad = [o for o in overrides if not o.startswith("data.")]
        if bad:
            raise ValueError(f"eval only accepts data.* overrides, got {bad}")
        raw = apply_overrides(raw, overrides)
    cfg = config_from_dict(raw)
    # the checkpoint holds the weights: the run's init file (model.kwargs.pretrained, e.g. the
    # T = 1 checkpoint a T = 4 run started from) is neither needed nor read
    for key in ("pretrained", "pretrained_sha256"):
        cfg.model.kwargs.pop(key, None)
    # the run's numerics: same thread count and algorithms as the trainer used
    if cfg.run.threads is not None:
        torch.set_num_threads(cfg.run.threads)
    if cfg.run.deterministic:
        torch.use_deterministic_algorithms(True)
    data = build_data(cfg.data, cfg.run.seed, progress=False)
    model = build_model(cfg, data)
    model.load_state_dict(state["model"])
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
