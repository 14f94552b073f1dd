"""``masnn report [CONFIG] [--preset tiny|quick|full] [--seeds N] [--out DIR] [--set ...]``."""

from __future__ import annotations

import argparse
import shlex
import sys

from masnn.cli import register_command


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "config", nargs="?", default=None, help="base YAML config (default: the main job's)"
    )
    p.add_argument(
        "--preset",
        choices=("tiny", "quick", "full"),
        default="quick",
        help="settings and budget (docs/report/README.md): quick = vanilla/TA/CA/TCSA x 3 seeds",
    )
    p.add_argument("--seeds", type=int, default=None, help="seeds per setting (preset default)")
    p.add_argument("--out", default="report", help="output directory (runs are kept under it)")
    p.add_argument(
        "--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
        help="override base-config keys for every run, e.g. data.root=DIR data.dataset=dvs128_gesture",
    )  # fmt: skip
    p.add_argument(
        "--variants",
        default=None,
        metavar="LIST",
        help="comma-separated settings instead of the preset's, e.g. none,relu,tcsa,tcsa-code",
    )
    p.add_argument("--no-plots", action="store_true", help="tables only (no matplotlib needed)")
    p.add_argument("--no-isometry", action="store_true", help="skip the block-isometry sweep")
    p.add_argument(
        "--plan", action="store_true", help="list the runs (and which are already done), exit"
    )


@register_command(
    "report",
    "Train (or reuse) every attention setting over N seeds; write the Table 6 report and plots.",
    _configure,
)
def run_report_cmd(args: argparse.Namespace) -> int:
    from masnn.report import run_report

    variants = None if args.variants is None else [v for v in args.variants.split(",") if v]
    if args.plan:
        return _print_plan(args, variants)
    command = "masnn " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else None
    res = run_report(
        args.preset,
        seeds=args.seeds,
        out=args.out,
        config=args.config,
        overrides=args.overrides,
        variants=variants,
        plots=not args.no_plots,
        isometry=not args.no_isometry,
        command=command,
    )
    print((res.out / "table.md").read_text(), end="")
    return 0


def _print_plan(args: argparse.Namespace, variants: list[str] | None) -> int:
    from masnn.report.sweep import PRESETS, is_finished, plan_runs
    from masnn.report.variants import parse_variant

    vs = None if variants is None else [parse_variant(v) for v in variants]
    specs = plan_runs(
        PRESETS[args.preset],
        seeds=args.seeds,
        out=args.out,
        config=args.config,
        overrides=args.overrides,
        variants=vs,
    )
    done = 0
    for s in specs:
        state = "done" if is_finished(s) else "to train"
        done += state == "done"
        print(f"{s.variant.label:22s} seed {s.seed}  {state:8s}  {s.run_dir}")
    print(f"{len(specs)} runs, {done} done, {len(specs) - done} to train")
    return 0
