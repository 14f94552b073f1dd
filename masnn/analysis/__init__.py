"""Side channel: spike, operation and energy accounting of masnn models, by hooks.

Paper: `Attention Spiking Neural Networks` (§4, §6; NASAR, LASAR, rEE) - https://arxiv.org/abs/2209.13929

* :class:`SpikeMonitor`: NSAR(t), NASAR, LASAR, spikes per sample, silent channels, variances;
* :class:`OpsCounter`: ACs (exact and ``T * FL * rate``), MACs, attention MACs;
* :mod:`masnn.analysis.energy`: ``E = E_MAC * MACs + E_AC * ACs`` presets and rEE;
* :func:`measure` -> :class:`Report` (``to_dict`` / ``to_markdown``), :func:`format_summary`;
* :func:`block_isometry` / :func:`isometry_sweep`: paper Theorem 1's phi/varphi of each residual
  block's JJ^T (random probes) and the per-block gradient-norm ratio (:mod:`~.isometry`);
* :class:`HookSet`: the hook lifetime every counter shares (install on enter, always remove);
* :mod:`masnn.analysis.neurobench`: a NeuroBench ``NeuroBenchModel`` wrapper (needs neurobench).

Nothing in models/layers/neurons imports this package; every hook is removed on exit.
Formulas and worked examples: ``docs/energy.md``.
"""

from masnn.analysis.energy import (
    DEFAULT_ENERGY,
    ENERGY_PRESETS,
    EnergyCost,
    ann_energy_pj,
    energy_cost,
    energy_pj,
    relative_energy_efficiency,
)
from masnn.analysis.hooks import HookSet
from masnn.analysis.isometry import BlockIsometry, block_isometry, isometry_sweep
from masnn.analysis.monitors import CONVENTIONS, LayerSpikes, SpikeMonitor, SpikeStats
from masnn.analysis.ops import ATTN_CONVENTIONS, OpsCounter, attention_macs, is_binary
from masnn.analysis.report import AC_MODES, Report, build_report, format_summary, measure

__all__ = [
    "AC_MODES",
    "BlockIsometry",
    "ATTN_CONVENTIONS",
    "CONVENTIONS",
    "DEFAULT_ENERGY",
    "ENERGY_PRESETS",
    "EnergyCost",
    "HookSet",
    "LayerSpikes",
    "OpsCounter",
    "Report",
    "SpikeMonitor",
    "SpikeStats",
    "ann_energy_pj",
    "attention_macs",
    "block_isometry",
    "build_report",
    "energy_cost",
    "energy_pj",
    "format_summary",
    "is_binary",
    "isometry_sweep",
    "measure",
    "relative_energy_efficiency",
]
