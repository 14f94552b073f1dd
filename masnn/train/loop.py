"""The training loop: an explicit :class:`RunState`, one :class:`Trainer` that owns it.

The state that a checkpoint must carry (epoch, step within the epoch, the running sums of a
partial epoch, history, best record) lives in :class:`RunState`; the trainer's methods read and
update it (no closures). Everything printed goes through :class:`Console` (the CLI prints; the
run directory's ``log.txt`` keeps a copy).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from masnn.errors import MasnnError
from masnn.fsutil import write_text
from masnn.train import checkpoint as ckpt_io
from masnn.train.build import (
    Parts,
    account,
    evaluate_split,
    load_weights,
    progress,
    unwrap,
)
from masnn.train.config import TrainConfig
from masnn.train.data import DataBundle, make_loader
from masnn.train.distributed import DistInfo, all_reduce_sum, train_batches
from masnn.train.engine import EpochStats, train_one_epoch
from masnn.train.runlog import EpochLog, Timer, write_json


class Console:
    """The run's console output: printed by rank 0 (via ``emit``) and kept as ``log.txt``."""

    def __init__(self, emit: Callable[[str], None] | None, enabled: bool) -> None:
        self.emit = emit
        self.enabled = enabled
        self.lines: list[str] = []
        self.path: Path | None = None

    def attach(self, run_dir: Path, previous: bool = False) -> None:
        """Save lines to ``run_dir/log.txt`` from now on (``previous``: keep its old lines)."""
        if not self.enabled:
            return
        self.path = run_dir / "log.txt"
        if previous and self.path.is_file():
            self.lines = self.path.read_text().splitlines() + self.lines
        self._flush()

    def say(self, msg: str) -> None:
        if not self.enabled:
            return
        if self.emit is not None:
            self.emit(msg)
        self.lines.extend(msg.splitlines())
        self._flush()

    def _flush(self) -> None:
        if self.path is not None:
            write_text(self.path, "".join(line + "\n" for line in self.lines))


@dataclass
class RunState:
    """Where a run stands; saved in ``checkpoint.pt`` and restored by ``--resume``.

    Attributes:
        epoch: completed epochs.
        step_in_epoch: optimiser steps already done in epoch ``epoch`` (mid-epoch checkpoint).
        partial: running ``[loss_sum, correct, samples]`` of those steps.
        history: one row per completed epoch.
        best: the model-selection record (best validation epoch).
        silent_epochs: epochs in which the output layer never spiked.
    """

    epoch: int = 0
    step_in_epoch: int = 0
    partial: list[float] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": -1, "val_acc": -1.0})
    silent_epochs: list[int] = field(default_factory=list)

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> RunState:
        return cls(
            epoch=int(state["epoch"]),
            step_in_epoch=int(state.get("step_in_epoch", 0)),
            partial=state.get("partial"),
            history=list(state.get("history", [])),
            best=dict(state.get("best", {"epoch": -1, "val_acc": -1.0})),
            silent_epochs=list(state.get("silent_epochs", [])),
        )


