"""The report's settings (paper Table 6 rows) and the one function that turns them into ``--set``.

A *setting* is an attention name and a placement: ``none`` (vanilla), ``relu`` (the ReLU-only
control: no gate, the official code's post-attention ReLU alone) and the seven gate combinations
``ta ca sa tca tsa csa tcsa`` in the ``paper`` and ``code`` placements (they differ for every
gate: pooling per step vs over the window, SA kernel, CA ratio, the ReLU). ``none`` and ``relu``
have no gate, so only their ``paper`` form exists.

:func:`variant_overrides` is the single place that knows the training-config shape of attention.
Two shapes exist while the attention-config change (issue 12) lands:

* ``mapping`` (the new one): ``model.attn.name``, ``model.attn.placement``, ``model.attn.relu``;
* ``flat`` (the old one): ``model.attn``, ``model.placement``, ``model.attn_relu``.

:func:`attn_config_form` detects which one the installed :mod:`masnn.train.config` accepts, so
nothing has to be flipped by hand when the change is merged.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

#: Gate combinations of paper Table 6, in its row order.
GATES: tuple[str, ...] = ("ta", "ca", "sa", "tca", "tsa", "csa", "tcsa")
#: Every setting name: vanilla, the ReLU-only control, then the gates.
SETTINGS: tuple[str, ...] = ("none", "relu", *GATES)
PLACEMENTS: tuple[str, ...] = ("paper", "code")
FORMS: tuple[str, ...] = ("mapping", "flat")


@dataclass(frozen=True, order=True)
class Variant:
    """One row of the report: a setting in a placement."""

    name: str
    placement: str = "paper"

    def __post_init__(self) -> None:
        if self.name not in SETTINGS:
            raise ValueError(f"unknown report setting {self.name!r}; allowed: {list(SETTINGS)}")
        if self.placement not in PLACEMENTS:
            raise ValueError(
                f"unknown placement {self.placement!r} for {self.name!r}; allowed: {list(PLACEMENTS)}"
            )
        if self.name in ("none", "relu") and self.placement != "paper":
            raise ValueError(f"{self.name!r} has no gate, so it exists only as {self.name}/paper")

    @property
    def key(self) -> str:
        """``name`` for the gate-less rows, ``name-placement`` otherwise (file-name safe)."""
        return self.name if self.name in ("none", "relu") else f"{self.name}-{self.placement}"

    @property
    def label(self) -> str:
        """Table label: ``vanilla``, ``ReLU only``, ``+TCSA (paper)`` ..."""
        if self.name == "none":
            return "vanilla"
        if self.name == "relu":
            return "ReLU only (control)"
        return f"+{self.name.upper()} ({self.placement})"

    @property
    def has_gate(self) -> bool:
        return self.name in GATES


def parse_variant(text: str) -> Variant:
    """``"tcsa"`` (paper placement), ``"tcsa-code"``, ``"tcsa/code"``, ``"none"``, ``"relu"``."""
    for sep in ("/", "-", ":"):
        if sep in text:
            name, _, placement = text.partition(sep)
            return Variant(name.strip().lower(), placement.strip().lower())
    return Variant(text.strip().lower())


def all_variants() -> list[Variant]:
    """Every setting in every placement where it exists (16 rows)."""
    out = [Variant("none"), Variant("relu")]
    for g in GATES:
        out += [Variant(g, "paper"), Variant(g, "code")]
    return out


@functools.cache
def attn_config_form() -> str:
    """``"mapping"`` when the installed training config takes ``model.attn.name=...``, else
    ``"flat"`` (``model.attn=...``); decided by loading a probe config."""
    from masnn.train.config import ConfigError, load_config

    try:
        load_config(None, ["model.attn.name=none"])
    except (ConfigError, TypeError, ValueError):
        load_config(None, ["model.attn=none"])  # neither form: let it raise, loudly
        return "flat"
    return "mapping"


def variant_overrides(name: str, placement: str = "paper", form: str | None = None) -> list[str]:
    """The ``--set`` overrides that select one report setting in a training config.

    Args:
        name: a name from :data:`SETTINGS`.
        placement: ``paper`` or ``code`` (``none``/``relu`` only ``paper``).
        form: ``"mapping"`` or ``"flat"``; ``None`` = :func:`attn_config_form`.

    Returns:
        e.g. ``["model.attn.name=tcsa", "model.attn.placement=code", "model.attn.relu=null"]``.
        ``relu`` is ``null`` (the model's placement default: off for ``paper``, on for
        ``code``) except for the control, where it is ``true``.
    """
    v = Variant(name, placement)
    form = form or attn_config_form()
    if form not in FORMS:
        raise ValueError(f"unknown config form {form!r}; allowed: {list(FORMS)}")
    attn = "none" if v.name == "relu" else v.name
    relu = "true" if v.name == "relu" else "null"
    if form == "mapping":
        return [
            f"model.attn.name={attn}",
            f"model.attn.placement={v.placement}",
            f"model.attn.relu={relu}",
        ]
    return [f"model.attn={attn}", f"model.placement={v.placement}", f"model.attn_relu={relu}"]


__all__ = [
    "FORMS",
    "GATES",
    "PLACEMENTS",
    "SETTINGS",
    "Variant",
    "all_variants",
    "attn_config_form",
    "parse_variant",
    "variant_overrides",
]
