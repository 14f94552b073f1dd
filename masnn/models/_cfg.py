"""``ModelCfg``: the metadata each registered model carries (timm's ``PretrainedCfg`` idea).

A variant is data: a ``ModelCfg`` with its default kwargs over a family builder. Every default
is tagged with where it comes from:

* ``paper``: stated in the paper (arXiv 2209.13929 v1);
* ``code``: the official code (``BICLab/MA-SNN``) or the paper's cited code (Fang et al.);
* ``derived``: arithmetic on paper/code facts (e.g. a count that matches a table);
* ``assumption``: stated by neither; our choice, listed in :attr:`ModelCfg.assumptions`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: Allowed provenance tags of a default.
SOURCES = ("paper", "code", "derived", "assumption")
#: NASAR neuron-count conventions: every LIF neuron, or conv-layer LIF neurons only.
NEURON_COUNTS = ("all_lif", "conv_only")


@dataclass(frozen=True)
class ModelCfg:
    """Registered metadata of one model variant.

    Attributes:
        name: the registry name (``create_model(name)``).
        family: the builder family (``"ma_snn3"``, ``"ma_snn5"``, ``"ms_resnet"``).
        paper: where the architecture is described (paper section/table, code file).
        input_size: default ``(C, H, W)`` of one frame.
        timesteps: default ``T``.
        num_classes: default ``K``.
        neuron_count: the NASAR neuron-count convention, one of :data:`NEURON_COUNTS`.
        defaults: the variant's default kwargs (``None`` = resolved by a documented rule).
        placement_defaults: overrides applied when ``placement`` takes a given value and the
            caller did not set the kwarg (e.g. ``code`` -> ``kernel_size = 3``).
        sources: provenance tag per default, one of :data:`SOURCES`; keys may be
            ``"<placement>.<kwarg>"`` for placement overrides.
        rules: how ``None`` defaults are resolved (e.g. ``reduction_t`` at other ``T``).
        notes: free-text remarks (which values are assumptions and why).
    """

    name: str
    family: str
    paper: str
    input_size: tuple[int, int, int]
    timesteps: int
    num_classes: int
    neuron_count: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    placement_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    rules: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.neuron_count not in NEURON_COUNTS:
            raise ValueError(
                f"{self.name}: neuron_count must be one of {list(NEURON_COUNTS)}, "
                f"got {self.neuron_count!r}"
            )
        if len(self.input_size) != 3 or any(int(s) < 1 for s in self.input_size):
            raise ValueError(
                f"{self.name}: input_size must be (C, H, W) >= 1, got {self.input_size}"
            )
        if self.timesteps < 1 or self.num_classes < 1:
            raise ValueError(f"{self.name}: timesteps and num_classes must be >= 1")
        bad = {k: v for k, v in self.sources.items() if v not in SOURCES}
        if bad:
            raise ValueError(f"{self.name}: unknown source tags {bad}; allowed: {list(SOURCES)}")
        # Freeze the mappings so a registered cfg cannot be mutated by a caller.
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        pd = {k: MappingProxyType(dict(v)) for k, v in self.placement_defaults.items()}
        object.__setattr__(self, "placement_defaults", MappingProxyType(pd))
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))
        object.__setattr__(self, "rules", MappingProxyType(dict(self.rules)))

    @property
    def assumptions(self) -> tuple[str, ...]:
        """Names of the defaults that neither the paper nor the official code states."""
        return tuple(sorted(k for k, v in self.sources.items() if v == "assumption"))

    def resolve(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Merge the caller's (non-``None``) kwargs over the placement and variant defaults."""
        placement = kwargs.get("placement", self.defaults.get("placement"))
        if self.placement_defaults and placement not in self.placement_defaults:
            allowed = sorted(self.placement_defaults)
            raise ValueError(f"{self.name}: unknown placement {placement!r}; allowed: {allowed}")
        out = dict(self.defaults)
        out.update(self.placement_defaults.get(placement, {}))
        out.update(kwargs)
        return out
