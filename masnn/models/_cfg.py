"""``ModelCfg``: the metadata each registered model carries (timm's ``PretrainedCfg`` idea).

A variant is data: a ``ModelCfg`` holding the variant's default *args* (a frozen dataclass,
one per family, e.g. :class:`masnn.models.dvs.MaSNN3Args`; variants are
``dataclasses.replace`` of a base) over the family's model class. Every default is tagged with
where it comes from:

* ``paper``: stated in the paper (arXiv 2209.13929 v1);
* ``code``: the official code (``BICLab/MA-SNN``) or the paper's cited code (Fang et al.);
* ``derived``: arithmetic on paper/code facts (e.g. a count that matches a table);
* ``assumption``: stated by neither; our choice, listed in :attr:`ModelCfg.assumptions`.

Attention defaults that depend on the placement (``r_c``, ``k``, the ReLU) are the
placement's (:data:`masnn.attention.PLACEMENTS`); a variant only states what differs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from masnn.attention import AttnCfg
from masnn.neurons import NeuronSpec

#: Allowed provenance tags of a default.
SOURCES = ("paper", "code", "derived", "assumption")
#: NASAR neuron-count conventions: every LIF neuron, or conv-layer LIF neurons only.
NEURON_COUNTS = ("all_lif", "conv_only")
#: ``create_model`` keywords that set one field of the ``attn`` :class:`AttnCfg`.
ATTN_KWARGS = {
    "placement": "placement",
    "locations": "locations",
    "reduction_t": "reduction_t",
    "reduction_c": "reduction_c",
    "kernel_size": "kernel_size",
    "attn_relu": "relu",
}
#: ``create_model`` keywords that set one field of the ``neuron`` :class:`NeuronSpec`.
NEURON_KWARGS = {"backend": "backend", "neuron_kwargs": "kwargs"}


def flat_args(args: Any) -> dict[str, Any]:
    """One flat dict of a family's args: plain fields, ``attn`` as its name and resolved
    hyper-parameters (``placement``, ``locations``, ``reduction_t``, ``reduction_c``,
    ``kernel_size``, ``attn_relu``), ``neuron`` as its preset (``backend``, ``neuron_kwargs``).
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(args):
        v = getattr(args, f.name)
        if isinstance(v, AttnCfg):
            plan = v.resolve()
            out |= {"attn": v.name, "placement": v.placement, "locations": dict(v.locations)}
            out |= plan.hp._asdict() | {"attn_relu": plan.relu}
        elif isinstance(v, NeuronSpec):
            out |= {"neuron": v.preset, "backend": v.backend, "neuron_kwargs": dict(v.kwargs)}
        else:
            out[f.name] = v
    return out


