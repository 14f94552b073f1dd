"""``train(cfg)``: the whole run — data, model, optimisation, model selection, final test.

Protocol (honest by construction):

1. the validation split is carved from the training set by subject/recording;
2. the best epoch is chosen on validation accuracy (ties: the earlier epoch) — never on test;
3. the test set is evaluated once, at the end, with the selected weights.

Checkpoints are written atomically after every epoch (and every ``run.checkpoint_every_steps``
steps); ``resume`` continues exactly: the data order and the random windows depend only on
``(seed, epoch, index)`` and all RNG states are restored, so a resumed run ends with the same
state dicts as an uninterrupted one (same thread count).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from masnn.errors import MasnnError
from masnn.models import create_model
from masnn.train import checkpoint as ckpt_io
from masnn.train.config import TrainConfig, config_from_dict, dump_config, migrate_saved_config
from masnn.train.data import DataBundle, build_data, fingerprint, make_loader
from masnn.train.distributed import (
    DistInfo,
    all_reduce_sum,
    eval_indices,
    init_distributed,
    shutdown_distributed,
    train_batches,
)
from masnn.train.engine import EpochStats, EvalStats, evaluate, make_loss, train_one_epoch
from masnn.train.runlog import EpochLog, Timer, environment, write_json


def _say(info: DistInfo, msg: str) -> None:
    if info.is_main:
        print(msg, flush=True)


@contextlib.contextmanager
def torch_globals_restored() -> Iterator[None]:
    """Restore what a run changes globally: thread count, deterministic mode, cuDNN benchmark,
    ``CUBLAS_WORKSPACE_CONFIG``, the current CUDA device and the python / numpy / torch RNG
    states (so ``train()`` leaves the caller's process as it found it, also when it raises).
    The process group is torn down separately (``shutdown_distributed``)."""
    threads = torch.get_num_threads()
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    det = torch.are_deterministic_algorithms_enabled()
    det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    bench = torch.backends.cudnn.benchmark
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    cuda = torch.cuda.is_available()
    cuda_rng = torch.cuda.get_rng_state_all() if cuda else None
    cuda_dev = torch.cuda.current_device() if cuda else None
    try:
        yield
    finally:
        if cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det, warn_only=det_warn)
        torch.backends.cudnn.benchmark = bench
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
            torch.cuda.set_device(cuda_dev)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed python, numpy and torch; optionally force deterministic algorithms."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False


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
    return create_model(m.name, **kwargs)


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


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


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
) -> EvalStats:
    """Evaluate ``model`` on one split exactly as the trainer does (this rank's shard)."""
    return evaluate(
        model,
        eval_loader(ds, cfg, info),
        make_loss(cfg.loss, data.num_classes),
        device=device,
        info=info,
        amp=cfg.run.amp,
        num_classes=data.num_classes,
    )


def _progress(it: Any, total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)


def new_run_dir(cfg: TrainConfig) -> Path:
    name = cfg.run.name or f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.model.name}-{cfg.hash()[:6]}"
    run_dir = Path(cfg.run.out_dir) / name
    if run_dir.exists() and any(run_dir.iterdir()):
        raise MasnnError(
            f"run directory {run_dir} already exists; pick another run.name or use --resume"
        )
    return run_dir


def train(
    cfg: TrainConfig, *, resume: str | os.PathLike[str] | None = None, quiet: bool = False
) -> dict[str, Any]:
    """Train per ``cfg`` (or continue the run whose checkpoint is ``resume``).

    Returns:
        the final metrics (also written to ``<run_dir>/metrics.json``).
    """
    state: dict[str, Any] | None = None
    if resume is not None:
        state = ckpt_io.load_checkpoint(resume)
        missing = [k for k in ("config", "model", "optimizer", "rng", "epoch") if k not in state]
        if missing:
            raise ckpt_io.CheckpointError(
                f"{resume}: cannot resume from it (no {', '.join(missing)}); resume from the "
                "run's checkpoint.pt (best.pt holds only the selected weights)"
            )
        saved = config_from_dict(migrate_saved_config(state["config"]))
        if saved.hash() != cfg.hash():
            raise MasnnError(
                f"--resume {resume}: the checkpoint was made with config {saved.hash()}, "
                f"this run resolves to {cfg.hash()}; resume with the same config"
            )
    with torch_globals_restored():
        if cfg.run.threads is not None:
            torch.set_num_threads(cfg.run.threads)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        info = init_distributed(device)
        if info.enabled and device.type == "cuda":
            torch.cuda.set_device(info.local_rank)
            device = torch.device("cuda", info.local_rank)
        seed_everything(cfg.run.seed, cfg.run.deterministic)
        timer = Timer()
        # progress bars only on a terminal: logs (CI, nohup) get the per-epoch lines alone
        show = cfg.run.progress and not quiet and info.is_main and sys.stderr.isatty()
        try:
            return _train(cfg, state, resume, device, info, timer, show)
        finally:
            shutdown_distributed()


def _train(
    cfg: TrainConfig,
    state: dict[str, Any] | None,
    resume: Any,
    device: torch.device,
    info: DistInfo,
    timer: Timer,
    show: bool,
) -> dict[str, Any]:
    timer.start("data")
    data = build_data(cfg.data, cfg.run.seed, progress=show)
    t_data = timer.stop("data")
    _say(
        info,
        f"data: {data.root} — {data.split_info['train_samples']} train / "
        f"{data.split_info['val_samples']} val ({data.split_info['val_split_by']}s "
        f"{', '.join(data.split_info['val_groups']) or '-'}) / "
        f"{data.split_info['test_samples']} test, frames {data.in_shape} x T={cfg.data.timesteps} "
        f"({t_data:.1f} s)",
    )
    _say(info, f"split: {data.split_info['val_note']}")
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
    scheduler = make_scheduler(cfg, optimizer)
    scaler = torch.amp.GradScaler("cuda") if cfg.run.amp == "fp16" else None
    loss_fn = make_loss(cfg.loss, data.num_classes)

    start_epoch, skip_steps, partial = 0, 0, None
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": -1, "val_acc": -1.0}
    if state is not None:
        run_dir = Path(resume).resolve().parent
        if info.is_main:  # temp files of writes a killed process never finished
            for stale in run_dir.glob(".*.tmp*"):
                stale.unlink()
        _unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler") is not None:
            scaler.load_state_dict(state["scaler"])
        start_epoch = int(state["epoch"])
        skip_steps = int(state.get("step_in_epoch", 0))
        partial = state.get("partial")
        history = list(state.get("history", []))
        best = dict(state.get("best", best))
        ckpt_io.set_rng_state(state["rng"])
        _say(info, f"resumed {resume}: epoch {start_epoch + 1}, step {skip_steps}")
    else:
        run_dir = new_run_dir(cfg) if info.is_main else Path()
    if info.enabled:  # rank 0 names the run (its clock, its existence check)
        box = [run_dir]
        torch.distributed.broadcast_object_list(box, src=0)
        run_dir = box[0]
    log = EpochLog(run_dir, cfg.run.tensorboard, enabled=info.is_main)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(dump_config(cfg))
        write_json(
            run_dir / "run.json",
            {
                "config_hash": cfg.hash(),
                **environment(),
                "dataset": fingerprint(data.root),  # main rank only: it reads small files
                "split": data.split_info,
                "seed": cfg.run.seed,
                "threads": torch.get_num_threads(),
                "world_size": info.world_size,
                "device": str(device),
                "parameters": n_params,
            },
        )
        log.truncate_after(start_epoch)
    _say(info, f"model: {cfg.model.name} ({n_params:,} parameters), run dir: {run_dir}")

    def save(epoch_done: int, step_in_epoch: int = 0, part: Any = None) -> None:
        if not info.is_main:
            return
        ckpt_io.save_checkpoint(
            run_dir / "checkpoint.pt",
            epoch=epoch_done,
            step_in_epoch=step_in_epoch,
            partial=part,
            config=cfg.to_dict(),
            model=_unwrap(model).state_dict(),
            optimizer=optimizer.state_dict(),
            scheduler=None if scheduler is None else scheduler.state_dict(),
            scaler=None if scaler is None else scaler.state_dict(),
            rng=ckpt_io.rng_state(),
            history=history,
            best=best,
        )

    def save_best(sel: dict[str, Any]) -> None:
        """The selected weights (what ``masnn eval`` reads)."""
        if info.is_main:
            ckpt_io.save_checkpoint(
                run_dir / "best.pt",
                epoch=sel["epoch"],
                config=cfg.to_dict(),
                model=_unwrap(model).state_dict(),
                best=sel,
            )

    timer.start("train")
    for epoch in range(start_epoch, cfg.run.epochs):
        data.train.set_epoch(epoch)
        batches = train_batches(len(data.train), cfg.run.batch_size, cfg.run.seed, epoch, info)
        if cfg.run.max_steps_per_epoch is not None:
            batches = batches[: cfg.run.max_steps_per_epoch]
        todo = batches[skip_steps:]
        loader = make_loader(data.train, todo, cfg.data.workers)
        it = _progress(loader, len(todo), f"epoch {epoch + 1}/{cfg.run.epochs}", show)

        def on_step(
            step: int,
            sums: list[float],
            _e: int = epoch,
            _s: int = skip_steps,
            _n: int = len(batches),
        ) -> None:
            every = cfg.run.checkpoint_every_steps
            done = _s + step + 1
            if every and done % every == 0 and done < _n:
                # the whole job's running sums (every rank takes part in the reduction; only
                # rank 0 carries the resumed part, so nothing is counted twice)
                save(_e, done, all_reduce_sum(sums, info, device))

        t0 = time.perf_counter()
        stats: EpochStats = train_one_epoch(
            model,
            it,
            optimizer,
            loss_fn,
            device=device,
            info=info,
            epoch=epoch,
            amp=cfg.run.amp,
            scaler=scaler,
            start=partial if info.is_main else None,
            step_offset=skip_steps,
            on_step=on_step,
        )
        skip_steps, partial = 0, None
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": stats.loss,
            "train_acc": stats.acc,
        }
        if data.val is not None:
            v = evaluate_split(_unwrap(model), data.val, cfg, data, info, device)
            row.update(val_loss=v.loss, val_acc=v.acc)
            if v.acc > best["val_acc"]:
                best = {"epoch": epoch + 1, "val_acc": v.acc, "val_loss": v.loss}
                save_best(best)
        row["seconds"] = round(time.perf_counter() - t0, 3)
        if scheduler is not None:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                key = cfg.sched.monitor
                if key not in row:
                    raise MasnnError(f"sched.monitor={key!r} needs a validation split")
                scheduler.step(row[key])
            else:
                scheduler.step()
        history.append(row)
        log.write(row)
        _say(info, "  " + "  ".join(_fmt(k, v) for k, v in row.items()))
        save(epoch + 1)
    t_train = timer.stop("train")
    log.close()

    # Model selection: the best validation epoch (or the last epoch without validation).
    if data.val is not None and (run_dir / "best.pt").exists() and info.is_main:
        _unwrap(model).load_state_dict(ckpt_io.load_checkpoint(run_dir / "best.pt")["model"])
    elif data.val is None:
        best = {"epoch": cfg.run.epochs, "val_acc": None}
        save_best(best)
    if info.enabled:  # every rank evaluates the selected weights
        sd: list[Any] = [_unwrap(model).state_dict() if info.is_main else None]
        torch.distributed.broadcast_object_list(sd, src=0)
        _unwrap(model).load_state_dict(sd[0])
    timer.start("test")
    test = evaluate_split(_unwrap(model), data.test, cfg, data, info, device)
    t_test = timer.stop("test")
    metrics: dict[str, Any] = {
        "test": asdict(test),
        "best": best,
        "epochs": cfg.run.epochs,
        "parameters": n_params,
        "seconds": {"data": t_data, "train": t_train, "test": t_test},
        "config_hash": cfg.hash(),
        "run_dir": str(run_dir),
        "rank": info.rank,
    }
    if info.is_main:
        metrics["accounting"] = account(_unwrap(model), data, cfg, device)
        write_json(run_dir / "metrics.json", metrics)
    if info.enabled:  # nobody leaves the process group while rank 0 still works
        torch.distributed.barrier()
    return metrics


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


