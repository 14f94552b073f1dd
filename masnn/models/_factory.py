"""The model registry and factory: ``create_model``, ``list_models``, ``register_model``.

Variants are data: :func:`register_model` adds a :class:`~masnn.models._cfg.ModelCfg` over a
family builder (a function with keyword-only arguments). :func:`create_model` prunes ``None``
values ("use the registered default"), rejects unknown kwargs with a ``TypeError`` naming the
accepted ones (and the closest match), merges the defaults and calls the builder.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from masnn._registry import Registry
from masnn.models._cfg import ModelCfg


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its metadata and the family builder that builds it."""

    cfg: ModelCfg
    builder: Callable[..., nn.Module]

    @property
    def accepted(self) -> tuple[str, ...]:
        """The keyword arguments ``create_model`` accepts for this model."""
        sig = inspect.signature(self.builder)
        return tuple(p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY)


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(cfg: ModelCfg) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``cfg`` over a family builder (decorator; the builder is returned unchanged).

    The builder takes only keyword arguments; every default in ``cfg.defaults`` must be one of
    them, so a typo in a registered variant fails at import time.
    """

    def deco(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        entry = ModelEntry(cfg, builder)
        unknown = sorted(set(cfg.defaults) - set(entry.accepted))
        for over in cfg.placement_defaults.values():
            unknown += sorted(set(over) - set(entry.accepted))
        if unknown:
            raise TypeError(f"model {cfg.name!r}: defaults {unknown} are not builder kwargs")
        MODELS.add(cfg.name, entry)
        return builder

    return deco


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models matching the fnmatch ``pattern``."""
    return MODELS.names(pattern)


def model_cfg(name: str) -> ModelCfg:
    """The registered :class:`ModelCfg` of ``name`` (unknown names raise, listing the models)."""
    return MODELS.get(name).cfg


def create_model(
    name: str,
    *,
    pretrained: str | None = None,
    pretrained_sha256: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from :func:`list_models`.
        **kwargs: architecture overrides; ``None`` means the registered default. Common to all
            models: ``num_classes``, ``timesteps``, ``attn``, ``placement``, ``neuron``,
            ``reduction_t``, ``reduction_c``, ``kernel_size``, ``attn_relu``, ``backend``,
            ``neuron_kwargs``, ``input_size``; each family adds its own (see ``docs/models.md``).
        pretrained: a local weights file (masnn checkpoint/state dict, or the official
            MS-ResNet layout), loaded strictly; never downloaded (``masnn.models.official``).
        pretrained_sha256: the file's expected SHA-256 (``None`` = not checked).

    Returns:
        The model, with ``model.default_cfg`` (the :class:`ModelCfg`) and ``model.model_args``
        (the resolved kwargs).

    Raises:
        ValueError: unknown model name (the message lists the registered ones).
        TypeError: an unknown kwarg (the message lists the accepted ones).

    Example:
        >>> m = create_model("ma_snn3", attn="none", num_classes=11)
        >>> sum(p.numel() for p in m.parameters())
        2324065
    """
    entry = MODELS.get(name)
    accepted = entry.accepted
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, accepted, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise TypeError(
            f"create_model({name!r}) got unexpected keyword argument(s) {', '.join(hints)}; "
            f"accepted: {sorted(accepted)}"
        )
    given = {k: v for k, v in kwargs.items() if v is not None}
    resolved = entry.cfg.resolve(given)
    model = entry.builder(**resolved)
    model.default_cfg = entry.cfg
    # Builders record rule-resolved values (e.g. reduction_t) on top of the merged kwargs.
    model.model_args = {**resolved, **getattr(model, "resolved_args", {})}
    if pretrained is not None:
        from masnn.models.official import load_pretrained

        digest = load_pretrained(model, pretrained, pretrained_sha256)
        model.pretrained = {"path": str(pretrained), "sha256": digest}
    return model
