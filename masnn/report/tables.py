"""The report's numbers: per-run extraction, per-setting aggregation, paired tests, writers.

Per run (:func:`run_numbers`): test accuracy (the run's primary protocol, from ``metrics.json``:
what ``masnn eval`` prints), accuracy on the time-pair classes and the pair-swap rate (from the
confusion matrix), and NASAR, spikes per sample and energy of the test set's first clip (the
analysis pass, :func:`masnn.analysis.measure`: what ``masnn eval`` prints). Per setting
(:func:`aggregate`): mean, sample std and the t 95 % interval over seeds; rEE is the mean
vanilla energy over the setting's mean energy (paper Eq. 19). Tests (:func:`compare`): each
setting against vanilla (and, for ``code`` rows, against the ReLU-only control), paired by seed.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from masnn.report.stats import mcnemar_exact, mean_ci, paired_t
from masnn.report.variants import Variant

#: Datasets whose 11 classes are the DVS128 Gesture ids (time pairs 2/3, 4/5, 6/7).
GESTURE_DATASETS = ("synth_gesture", "dvs128_gesture")


def pair_metrics(confusion: Sequence[Sequence[int]], dataset: str) -> tuple[float, float] | None:
    """``(accuracy on the time-pair classes, pair-swap rate)`` in %, or ``None`` when the data
    has no time pairs (not a gesture set, or no test sample of classes 2-7).

    The swap rate is the share of pair-class samples predicted as their partner.
    """
    from masnn.synth import TIME_PAIRS

    if dataset not in GESTURE_DATASETS or len(confusion) != 11:
        return None
    partner = {}
    for a, b in TIME_PAIRS:
        partner[a - 1], partner[b - 1] = b - 1, a - 1
    n = sum(sum(confusion[i]) for i in partner)
    if n == 0:
        return None
    hit = sum(confusion[i][i] for i in partner)
    swap = sum(confusion[i][j] for i, j in partner.items())
    return 100.0 * hit / n, 100.0 * swap / n


def run_numbers(run: dict[str, Any]) -> dict[str, Any]:
    """The table's numbers of one analysed run (see the module docstring)."""
    m, a = run["metrics"], run["accounting"]
    pairs = pair_metrics(m["test"]["confusion"], run["dataset"])
    s = m["seconds"]
    return {
        "setting": run["variant"].key,
        "seed": run["seed"],
        "acc": 100.0 * m["test"]["acc"],
        "correct": m["test"]["correct"],
        "samples": m["test"]["samples"],
        "acc_pairs": None if pairs is None else pairs[0],
        "pair_swaps": None if pairs is None else pairs[1],
        "nasar": a["spikes"]["nasar"],
        "spikes_per_sample": a["spikes"]["spikes_per_sample"],
        "energy_mj": a["totals"]["energy_pj"] * 1e-9,
        "parameters": m["parameters"],
        "wall_s": s["data"] + s["train"] + s["test"],
        "train_s": s["train"],
        "epoch": m["best"]["epoch"],
        "run_dir": str(run["run_dir"]),
    }