def summarize(metrics: dict[str, Any]) -> str:
    """The closing lines printed by ``masnn train``."""
    t = metrics["test"]
    acc = f"test accuracy {100 * t['acc']:.2f} % ({t['correct']}/{t['samples']})"
    if t.get("acc_top5") is not None:
        acc += f", top-5 {100 * t['acc_top5']:.2f} %"
    if t["acc_majority"] != t["acc_single"] or t["acc_official"] != t["acc"]:
        acc += (
            f" [single clip {100 * t['acc_single']:.2f} %, "
            f">50 % clips {100 * t['acc_official']:.2f} %]"
        )
    lines = [acc]
    a = metrics.get("accounting")
    if a:
        lines.append(format_accounting(a) + " (E_MAC 4.6 pJ, E_AC 0.9 pJ)")
    b = metrics["best"]
    sel = (
        f"selected epoch {b['epoch']} (val acc {100 * b['val_acc']:.2f} %)"
        if b.get("val_acc") is not None
        else f"last epoch {b['epoch']} (no validation split)"
    )
    s = metrics["seconds"]
    lines.append(
        f"{sel}; time: data {s['data']:.1f} s, train {s['train']:.1f} s, test {s['test']:.1f} s"
    )
    lines.append(f"run saved to {metrics['run_dir']}")
    return "\n".join(lines)


def _fmt(k: str, v: Any) -> str:
    if isinstance(v, float):
        if k == "lr":
            return f"{k} {v:.2e}"
        return f"{k} {v:.4f}" if math.isfinite(v) else f"{k} {v}"
    return f"{k} {v}"
