"""The report's figures (matplotlib, the ``viz`` extra; Agg backend, PNG files).

* ``ta_weights.png``: TA weight of every step, per layer (mean over test samples, then seeds);
* ``response_maps.png``: per-neuron firing rate over the test set (paper's spiking-response
  visualisation), averaged over channels, one column per spiking conv layer, mean over seeds;
* ``response_channels.png``: the first spiking layer's per-channel rate maps (first seed);
* ``nsar.png``: NSAR(t) curves (mean ± std over seeds);
* ``layer_rates.png``: per-layer firing rate (LASAR) bars with std error bars;
* ``acc_energy.png``: accuracy vs energy per sample, mean ± std on both axes;
* ``isometry.png``: per-block gradient-norm ratio and phi(JJ^T) across depth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from masnn.report.variants import Variant


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _groups(runs: Sequence[dict[str, Any]]) -> dict[Variant, list[dict[str, Any]]]:
    out: dict[Variant, list[dict[str, Any]]] = {}
    for r in runs:
        out.setdefault(r["variant"], []).append(r)
    return out


def _mean_std(rows: list[list[float]]) -> tuple[list[float], list[float]]:
    t = torch.tensor(rows, dtype=torch.float64)
    sd = t.std(0, unbiased=True) if t.shape[0] > 1 else torch.zeros(t.shape[1])
    return t.mean(0).tolist(), sd.tolist()


def _save(fig: Any, path: Path) -> Path:
    plt = _plt()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


def plot_ta_weights(runs: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """TA weights over time (rows with TA only); ``None`` when no setting has TA."""
    groups = {v: g for v, g in _groups(runs).items() if g[0]["ta_weights"]}
    if not groups:
        return None
    plt = _plt()
    fig, axes = plt.subplots(
        1, len(groups), figsize=(4.2 * len(groups), 3.2), squeeze=False, sharey=True
    )
    for ax, (v, g) in zip(axes[0], groups.items()):
        for gate in g[0]["ta_weights"]:
            mean, sd = _mean_std([r["ta_weights"][gate] for r in g])
            ts = list(range(1, len(mean) + 1))
            line = ax.plot(ts, mean, marker=".", label=gate.replace(".post_attn.ta.gate", ""))[0]
            lo = [m - s for m, s in zip(mean, sd)]
            hi = [m + s for m, s in zip(mean, sd)]
            ax.fill_between(ts, lo, hi, color=line.get_color(), alpha=0.2)
        ax.set_title(f"{v.label} (n={len(g)})")
        ax.set_xlabel("time step t")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("TA weight (mean over test samples)")
    return _save(fig, path)


def _maps(run: dict[str, Any]) -> dict[str, torch.Tensor]:
    return torch.load(Path(run["run_dir"]) / "maps.pt", weights_only=True)


def plot_response_maps(runs: Sequence[dict[str, Any]], path: Path) -> Path:
    """Channel-averaged firing-rate maps of every spiking conv layer (mean over seeds)."""
    plt = _plt()
    groups = _groups(runs)
    per_v: dict[Variant, dict[str, torch.Tensor]] = {}
    for v, g in groups.items():
        maps = [_maps(r) for r in g]
        per_v[v] = {
            k: torch.stack([m[k].float().mean(0) for m in maps]).mean(0)
            for k, t in maps[0].items()
            if t.dim() == 3
        }
    layers = list(next(iter(per_v.values())))
    vmax = {k: max(float(m[k].max()) for m in per_v.values()) or 1.0 for k in layers}
    fig, axes = plt.subplots(
        len(per_v),
        max(1, len(layers)),
        figsize=(2.6 * max(1, len(layers)), 2.4 * len(per_v)),
        squeeze=False,
    )
    for i, (v, maps) in enumerate(per_v.items()):
        for j, k in enumerate(layers):
            ax = axes[i][j]
            im = ax.imshow(maps[k].numpy(), cmap="viridis", vmin=0.0, vmax=vmax[k])
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(k.replace(".neuron.lif", ""), fontsize=8)
            if j == 0:
                ax.set_ylabel(v.label, fontsize=8)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.suptitle("firing rate per neuron (spikes/step), test set, mean over channels and seeds")
    return _save(fig, path)


def plot_response_channels(
    runs: Sequence[dict[str, Any]], path: Path, channels: int = 8
) -> Path | None:
    """Per-channel rate maps of the first spiking conv layer, first seed of each setting."""
    plt = _plt()
    groups = _groups(runs)
    first = {v: _maps(g[0]) for v, g in groups.items()}
    layer = next((k for k, t in next(iter(first.values())).items() if t.dim() == 3), None)
    if layer is None:
        return None
    n = min(channels, int(next(iter(first.values()))[layer].shape[0]))
    vmax = max(float(m[layer][:n].max()) for m in first.values()) or 1.0
    fig, axes = plt.subplots(len(first), n, figsize=(1.5 * n, 1.6 * len(first)), squeeze=False)
    for i, (v, m) in enumerate(first.items()):
        for c in range(n):
            ax = axes[i][c]
            ax.imshow(m[layer][c].numpy(), cmap="viridis", vmin=0.0, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"ch {c}", fontsize=7)
            if c == 0:
                ax.set_ylabel(v.label, fontsize=7)
    fig.suptitle(f"{layer}: firing rate per neuron (first {n} channels, first seed)", fontsize=9)
    return _save(fig, path)


def plot_nsar(runs: Sequence[dict[str, Any]], path: Path) -> Path:
    """NSAR(t) per setting, mean ± std over seeds."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for v, g in _groups(runs).items():
        mean, sd = _mean_std([r["accounting"]["spikes"]["nsar"] for r in g])
        ts = list(range(1, len(mean) + 1))
        line = ax.plot(ts, mean, marker=".", label=v.label)[0]
        lo = [m - s for m, s in zip(mean, sd)]
        hi = [m + s for m, s in zip(mean, sd)]
        ax.fill_between(ts, lo, hi, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("time step t")
    ax.set_ylabel("NSAR(t)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax.set_title("network spiking activity rate over time (test set, first clip)")
    return _save(fig, path)


def plot_layer_rates(runs: Sequence[dict[str, Any]], path: Path) -> Path:
    """Per-layer firing rate (LASAR) bars, one group per layer, std over seeds as error bars."""
    plt = _plt()
    groups = _groups(runs)
    names = [x["name"] for x in next(iter(groups.values()))[0]["accounting"]["spikes"]["layers"]]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(names) * max(1, len(groups)) / 3), 3.8))
    width = 0.8 / max(1, len(groups))
    for i, (v, g) in enumerate(groups.items()):
        rows = []
        for r in g:
            by = {x["name"]: x["lasar"] for x in r["accounting"]["spikes"]["layers"]}
            rows.append([by.get(n, math.nan) for n in names])
        mean, sd = _mean_std(rows)
        xs = [k + (i - (len(groups) - 1) / 2) * width for k in range(len(names))]
        ax.bar(xs, mean, width, yerr=sd, capsize=2, label=v.label)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n.replace(".neuron.lif", "") for n in names], rotation=30, fontsize=8)
    ax.set_ylabel("LASAR (spikes per neuron per step)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def plot_acc_energy(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Accuracy vs energy per sample, mean ± std over seeds on both axes."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for r in rows:
        e, a = r["energy_mj"], r["acc"]
        es = 0.0 if math.isnan(e["std"]) else e["std"]
        as_ = 0.0 if math.isnan(a["std"]) else a["std"]
        ax.errorbar(e["mean"], a["mean"], xerr=es, yerr=as_, fmt="o", capsize=3, label=r["label"])
        ax.annotate(r["setting"], (e["mean"], a["mean"]), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")  # fmt: skip
    ax.set_xlabel("energy per test sample (mJ)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("accuracy vs energy (mean ± std over seeds)")
    return _save(fig, path)


def plot_isometry(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Per block across depth (columns: T): the gradient-norm ratio, its product from the head
    down to the block, and phi(JJ^T); lines join the identity-shortcut blocks, crosses mark the
    downsampling blocks (1x1-conv shortcut)."""
    plt = _plt()
    ts = sorted({r["timesteps"] for r in rows})
    fig, axes = plt.subplots(3, len(ts), figsize=(5.5 * len(ts), 9.0), squeeze=False)
    keys = sorted({(r["model"], r["att_res"]) for r in rows})
    what = (
        ("grad_ratio", "||dL/dx_in|| / ||dL/dx_out||"),
        ("cum_ratio", "product of the ratios from the head"),
        ("phi", "phi(J J^T)"),
    )
    for j, t in enumerate(ts):
        for model, ar in keys:
            sel = [
                r for r in rows if r["timesteps"] == t and (r["model"], r["att_res"]) == (model, ar)
            ]
            if not sel:
                continue
            pos = [r["index"] / max(1, len(sel) - 1) for r in sel]
            ident = [k for k, r in enumerate(sel) if not r["downsample"]]
            down = [k for k, r in enumerate(sel) if r["downsample"]]
            for i, (key, _) in enumerate(what):
                ax = axes[i][j]
                line = ax.plot(
                    [pos[k] for k in ident],
                    [sel[k][key] for k in ident],
                    "-" if ar == 1 else "--",
                    marker=".",
                    label=f"{model} Att-Res-SNN-{ar}",
                )[0]
                ax.plot(
                    [pos[k] for k in down], [sel[k][key] for k in down], "x",
                    color=line.get_color(),
                )  # fmt: skip
        for i, (_, label) in enumerate(what):
            ax = axes[i][j]
            ax.set_yscale("log")
            ax.axhline(1.0, color="k", lw=0.8)
            ax.grid(alpha=0.3, which="both")
            ax.set_ylabel(label)
            ax.set_title(f"T = {t}")
        axes[2][j].set_xlabel("block position (0 = input side, 1 = output side; x = downsampling)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("block dynamical isometry at initialisation (paper Theorem 1)")
    return _save(fig, path)


def plot_all(
    out: Path,
    rows: Sequence[dict[str, Any]],
    runs: Sequence[dict[str, Any]],
    isometry: Sequence[dict[str, Any]] | None = None,
) -> list[Path]:
    """Every figure of the module docstring into ``out``; returns the files written."""
    files = [
        plot_ta_weights(runs, out / "ta_weights.png"),
        plot_response_maps(runs, out / "response_maps.png"),
        plot_response_channels(runs, out / "response_channels.png"),
        plot_nsar(runs, out / "nsar.png"),
        plot_layer_rates(runs, out / "layer_rates.png"),
        plot_acc_energy(rows, out / "acc_energy.png"),
    ]
    if isometry:
        files.append(plot_isometry(isometry, out / "isometry.png"))
    return [f for f in files if f is not None]


__all__ = [
    "plot_acc_energy",
    "plot_all",
    "plot_isometry",
    "plot_layer_rates",
    "plot_nsar",
    "plot_response_channels",
    "plot_response_maps",
    "plot_ta_weights",
]
