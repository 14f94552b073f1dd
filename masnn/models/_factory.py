"""The model registry and factory: ``create_model``, ``list_models``, ``register_model``.

Variants are data: :func:`register_model` adds a :class:`~masnn.models._cfg.ModelCfg` (whose
``args`` is the variant's default args dataclass) over a family builder that takes those args
(the model class itself). :func:`create_model` prunes ``None`` values ("use the registered
default"), rejects unknown kwargs with a ``TypeError`` naming the accepted ones (and the
closest match), ``dataclasses.replace``-s the defaults and calls the builder.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from masnn._registry import Registry
from masnn.models._cfg import ModelCfg, flat_args


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its metadata and the family builder that builds it."""

    cfg: ModelCfg
    builder: Callable[[Any], nn.Module]

    @property
    def accepted(self) -> tuple[str, ...]:
        """The keyword arguments ``create_model`` accepts for this model."""
        return self.cfg.accepted


MODELS: Registry[ModelEntry] = Registry("model")


B = TypeVar("B", bound=Callable[[Any], nn.Module])


def register_model(cfg: ModelCfg) -> Callable[[B], B]:
    """Register ``cfg`` over a family builder (decorator; the builder is returned unchanged).

    The builder takes one argument, the args dataclass (``cfg.args`` with the caller's
    overrides), and records the args it finally used as ``model.args``.
    """

    def deco(builder: B) -> B:
        MODELS.add(cfg.name, ModelEntry(cfg, builder))
        return builder

    return deco


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models matching the fnmatch ``pattern``."""
    return MODELS.names(pattern)


def model_cfg(name: str) -> ModelCfg:
    """The registered :class:`ModelCfg` of ``name`` (unknown names raise, listing the models)."""
    return MODELS.get(name).cfg


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from :func:`list_models`.
        **kwargs: overrides of the variant's args; ``None`` means the registered default.
            Common to all models: ``num_classes``, ``timesteps``, ``input_size``, ``attn`` (an
            :class:`~masnn.attention.AttnCfg`, or a name) and ``neuron`` (a
            :class:`~masnn.neurons.NeuronSpec`, or a preset name); each family adds its own
            (see ``docs/models.md``). Convenience keywords set one field of ``attn``
            (``placement``, ``locations``, ``reduction_t``, ``reduction_c``, ``kernel_size``,
            ``attn_relu``) or of ``neuron`` (``backend``, ``neuron_kwargs``).

    Returns:
        The model, with ``model.default_cfg`` (the :class:`ModelCfg`), ``model.args`` (the
        args dataclass it was built from) and ``model.model_args`` (the same, flat, with the
        attention hyper-parameters resolved).

    Raises:
        ValueError: unknown model name (the message lists the registered ones).
        TypeError: an unknown kwarg (the message lists the accepted ones).

    Example:
        >>> from masnn.attention import AttnCfg
        >>> m = create_model("ma_snn3", attn=AttnCfg("none"), num_classes=11)
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
    model = entry.builder(entry.cfg.resolve(given))
    model.default_cfg = entry.cfg
    model.model_args = flat_args(model.args)
    return model
