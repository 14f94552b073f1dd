"""The dataset registry: a new dataset is one file plus one :func:`register_dataset` line.

An *opener* takes a :class:`DataRequest` (root, framing, cache, dataset options) and returns
:class:`DatasetSplits`: the training and test splits as :class:`SampleSource` objects, and how
the training split may be grouped to carve a validation split (:class:`ValidationGroups`).
Training (``masnn.train.data.build_data``) looks the name up here and asks the sources for
their frames; it knows nothing about any particular dataset.

A source need not be event-based: anything with ``labels``, ``class_names``, ``num_classes``,
``frame_shape()`` and ``frames(index, train=..., rng=...)`` returning ``(T, C, H, W)`` fits
(e.g. static images repeated over ``T`` with :func:`masnn.layout.repeat_over_time`).

A dataset that carves its own validation split and draws its own augmentations (ImageNet:
torchvision transforms, a per-image held-out share) returns :class:`ReadySplits` instead: the
train / validation / test views themselves (:class:`SplitView`), which training uses as they
are. Both kinds go through the same registration and the same ``build_data`` code path; the
opener's return type says which it is.

A dataset's own settings are registered with it (``options``: names and defaults) and, if
their values need checking, a ``check`` function; a config sets them under ``data.options``,
and an unknown key or a bad value fails when the config is loaded.

Example:
    >>> from masnn.data import DATASETS
    >>> DATASETS.names()[:4]
    ['dvs128_gait', 'dvs128_gesture', 'imagenet', 'synth_gesture']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from masnn._registry import Registry, suggest
from masnn.frames.integrate import FrameCfg


@runtime_checkable
class SampleSource(Protocol):
    """One split of a dataset, as training reads it."""

    num_classes: int

    @property
    def labels(self) -> np.ndarray:
        """int label of every sample."""
        ...

    @property
    def class_names(self) -> tuple[str, ...]:
        """One display name per label."""
        ...

    def __len__(self) -> int: ...

    def frame_shape(self) -> tuple[int, int, int, int]:
        """``(T, C, H, W)`` of one sample's frames."""
        ...

    def frames(
        self, index: int, *, train: bool | None = None, rng: np.random.Generator | None = None
    ) -> Any:
        """Frames ``(T, C, H, W)`` (or ``(clips, T, C, H, W)`` for several test clips) of a
        sample; ``train`` selects the random training view, drawn from ``rng``."""
        ...


@dataclass(frozen=True)
class DataRequest:
    """What training asks of a dataset.

    Attributes:
        frames: framing of every sample (``timesteps`` for every dataset; ``dt_ms``, ``ds``,
            ``clips`` and ``short`` for event datasets; ``clips`` applies to evaluation only).
        root: the dataset directory (checked to exist), or ``None`` for a dataset that makes
            its own data (registered with ``needs_root=False``).
        cache_dir: cache root (``None``: ``$MASNN_CACHE`` or the XDG cache).
        progress: show progress bars while decoding.
        options: the dataset's own settings: every key it registered, with the user's value or
            the registered default.
        val_fraction: share of the training split to hold out for validation; read only by
            openers that return :class:`ReadySplits` (training carves the others' split).
        seed: the run's seed (held-out draw and augmentations of :class:`ReadySplits`).
    """

    frames: FrameCfg
    root: Path | None = None
    cache_dir: str | None = None
    progress: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)
    val_fraction: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class ValidationGroups:
    """How the training split may be grouped so that validation holds out whole groups.

    Attributes:
        groups: one group name per training sample; validation takes whole groups.
        unit: what a group is, in words (``"subject"``, ``"walk block"``).
        note: one plain sentence stating the split, printed with the run and saved in
            ``run.json``.
        strata: optional stratum per sample (e.g. the class when subjects are the labels):
            groups are then held out within every stratum.
    """

    groups: Sequence[str]
    unit: str
    note: str
    strata: Sequence[str] | None = None


@dataclass(frozen=True)
class DatasetSplits:
    """What an opener returns."""

    train: SampleSource
    test: SampleSource
    root: Path
    validation: ValidationGroups


class SplitView(Protocol):
    """A ready split, as training iterates it: a map-style dataset of ``(frames, label)``.

    ``frames`` is ``(T, C, H, W)`` (or ``(clips, T, C, H, W)`` at evaluation); ``set_epoch``
    selects the random draws of an epoch (a no-op for an evaluation view).
    """

    @property
    def labels(self) -> np.ndarray:
        """int label of every sample."""
        ...

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[Any, int]: ...

    def set_epoch(self, epoch: int) -> None:
        """Select the random draws of ``epoch`` (call before iterating)."""
        ...