@dataclass(frozen=True)
class ModelCfg:
    """Registered metadata of one model variant.

    Attributes:
        name: the registry name (``create_model(name)``).
        family: the builder family (``"ma_snn3"``, ``"ma_snn5"``, ``"ms_resnet"``).
        paper: where the architecture is described (paper section/table, code file).
        neuron_count: the NASAR neuron-count convention, one of :data:`NEURON_COUNTS`.
        args: the variant's default args (a frozen dataclass with at least ``num_classes``,
            ``timesteps``, ``input_size``, ``attn`` (:class:`AttnCfg`) and ``neuron``
            (:class:`NeuronSpec`)).
        neuron_by_placement: the neuron preset to use with a placement when the caller names
            no neuron (e.g. ``code`` -> ``"biclab"``, the official cell).
        sources: provenance tag per default, one of :data:`SOURCES`; keys may be
            ``"<placement>.<kwarg>"`` for placement-dependent values.
        rules: how defaults are resolved (e.g. ``reduction_t`` at other ``T``).
        notes: free-text remarks (which values are assumptions and why).
    """

    name: str
    family: str
    paper: str
    neuron_count: str
    args: Any
    neuron_by_placement: Mapping[str, str] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    rules: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.neuron_count not in NEURON_COUNTS:
            raise ValueError(
                f"{self.name}: neuron_count must be one of {list(NEURON_COUNTS)}, "
                f"got {self.neuron_count!r}"
            )
        if not dataclasses.is_dataclass(self.args):
            raise TypeError(f"{self.name}: args must be a dataclass instance, got {self.args!r}")
        size = getattr(self.args, "input_size", ())
        if len(size) != 3 or any(int(s) < 1 for s in size):
            raise ValueError(f"{self.name}: input_size must be (C, H, W) >= 1, got {size}")
        if self.timesteps < 1 or self.num_classes < 1:
            raise ValueError(f"{self.name}: timesteps and num_classes must be >= 1")
        bad = {k: v for k, v in self.sources.items() if v not in SOURCES}
        if bad:
            raise ValueError(f"{self.name}: unknown source tags {bad}; allowed: {list(SOURCES)}")
        # Freeze the mappings so a registered cfg cannot be mutated by a caller.
        for name in ("neuron_by_placement", "sources", "rules"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    @property
    def input_size(self) -> tuple[int, int, int]:
        """Default ``(C, H, W)`` of one frame."""
        return tuple(self.args.input_size)  # type: ignore[return-value]

    @property
    def timesteps(self) -> int:
        """Default ``T``."""
        return int(self.args.timesteps)

    @property
    def num_classes(self) -> int:
        """Default ``K``."""
        return int(self.args.num_classes)

    @property
    def defaults(self) -> Mapping[str, Any]:
        """The default args as one flat read-only mapping (:func:`flat_args`)."""
        return MappingProxyType(flat_args(self.args))

    @property
    def accepted(self) -> tuple[str, ...]:
        """The keyword arguments ``create_model`` accepts for this model."""
        names = [f.name for f in dataclasses.fields(self.args)]
        return tuple(names + list(ATTN_KWARGS) + list(NEURON_KWARGS))

    @property
    def assumptions(self) -> tuple[str, ...]:
        """Names of the defaults that neither the paper nor the official code states."""
        return tuple(sorted(k for k, v in self.sources.items() if v == "assumption"))

    def resolve(self, kwargs: Mapping[str, Any]) -> Any:
        """The args for ``create_model(self.name, **kwargs)`` (``None`` values already pruned).

        ``attn`` may be an :class:`AttnCfg` (its ``None`` fields inherit the variant's) or a
        name; ``neuron`` a :class:`NeuronSpec` or a preset name; the convenience keywords
        (:data:`ATTN_KWARGS`, :data:`NEURON_KWARGS`) then set single fields.
        """
        kw = dict(kwargs)
        base: AttnCfg = self.args.attn
        attn = kw.pop("attn", base)
        if isinstance(attn, str):
            attn = dataclasses.replace(base, name=attn)
        elif isinstance(attn, AttnCfg):
            inherit = {
                f.name: getattr(base, f.name)
                for f in dataclasses.fields(AttnCfg)
                if getattr(attn, f.name) is None
            }
            attn = dataclasses.replace(attn, **inherit)
        else:
            raise TypeError(f"attn must be an AttnCfg or an attention name, got {attn!r}")
        over = {ATTN_KWARGS[k]: kw.pop(k) for k in list(kw) if k in ATTN_KWARGS}
        attn = dataclasses.replace(attn, **over) if over else attn
        neuron = kw.pop("neuron", None)
        if neuron is None:
            preset = self.neuron_by_placement.get(attn.placement, self.args.neuron.preset)
            neuron = dataclasses.replace(self.args.neuron, preset=preset)
        elif isinstance(neuron, str):
            neuron = NeuronSpec(neuron, self.args.neuron.backend)
        elif not isinstance(neuron, NeuronSpec):
            raise TypeError(f"neuron must be a NeuronSpec or a preset name, got {neuron!r}")
        over = {NEURON_KWARGS[k]: kw.pop(k) for k in list(kw) if k in NEURON_KWARGS}
        neuron = dataclasses.replace(neuron, **over) if over else neuron
        return dataclasses.replace(self.args, attn=attn, neuron=neuron, **kw)
