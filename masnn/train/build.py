"""Building a run: model, optimiser, scheduler, loss, loaders; evaluation and accounting.

Shared by the trainer (:mod:`masnn.train.loop`) and ``masnn eval``
(:mod:`masnn.train.evaluate`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from masnn.models import create_model
from masnn.train import checkpoint as ckpt_io
from masnn.train.config import ConfigError, TrainConfig
from masnn.train.data import DataBundle, make_loader
from masnn.train.distributed import DistInfo, eval_indices
from masnn.train.engine import EvalStats, LossFn, evaluate, make_loss


def build_model(cfg: TrainConfig, data: DataBundle) -> nn.Module:
    """``create_model`` with the dataset's class count, input size and ``T``."""
    m = cfg.model
    kwargs: dict[str, Any] = {
        "num_classes": data.num_classes,
        "timesteps": cfg.data.timesteps,
        "input_size": data.in_shape,
        "attn": m.attn,
        "neuron": m.neuron,
    }
    clash = sorted(set(m.kwargs) & set(kwargs))
    if clash:
        raise ValueError(f"model.kwargs must not repeat {clash}: set them as model.<key>")
    kwargs.update(m.kwargs)
    try:
        return create_model(m.name, **kwargs)
    except ValueError as exc:  # e.g. a frame too small for the network's pooling
        if "input_size" not in str(exc):
            raise
        raise ConfigError(
            f"data.ds={cfg.data.ds} gives frames {data.in_shape}, too small for "
            f"model.name={m.name!r}: {' '.join(str(exc).split())}; lower data.ds"
        ) from None


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    params = [p for p in model.parameters() if p.requires_grad]
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def make_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer) -> Any:
    s = cfg.sched
    if s.name == "plateau":
        mode: Literal["min", "max"] = "max" if s.monitor == "val_acc" else "min"
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode=mode, factor=s.factor, patience=s.patience
        )
    if s.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=s.t_max or cfg.run.epochs, eta_min=s.eta_min
        )
    return None


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (else ``model``)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@dataclass
class Parts:
    """What a run trains with: built once, before the loop."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    loss_fn: LossFn
    n_params: int


def build_parts(cfg: TrainConfig, data: DataBundle, device: torch.device, info: DistInfo) -> Parts:
    """Model (DDP-wrapped under a process group), optimiser, scheduler, AMP scaler, loss."""
    torch.manual_seed(cfg.run.seed)  # model init independent of data preparation
    model = build_model(cfg, data).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    if info.enabled:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    optimizer = make_optimizer(cfg, model)
    return Parts(
        model=model,
        optimizer=optimizer,
        scheduler=make_scheduler(cfg, optimizer),
        scaler=torch.amp.GradScaler("cuda") if cfg.run.amp == "fp16" else None,
        loss_fn=make_loss(cfg.loss, data.num_classes),
        n_params=n_params,
    )


def progress(it: Any, total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar over ``it`` on stderr (or ``it`` itself when disabled)."""
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)


def eval_loader(ds: Any, cfg: TrainConfig, info: DistInfo) -> Any:
    """This rank's disjoint, unpadded evaluation shard, in order."""
    idx = eval_indices(len(ds), info)
    bs = cfg.run.eval_batch_size or cfg.run.batch_size
    return make_loader(ds, [idx[i : i + bs] for i in range(0, len(idx), bs)], cfg.data.workers)


def evaluate_split(
    model: nn.Module,
    ds: Any,
    cfg: TrainConfig,
    data: DataBundle,
    info: DistInfo,
    device: torch.device,
    *,
    desc: str | None = None,
) -> EvalStats:
    """Evaluate ``model`` on one split exactly as the trainer does (this rank's shard).

    ``desc`` shows a progress bar with that label (``"val"``, ``"test"``).
    """
    loader = eval_loader(ds, cfg, info)
    batches = progress(loader, len(loader), desc or "", desc is not None)
    return evaluate(
        model,
        batches,
        make_loss(cfg.loss, data.num_classes),
        device=device,
        info=info,
        amp=cfg.run.amp,
        num_classes=data.num_classes,
    )


def account(model: nn.Module, data: DataBundle, cfg: TrainConfig, device: torch.device) -> dict:
    """NASAR, spikes per sample, operations and energy of ``model`` on the test set (clip 0)."""
    from masnn.analysis import measure

    loader = eval_loader(data.test, cfg, DistInfo())
    first_clip = ((x[0] if x.dim() == 6 else x, y) for x, y in loader)
    report = measure(model, first_clip, device=device)
    d = report.to_dict()
    return {
        "nasar": report.nasar,
        "spikes_per_sample": report.spikes.spikes_per_sample,
        "energy_mj": report.energy_mj,
        "totals": d.get("totals"),
    }


def format_accounting(acc: dict[str, Any]) -> str:
    """One line: NASAR, spikes and energy per sample (from :func:`account`)."""
    return (
        f"NASAR {acc['nasar']:.4f} | spikes/sample {acc['spikes_per_sample'] / 1e6:.3f} M | "
        f"energy {acc['energy_mj']:.4f} mJ/sample"
    )


def _model_fields(cfg: dict[str, Any]) -> str:
    m = cfg.get("model", {})
    d = cfg.get("data", {})
    shown = {f"model.{k}": v for k, v in m.items() if v not in (None, {}, "")}
    for k in ("dataset", "timesteps", "ds"):
        if k in d:
            shown[f"data.{k}"] = d[k]
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def first_mismatch(model_sd: dict[str, Any], saved: dict[str, Any]) -> str:
    """The first key where two state dicts differ (missing, unexpected or another shape)."""
    for k, v in model_sd.items():
        if k not in saved:
            return f"{k!r} is missing from the checkpoint"
        if tuple(saved[k].shape) != tuple(v.shape):
            return (
                f"{k!r} has shape {list(saved[k].shape)} in the checkpoint, {list(v.shape)} "
                "in the model"
            )
    for k in saved:
        if k not in model_sd:
            return f"{k!r} is in the checkpoint but not in the model"
    return "no key differs"


def load_weights(
    model: nn.Module,
    state: dict[str, Any],
    path: Any,
    built_from: dict[str, Any],
    saved_config: dict[str, Any] | None = None,
) -> None:
    """``model.load_state_dict(state)`` with a one-line message on a mismatch.

    The message names ``path``, the first differing key and the relevant fields of the config
    the model was built from (and of the checkpoint's config when it differs).
    """
    try:
        model.load_state_dict(state)
    except RuntimeError:
        where = first_mismatch(model.state_dict(), state)
        msg = (
            f"{path}: the weights do not fit the model: {where}; model built from "
            f"[{_model_fields(built_from)}]"
        )
        if saved_config is not None and saved_config != built_from:
            msg += f", checkpoint made with [{_model_fields(saved_config)}]"
        raise ckpt_io.CheckpointError(msg) from None


def check_finite_weights(state: dict[str, Any], path: Any) -> None:
    """Refuse a state dict with NaN/inf weights (a diverged run), naming the first tensor."""
    bad = [
        k
        for k, v in state.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()
    ]
    if bad:
        raise ckpt_io.CheckpointError(
            f"{path}: {len(bad)} of {len(state)} tensors hold NaN/inf (first: {bad[0]!r}); the "
            "run diverged - lower optim.lr and retrain"
        )