@dataclass(frozen=True)
class ReadySplits:
    """What an opener returns when it builds the training views itself.

    Attributes:
        train: the random training view.
        val: the held-out validation view (``None`` when ``val_fraction`` is 0).
        test: the test view.
        num_classes: number of labels.
        in_shape: ``(C, H, W)`` of one frame.
        class_names: one display name per label.
        root: the dataset directory.
        split_info: ``train_samples``, ``val_samples``, ``test_samples``, ``val_groups``,
            ``val_split_by`` (the unit held out, in words) and ``val_note`` (one sentence stating
            the split), plus anything the dataset wants saved in ``run.json``.
    """

    train: SplitView
    val: SplitView | None
    test: SplitView
    num_classes: int
    in_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    root: Path
    split_info: Mapping[str, Any]


#: The split info keys every dataset reports (printed with the run, saved in ``run.json``).
SPLIT_INFO_KEYS = (
    "train_samples",
    "val_samples",
    "test_samples",
    "val_groups",
    "val_split_by",
    "val_note",
)

Opener = Callable[[DataRequest], DatasetSplits | ReadySplits]
OptionCheck = Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: its opener and what its configuration needs."""

    name: str
    open: Opener
    needs_root: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)
    check: OptionCheck | None = None


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(
    name: str,
    *,
    needs_root: bool = True,
    options: Mapping[str, Any] | None = None,
    check: OptionCheck | None = None,
) -> Callable[[Opener], Opener]:
    """Register an opener under ``name`` (``data.dataset: NAME`` in a training config).

    Args:
        name: the dataset name.
        needs_root: ``False`` when the opener can make its data itself (``data.root`` optional).
        options: the dataset's own settings and their defaults; a config sets them under
            ``data.options`` (or as a ``data`` key of the same name, e.g. ``data.gait_variant``).
        check: optional check of the resolved options (every registered key present); raises
            ``ValueError`` with one line naming ``data.options.KEY`` and the allowed values.
    """

    def deco(fn: Opener) -> Opener:
        DATASETS.add(name, DatasetEntry(name, fn, needs_root, dict(options or {}), check))
        return fn

    return deco


def resolve_options(entry: DatasetEntry, given: Mapping[str, Any]) -> dict[str, Any]:
    """The registered defaults updated with ``given``, checked by the dataset's ``check``.

    Raises:
        ValueError: an unknown key (the allowed ones named) or a value the check refuses.
    """
    allowed = sorted(entry.options)
    for key in given:
        if key not in entry.options:
            raise ValueError(
                f"data.options.{key}: unknown option for dataset {entry.name!r}"
                f"{suggest(key, allowed)}; allowed: {allowed}"
            )
    resolved = {**entry.options, **given}
    if entry.check is not None:
        entry.check(resolved)
    return resolved


def carve_validation(
    groups: Sequence[str],
    fraction: float,
    seed: int,
    strata: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Split sample indices into ``(train, val)`` by whole groups.

    ``round(fraction * n)`` of the ``n`` distinct groups are held out (at least one, never all),
    drawn with ``seed``. With ``strata``, this happens within every stratum separately (a
    stratum with a single group keeps it for training).

    Returns:
        ``(train_indices, val_indices, held_out_group_names)``, indices ascending.

    Example:
        >>> tr, va, held = carve_validation(["a", "a", "b", "c"], 0.34, seed=0)
        >>> sorted(tr.tolist() + va.tolist()), len(held)
        ([0, 1, 2, 3], 1)
    """
    idx = np.arange(len(groups))
    if fraction <= 0:
        return idx, idx[:0], []
    if strata is not None and len(strata) != len(groups):
        raise ValueError(f"strata has {len(strata)} entries, groups {len(groups)}")
    keys = list(strata) if strata is not None else [""] * len(groups)
    held: list[str] = []
    for k, stratum in enumerate(sorted(set(keys))):
        uniq = sorted({g for g, s in zip(groups, keys) if s == stratum})
        if len(uniq) < 2:
            if strata is None:
                raise ValueError(
                    f"cannot carve a validation split: the training set has {len(uniq)} "
                    "group(s); set data.val_fraction=0"
                )
            continue
        n_val = min(len(uniq) - 1, max(1, round(fraction * len(uniq))))
        # one stream for the unstratified case (the split of every existing run), one per stratum
        gen = np.random.default_rng(seed if strata is None else [seed, k])
        perm = gen.permutation(len(uniq))
        held += [uniq[i] for i in perm[:n_val]]
    if not held:
        raise ValueError(
            "cannot carve a validation split: no stratum has two groups; set data.val_fraction=0"
        )
    held = sorted(held)
    mask = np.isin(np.asarray(groups), held)
    return idx[~mask], idx[mask], held
