"""Run benchmark rows, one fresh process each, and print Markdown tables with ratios.

Row sets: :func:`rows` (``quick``: the headline rows in about 5 minutes on 2 cores;
``full``: every row of ``BENCHMARKS.md``; ``tiny``: smallest shapes, for the smoke test). A
row whose library is not installed is reported as ``skipped`` with the reason; a row that
fails is reported with its one-line error, and the run goes on.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from typing import Any

from masnn.bench.rows import Row

PEER_MODULES = {"sj": "spikingjelly", "sj-compile": "spikingjelly", "snntorch": "snntorch"}
PEER_MODULES["norse"] = "norse"
LIF_LIBS = ("elementwise", "masnn:torch", "masnn:cpp", "sj", "sj-compile", "snntorch", "norse")
NET_LIBS = ("floor", "masnn", "masnn:torch", "sj", "snntorch", "norse")


def _lif_rows(T_list: Iterable[int], sizes: Iterable[tuple[int, ...]], modes: Iterable[str],
              libs: Iterable[str], repeat: int) -> list[Row]:  # fmt: skip
    out = []
    for size in sizes:
        for T in T_list:
            for mode in modes:
                group = f"LIF {mode} T={T} {'x'.join(map(str, size))}"
                for lib in libs:
                    rep = repeat if T * _numel(size) < 2**25 else max(3, repeat // 2)
                    warm = 2 if lib == "sj-compile" else 1
                    out.append(Row("lif", lib, group, mode=mode, T=T, size=size, repeat=rep,
                                   warmup=warm))  # fmt: skip
    return out


def _numel(size: tuple[int, ...]) -> int:
    n = 1
    for s in size:
        n *= s
    return n


def _net_rows(shapes: Iterable[tuple[int, int]], repeat: int, peers: bool = True) -> list[Row]:
    out = []
    for T, B in shapes:
        for mode in ("train", "infer"):
            group = f"ma_snn3 {mode} T={T} B={B}"
            libs = NET_LIBS if peers else ("floor", "masnn")
            for lib in libs:
                out.append(Row("net", lib, group, mode=mode, T=T, B=B, repeat=repeat))
            if mode == "train":
                out.append(Row("net", "masnn-ckpt", group, mode=mode, T=T, B=B, repeat=repeat))
                out.append(Row("net", "masnn-bnunfused", group, mode=mode, T=T, B=B,
                               repeat=repeat))  # fmt: skip
            if mode == "infer":
                out.append(Row("net", "masnn-fast", group, mode=mode, T=T, B=B, repeat=repeat))
            for v in ("tcsa-code", "tcsa-paper", "csa-paper"):
                out.append(Row("net", "masnn", group, mode=mode, variant=v, T=T, B=B,
                               repeat=repeat))  # fmt: skip
                if mode == "infer":  # the attention nets through the inference fast path too
                    out.append(Row("net", "masnn-fast", group, mode=mode, variant=v, T=T, B=B,
                                   repeat=repeat))  # fmt: skip
            if peers:  # the membrane gates on the reference loop, beside the fused kernel
                for v in ("tcsa-paper", "csa-paper"):
                    out.append(Row("net", "masnn:torch", group, mode=mode, variant=v, T=T, B=B,
                                   repeat=repeat))  # fmt: skip
            if peers:
                out.append(Row("net", "sj", group, mode=mode, variant="tcsa-code", T=T, B=B,
                               repeat=repeat))  # fmt: skip
    return out


def _memory_rows(T: int = 16, B: int = 32) -> list[Row]:
    """Activation memory of the ``ma_snn3`` train step at a shape where it exceeds 2 GB for
    every peer (one timed step after one warm-up: the peak RSS is what these rows are for)."""
    group = f"memory ma_snn3 train T={T} B={B}"
    libs = ("floor", "masnn", "masnn-ckpt", "sj", "sj-compile", "snntorch", "norse")
    return [Row("net", lib, group, mode="train", T=T, B=B, repeat=1) for lib in libs]


def _stream_rows(T: int, repeat: int) -> list[Row]:
    """Per-step streaming latency, ``csa`` on the membrane, fused (``masnn``) and reference."""
    return [
        Row(
            "stream",
            lib,
            f"streaming ma_snn3 csa-paper per step, T={T} B=1",
            variant="csa-paper",
            T=T,
            B=1,
            repeat=repeat,
        )  # fmt: skip
        for lib in ("masnn", "masnn:torch")
    ]


def rows(profile: str) -> list[Row]:
    """The rows of a profile: ``quick``, ``full`` or ``tiny``."""
    if profile == "tiny":
        out = _lif_rows([4], [(2, 3, 8, 8)], ["fwd", "fwdbwd"], LIF_LIBS[:4], 2)
        out += [
            Row("net", lib, "ma_snn3 train T=2 B=1", T=2, B=1, repeat=1, warmup=0)
            for lib in ("floor", "masnn", "sj", "snntorch", "norse")
        ]
        out.append(
            Row("net", "masnn-fast", "ma_snn3 infer T=2 B=1", mode="infer", T=2, B=1, repeat=1)
        )
        out.append(Row("breakdown", "masnn", "breakdown", variant="tcsa-paper", T=2, B=1,
                       repeat=1, warmup=0))  # fmt: skip
        out.append(Row("aedat", "masnn", "AEDAT", T=4, repeat=1, extra={"events": 20000}))
        out.append(Row("stream", "masnn", "streaming csa-paper per step", variant="csa-paper",
                       T=4, B=1, repeat=1, warmup=0))  # fmt: skip
        return out
    if profile == "quick":
        out = _lif_rows([16], [(8, 64, 32, 32)], ["fwdbwd"], LIF_LIBS, 3)
        out += [r for r in _net_rows([(16, 8)], 3) if r.mode == "train"]
        out += [r for r in _net_rows([(16, 8)], 3, peers=False) if r.mode == "infer"]
        out.append(Row("breakdown", "masnn", "breakdown T=16 B=8", T=16, B=8, repeat=3))
        out.append(Row("breakdown", "masnn", "breakdown T=16 B=8", variant="tcsa-paper", T=16,
                       B=8, repeat=3))  # fmt: skip
        out.append(Row("aedat", "masnn", "AEDAT decode + framing", T=16, repeat=5,
                       extra={"events": 2_000_000}))  # fmt: skip
        out += _stream_rows(60, 3)
        return out
    if profile == "full":
        out = _lif_rows([4, 16, 60], [(8, 64, 32, 32), (8, 128, 64, 64)], ["fwd", "fwdbwd"],
                        LIF_LIBS, 5)  # fmt: skip
        out += _net_rows([(16, 8), (60, 4)], 5)
        for T, B in ((16, 8), (60, 4)):
            for v in ("vanilla", "tcsa-code", "tcsa-paper"):
                out.append(Row("breakdown", "masnn", f"breakdown T={T} B={B}", variant=v, T=T,
                               B=B, repeat=3))  # fmt: skip
        for lib in ("floor", "masnn", "masnn-bnunfused", "sj"):
            if lib != "floor":
                out.append(Row("net", lib, "ma_snn5 train T=20 B=2", net="ma_snn5", T=20, B=2,
                               repeat=3))  # fmt: skip
        out.append(Row("aedat", "masnn", "AEDAT decode + framing", T=16, repeat=5,
                       extra={"events": 2_000_000}))  # fmt: skip
        out += _stream_rows(60, 5)
        out += _memory_rows()
        return out
    raise ValueError(f"unknown bench profile {profile!r}; allowed: ['full', 'quick', 'tiny']")


def missing_peer(row: Row) -> str | None:
    """Why ``row`` cannot run here (a peer library not installed), or ``None``."""
    mod = PEER_MODULES.get(row.lib)
    if mod and importlib.util.find_spec(mod) is None:
        return f"{mod} not installed"
    return None


def run_row(row: Row, threads: int, timeout: float) -> dict[str, Any]:
    """Run ``row`` in a fresh interpreter; returns its result dict (or ``error``/``skipped``)."""
    why = missing_peer(row)
    if why:
        return {"skipped": why}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    code = (
        "import json,sys,torch;"
        f"torch.set_num_threads({threads});"
        "from masnn.bench.rows import Row, measure;"
        "print('@@RESULT@@' + json.dumps(measure(Row.from_json(sys.argv[1]))))"
    )
    try:
        res = subprocess.run(
            [sys.executable, "-c", code, row.to_json()],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in res.stdout.splitlines():
        if line.startswith("@@RESULT@@"):
            return json.loads(line[len("@@RESULT@@") :])
    err = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    return {"error": err[-1] if err else f"exit {res.returncode}"}


BASELINE = {"lif": "elementwise", "net": "floor"}


def format_tables(results: list[tuple[Row, dict[str, Any]]]) -> str:
    """Markdown tables, one per group, with ratios to the group's floor row."""
    groups: dict[str, list[tuple[Row, dict[str, Any]]]] = {}
    for row, res in results:
        groups.setdefault(row.group, []).append((row, res))
    out = []
    for group, items in groups.items():
        kind = items[0][0].kind
        if kind == "breakdown":
            out.append(f"\n### {group}\n")
            out.append("| net | conv | BN | neuron | attention | other | total (ms) |")
            out.append("|---|---|---|---|---|---|---|")
            for row, res in items:
                b = res.get("breakdown_ms")
                if not b:
                    out.append(f"| {row.variant} | {res.get('error') or res.get('skipped')} |")
                    continue
                tot = b["total"]
                cells = [f"{b[k]:.0f} ({100 * b[k] / tot:.0f} %)" for k in
                         ("conv", "bn", "neuron", "attention", "other")]  # fmt: skip
                out.append(f"| {row.variant} | " + " | ".join(cells) + f" | {tot:.0f} |")
            continue
        if kind == "stream":
            out.append(f"\n### {group}\n")
            out.append("| row | median ms / step | min-max ms | first half | second half |")
            out.append("|---|---|---|---|---|")
            for row, res in items:
                if "median_ms" not in res:
                    out.append(f"| {row.lib} | {res.get('error') or res.get('skipped')} |")
                    continue
                out.append(
                    f"| {row.lib} | {res['median_ms']:.2f} | {res['min_ms']:.2f}–"
                    f"{res['max_ms']:.2f} | {res['first_half_ms']:.2f} | "
                    f"{res['second_half_ms']:.2f} |"
                )
            continue
        base = next((r.get("median_ms") for w, r in items if w.lib == BASELINE.get(kind)), None)
        out.append(f"\n### {group}\n")
        out.append("| row | median ms | min-max ms | × floor | peak RSS MB | activations MB |")
        out.append("|---|---|---|---|---|---|")
        for row, res in items:
            name = row.lib if row.kind != "net" else f"{row.lib} {row.variant}"
            if "median_ms" not in res:
                out.append(f"| {name} | {res.get('error') or 'skipped: ' + res['skipped']} |")
                continue
            ratio = f"{res['median_ms'] / base:.2f}" if base else "–"
            act = res["rss_peak_mb"] - res["rss_base_mb"]
            out.append(
                f"| {name} | {res['median_ms']:.1f} | {res['min_ms']:.1f}–{res['max_ms']:.1f} "
                f"| {ratio} | {res['rss_peak_mb']:.0f} | {act:.0f} |"
            )
    return "\n".join(out) + "\n"
