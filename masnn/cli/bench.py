"""``masnn bench``: time masnn against SpikingJelly, snnTorch and Norse (fresh process per row)."""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import tempfile
import time
from pathlib import Path

from masnn.cli import register_command


def _configure(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="headline rows only (<= 5 min)")
    g.add_argument("--tiny", action="store_true", help="smallest shapes (smoke test)")
    p.add_argument("--only", default="*", help="fnmatch pattern on row labels/groups")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per row (default 600)")
    p.add_argument("--json", type=Path, default=None, help="also write raw results here")
    p.add_argument("--list", action="store_true", help="list the rows and exit")


@register_command("bench", "Benchmark masnn against its peers (see BENCHMARKS.md).", _configure)
def _run(args: argparse.Namespace) -> int:
    from masnn.bench import format_tables, rows, run_row

    profile = "tiny" if args.tiny else "quick" if args.quick else "full"
    selected = [
        r
        for r in rows(profile)
        if fnmatch.fnmatch(r.label, args.only) or fnmatch.fnmatch(r.group, args.only)
    ]
    if not selected:
        raise ValueError(f"no {profile} bench row matches --only {args.only!r}")
    if args.list:
        for r in selected:
            print(f"{r.group:32s} {r.label}")
        return 0
    threads = args.threads or os.cpu_count() or 1
    results = []
    tic = time.perf_counter()
    for i, r in enumerate(selected, 1):
        res = run_row(r, threads, args.timeout)
        results.append((r, res))
        state = f"{res['median_ms']:.1f} ms" if "median_ms" in res else str(res)
        print(f"[{i}/{len(selected)}] {r.label}: {state}", flush=True)
    print(format_tables(results))
    print(f"{profile} bench: {len(selected)} rows, {threads} threads, "
          f"{time.perf_counter() - tic:.0f} s")  # fmt: skip
    if args.json:
        payload = [{"row": json.loads(r.to_json()), "result": res} for r, res in results]
        args.json.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=args.json.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1)
        os.replace(tmp, args.json)
    return 0
