"""``masnn data synth-gesture``: write the offline synthetic DVS128-Gesture-shaped set."""

from __future__ import annotations

import argparse
import time

from masnn.cli.data import register_data_action


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output directory (IBM release layout)")
    p.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    p.add_argument("--size", choices=("small", "full"), default="small", help="preset")
    p.add_argument("--workers", type=int, default=None, help="processes (default 2)")


@register_data_action(
    "synth-gesture",
    "Generate the synthetic DVS128-Gesture-shaped set (AEDAT 3.1 + label CSVs + manifest).",
    _configure,
)
def _run(args: argparse.Namespace) -> int:
    from masnn.synth import generate_synth_gesture

    tic = time.perf_counter()
    man = generate_synth_gesture(args.out, seed=args.seed, size=args.size, workers=args.workers)
    tot = man["totals"]
    print(
        f"synth-gesture v{man['generator_version']} seed {man['seed']} ({man['size']}): "
        f"{tot['files']['all']} files, {tot['samples']['train']} train / "
        f"{tot['samples']['test']} test samples, {tot['events']} events, "
        f"{tot['events_per_s']:.0f} ev/s, noise {100 * tot['noise_fraction']:.1f} %, "
        f"ON/OFF {tot['on_off_ratio']:.2f}; {time.perf_counter() - tic:.1f} s -> {args.out}"
    )
    return 0
