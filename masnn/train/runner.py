"""``train(cfg)``: the whole run — data, model, optimisation, model selection, final test.

Protocol (honest by construction):

1. the validation split is carved from the training set by subject/recording;
2. the best epoch is chosen on validation accuracy (ties: the earlier epoch) — never on test;
3. the test set is evaluated once, at the end, with the selected weights.

Checkpoints are written atomically after every epoch (and every ``run.checkpoint_every_steps``
steps); ``resume`` continues exactly: the data order and the random windows depend only on
``(seed, epoch, index)`` and all RNG states are restored, so a resumed run ends with the same
state dicts as an uninterrupted one (same thread count).

The pieces: :mod:`masnn.train.setup` (process: globals, seeding, DDP),
:mod:`masnn.train.build` (model, optimiser, scheduler, loss, loaders, evaluation),
:mod:`masnn.train.loop` (the loop and its :class:`~masnn.train.loop.RunState`),
:mod:`masnn.train.rundir` (run directories) and :mod:`masnn.train.preflight` (environment
checks before any data is loaded). Printing is the caller's (``emit``); the CLI prints.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from masnn.errors import MasnnError
from masnn.fsutil import remove_stale_temps, write_text
from masnn.train import checkpoint as ckpt_io
from masnn.train.build import (  # noqa: F401 - re-exported (older imports)
    account,
    build_model,
    build_parts,
    evaluate_split,
    format_accounting,
    make_optimizer,
    make_scheduler,
)
from masnn.train.config import TrainConfig, config_from_dict, dump_config, migrate_saved_config
from masnn.train.data import build_data, fingerprint
from masnn.train.distributed import DistInfo
from masnn.train.loop import Console, RunState, Trainer
from masnn.train.preflight import check_data_sources, check_samples, config_diff
from masnn.train.rundir import create_run_dir, resolve_resume, set_status
from masnn.train.runlog import Timer, environment, write_json
from masnn.train.setup import run_process, seed_everything, torch_globals_restored  # noqa: F401


def _load_resume(resume: Any, cfg: TrainConfig) -> tuple[Path, dict[str, Any]]:
    path = resolve_resume(resume)
    state = ckpt_io.load_checkpoint(path)
    missing = [k for k in ("config", "model", "optimizer", "rng", "epoch") if k not in state]
    if missing:
        raise ckpt_io.CheckpointError(
            f"{path}: cannot resume from it (no {', '.join(missing)}); resume from the "
            "run's checkpoint.pt (best.pt holds only the selected weights)"
        )
    saved = config_from_dict(migrate_saved_config(state["config"]))
    if saved.hash() != cfg.hash():
        raise MasnnError(
            f"--resume {path}: the checkpoint was made with another config "
            f"({config_diff(saved, cfg)}); resume with the same config (omit CONFIG and --set "
            "to use the checkpoint's own)"
        )
    return path, state


def train(
    cfg: TrainConfig,
    *,
    resume: str | os.PathLike[str] | None = None,
    quiet: bool = False,
    replace: bool = False,
    emit: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train per ``cfg`` (or continue the run whose checkpoint or directory is ``resume``).

    Args:
        cfg: the resolved configuration.
        resume: a run's ``checkpoint.pt`` or its directory.
        quiet: print nothing (``log.txt`` is still written).
        replace: delete an existing run directory of the same ``run.name`` first.
        emit: where console lines go (default ``print``).

    Returns:
        the final metrics (also written to ``<run_dir>/metrics.json``).
    """
    ckpt_path, state = (None, None) if resume is None else _load_resume(resume, cfg)
    check_data_sources(cfg)  # environment faults before any data is loaded
    with run_process(cfg) as (device, info):
        out = (lambda m: print(m, flush=True)) if emit is None else emit
        console = Console(None if quiet else out, enabled=info.is_main)
        # progress bars only on a terminal: logs (CI, nohup) get the per-epoch lines alone
        show = cfg.run.progress and not quiet and info.is_main and sys.stderr.isatty()
        if ckpt_path is not None:
            run_dir = ckpt_path.resolve().parent
            if info.is_main:
                remove_stale_temps(run_dir)  # temp files of writes a killed process never did
                set_status(run_dir, "running")
        else:
            run_dir = create_run_dir(cfg, replace=replace) if info.is_main else Path()
        if info.enabled:  # rank 0 names the run
            box = [run_dir]
            torch.distributed.broadcast_object_list(box, src=0)
            run_dir = box[0]
        console.attach(run_dir, previous=ckpt_path is not None)
        try:
            metrics = _run(cfg, state, ckpt_path, run_dir, device, info, console, show)
        except BaseException as exc:
            if info.is_main:
                msg = " ".join(str(exc).split()) or type(exc).__name__
                if isinstance(exc, KeyboardInterrupt):
                    msg = "interrupted"
                with contextlib.suppress(MasnnError, OSError):  # report the original error
                    set_status(run_dir, "failed", error=msg[:500])
            raise
        if info.is_main:
            set_status(run_dir, "finished")
        return metrics


def _run(
    cfg: TrainConfig,
    state: dict[str, Any] | None,
    ckpt_path: Path | None,
    run_dir: Path,
    device: torch.device,
    info: DistInfo,
    console: Console,
    show: bool,
) -> dict[str, Any]:
    timer = Timer()
    if info.is_main and ckpt_path is None:
        write_text(run_dir / "config.yaml", dump_config(cfg))
    timer.start("data")
    data = build_data(cfg.data, cfg.run.seed, progress=show)
    check_samples(data, cfg)  # [rel hook] data honesty: empty samples (data.empty_samples)
    t_data = timer.stop("data")
    console.say(
        f"data: {data.root} — {data.split_info['train_samples']} train / "
        f"{data.split_info['val_samples']} val ({data.split_info['val_split_by']}s "
        f"{', '.join(data.split_info['val_groups']) or '-'}) / "
        f"{data.split_info['test_samples']} test, frames {data.in_shape} x T={cfg.data.timesteps} "
        f"({t_data:.1f} s)"
    )
    console.say(f"split: {data.split_info['val_note']}")
    parts = build_parts(cfg, data, device, info)
    run_state = RunState()
    trainer = Trainer(
        cfg, data, parts, run_dir, device, info, console,
        show=show, state=run_state, timer=timer,
    )  # fmt: skip
    if state is not None and ckpt_path is not None:
        trainer.restore(state, ckpt_path)
        trainer.state = RunState.from_checkpoint(state)
        console.say(
            f"resumed {ckpt_path}: epoch {trainer.state.epoch + 1}, "
            f"step {trainer.state.step_in_epoch}"
        )
    if info.is_main:
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
                "parameters": parts.n_params,
            },
        )
    console.say(f"model: {cfg.model.name} ({parts.n_params:,} parameters), run dir: {run_dir}")
    trainer.fit()
    return trainer.select_and_test()


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
    if metrics.get("silent_epochs"):
        lines.append(f"warning: silent output layer in epoch(s) {metrics['silent_epochs']}")
    lines.append(f"run saved to {metrics['run_dir']}")
    return "\n".join(lines)
