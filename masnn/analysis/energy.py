r"""Energy model: ``E = E_MAC * MACs + E_AC * ACs`` with cited per-operation costs.

Paper: `Attention Spiking Neural Networks` (Eq. 17-19, SM Table S1) - https://arxiv.org/abs/2209.13929

.. math::

    E_{SNN} = E_{MAC}\,(\mathrm{MAC}_{enc} + \Delta\mathrm{MAC}_{attn}) + E_{AC}\,\mathrm{AC},
    \qquad E_{ANN} = E_{MAC}\,\mathrm{FLOPs},
    \qquad \mathrm{rEE} = E_{base} / E_{model}

Per-operation energies are Horowitz (ISSCC 2014, 45 nm): a MAC is a multiply plus an add, an
AC is an add. The default, 32-bit float (4.6 pJ / 0.9 pJ), is the paper's. These are
arithmetic costs only (no memory traffic); numbers from other estimators are not comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

from masnn._registry import suggest


@dataclass(frozen=True)
class EnergyCost:
    """Energy per operation, in picojoules.

    Attributes:
        name: the preset name.
        e_mac_pj: one multiply-accumulate.
        e_ac_pj: one accumulate (a synaptic operation driven by a binary spike).
        source: where the numbers come from.
    """

    name: str
    e_mac_pj: float
    e_ac_pj: float
    source: str = ""

    def __post_init__(self) -> None:
        if not (self.e_mac_pj >= 0 and self.e_ac_pj >= 0):
            raise ValueError(f"energies must be >= 0 pJ, got {self.e_mac_pj}, {self.e_ac_pj}")


_HOROWITZ = "Horowitz, ISSCC 2014, 45 nm: MAC = mult + add, AC = add"

#: Named presets (``energy=`` accepts a name or an :class:`EnergyCost`).
ENERGY_PRESETS: dict[str, EnergyCost] = {
    "45nm_fp32": EnergyCost("45nm_fp32", 4.6, 0.9, _HOROWITZ + " (3.7 + 0.9; 0.9); paper default"),
    "45nm_fp16": EnergyCost("45nm_fp16", 1.5, 0.4, _HOROWITZ + " (1.1 + 0.4; 0.4)"),
    "45nm_int32": EnergyCost("45nm_int32", 3.2, 0.1, _HOROWITZ + " (3.1 + 0.1; 0.1)"),
    "45nm_int8": EnergyCost("45nm_int8", 0.23, 0.03, _HOROWITZ + " (0.2 + 0.03; 0.03)"),
}
DEFAULT_ENERGY = "45nm_fp32"


def energy_cost(energy: str | EnergyCost = DEFAULT_ENERGY) -> EnergyCost:
    """Resolve a preset name (:data:`ENERGY_PRESETS`) or pass an :class:`EnergyCost` through."""
    if isinstance(energy, EnergyCost):
        return energy
    if energy not in ENERGY_PRESETS:
        allowed = sorted(ENERGY_PRESETS)
        raise ValueError(
            f"unknown energy preset {energy!r}{suggest(str(energy), allowed)}; allowed: {allowed}"
        )
    return ENERGY_PRESETS[energy]


def energy_pj(acs: float, macs: float, energy: str | EnergyCost = DEFAULT_ENERGY) -> float:
    """``E_AC * acs + E_MAC * macs`` in picojoules.

    Example:
        >>> round(energy_pj(1e6, 1e3), 1)  # 1 M ACs and 1 k MACs at 45 nm fp32
        904600.0
    """
    c = energy_cost(energy)
    return c.e_ac_pj * acs + c.e_mac_pj * macs


def ann_energy_pj(flops: float, energy: str | EnergyCost = DEFAULT_ENERGY) -> float:
    """Energy of an ANN of the same architecture: every FLOP is a MAC, ``E_MAC * flops``."""
    return energy_cost(energy).e_mac_pj * flops


def relative_energy_efficiency(base_pj: float, model_pj: float) -> float:
    """``rEE = E_base / E_model`` (paper Eq. 19; > 1 means the model uses less energy)."""
    if model_pj <= 0:
        raise ValueError(f"model energy must be > 0 pJ, got {model_pj}")
    return base_pj / model_pj


__all__ = [
    "DEFAULT_ENERGY",
    "ENERGY_PRESETS",
    "EnergyCost",
    "ann_energy_pj",
    "energy_cost",
    "energy_pj",
    "relative_energy_efficiency",
]