class Trainer:
    """Runs epochs of one run: train, validate, select, checkpoint, then test once."""

    def __init__(
        self,
        cfg: TrainConfig,
        data: DataBundle,
        parts: Parts,
        run_dir: Path,
        device: torch.device,
        info: DistInfo,
        console: Console,
        *,
        show: bool,
        state: RunState,
        timer: Timer,
    ) -> None:
        self.cfg, self.data, self.parts = cfg, data, parts
        self.run_dir, self.device, self.info = run_dir, device, info
        self.console, self.show, self.state, self.timer = console, show, state, timer
        self.log = EpochLog(run_dir, cfg.run.tensorboard, enabled=info.is_main)

    # -- checkpoints ----------------------------------------------------------------------

    def save(self, partial: list[float] | None = None) -> None:
        """``checkpoint.pt``: everything needed to continue exactly (rank 0 writes)."""
        if not self.info.is_main:
            return
        p, s = self.parts, self.state
        ckpt_io.save_checkpoint(
            self.run_dir / "checkpoint.pt",
            epoch=s.epoch,
            step_in_epoch=s.step_in_epoch,
            partial=partial,
            config=self.cfg.to_dict(),
            model=unwrap(p.model).state_dict(),
            optimizer=p.optimizer.state_dict(),
            scheduler=None if p.scheduler is None else p.scheduler.state_dict(),
            scaler=None if p.scaler is None else p.scaler.state_dict(),
            rng=ckpt_io.rng_state(),
            history=s.history,
            best=s.best,
            silent_epochs=s.silent_epochs,
        )

    def save_best(self) -> None:
        """``best.pt``: the selected weights (what ``masnn eval`` and ``load_model`` read)."""
        if self.info.is_main:
            ckpt_io.save_checkpoint(
                self.run_dir / "best.pt",
                epoch=self.state.best["epoch"],
                config=self.cfg.to_dict(),
                model=unwrap(self.parts.model).state_dict(),
                best=self.state.best,
                num_classes=self.data.num_classes,
                in_shape=list(self.data.in_shape),
                class_names=list(self.data.class_names),
            )

    def restore(self, ckpt: dict[str, Any], path: Path) -> None:
        """Load model, optimiser, scheduler, scaler and RNG states from ``ckpt``."""
        p = self.parts
        load_weights(unwrap(p.model), ckpt["model"], path, self.cfg.to_dict(), ckpt["config"])
        p.optimizer.load_state_dict(ckpt["optimizer"])
        if p.scheduler is not None and ckpt.get("scheduler") is not None:
            p.scheduler.load_state_dict(ckpt["scheduler"])
        if p.scaler is not None and ckpt.get("scaler") is not None:
            p.scaler.load_state_dict(ckpt["scaler"])
        ckpt_io.set_rng_state(ckpt["rng"])

    # -- one epoch --------------------------------------------------------------------------

    def _on_step(self, epoch: int, skip: int, n_batches: int, bar: Any) -> Any:
        every = self.cfg.run.checkpoint_every_steps

        def on_step(step: int, sums: list[float]) -> None:
            done = skip + step + 1
            if bar is not None and hasattr(bar, "set_postfix"):
                bar.set_postfix(
                    loss=f"{sums[0] / max(sums[2], 1):.4f}",
                    acc=f"{sums[1] / max(sums[2], 1):.3f}",
                    refresh=done == n_batches,  # the last step always shows its running numbers
                )
            if every and done % every == 0 and done < n_batches:
                # the whole job's running sums (every rank takes part in the reduction; only
                # rank 0 carries the resumed part, so nothing is counted twice)
                part = all_reduce_sum(sums, self.info, self.device)
                self.state.step_in_epoch = done
                self.save(part)

        return on_step

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        cfg, p, s = self.cfg, self.parts, self.state
        self.data.train.set_epoch(epoch)
        batches = train_batches(
            len(self.data.train), cfg.run.batch_size, cfg.run.seed, epoch, self.info
        )
        if cfg.run.max_steps_per_epoch is not None:
            batches = batches[: cfg.run.max_steps_per_epoch]
        skip = s.step_in_epoch
        todo = batches[skip:]
        loader = make_loader(self.data.train, todo, cfg.data.workers)
        bar = progress(loader, len(todo), f"epoch {epoch + 1}/{cfg.run.epochs}", self.show)
        t0 = time.perf_counter()
        stats: EpochStats = train_one_epoch(
            p.model,
            bar,
            p.optimizer,
            p.loss_fn,
            device=self.device,
            info=self.info,
            epoch=epoch,
            amp=cfg.run.amp,
            scaler=p.scaler,
            start=s.partial if self.info.is_main else None,
            step_offset=skip,
            on_step=self._on_step(epoch, skip, len(batches), bar if self.show else None),
        )
        s.step_in_epoch, s.partial = 0, None
        if stats.steps and stats.output_activity == 0:
            s.silent_epochs.append(epoch + 1)
            self.console.say(
                f"warning: epoch {epoch + 1}: the output layer never spiked (a silent network "
                "learns nothing; lower optim.lr or check the neuron threshold)"
            )
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": p.optimizer.param_groups[0]["lr"],
            "train_loss": stats.loss,
            "train_acc": stats.acc,
        }
        if self.data.val is not None:
            v = evaluate_split(
                unwrap(p.model), self.data.val, cfg, self.data, self.info, self.device,
                desc="val" if self.show else None,
            )  # fmt: skip
            row.update(val_loss=v.loss, val_acc=v.acc)
            if v.acc > s.best["val_acc"]:
                s.best = {"epoch": epoch + 1, "val_acc": v.acc, "val_loss": v.loss}
                self.save_best()
        row["seconds"] = round(time.perf_counter() - t0, 3)
        self._step_scheduler(row)
        return row

    def _step_scheduler(self, row: dict[str, Any]) -> None:
        sched = self.parts.scheduler
        if sched is None:
            return
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            key = self.cfg.sched.monitor
            if key not in row:
                raise MasnnError(f"sched.monitor={key!r} needs a validation split")
            sched.step(row[key])
        else:
            sched.step()

    # -- the run ----------------------------------------------------------------------------

    def fit(self) -> None:
        """Epochs ``state.epoch .. run.epochs``, checkpointing after each."""
        if self.info.is_main:
            self.log.truncate_after(self.state.epoch)
        self.timer.start("train")
        try:
            for epoch in range(self.state.epoch, self.cfg.run.epochs):
                row = self.run_epoch(epoch)
                self.state.history.append(row)
                self.log.write(row)
                self.console.say("  " + "  ".join(_fmt(k, v) for k, v in row.items()))
                self.state.epoch = epoch + 1
                self.save()
        finally:
            self.timer.stop("train")

    def select_and_test(self) -> dict[str, Any]:
        """Load the selected weights, evaluate the test set once, write ``metrics.json``."""
        cfg, data, info, s = self.cfg, self.data, self.info, self.state
        model = unwrap(self.parts.model)
        best_pt = self.run_dir / "best.pt"
        if data.val is not None and best_pt.exists() and info.is_main:
            model.load_state_dict(ckpt_io.load_checkpoint(best_pt)["model"])
        elif data.val is None:
            s.best = {"epoch": cfg.run.epochs, "val_acc": None}
            self.save_best()
        if info.enabled:  # every rank evaluates the selected weights
            sd: list[Any] = [model.state_dict() if info.is_main else None]
            torch.distributed.broadcast_object_list(sd, src=0)
            model.load_state_dict(sd[0])
        self.timer.start("test")
        test = evaluate_split(
            model, data.test, cfg, data, info, self.device, desc="test" if self.show else None
        )
        t_test = self.timer.stop("test")
        ph = self.timer.phases
        metrics: dict[str, Any] = {
            "test": asdict(test),
            "best": s.best,
            "epochs": cfg.run.epochs,
            "parameters": self.parts.n_params,
            "seconds": {"data": ph.get("data", 0.0), "train": ph.get("train", 0.0), "test": t_test},
            "config_hash": cfg.hash(),
            "run_dir": str(self.run_dir),
            "rank": info.rank,
        }
        if s.silent_epochs:
            metrics["silent_epochs"] = s.silent_epochs
        if info.is_main:
            metrics["accounting"] = account(model, data, cfg, self.device)
            write_json(self.run_dir / "metrics.json", metrics)
            self.log.final(
                {k: v for k, v in metrics["test"].items() if k != "confusion"},
                _flat(cfg.to_dict()),
                cfg.run.epochs,
            )
        self.log.close()
        if info.enabled:  # nobody leaves the process group while rank 0 still works
            torch.distributed.barrier()
        return metrics


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def _fmt(k: str, v: Any) -> str:
    import math

    if isinstance(v, float):
        if k == "lr":
            return f"{k} {v:.2e}"
        return f"{k} {v:.4f}" if math.isfinite(v) else f"{k} {v}"
    return f"{k} {v}"
