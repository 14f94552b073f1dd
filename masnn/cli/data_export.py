"""``masnn data export --format tonic ROOT --out DIR``: a dataset copy in another library's layout."""

from __future__ import annotations

import argparse

from masnn.cli.data import register_data_action

#: Layouts ``masnn data export`` writes.
FORMATS = ("tonic",)


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", help="DVS128 Gesture directory (IBM, SpikingJelly or Tonic layout)")
    p.add_argument("--out", required=True, help="output directory (Tonic's save_to)")
    p.add_argument("--format", choices=FORMATS, default="tonic", help="target layout")
    p.add_argument("--split", choices=("train", "test", "both"), default="both")


@register_data_action(
    "export",
    "Write a DVS128 Gesture copy in Tonic's DVSGesture layout (userNN_<light>/<label>.npy).",
    _configure,
)
def _run(args: argparse.Namespace) -> int:
    from masnn.export.tonic import write_tonic_gesture

    splits = ("train", "test") if args.split == "both" else (args.split,)
    report = write_tonic_gesture(args.root, args.out, splits=splits)
    for split, r in report.items():
        print(
            f"{split}: {r['written']} samples, {r['events']} events -> "
            f"{args.out}/DVSGesture ({r['dropped']} repeated-class samples dropped: Tonic keeps "
            "one per class per trial)"
        )
    return 0
