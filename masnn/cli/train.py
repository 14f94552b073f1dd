"""``masnn train [CONFIG] [--set key=value ...]`` and ``masnn eval CHECKPOINT``."""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

from masnn.cli import register_command


def _add_set(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument(
        "--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
        help=help,
    )  # fmt: skip


def _configure_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", default=None, help="YAML config (default: the main job)")
    _add_set(p, "override config keys, e.g. --set optim.lr=1e-3 model.attn.name=ca")
    p.add_argument(
        "--resume",
        default=None,
        metavar="RUN",
        help="continue a run exactly (its directory or checkpoint.pt; without CONFIG and --set "
        "the checkpoint's own config is used)",
    )
    p.add_argument(
        "--replace",
        action="store_true",
        help="delete an existing run directory of the same run.name and start again",
    )
    p.add_argument("--repeats", type=int, default=1, help="run N seeds (seed, seed+1, ...)")
    p.add_argument("--deterministic", action="store_true", help="deterministic algorithms only")
    p.add_argument("--print-config", action="store_true", help="print the resolved config, exit")


@register_command(
    "train", "Train a model (no arguments: the offline main job on 2 CPU cores).", _configure_train
)
def run_train(args: argparse.Namespace) -> int:
    from masnn.train.config import (
        config_from_dict,
        dump_config,
        load_config,
        migrate_saved_config,
    )
    from masnn.train.runlog import append_log
    from masnn.train.runner import summarize, train

    overrides = list(args.overrides)
    if args.deterministic:
        overrides.append("run.deterministic=true")
    if args.resume and args.config is None and not overrides:
        from masnn.train import checkpoint as ckpt_io
        from masnn.train.rundir import resolve_resume

        saved = ckpt_io.load_checkpoint(resolve_resume(args.resume))["config"]
        cfg = config_from_dict(migrate_saved_config(saved))
    else:
        cfg = load_config(args.config, overrides)
    if args.print_config:
        print(dump_config(cfg), end="")
        return 0
    if args.resume and args.repeats != 1:
        raise ValueError(
            "--resume continues one run; it cannot be combined with --repeats (resume each "
            "seed's run directory on its own)"
        )
    if args.resume and args.replace:
        raise ValueError("--resume continues a run and --replace deletes it; pick one")
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    base = cfg.run.name
    if args.repeats > 1 and base is None:  # one unique sweep name for every seed's run
        from masnn.train.rundir import auto_name

        base = auto_name(cfg)
    results = []
    for r in range(args.repeats):
        c = cfg
        if args.repeats > 1:
            name = f"{base}-seed{cfg.run.seed + r}"
            c = replace(cfg, run=replace(cfg.run, seed=cfg.run.seed + r, name=name))
        metrics = train(
            c, resume=args.resume, replace=args.replace, emit=lambda m: print(m, flush=True)
        )
        if metrics["rank"] != 0:  # under torchrun only rank 0 reports
            continue
        summary = summarize(metrics)
        print(summary, flush=True)
        append_log(Path(metrics["run_dir"]), summary)
        results.append(metrics)
    if args.repeats > 1 and results:
        from masnn.fsutil import write_text

        accs = [100 * m["test"]["acc"] for m in results]
        mean, sd = statistics.mean(accs), statistics.stdev(accs)
        print(f"{args.repeats} seeds: test accuracy {mean:.2f} ± {sd:.2f} % (mean ± std)")
        out = Path(cfg.run.out_dir) / f"{base}-summary.json"
        write_text(out, json.dumps({"test_acc": accs, "mean": mean, "std": sd}, indent=2) + "\n")
    return 0


def _configure_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a run's best.pt or checkpoint.pt")
    p.add_argument("--split", choices=("test", "val"), default="test")
    _add_set(p, "override data keys (e.g. data.root=... when the data moved)")
    p.add_argument(
        "--crop",
        type=int,
        default=None,
        help="ImageNet evaluation crop (224: Resize 256; 288: Resize 320) = --set data.options.crop=N",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument(
        "--engine",
        choices=("model", "fast", "sparse"),
        default="model",
        help="inference engine: the model itself, the dense fast path, or event-driven sparse",
    )
    p.add_argument(
        "--per-class",
        action="store_true",
        help="also print each class's accuracy and what it is most often mistaken for",
    )


@register_command(
    "eval", "Evaluate a checkpoint: accuracy, NASAR, spikes, energy.", _configure_eval
)
def run_eval(args: argparse.Namespace) -> int:
    from masnn.train.evaluate import evaluate_checkpoint

    overrides = list(args.overrides or [])
    if args.crop is not None:
        overrides.append(f"data.options.crop={args.crop}")
    res = evaluate_checkpoint(
        args.checkpoint, split=args.split, overrides=overrides, engine=args.engine
    )
    if args.json:
        if args.per_class:  # per-class recall next to the confusion matrix it comes from
            from masnn.train.engine import EvalStats

            recall = EvalStats(**res["stats"]).per_class()
            res["per_class"] = dict(zip(res["class_names"], recall))
        print(json.dumps(res, indent=2, default=str))
        return 0
    s = res["stats"]
    print(
        f"{args.split} accuracy {100 * s['acc']:.2f} % ({s['correct']}/{s['samples']}) "
        f"[single clip {100 * s['acc_single']:.2f} %, >50 % clips {100 * s['acc_official']:.2f} %]"
        f"; top-5 {100 * s['acc_top5']:.2f} % ({s['correct_top5']}/{s['samples']})"
    )
    print(res["summary"])
    if args.per_class:
        print(format_per_class(s["confusion"], res["class_names"]))
    return 0


def format_per_class(confusion: list[list[int]], names: list[str]) -> str:
    """One line per class: recall, sample count and the most frequent wrong prediction."""
    w = max(5, *(len(n) for n in names))
    lines = [f"{'class':{w}s}  {'acc':>7s}  {'n':>4s}  most often mistaken for"]
    for i, row in enumerate(confusion):
        n = sum(row)
        if n == 0:
            lines.append(f"{names[i]:{w}s}  {'-':>7s}  {0:4d}")
            continue
        wrong = [j for j, c in enumerate(row) if j != i and c > 0]
        miss = "-"
        if wrong:  # the most frequent wrong class; ties go to the lowest index
            j = max(wrong, key=lambda j: (row[j], -j))
            miss = f"{names[j]} ({row[j]})"
        lines.append(f"{names[i]:{w}s}  {100 * row[i] / n:6.2f}%  {n:4d}  {miss}")
    return "\n".join(lines)
