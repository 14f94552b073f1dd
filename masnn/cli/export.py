"""``masnn export FORMAT CHECKPOINT -o FILE``: write a trained model in another format.

Formats come from :data:`masnn.export.EXPORTERS` (``onnx``, ``nir``); the model is rebuilt from
the checkpoint as ``masnn eval`` rebuilds it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from masnn.cli import register_command


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("format", help="export format: onnx or nir (masnn.export.EXPORTERS)")
    p.add_argument("checkpoint", help="a run's best.pt or checkpoint.pt")
    p.add_argument("-o", "--output", required=True, help="the file to write")
    p.add_argument(
        "--timesteps", type=int, default=None, help="T of the graph (default: the run's)"
    )
    p.add_argument(
        "--step", action="store_true", help="onnx: also write the per-step cell (FILE.step.onnx)"
    )
    p.add_argument(
        "--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
        help="data.* overrides, e.g. data.root=... when the data moved",
    )  # fmt: skip


@register_command("export", "Export a checkpoint's model to ONNX or NIR.", _configure)
def run_export(args: argparse.Namespace) -> int:
    from masnn.export import get_exporter, model_from_checkpoint

    exporter = get_exporter(args.format)
    given = {"timesteps": args.timesteps, "step": args.step or None}
    bad = [f"--{k}" for k, v in given.items() if v is not None and k not in exporter.options]
    if bad:
        raise ValueError(f"masnn export {exporter.name} does not take {', '.join(bad)}")
    opts = {k: v for k, v in given.items() if v is not None}
    model = model_from_checkpoint(args.checkpoint, args.overrides)
    written = exporter.write(model, Path(args.output), **opts)
    for path in written:
        print(f"wrote {path} ({exporter.name}, {path.stat().st_size:,} bytes)")
    return 0