def _by_variant(runs: Sequence[dict[str, Any]]) -> dict[Variant, list[dict[str, Any]]]:
    groups: dict[Variant, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(r["variant"], []).append(r)
    return groups


def _ci(values: Sequence[float | None]) -> dict[str, float] | None:
    xs = [v for v in values if v is not None]
    if not xs:
        return None
    c = mean_ci(xs)
    return {"n": c.n, "mean": c.mean, "std": c.std, "lo": c.lo, "hi": c.hi}


def aggregate(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per setting (in run order): mean/std/95 % interval of each number over seeds."""
    groups = _by_variant(runs)
    base = next((g for v, g in groups.items() if v.name == "none"), None)
    e_base = None if base is None else mean_ci([run_numbers(r)["energy_mj"] for r in base]).mean
    rows = []
    for v, g in groups.items():
        nums = [run_numbers(r) for r in g]
        params = {n["parameters"] for n in nums}
        if len(params) != 1:
            raise ValueError(f"{v.key}: runs disagree on the parameter count {sorted(params)}")
        row: dict[str, Any] = {
            "setting": v.key,
            "label": v.label,
            "attn": v.name,
            "placement": v.placement,
            "seeds": [n["seed"] for n in nums],
            "parameters": params.pop(),
        }
        for k in ("acc", "acc_pairs", "pair_swaps", "nasar", "spikes_per_sample", "energy_mj"):
            row[k] = _ci([n[k] for n in nums])
        row["wall_s"] = _ci([n["wall_s"] for n in nums])
        e = row["energy_mj"]["mean"]
        row["ree"] = None if e_base is None or e <= 0 else e_base / e
        rows.append(row)
    return rows


def compare(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Paired comparisons of every setting with vanilla (and ``code`` rows with the control)."""
    groups = _by_variant(runs)
    base = {v.name: g for v, g in groups.items() if v.name in ("none", "relu")}
    out = []
    for v, g in groups.items():
        # vanilla for every row; the code rows (which all carry the ReLU) also vs the control
        baselines = [] if v.name == "none" else ["none"]
        if v.has_gate and v.placement == "code":
            baselines.append("relu")
        for b in baselines:
            if b in base:
                out.append(_paired(v, g, b, base[b]))
    return out


def _paired(
    v: Variant, runs: list[dict[str, Any]], bname: str, bruns: list[dict[str, Any]]
) -> dict[str, Any]:
    mine = {r["seed"]: r for r in runs}
    theirs = {r["seed"]: r for r in bruns}
    seeds = sorted(set(mine) & set(theirs))
    a = [run_numbers(mine[s]) for s in seeds]
    b = [run_numbers(theirs[s]) for s in seeds]
    acc = paired_t([x["acc"] for x in a], [y["acc"] for y in b])
    nas = paired_t([x["nasar"] for x in a], [y["nasar"] for y in b])
    rel = [x["nasar"] / y["nasar"] - 1.0 for x, y in zip(a, b) if y["nasar"] > 0]
    # McNemar on every (seed, test sample) pair: only A right (n01) vs only B right (n10)
    only_a = only_b = 0
    mc_ok = True
    for s in seeds:
        ra, rb = mine[s], theirs[s]
        if ra["labels"] != rb["labels"]:
            mc_ok = False
            break
        for pa, pb, y in zip(ra["predictions"], rb["predictions"], ra["labels"]):
            only_a += pa == y and pb != y
            only_b += pb == y and pa != y
    return {
        "setting": v.key,
        "label": v.label,
        "baseline": bname,
        "seeds": " ".join(map(str, seeds)),
        "d_acc": acc.diff.mean,
        "d_acc_lo": acc.diff.lo,
        "d_acc_hi": acc.diff.hi,
        "p_t": acc.p_t,
        "p_sign_flip": acc.p_sign_flip,
        "only_variant_right": only_a if mc_ok else None,
        "only_baseline_right": only_b if mc_ok else None,
        "p_mcnemar": mcnemar_exact(only_a, only_b) if mc_ok else None,
        "d_nasar": nas.diff.mean,
        "d_nasar_lo": nas.diff.lo,
        "d_nasar_hi": nas.diff.hi,
        "p_nasar_t": nas.p_t,
        "nasar_change_pct": 100.0 * sum(rel) / len(rel) if rel else None,
    }


# -- formatting ---------------------------------------------------------------------------------


def _f(v: float | None, fmt: str = ".2f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return format(v, fmt)


def _pm(c: dict[str, float] | None, fmt: str = ".2f") -> str:
    if c is None:
        return "–"
    if c["n"] < 2:
        return f"{_f(c['mean'], fmt)} (n=1)"
    return f"{_f(c['mean'], fmt)} ± {_f(c['std'], fmt)}"


def _interval(c: dict[str, float] | None, fmt: str = ".2f") -> str:
    if c is None or c["n"] < 2:
        return "–"
    return f"[{_f(c['lo'], fmt)}, {_f(c['hi'], fmt)}]"


def _p(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "–"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def table_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The paper's Table 6 form, one row per setting."""
    lines = [
        "| Model | Acc. (%) mean ± std | 95 % CI | time pairs (%) | pair swaps (%) | NASAR | "
        "spikes/sample | energy (mJ) | rEE | params | wall (s/run) | seeds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {_pm(r['acc'])} | {_interval(r['acc'])} | {_pm(r['acc_pairs'], '.1f')} "
            f"| {_pm(r['pair_swaps'], '.1f')} | {_pm(r['nasar'], '.4f')} | "
            f"{_pm(r['spikes_per_sample'], '.0f')} | {_pm(r['energy_mj'], '.4f')} | "
            f"{_f(r['ree'], '.2f')}{'×' if r['ree'] is not None else ''} | {r['parameters']:,} | "
            f"{_pm(r['wall_s'], '.0f')} | {len(r['seeds'])} |"
        )
    return "\n".join(lines) + "\n"


def tests_markdown(tests: Sequence[dict[str, Any]]) -> str:
    """One row per paired comparison."""
    lines = [
        "| Model | vs | Δacc (points) [95 % CI] | p (paired t) | p (sign-flip) | "
        "McNemar only-model/only-base, p | ΔNASAR (%) | ΔNASAR [95 % CI] | p NASAR (t) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in tests:
        mc = (
            "–"
            if t["p_mcnemar"] is None
            else f"{t['only_variant_right']}/{t['only_baseline_right']}, {_p(t['p_mcnemar'])}"
        )
        base = "vanilla" if t["baseline"] == "none" else "ReLU only"
        lines.append(
            f"| {t['label']} | {base} | {_f(t['d_acc'], '+.2f')} "
            f"[{_f(t['d_acc_lo'], '+.2f')}, {_f(t['d_acc_hi'], '+.2f')}] | {_p(t['p_t'])} | "
            f"{_p(t['p_sign_flip'])} | {mc} | {_f(t['nasar_change_pct'], '+.1f')} | "
            f"{_f(t['d_nasar'], '+.4f')} [{_f(t['d_nasar_lo'], '+.4f')}, "
            f"{_f(t['d_nasar_hi'], '+.4f')}] | {_p(t['p_nasar_t'])} |"
        )
    return "\n".join(lines) + "\n"


def _flat_row(r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "setting": r["setting"],
        "attn": r["attn"],
        "placement": r["placement"],
        "seeds": " ".join(map(str, r["seeds"])),
    }
    for k in ("acc", "acc_pairs", "pair_swaps", "nasar", "spikes_per_sample", "energy_mj"):
        c = r[k] or {}
        out[f"{k}_mean"] = c.get("mean")
        out[f"{k}_std"] = c.get("std")
        if k == "acc":
            out["acc_ci_lo"], out["acc_ci_hi"] = c.get("lo"), c.get("hi")
    out["ree"] = r["ree"]
    out["parameters"] = r["parameters"]
    out["wall_s_mean"] = (r["wall_s"] or {}).get("mean")
    return out


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


def _atomic_text(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def header_markdown(meta: dict[str, Any]) -> str:
    """Provenance lines above the tables."""
    ds = meta.get("dataset") or {}
    gen = meta.get("generator_version")
    lines = [
        f"- command: `{meta.get('command') or '(python API)'}`",
        f"- preset `{meta['preset']}`: {meta['about']}",
        f"- seeds: {', '.join(map(str, meta['seeds']))} (every setting uses the same seeds: same "
        "validation users, data order and windows; comparisons are paired by seed)",
        f"- masnn {meta['masnn']} (git {meta.get('git_sha') or 'unknown'}), torch {meta['torch']}, "
        f"{meta['machine']}, {meta.get('threads')} torch threads, device {meta.get('device')}",
        "- runs trained at git "
        + ", ".join(f"{sha[:12]} ({n})" for sha, n in (meta.get("run_git_shas") or {}).items()),
        f"- data: {ds.get('root')} ({ds.get('files')} files, sha256 {str(ds.get('sha256'))[:12]})"
        + (f", synthetic generator {gen}" if gen else ""),
        f"- wall time: {meta['runs_train_seconds']:.0f} s in the runs' data/train/test phases "
        f"(whenever they were trained), {meta['report_seconds']:.0f} s for this invocation",
    ]
    return "\n".join(lines) + "\n"


def write_all(
    out: Path,
    rows: Sequence[dict[str, Any]],
    tests: Sequence[dict[str, Any]],
    runs: Sequence[dict[str, Any]],
    meta: dict[str, Any],
) -> list[Path]:
    """``table.md`` (header + Table 6 + tests), ``table.csv``, ``tests.csv``, ``runs.csv``,
    ``report.json``."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    md = [
        "# masnn report\n",
        header_markdown(meta),
        "## Table 6 form (mean ± sample std over seeds; 95 % t interval of the mean accuracy)\n",
        table_markdown(rows),
        "Accuracy: the run's primary test protocol (the model selected on validation, tested "
        "once). Time pairs: accuracy on classes 2/3 (mirrored waves) and 4/5, 6/7 (time-reversed "
        "rotations); pair swaps: share of those samples predicted as their partner. NASAR, "
        "spikes and energy: per test sample (first clip), E_MAC 4.6 pJ, E_AC 0.9 pJ "
        "(`docs/energy.md`); rEE = mean vanilla energy / mean energy of the row.\n",
        "## Paired tests against the baseline (same seeds)\n",
        tests_markdown(tests),
        "Δ = setting − baseline. p (paired t): two-sided, n − 1 degrees of freedom over seed "
        "differences; p (sign-flip): exact permutation over the seed differences (its floor is "
        "2/2^n, 0.25 for 3 seeds); McNemar: exact binomial on the (seed, test sample) pairs that "
        "exactly one of the two models got right (it measures test-set noise, not seed noise).\n",
    ]
    per_run = [{**run_numbers(r), "run_dir": _relative(r["run_dir"], out)} for r in runs]
    files = [
        _atomic_text(out / "table.md", "\n".join(md)),
        _atomic_text(out / "table.csv", _csv([_flat_row(r) for r in rows])),
        _atomic_text(out / "tests.csv", _csv(list(tests))),
        _atomic_text(out / "runs.csv", _csv(per_run)),
    ]
    blob = {"meta": meta, "rows": list(rows), "tests": list(tests), "runs": per_run}
    files.append(_atomic_text(out / "report.json", json.dumps(blob, indent=2, default=str) + "\n"))
    return files


def _relative(path: Any, out: Path) -> str:
    """``path`` relative to the report directory when it lies inside it (a report that is moved
    or committed keeps pointing at its runs), else as given."""
    p, o = Path(path).absolute(), out.absolute()
    return p.relative_to(o).as_posix() if p.is_relative_to(o) else str(path)


def write_isometry_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """The block-isometry sweep, one row per (model, T, variant, block)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return _atomic_text(path, _csv(list(rows)))


__all__ = [
    "aggregate",
    "compare",
    "header_markdown",
    "pair_metrics",
    "run_numbers",
    "table_markdown",
    "tests_markdown",
    "write_all",
    "write_isometry_csv",
]
