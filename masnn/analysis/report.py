"""``measure``: spikes, NASAR, operations and energy of a model over some batches, as a Report.

The function ``masnn eval`` calls (accuracy is the caller's; pass it to :func:`format_summary`).
All numbers are **per sample** (means over the measured samples) unless a name says otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from masnn.analysis.energy import (
    DEFAULT_ENERGY,
    EnergyCost,
    ann_energy_pj,
    energy_cost,
    energy_pj,
    relative_energy_efficiency,
)
from masnn.analysis.monitors import NeuronFilter, SpikeMonitor, SpikeStats
from masnn.analysis.ops import ATTN_CONVENTIONS, OpsCounter

#: How ACs (and encoding MACs) enter the energy: ``exact`` (non-zero inputs x fan-out for
#: ACs, dense MACs) or ``paper`` (``T * FL * Phi`` for both, paper Eq. 17-18).
AC_MODES = ("exact", "paper")
LAYOUTS = ("TBCHW", "BTCHW")


@dataclass(frozen=True)
class Report:
    """Per-sample spike, operation and energy accounting of one model on some inputs.

    Attributes:
        spikes: the :class:`~masnn.analysis.monitors.SpikeStats` (NASAR, NSAR(t), LASAR ...).
        layers: one dict per connection layer (per sample): ``name``, ``kind``, ``input``
            (``"spikes"``, ``"real"`` or ``"mixed"``), ``flops`` (dense MACs per step),
            ``input_rate``, ``acs_exact``, ``acs_paper``, ``macs`` (dense), ``macs_paper``,
            ``macs_effective`` (non-zero inputs x fan-out, NeuroBench's Effective_MACs).
        attention: one dict per attention gate: ``name``, ``kind``, ``calls`` (total), ``macs`` under
            :attr:`attention_convention`, and ``macs_by_convention``.
        timesteps / samples: ``T`` and the number of samples measured.
        attention_convention / ac_mode / energy: the accounting choices.
        totals: ``acs``, ``acs_exact``, ``acs_paper``, ``macs`` (connections),
            ``attention_macs``, ``energy_pj``, ``energy_exact_pj``, ``energy_paper_pj``,
            ``ann_flops`` (dense MACs per step: the same-architecture ANN), ``ann_energy_pj``,
            ``ree_vs_ann``.
    """

    spikes: SpikeStats
    layers: list[dict[str, Any]]
    attention: list[dict[str, Any]]
    timesteps: int
    samples: int
    attention_convention: str
    ac_mode: str
    energy: EnergyCost
    totals: dict[str, float] = field(default_factory=dict)

    @property
    def nasar(self) -> float:
        """Network average spiking activity rate."""
        return self.spikes.nasar

    @property
    def energy_mj(self) -> float:
        """Energy per sample in millijoules."""
        return self.totals["energy_pj"] * 1e-9

    def ree(self, base: Report | float) -> float:
        """rEE of this model against ``base`` (a Report or an energy in pJ): ``E_base / E``."""
        e_base = base.totals["energy_pj"] if isinstance(base, Report) else float(base)
        return relative_energy_efficiency(e_base, self.totals["energy_pj"])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of everything in the report."""
        s = self.spikes
        return {
            "timesteps": self.timesteps,
            "samples": self.samples,
            "attention_convention": self.attention_convention,
            "ac_mode": self.ac_mode,
            "energy": {
                "name": self.energy.name,
                "e_mac_pj": self.energy.e_mac_pj,
                "e_ac_pj": self.energy.e_ac_pj,
            },
            "spikes": {
                "neurons": s.neurons,
                "counted_layers": s.counted,
                "nasar": s.nasar,
                "nsar": s.nsar,
                "spikes_per_sample": s.spikes_per_sample,
                "spikes_per_sample_all": s.spikes_per_sample_all,
                "nsar_var_time": s.nsar_var_time,
                "nsar_var_inputs": s.nsar_var_inputs,
                "nsar_var_inputs_per_step": s.nsar_var_inputs_per_step,
                "layers": [
                    {
                        "name": st.name,
                        "neurons": st.neurons,
                        "counted": st.name in s.counted,
                        "lasar": st.lasar,
                        "spikes_per_sample": st.spikes_per_sample,
                        "channels": None
                        if st.channel_spikes is None
                        else int(st.channel_spikes.numel()),
                        "silent_channels": st.silent_channels,
                        "mean_silent_channels_per_sample": st.mean_silent_channels_per_sample,
                    }
                    for st in s.layers.values()
                    if st.steps is not None
                ],
            },
            "layers": self.layers,
            "attention": self.attention,
            "totals": self.totals,
        }

    def to_markdown(self) -> str:
        """Markdown tables: summary, spiking layers, connection layers, attention gates."""
        s, t = self.spikes, self.totals
        lines = [
            f"**{self.samples} samples, T = {self.timesteps}**, energy {self.energy.name} "
            f"(E_MAC {self.energy.e_mac_pj:g} pJ, E_AC {self.energy.e_ac_pj:g} pJ), "
            f"ACs {self.ac_mode}, attention {self.attention_convention}",
            "",
            "| neurons | NASAR | spikes/sample | ACs | MACs | attention MACs | energy | ANN | rEE vs ANN |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {s.neurons:,} | {s.nasar:.4f} | {_si(s.spikes_per_sample)} | {_si(t['acs'])} | "
            f"{_si(t['macs'])} | {_si(t['attention_macs'])} | {_energy(t['energy_pj'])} | "
            f"{_energy(t['ann_energy_pj'])} | {t['ree_vs_ann']:.1f}x |",
            "",
            "| spiking layer | neurons | counted | LASAR | spikes/sample | silent channels |",
            "|---|---:|:---:|---:|---:|---:|",
        ]
        for st in s.layers.values():
            if st.steps is None:
                continue
            ch = (
                "-"
                if st.channel_spikes is None
                else f"{st.silent_channels}/{st.channel_spikes.numel()}"
            )
            lines.append(
                f"| {st.name} | {st.neurons:,} | {'yes' if st.name in s.counted else 'no'} | "
                f"{st.lasar:.4f} | {_si(st.spikes_per_sample)} | {ch} |"
            )
        lines += [
            "",
            "| connection layer | input | FLOPs/step | input rate | ACs exact | ACs paper | MACs |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in self.layers:
            lines.append(
                f"| {r['name']} | {r['input']} | {_si(r['flops'])} | {r['input_rate']:.4f} | "
                f"{_si(r['acs_exact'])} | {_si(r['acs_paper'])} | {_si(r['macs'])} |"
            )
        if self.attention:
            lines += ["", "| attention gate | kind | calls | MACs |", "|---|---|---:|---:|"]
            for a in self.attention:
                lines.append(f"| {a['name']} | {a['kind']} | {a['calls']:g} | {_si(a['macs'])} |")
        return "\n".join(lines) + "\n"


def _si(v: float) -> str:
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3f} {unit}"
    return f"{v:.3g}"


def _energy(pj: float) -> str:
    for scale, unit in ((1e9, "mJ"), (1e6, "uJ"), (1e3, "nJ")):
        if abs(pj) >= scale:
            return f"{pj / scale:.3f} {unit}"
    return f"{pj:.3g} pJ"


def format_summary(report: Report, accuracy: float | None = None) -> str:
    """One line for ``masnn eval``: accuracy (in %, if given), NASAR, spikes, energy.

    Example output: ``acc 96.53 % | NASAR 0.0260 | spikes/sample 0.167 M | energy 0.160 mJ
    (ACs 1.2 G, MACs 3.1 M) | rEE vs ANN 3.4x``.
    """
    t = report.totals
    parts = [] if accuracy is None else [f"acc {accuracy:.2f} %"]
    parts += [
        f"NASAR {report.nasar:.4f}",
        f"spikes/sample {_si(report.spikes.spikes_per_sample)}",
        f"energy {_energy(t['energy_pj'])} (ACs {_si(t['acs'])}, "
        f"MACs {_si(t['macs'] + t['attention_macs'])})",
        f"rEE vs ANN {t['ree_vs_ann']:.1f}x",
    ]
    return " | ".join(parts)


def _batch_input(batch: Any) -> Tensor:
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise TypeError(
        "measure() takes batches that are tensors or (input, target, ...) tuples, "
        f"got {type(batch).__name__}"
    )


@torch.no_grad()
def measure(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    neuron_layers: NeuronFilter = None,
    attention_convention: str = "paper_table5",
    ac_mode: str = "exact",
    energy: str | EnergyCost = DEFAULT_ENERGY,
    layout: str = "TBCHW",
    max_batches: int | None = None,
    device: torch.device | str | None = None,
) -> Report:
    """Run ``model`` (in eval mode, no grad) over ``batches`` and account spikes, ops, energy.

    Args:
        model: a masnn model (any module with :class:`~masnn.neurons.LIF` layers).
        batches: an iterable (e.g. a DataLoader) of input tensors or ``(input, target, ...)``.
        neuron_layers: NASAR's counted layers (``None`` = the model's recorded convention;
            see :class:`~masnn.analysis.monitors.SpikeMonitor`).
        attention_convention: one of :data:`~masnn.analysis.ops.ATTN_CONVENTIONS`.
        ac_mode: one of :data:`AC_MODES`.
        energy: a preset name from ``ENERGY_PRESETS`` or an :class:`EnergyCost`.
        layout: ``"TBCHW"`` (masnn) or ``"BTCHW"`` (batch-first loaders; converted here).
        max_batches: stop after this many batches.
        device: move inputs there (the model is not moved).

    Returns:
        A :class:`Report` (per-sample numbers).
    """
    if attention_convention not in ATTN_CONVENTIONS:
        raise ValueError(
            f"unknown attention_convention {attention_convention!r}; allowed: {list(ATTN_CONVENTIONS)}"
        )
    if ac_mode not in AC_MODES:
        raise ValueError(f"unknown ac_mode {ac_mode!r}; allowed: {list(AC_MODES)}")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; allowed: {list(LAYOUTS)}")
    cost = energy_cost(energy)
    was_training = model.training
    model.eval()
    try:
        with SpikeMonitor(model, neuron_layers=neuron_layers) as mon, OpsCounter(model) as ops:
            for i, batch in enumerate(batches):
                if max_batches is not None and i >= max_batches:
                    break
                x = _batch_input(batch)
                if layout == "BTCHW":
                    x = x.transpose(0, 1)  # (T, B, ...)
                if device is not None:
                    x = x.to(device)
                model(x)
    finally:
        model.train(was_training)
    return build_report(mon.stats(), ops, attention_convention, ac_mode, cost)


def build_report(
    spikes: SpikeStats,
    ops: OpsCounter,
    attention_convention: str = "paper_table5",
    ac_mode: str = "exact",
    energy: str | EnergyCost = DEFAULT_ENERGY,
) -> Report:
    """Assemble a :class:`Report` from a finished monitor's stats and an :class:`OpsCounter`."""
    cost = energy_cost(energy)
    m = max(ops.samples, 1)
    t = max(spikes.timesteps, 1)
    layers: list[dict[str, Any]] = []
    for r in ops.layers.values():
        if not (r.ac_calls or r.mac_calls):
            continue
        kind_in = "mixed" if r.ac_calls and r.mac_calls else ("spikes" if r.ac_calls else "real")
        layers.append(
            {
                "name": r.name,
                "kind": r.kind,
                "input": kind_in,
                "flops": (r.ac_dense + r.mac_dense) / m / t,
                "input_rate": (r.ac_nnz + r.mac_nnz) / max(r.ac_numel + r.mac_numel, 1),
                "acs_exact": r.ac_exact / m,
                "acs_paper": r.ac_paper / m,
                "macs": r.mac_dense / m,
                "macs_paper": r.mac_paper / m,
                "macs_effective": r.mac_exact / m,
            }
        )
    attention: list[dict[str, Any]] = [
        {
            "name": a.name,
            "kind": a.kind,
            "calls": a.calls,
            "macs": a.macs[attention_convention] / m,
            "macs_by_convention": {k: v / m for k, v in a.macs.items()},
        }
        for a in ops.attention.values()
        if a.calls
    ]
    acs_exact = sum(r["acs_exact"] for r in layers)
    acs_paper = sum(r["acs_paper"] for r in layers)
    macs = sum(r["macs"] for r in layers)
    macs_paper = sum(r["macs_paper"] for r in layers)
    attn = sum(a["macs"] for a in attention)
    e_exact = energy_pj(acs_exact, macs + attn, cost)
    e_paper = energy_pj(acs_paper, macs_paper + attn, cost)
    ann_flops = sum(r["flops"] for r in layers)
    ann_e = ann_energy_pj(ann_flops, cost)
    e = e_exact if ac_mode == "exact" else e_paper
    totals = {
        "acs": acs_exact if ac_mode == "exact" else acs_paper,
        "acs_exact": acs_exact,
        "acs_paper": acs_paper,
        "macs": macs if ac_mode == "exact" else macs_paper,
        "macs_dense": macs,
        "macs_paper": macs_paper,
        "attention_macs": attn,
        "energy_pj": e,
        "energy_exact_pj": e_exact,
        "energy_paper_pj": e_paper,
        "ann_flops": ann_flops,
        "ann_energy_pj": ann_e,
        "ree_vs_ann": ann_e / e if e > 0 else float("inf"),
    }
    return Report(
        spikes=spikes,
        layers=layers,
        attention=attention,
        timesteps=spikes.timesteps,
        samples=ops.samples,
        attention_convention=attention_convention,
        ac_mode=ac_mode,
        energy=cost,
        totals=totals,
    )


__all__ = ["AC_MODES", "Report", "build_report", "format_summary", "measure"]
